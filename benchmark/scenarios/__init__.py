"""Built-in scenarios; importing this package registers them."""

from . import digits, hf, local, torchvision_sets  # noqa: F401
