"""What a method author writes against: the Defense / Attack / Target contract (:mod:`~benchmark.api.contract`),
method cards (:mod:`~benchmark.api.cards`), typed config fields and the registration decorators.

A new defense or attack is one file that imports from here (plus, as it needs them, :mod:`benchmark.models` and
:mod:`benchmark.kit`)::

    from benchmark.api import Defense, DefenseConfig, MethodCard, field, register_defense, train_task
"""

from benchmark.api.cards import MethodCard
from benchmark.api.contract import (
    Access,
    Attack,
    AttackKind,
    AttackOutput,
    Defense,
    DefenseConfig,
    ReleaseKind,
    Target,
    train_task,
)
from benchmark.core.errors import AccessError, NotApplicable, SplitbenchError
from benchmark.core.fields import field
from benchmark.core.registry import register_attack, register_defense, register_scenario

__all__ = [
    "Access", "AccessError", "Attack", "AttackKind", "AttackOutput", "Defense", "DefenseConfig", "MethodCard",
    "NotApplicable", "ReleaseKind", "SplitbenchError", "Target", "field", "register_attack", "register_defense",
    "register_scenario", "train_task",
]
