"""Strict, generic registries for defenses, attacks, scenarios and suites.

A registry maps a name to an object of a declared base type. Registering a name twice raises; looking up an
unknown name raises a :class:`~benchmark.core.errors.SplitbenchError` that suggests the closest names.

Built-in methods live in the packages ``baselines``, ``defenses`` and ``attacks`` and register themselves on
import. Third-party methods register through the entry point groups ``splitbench.defenses`` and
``splitbench.attacks`` (an entry point may name a module, which registers itself, or a class, which is
registered under the entry point's name), or from a plain Python file passed as ``--plugin path.py``.

Example:
    >>> from benchmark.core.registry import DEFENSES
    >>> "no_pruning" in DEFENSES.names()
    True
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from benchmark.core.errors import SplitbenchError, did_you_mean

if TYPE_CHECKING:  # for the type checker only: at run time the registry imports nothing of the project
    from benchmark.api.contract import Attack, Defense
    from benchmark.data.types import Scenario

T = TypeVar("T")

#: Packages whose import registers the built-in methods (packages, not methods: the harness names none).
BUILTIN_PACKAGES = ("baselines", "defenses", "attacks")
#: The package whose import registers the built-in scenarios.
BUILTIN_SCENARIOS = "benchmark.data.scenarios"
ENTRY_POINT_GROUPS = {"defense": "splitbench.defenses", "attack": "splitbench.attacks"}

_loaded = False


class Registry(Generic[T]):
    """A named, strict mapping from names to objects of one kind.

    Args:
        kind: what the entries are, used in error messages ("defense", "attack", ...).
        base: if given, every registered object must be a subclass of it: a class, or ``"module:Class"``, imported
            by name on the first registration (so this module imports nothing of the project but its errors).
    """

    def __init__(self, kind: str, base: type | str | None = None):
        self.kind = kind
        self._base = base
        self._entries: dict[str, T] = {}

    @property
    def base(self) -> type | None:
        if isinstance(self._base, str):
            module, _, name = self._base.partition(":")
            resolved: type = getattr(importlib.import_module(module), name)
            self._base = resolved
        return self._base

    def register(self, name: str, obj: T | None = None):
        """Register ``obj`` under ``name``; used bare or as a decorator."""

        def add(o: T) -> T:
            if not isinstance(name, str) or not name or name != name.strip():
                raise SplitbenchError(f"{self.kind} name must be a non-empty string, got {name!r}")
            if name in self._entries:
                raise SplitbenchError(
                    f"{self.kind} {name!r} is already registered (by {_where(self._entries[name])}); "
                    f"pick another name for {_where(o)}"
                )
            if self.base is not None and not (isinstance(o, type) and issubclass(o, self.base)):
                raise SplitbenchError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {o!r}")
            if isinstance(o, type):
                o.name = name  # type: ignore[attr-defined]
            self._entries[name] = o
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise an error that suggests the closest names."""
        load_all()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise SplitbenchError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} (known: {known})"
            )
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names, filtered by an fnmatch pattern."""
        load_all()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def items(self) -> Iterator[tuple[str, T]]:
        load_all()
        yield from sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        load_all()
        return name in self._entries

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and plugin reloading)."""
        self._entries.pop(name, None)


def _where(obj: object) -> str:
    mod = getattr(obj, "__module__", "?")
    qual = getattr(obj, "__qualname__", repr(obj))
    return f"{mod}.{qual}"


DEFENSES: Registry[type[Defense]] = Registry("defense", "benchmark.api.contract:Defense")
ATTACKS: Registry[type[Attack]] = Registry("attack", "benchmark.api.contract:Attack")
SCENARIOS: Registry[type[Scenario]] = Registry("scenario")
SUITES: Registry[Path] = Registry("suite")


def register_defense(name: str) -> Callable:
    """Class decorator: register a :class:`~benchmark.api.contract.Defense` subclass."""
    return DEFENSES.register(name)


def register_attack(name: str) -> Callable:
    """Class decorator: register an :class:`~benchmark.api.contract.Attack` subclass."""
    return ATTACKS.register(name)


def register_scenario(name: str) -> Callable:
    """Class decorator: register a :class:`~benchmark.data.types.Scenario` subclass."""
    return SCENARIOS.register(name)


def suite_dir() -> Path:
    """The folder of the built-in suite files (``<name>.yaml``)."""
    return Path(__file__).resolve().parent.parent / "suites"  # benchmark/suites, found on disk, not imported


def load_all() -> None:
    """Register the built-in scenarios, methods and suite files and the installed entry points, once.

    Packages are imported by name and suite files found on disk, so the registry depends on none of them."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg in (BUILTIN_SCENARIOS, *BUILTIN_PACKAGES):
        importlib.import_module(pkg)
    for path in sorted(suite_dir().glob("*.yaml")):
        if path.stem not in SUITES._entries:
            SUITES.register(path.stem, path)
    for kind, group in ENTRY_POINT_GROUPS.items():
        for ep in metadata.entry_points(group=group):
            _load_entry_point(kind, ep)


def _load_entry_point(kind: str, ep: metadata.EntryPoint) -> None:
    registry = DEFENSES if kind == "defense" else ATTACKS
    try:
        obj = ep.load()
    except Exception as exc:  # a broken third-party package must not hide the built-ins
        raise SplitbenchError(
            f"entry point {ep.name!r} in group {ep.group!r} ({ep.value}) failed to load: {exc}") from exc
    if isinstance(obj, type) and getattr(obj, "name", None) not in registry._entries:
        registry.register(ep.name, obj)


def load_plugin(path: str | Path) -> None:
    """Import a Python file whose decorators register defenses or attacks (``--plugin path.py``)."""
    load_all()
    p = Path(path)
    if not p.is_file():
        raise SplitbenchError(f"plugin file {str(p)!r} does not exist (expected a .py file that registers methods)")
    if p.suffix != ".py":
        raise SplitbenchError(f"plugin file {str(p)!r} must be a .py file")
    mod_name = f"splitbench_plugin_{p.stem}_{abs(hash(str(p.resolve()))) % 10**8}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SplitbenchError:
        raise
    except Exception as exc:
        del sys.modules[mod_name]
        raise SplitbenchError(f"plugin file {str(p)!r} failed to import: {type(exc).__name__}: {exc}") from exc
