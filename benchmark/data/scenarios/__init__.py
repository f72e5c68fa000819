"""Built-in scenarios; importing this package registers them."""

from benchmark.data.scenarios import digits, fashion_mnist, hf, local, torchvision_sets  # noqa: F401
