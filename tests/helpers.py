"""Helpers shared by tests: building methods with their smoke configs, forbidden data splits."""

from __future__ import annotations

import dataclasses

import torch

from benchmark.config import build_config
from benchmark.data import ScenarioData

SMOKE_TRAIN = {"epochs": 1, "batch_size": 32}


def smoke_defense(cls, backbone, info, seed=0, **overrides):
    values = {"train": dict(SMOKE_TRAIN)}
    for k, v in cls.smoke_config.items():
        if k == "train":
            values["train"].update(v)
        else:
            values[k] = v
    values.update(overrides)
    return cls(build_config(cls.Config, values, f"{cls.name} smoke config"), backbone, info, seed)


def smoke_attack(cls, seed=0, **overrides):
    return cls(build_config(cls.Config, {**cls.smoke_config, **overrides}, f"{cls.name} smoke config"), seed)


def fitted_frozen(name, backbone, data, seed=0):
    """Defense ``name`` fitted with its smoke config on ``data``, then frozen as the runner freezes it."""
    from benchmark.registry import DEFENSES
    from benchmark.trainer import Trainer

    torch.manual_seed(seed)
    d = smoke_defense(DEFENSES.get(name), backbone, data.info, seed)
    d.fit(data, Trainer("cpu", seed=seed, progress=False))
    return d.freeze()


class Forbidden:
    """A stand-in for a split a method must not read: any use fails the test."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, item):
        raise AssertionError(f"the method read the {self._name!r} split ({item!r}) during fit")

    def __len__(self):
        raise AssertionError(f"the method read the {self._name!r} split during fit")


def train_only(data: ScenarioData) -> ScenarioData:
    return dataclasses.replace(data, aux=Forbidden("aux"), eval=Forbidden("eval"))


def make_target(defense, data, requires, trainer, cache=None, seed=0, backbone=None):
    """The :class:`~benchmark.interfaces.Target` an attack sees of a fitted, frozen ``defense`` on ``data`` (the
    way the runner builds it), for tests that run an attack directly."""
    from benchmark.interfaces import Target

    return Target(defense, data, frozenset(requires), trainer, utility=1.0,
                  backbone=backbone or defense.backbone, cache=cache, seed=seed)
