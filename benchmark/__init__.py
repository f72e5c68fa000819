"""splitbench's harness, in layers (each imports only the layers below it; ``tox -e lint`` checks it):

- ``core`` — errors, files and JSON, progress, config fields, the registries (imports nothing of the project);
- ``data`` — the data model and the built-in scenarios;
- ``models`` — split timm backbones and the one trainer;
- ``api`` — the Defense / Attack / Target contract and method cards: what a method author writes against;
- ``kit`` — building blocks methods share (channels, nets, chain pruning, interval bounds, cost counters);
- ``measure`` — metrics, the scorers of each attack kind, the crossed bootstrap;
- ``suites`` — the suite files, their parsing and expansion into cells, tuning configuration;
- ``store`` — records, manifests, the model cache;
- ``engine`` — the runner, attack execution and tuning, evaluation, executors, hardware;
- ``cli`` — the ``splitbench`` command.

The harness knows no defense or attack by name; methods register themselves (see :mod:`benchmark.core.registry`).
The names below are the public API; the module paths of the flat 0.1 layout still import, with a warning.

Example:
    >>> import benchmark
    >>> summary = benchmark.run("quick", out="runs/quick")   # doctest: +SKIP
    >>> frame = benchmark.load_frame("runs/quick")           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from benchmark import _moved

#: the public names and the modules that hold them, imported on first use: ``import benchmark`` (and so every
#: ``splitbench`` command) starts without importing torch, which the run command uses to start its worker
#: processes' imports on another core first (see :func:`benchmark.engine.executors.start_worker_server`)
_PUBLIC = {
    "MethodCard": "benchmark.api.cards",
    **dict.fromkeys(("Access", "Attack", "AttackKind", "AttackOutput", "Defense", "DefenseConfig", "NotApplicable",
                     "ReleaseKind", "Target", "train_task"), "benchmark.api.contract"),
    **dict.fromkeys(("AccessError", "SplitbenchError"), "benchmark.core.errors"),
    **dict.fromkeys(("build_config", "config_hash", "field"), "benchmark.core.fields"),
    **dict.fromkeys(("ATTACKS", "DEFENSES", "SCENARIOS", "SUITES", "load_plugin", "register_attack",
                     "register_defense", "register_scenario"), "benchmark.core.registry"),
    **dict.fromkeys(("DataOptions", "ScenarioData", "ScenarioInfo", "Split"), "benchmark.data.types"),
    "run": "benchmark.engine.runner",
    **dict.fromkeys(("BackboneSpec", "SplitModel", "build_split", "split_points"), "benchmark.models.backbones"),
    **dict.fromkeys(("ParamGroup", "TrainConfig", "Trainer"), "benchmark.models.trainer"),
    "load_frame": "benchmark.store.records",
}

if TYPE_CHECKING:
    from benchmark.api.cards import MethodCard
    from benchmark.api.contract import (
        Access,
        Attack,
        AttackKind,
        AttackOutput,
        Defense,
        DefenseConfig,
        NotApplicable,
        ReleaseKind,
        Target,
        train_task,
    )
    from benchmark.core.errors import AccessError, SplitbenchError
    from benchmark.core.fields import build_config, config_hash, field
    from benchmark.core.registry import (
        ATTACKS,
        DEFENSES,
        SCENARIOS,
        SUITES,
        load_plugin,
        register_attack,
        register_defense,
        register_scenario,
    )
    from benchmark.data.types import DataOptions, ScenarioData, ScenarioInfo, Split
    from benchmark.engine.runner import run
    from benchmark.models.backbones import BackboneSpec, SplitModel, build_split, split_points
    from benchmark.models.trainer import ParamGroup, TrainConfig, Trainer
    from benchmark.store.records import load_frame

_moved.install()


def __getattr__(name: str):
    """A public name, imported from its module on first use; ``benchmark.registry`` and the other modules of the
    flat layout, as attributes (with the import's warning)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    if f"benchmark.{name}" in _moved.MOVED:
        return importlib.import_module(f"benchmark.{name}")
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


__all__ = [
    "ATTACKS", "Access", "AccessError", "Attack", "AttackKind", "AttackOutput", "BackboneSpec", "DEFENSES",
    "DataOptions", "Defense", "DefenseConfig", "MethodCard", "NotApplicable", "ParamGroup", "ReleaseKind",
    "SCENARIOS", "SUITES", "ScenarioData", "ScenarioInfo", "Split", "SplitModel", "SplitbenchError",
    "TrainConfig", "Trainer", "Target", "build_config", "build_split", "config_hash", "load_frame",
    "load_plugin", "register_attack", "register_defense", "register_scenario", "run", "split_points", "field",
    "train_task",
]
