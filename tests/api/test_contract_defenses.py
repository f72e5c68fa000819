"""Contract tests run over every registered defense (a new defense gets them for free)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from benchmark.api.cards import MethodCard
from benchmark.api.contract import Defense, ReleaseKind
from benchmark.core.registry import DEFENSES
from benchmark.store.cache import ModelCache
from tests.support.helpers import smoke_defense, train_only

NAMES = DEFENSES.names()


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_backbone):
    """Each defense fitted once on the tiny data (train split only), shared by the tests of this module."""
    from benchmark.models.trainer import Trainer

    cache = {}

    def get(name):
        if name not in cache:
            cls = DEFENSES.get(name)
            torch.manual_seed(0)
            d = smoke_defense(cls, tiny_backbone, tiny_data.info)
            d.fit(train_only(tiny_data), Trainer("cpu", seed=0, progress=False))
            d.eval()
            cache[name] = d
        return cache[name]

    return get


def test_registry_is_not_empty():
    assert {"no_pruning", "random_pruning"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_is_complete(name):
    cls = DEFENSES.get(name)
    assert isinstance(cls.card, MethodCard)
    assert cls.card.missing() == [], f"{name}: card is missing {cls.card.missing()}"
    assert 1990 < cls.card.year < 2100
    assert cls.card.url.startswith("http")
    assert isinstance(cls.card.inferred, tuple)


@pytest.mark.parametrize("name", NAMES)
def test_config_is_frozen_with_help_and_knob(name):
    cls = DEFENSES.get(name)
    assert issubclass(cls, Defense)
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    assert cls.knob in fields, f"knob {cls.knob!r} is not a field of {cls.Config.__name__}"
    assert "train" in fields
    hints = typing.get_type_hints(cls.Config)
    assert hints[cls.knob] in (float, int), "the knob must be a number"
    assert cls.knob_more_private in ("higher", "lower"), "declare which end of the knob is the more private one"
    for f in fields.values():
        if f.name != "train":
            assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    cls.Config()  # defaults are valid
    grid = cls.knob_grid
    assert list(grid) == sorted(set(grid)), f"{name}: knob_grid must be ascending without repeats"
    for value in grid:  # every setting of the curve is a valid config
        cls.Config(**{cls.knob: hints[cls.knob](value)}).validate()


@pytest.mark.parametrize("name", NAMES)
def test_fit_reads_train_only_and_release_serves_the_task(name, fitted, tiny_data):
    d = fitted(name)  # fit() ran on data whose aux and eval splits fail on any access (val is the defender's)
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    with torch.no_grad():
        z = d.release(x)
        logits = d.predict(z)
    assert z.shape[0] == 8 and torch.isfinite(z).all()
    assert logits.shape == (8, tiny_data.info.num_task_classes)
    if d.release_kind == ReleaseKind.IMAGE:
        assert z.shape == x.shape
    nbytes = d.payload_bytes(z)
    assert nbytes.shape == (8,) and (nbytes > 0).all()
    assert (nbytes <= z[0].numel() * z.element_size() + z.shape[1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_the_server_forms_the_release_from_what_the_client_sends(name, fitted, tiny_data):
    """``sent`` is what the client's cost is measured on and ``received`` what the server does with it: together
    they must give the release, ``serve`` the task logits on it, and the bytes charged must be no more than what
    is sent."""
    d = fitted(name)
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    with torch.no_grad():
        torch.manual_seed(5)
        z = d.release(x)
        torch.manual_seed(5)
        m = d.sent(x)
        formed = d.received(m)
        served = d.serve(m)
    assert m.shape[0] == 8 and formed.shape == z.shape
    if not d.stochastic_release:
        torch.testing.assert_close(formed, z, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # what the server's latency is measured on: its task logits on the formed release
            torch.testing.assert_close(served, d.predict(z), rtol=1e-4, atol=1e-4)
    assert (d.payload_bytes(z) <= m[0].numel() * m.element_size() + z.shape[1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_white_box_release_is_differentiable(name, fitted, tiny_data):
    d = fitted(name)
    x = tiny_data.info.normalize(tiny_data.eval.images[:4]).requires_grad_(True)
    with torch.no_grad():
        observed = d.release(x)
    out = d.white_box_release(x, observed)
    assert out.shape == observed.shape
    out.float().pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_white_box_draws_are_separate_white_box_releases(name, fitted, tiny_data):
    """A defense's batch of EOT draws must be what as many calls of its white-box release give, draw for draw from
    the same seed, and the same gradient (an override that computes the client once must change only speed)."""
    d = fitted(name)
    x0 = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        observed = d.release(x0)
    grads, outs = [], []
    for batched in (False, True):
        x = x0.clone().requires_grad_(True)
        torch.manual_seed(3)
        rs = d.white_box_draws(x, observed, 3) if batched else [d.white_box_release(x, observed) for _ in range(3)]
        assert len(rs) == 3 and all(r.shape == observed.shape for r in rs)
        sum(r.float().pow(2).sum() for r in rs).backward()
        outs.append(torch.stack([r.detach() for r in rs]))
        grads.append(x.grad)
    torch.testing.assert_close(outs[1], outs[0])
    # float rounding of sums in another order: the absolute tolerance scales with the gradient (about 10 here)
    scale = max(1.0, float(grads[0].abs().max()))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6 * scale)
    if d.stochastic_release and not torch.equal(outs[0][0], outs[0][1]):
        assert not torch.equal(outs[1][0], outs[1][1]), "every draw must be its own"


@pytest.mark.parametrize("name", NAMES)
def test_cache_roundtrip_restores_the_same_model(name, fitted, tiny_data, tiny_backbone, tmp_path):
    d = fitted(name)
    cache = ModelCache(tmp_path)
    cache.save("models", "k", d, {"structure": d.structure()})
    fresh = smoke_defense(DEFENSES.get(name), tiny_backbone, tiny_data.info)
    fresh.restore_structure(cache.load_meta("models", "k")["structure"])
    cache.load_into("models", "k", fresh)
    fresh.eval()
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    with torch.no_grad():
        torch.manual_seed(1)
        a = d.predict(d.release(x))
        torch.manual_seed(1)
        b = fresh.predict(fresh.release(x))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_tail_reads_the_release(name, fitted, tiny_data):
    d = fitted(name)
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        z = d.release(x)
        tail = d.fresh_tail(7, seed=3).eval()
        assert tail(z).shape == (4, 7)


@pytest.mark.parametrize("name", NAMES)
def test_deployed_copy_on_a_real_backbone_runs_and_costs_what_its_structure_says(name, fitted):
    """``Defense.deployed_on``: the defense rebuilt on another (real) backbone at another image size, with its fitted
    architecture changes carried over; the harness times it where a suite's ``deployment`` asks."""
    from benchmark.core.errors import NotApplicable
    from benchmark.kit.cost import count_macs
    from benchmark.models.backbones import BackboneSpec

    d = fitted(name)
    try:
        copy = d.deployed_on(BackboneSpec("resnet18", "layer1"), 40)
    except NotApplicable as exc:  # allowed for a plugin that cannot carry its structure, with a reason
        assert d.structure() and str(exc)
        return
    assert type(copy) is type(d) and copy.knob_value == d.knob_value and copy.info.image_size == 40
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())
    x = copy.info.normalize(torch.rand(2, copy.info.channels, 40, 40))
    with torch.no_grad():
        z = copy.release(x)
    assert z.shape[0] == 2 and torch.isfinite(z).all()
    s = d.info.image_size
    assert count_macs(copy.release, x) > count_macs(d.release, d.info.normalize(torch.rand(1, 3, s, s)))
    same = d.deployed_on(d.backbone, d.info.image_size)  # the same backbone: the same structure as the fit chose
    assert {k: len(v) for k, v in same.structure().get("kept", {}).items()} == \
        {k: len(v) for k, v in d.structure().get("kept", {}).items()}
