"""Helpers shared by tests: building methods with their smoke configs, forbidden data splits."""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from benchmark.core.fields import build_config
from benchmark.data.types import ScenarioData

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
    from benchmark.core.registry import DEFENSES
    from benchmark.models.trainer import Trainer

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


def make_target(defense, data, requires, trainer, cache=None, seed=0, backbone=None, limit=None):
    """The :class:`~benchmark.api.contract.Target` an attack sees of a fitted, frozen ``defense`` on ``data`` (the
    way the runner builds it: the first ``limit`` eval samples released once, the attacker's aux split), for
    tests that run an attack directly."""
    from benchmark.api.contract import Target

    releases = trainer.map(lambda b: defense.release(b.x), data.eval, limit)
    return Target(defense, frozenset(requires), trainer, releases, data.aux, data.info,
                  backbone or defense.backbone, cache=cache, seed=seed)


@contextlib.contextmanager
def float64(defense):
    """Run a defense and everything an attack creates in float64, where rounding noise is far below Adam's eps
    (in float32, Adam's normalised steps turn the last-bit differences of batched vs single computations into
    visible drift after enough steps, so float32 agreement would only be checkable for a handful of steps)."""
    defense = defense.double()
    plain = type(defense).release
    defense.release = lambda x: plain(defense, x.double())
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield defense
    finally:
        torch.set_default_dtype(old)
        del defense.release
        defense.float()


def reconstruction_scores_of(out, data):
    """PSNR / SSIM of an attack's reconstructions of the first eval images, beside the attacker's mean aux image."""
    from benchmark.measure.metrics import reconstruction_scores

    truth = data.eval.images[out.index].float() / 255.0
    baseline = (data.aux.images.float() / 255.0).mean(0, keepdim=True)
    return reconstruction_scores(out.images, truth, baseline)


def run_pinned(*args, **kwargs):
    """``benchmark.run`` in this process with the code version read once. Each record reads the code's commit when
    it is written, so a commit made in this checkout while a test's run is under way would split the run between two
    versions (and ``submit`` would rightly refuse it)."""
    import pytest

    import benchmark
    from benchmark.engine import runner as runner_module
    from benchmark.store.records import git_provenance

    pinned = git_provenance()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_module, "git_provenance", lambda: pinned)
        return benchmark.run(*args, **kwargs)


def assert_trains_no_pruning(name, backbone, data, seed=2, train=None, **overrides):
    """Fit ``no_pruning`` and defense ``name`` (with ``overrides``, e.g. its knob at 0) the same way and assert that
    every weight of ``no_pruning`` comes out identical in ``name``; returns both, frozen, by name."""
    from benchmark.core.registry import DEFENSES
    from benchmark.models.trainer import Trainer

    extra = {"train": train} if train else {}
    models = {}
    for n, over in (("no_pruning", {}), (name, overrides)):
        torch.manual_seed(0)
        d = smoke_defense(DEFENSES.get(n), backbone, data.info, seed=seed, **extra, **over)
        d.fit(data, Trainer("cpu", seed=seed, progress=False))
        models[n] = d.freeze()
    a, b = models["no_pruning"].state_dict(), models[name].state_dict()
    assert a.keys() <= b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name} {overrides} does not train no_pruning's weights"
    return models
