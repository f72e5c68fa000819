"""The module paths of the flat 0.1 layout, kept importable for one release with a DeprecationWarning.

``benchmark`` was a flat package until its modules moved into layer folders (``core``, ``data``, ``models``,
``api``, ``kit``, ``measure``, ``suites``, ``store``, ``engine``). A plugin written against the old paths
(``from benchmark.interfaces import train_task``, ``from benchmark.config import field``) still imports: a finder
on ``sys.meta_path`` answers each old name with the module that now holds it, and warns once per name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old module path -> where it lives now
MOVED = {
    "benchmark.errors": "benchmark.core.errors",
    "benchmark.config": "benchmark.core.fields",
    "benchmark.registry": "benchmark.core.registry",
    "benchmark.discovery": "benchmark.core.discovery",
    "benchmark.scenarios": "benchmark.data.scenarios",
    "benchmark.scenarios.common": "benchmark.data.scenarios.common",
    "benchmark.scenarios.digits": "benchmark.data.scenarios.digits",
    "benchmark.scenarios.fashion_mnist": "benchmark.data.scenarios.fashion_mnist",
    "benchmark.scenarios.hf": "benchmark.data.scenarios.hf",
    "benchmark.scenarios.local": "benchmark.data.scenarios.local",
    "benchmark.scenarios.store": "benchmark.data.scenarios.store",
    "benchmark.scenarios.torchvision_sets": "benchmark.data.scenarios.torchvision_sets",
    "benchmark.backbones": "benchmark.models.backbones",
    "benchmark.trainer": "benchmark.models.trainer",
    "benchmark.interfaces": "benchmark.api.contract",
    "benchmark.cards": "benchmark.api.cards",
    "benchmark.channels": "benchmark.kit.channels",
    "benchmark.nets": "benchmark.kit.nets",
    "benchmark.pruning": "benchmark.kit.chains",
    "benchmark.metrics": "benchmark.measure.metrics",
    "benchmark.scoring": "benchmark.measure.scoring",
    "benchmark.scoring.base": "benchmark.measure.scoring.base",
    "benchmark.scoring.attribute": "benchmark.measure.scoring.attribute",
    "benchmark.scoring.reconstruction": "benchmark.measure.scoring.reconstruction",
    "benchmark.scoring.transfer": "benchmark.measure.scoring.transfer",
    "benchmark.scoring.convergence": "benchmark.measure.scoring.convergence",
    "benchmark.scoring.intervals": "benchmark.measure.intervals",
    "benchmark.scoring.table": "leaderboard.protocol",
    "benchmark.suite": "benchmark.suites",
    "benchmark.tuning": "benchmark.suites.tuning",
    "benchmark.records": "benchmark.store.records",
    "benchmark.manifest": "benchmark.store.manifest",
    "benchmark.cache": "benchmark.store.cache",
    "benchmark.runner": "benchmark.engine.runner",
    "benchmark.evaluation": "benchmark.engine.evaluation",
    "benchmark.executors": "benchmark.engine.executors",
    "benchmark.hardware": "benchmark.engine.hardware",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new
        self.spec = None

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        module = importlib.import_module(self.new)  # the module itself, so its objects are the same objects
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec  # the import system stamped the old name's spec on it: give it its own back


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Answers an old module path with its new module (same object), after a DeprecationWarning."""

    def find_spec(self, fullname: str, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; import it from there (the old path goes in the next release)",
                      DeprecationWarning, stacklevel=2)  # the importing line (warnings skips importlib's frames)
        module = importlib.import_module(new)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new), is_package=hasattr(module, "__path__"))


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        # first, so that a submodule of a moved package (benchmark.scoring.base) is not found again by the path
        # finder through its new parent's __path__ and loaded a second time under the old name
        sys.meta_path.insert(0, MovedModuleFinder())
