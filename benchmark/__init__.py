"""splitbench's harness: registries, scenarios, split backbones, the shared trainer, metrics, runner, records.

The harness knows no defense or attack by name; methods register themselves (see :mod:`benchmark.registry`).

Example:
    >>> import benchmark
    >>> summary = benchmark.run("quick", out="runs/quick")   # doctest: +SKIP
    >>> frame = benchmark.load_frame("runs/quick")           # doctest: +SKIP
"""

from .backbones import BackboneSpec, SplitModel, build_split, split_points
from .cards import MethodCard
from .config import build_config, config_hash
from .data import DataOptions, ScenarioData, ScenarioInfo, Split
from .errors import AccessError, SplitbenchError
from .interfaces import (
    Access,
    Attack,
    AttackKind,
    AttackOutput,
    Defense,
    DefenseConfig,
    NotApplicable,
    ReleaseKind,
    Target,
)
from .records import load_frame
from .registry import (
    ATTACKS,
    DEFENSES,
    SCENARIOS,
    SUITES,
    load_plugin,
    register_attack,
    register_defense,
    register_scenario,
)
from .runner import run
from .trainer import ParamGroup, TrainConfig, Trainer

__all__ = [
    "ATTACKS", "Access", "AccessError", "Attack", "AttackKind", "AttackOutput", "BackboneSpec", "DEFENSES",
    "DataOptions", "Defense", "DefenseConfig", "MethodCard", "NotApplicable", "ParamGroup", "ReleaseKind",
    "SCENARIOS", "SUITES", "ScenarioData", "ScenarioInfo", "Split", "SplitModel", "SplitbenchError",
    "TrainConfig", "Trainer", "Target", "build_config", "build_split", "config_hash", "load_frame",
    "load_plugin", "register_attack", "register_defense", "register_scenario", "run", "split_points",
]
