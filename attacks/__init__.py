"""Built-in attacks: every module in this package registers itself on import (one file per method)."""

from benchmark.core.discovery import import_submodules

import_submodules(__name__)
