"""Built-in scenarios; importing this package registers them."""

from . import digits, fashion_mnist, hf, local, torchvision_sets  # noqa: F401
