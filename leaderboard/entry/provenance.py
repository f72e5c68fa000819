"""Where the entry's defense comes from: a plugin file packed with it, an installed package at a pinned version, or
splitbench itself; the plugin module is imported once and reused while its methods stay registered."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.core.io import sha256_file


def provide_plugin(path: Path) -> ModuleType:
    """The module of a plugin file: an already imported module with the same bytes whose methods are still
    registered, else the file imported now (:func:`benchmark.core.registry.load_plugin`)."""
    from benchmark.core.registry import load_plugin

    path = Path(path)
    if not path.is_file():
        raise SplitbenchError(f"plugin file {str(path)!r} does not exist (expected a .py file that registers methods)")
    digest = sha256_file(path)
    for mod in _plugin_modules():
        if sha256_file(Path(mod.__file__)) == digest and _still_registered(mod):
            return mod
    load_plugin(path)
    for mod in _plugin_modules():
        if Path(mod.__file__).resolve() == path.resolve():
            if not _still_registered(mod):
                break
            return mod
    raise SplitbenchError(f"plugin file {str(path)!r}: imported before, but what it registered has been removed "
                          "(start a fresh process)")


def _plugin_modules() -> list[ModuleType]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("splitbench_plugin_")
            and isinstance(getattr(m, "__file__", None), str) and Path(m.__file__).is_file()]


def _still_registered(mod: ModuleType) -> bool:
    from benchmark.core.registry import ATTACKS, DEFENSES

    for obj in list(vars(mod).values()):
        if isinstance(obj, type) and obj.__module__ == mod.__name__ and "name" in vars(obj):
            if not any(obj.name in reg and reg.get(obj.name) is obj for reg in (DEFENSES, ATTACKS)):
                return False
    return True


def check_code(card: Mapping[str, Any], plugins: Sequence[str | Path], where: str) -> list[Path]:
    """Make the card's defense available and check it comes from where ``code`` says; return the plugin files.

    ``{plugin: [...]}``: the files given are exactly the ones listed and one of them registers the defense;
    ``{package, version, entry_point}``: that version is installed and its entry point is the defense;
    ``{builtin: true}``: the defense ships with splitbench.
    """
    from benchmark.core.registry import BUILTIN_PACKAGES, DEFENSES, load_all

    load_all()
    code, name = card["code"], card["defense"]
    paths = [Path(p) for p in plugins]
    given = [p.name for p in paths]
    if "plugin" in code:
        if sorted(given) != sorted(code["plugin"]) or len(set(given)) != len(given):
            raise SplitbenchError(f"{where}: code.plugin lists {code['plugin']}, but the plugin files given are "
                                  f"{given or 'none'} (give each listed file once, with --plugin)")
        modules = [provide_plugin(p) for p in paths]
        if name not in DEFENSES:
            raise SplitbenchError(f"{where}: defense {name!r} is not registered by the plugin file(s) {given}"
                                  f"{did_you_mean(name, DEFENSES.names())}")
        if sys.modules.get(DEFENSES.get(name).__module__) not in modules:
            raise SplitbenchError(f"{where}: defense {name!r} is registered by {DEFENSES.get(name).__module__}, not "
                                  f"by the plugin file(s) {given}")
        return paths
    if paths:
        raise SplitbenchError(f"{where}: plugin files were given, but code is not {{plugin: [...]}} (list them "
                              "under code.plugin)")
    if name not in DEFENSES:
        raise SplitbenchError(f"{where}: unknown defense {name!r}{did_you_mean(name, DEFENSES.names())}")
    module = DEFENSES.get(name).__module__
    if "package" in code:
        _check_package(code, name, module, where)
    elif module.split(".")[0] not in BUILTIN_PACKAGES:
        raise SplitbenchError(f"{where}: defense {name!r} does not ship with splitbench (it comes from {module}); set "
                              "code to {plugin: [FILE.py]} or {package: NAME, version: X, entry_point: NAME}")
    return []


def _normalized(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _check_package(code: Mapping[str, str], name: str, module: str, where: str) -> None:
    from benchmark.core.registry import DEFENSES, ENTRY_POINT_GROUPS

    pkg, version, ep_name = code["package"], code["version"], code["entry_point"]
    try:
        installed = metadata.version(pkg)
    except metadata.PackageNotFoundError as exc:
        raise SplitbenchError(f"{where}: package {pkg!r} is not installed (install {pkg}=={version})") from exc
    if installed != version:
        raise SplitbenchError(f"{where}: package {pkg} {installed} is installed, but the card names version {version} "
                              f"(install {pkg}=={version})")
    group = ENTRY_POINT_GROUPS["defense"]
    eps = [ep for ep in metadata.entry_points(group=group) if ep.name == ep_name
           and getattr(ep, "dist", None) is not None and _normalized(ep.dist.name) == _normalized(pkg)]
    if not eps:
        raise SplitbenchError(f"{where}: package {pkg} declares no entry point {ep_name!r} in the group {group}")
    obj = eps[0].load()
    cls = DEFENSES.get(name)
    ok = obj is cls if isinstance(obj, type) else (module == obj.__name__ or module.startswith(obj.__name__ + "."))
    if not ok:
        raise SplitbenchError(f"{where}: defense {name!r} is not the one entry point {ep_name!r} of {pkg} registers")
