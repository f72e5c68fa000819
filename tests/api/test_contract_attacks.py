"""Contract tests run over every registered attack (a new attack gets them for free).

Every attack runs through the runner's own path (``execute_attack``) against several kinds of target — a
deterministic release, a stochastic one, an image-shaped one and a pruned client — with the eval images and
labels and the defender's train and validation splits booby-trapped: any read fails the test. Its answers are
then scored by the harness.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.api.cards import MethodCard
from benchmark.api.contract import Attack, AttackKind, AttackOutput
from benchmark.core.registry import ATTACKS
from benchmark.engine.attacking import execute_attack
from benchmark.engine.evaluation import evaluate
from benchmark.engine.runner import Runner
from benchmark.measure.scoring import scorer_for
from benchmark.models.trainer import Trainer
from benchmark.store.cache import ModelCache
from tests.support.helpers import Forbidden, fitted_frozen, smoke_attack

NAMES = ATTACKS.names()
TARGETS = ("no_pruning", "random_pruning", "latent_masking", "paoding")  # deterministic, stochastic, image, pruned


@pytest.fixture(scope="module")
def defended(tiny_data, tiny_backbone):
    cache = {}

    def get(name):
        if name not in cache:
            d = fitted_frozen(name, tiny_backbone, tiny_data)
            ev = evaluate(d, tiny_data, Trainer("cpu", seed=0, progress=False), seed=0, draws=2)
            cache[name] = (d, ev)
        return cache[name]

    return get


def test_registry_is_not_empty():
    assert {"attribute_inference", "inversion_decoder"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_and_config(name):
    cls = ATTACKS.get(name)
    assert issubclass(cls, Attack)
    assert isinstance(cls.card, MethodCard) and cls.card.missing() == []
    assert isinstance(cls.kind, AttackKind)
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    for f in dataclasses.fields(cls.Config):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    cls.Config()


def poisoned(data):
    """The scenario as the attack path may see it: eval, train and val fail on any access."""
    return dataclasses.replace(data, train=Forbidden("train"), val=Forbidden("val"), eval=Forbidden("eval"))


@pytest.mark.parametrize("target_kind", TARGETS)
@pytest.mark.parametrize("name", NAMES)
def test_runs_within_its_access_without_eval_or_train_and_is_scored(name, target_kind, defended, tiny_data,
                                                                   tiny_backbone, tmp_path):
    cls = ATTACKS.get(name)
    defense, ev = defended(target_kind)
    releases, sample_ids = ev.attack_releases(8, ev.draws)
    trainer = Trainer("cpu", seed=0, progress=False)
    # The target enforces `requires` (asking for more raises AccessError and fails this test), and the booby-
    # trapped splits fail it on any read of eval, train or val.
    out, reason, _ = execute_attack(cls, smoke_attack(cls).config, 0, defense, poisoned(tiny_data), releases,
                                    tiny_backbone, trainer, ModelCache(tmp_path))
    if out is None:
        pytest.fail(f"{name} said it does not apply to {target_kind}: {reason}")
    assert isinstance(out, AttackOutput)
    assert out.budget, "an attack must report its budget"
    n = len(releases)
    assert sorted(out.index.tolist()) == list(range(n)), "an attack must answer every release it is given"
    if cls.kind == AttackKind.ATTRIBUTE:
        assert out.attributes.shape == (n,)
    elif cls.kind == AttackKind.RECONSTRUCTION:
        assert out.images.shape == (n, 3, 32, 32)
        assert out.images.min() >= 0 and out.images.max() <= 1
    else:
        assert out.task_predictions and all(p.shape[0] == n for p in out.task_predictions.values())
    truth = Runner.truth(tiny_data, sample_ids[out.index.numpy()], ev, cls.kind)
    metrics, samples = scorer_for(cls.kind).score(out, truth)
    assert all(isinstance(v, float) for v in metrics.values())
    assert len(samples["sample"]) == 8  # release draws of a stochastic defense are averaged per sample


def test_inversion_decoder_starts_at_the_attackers_mean_image():
    from benchmark.kit.nets import ReleaseDecoder

    prior = torch.rand(3, 16, 16) * 0.8 + 0.1
    dec = ReleaseDecoder(8, 4, (3, 16, 16), width=32, prior=prior)
    torch.nn.init.zeros_(dec.net[-1].weight)
    torch.nn.init.zeros_(dec.net[-1].bias)
    out = dec.eval()(torch.randn(2, 8, 4, 4))
    torch.testing.assert_close(out, prior.expand(2, -1, -1, -1), atol=1e-5, rtol=0)
