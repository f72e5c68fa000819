"""Import every module of a method package, so that adding a method is adding one file."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str) -> None:
    pkg = importlib.import_module(package_name)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
