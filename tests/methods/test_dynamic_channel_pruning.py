"""Behaviour of ``dynamic_channel_pruning``: exact per-sample channel counts, input-dependent masks, payload,
training on the released (hard) mask with the soft mask's gradient, several adversary updates per batch, and
the gradient routing of the min-max game (no adversary gradient reaches the client; F does train)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.data.types import Split
from benchmark.kit.channels import apply_channel_mask, observed_mask
from benchmark.models.trainer import Trainer
from tests.support.helpers import smoke_defense

NAME = "dynamic_channel_pruning"


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_backbone):
    torch.manual_seed(0)
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5)
    d.fit(tiny_data, Trainer("cpu", seed=0, progress=False))
    return d.eval()


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
def test_release_keeps_exactly_the_expected_channels_per_sample(ratio, tiny_data, tiny_backbone):
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=ratio).eval()
    x = tiny_data.info.normalize(tiny_data.eval.images[:16])
    with torch.no_grad():
        z = d.client(x)
        mask = d.channel_mask(x)
        released = d.release(x)
    c = z.shape[1]
    expected = c - int(c * ratio)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(1) == expected).all()
    # pruned channels are exactly zero, kept ones are the client's activations
    torch.testing.assert_close(released, z * mask[:, :, None, None])
    sent = (released != 0).flatten(2).any(2)
    assert (sent <= mask.bool()).all()
    per_channel = z[0, 0].numel() * released.element_size()
    assert (d.payload_bytes(released) <= expected * per_channel + math.ceil(c / 8)).all()


def test_mask_depends_on_the_input_and_is_per_sample(fitted, tiny_data):
    x = tiny_data.info.normalize(tiny_data.eval.images[:16])
    with torch.no_grad():
        masks = fitted.channel_mask(x)
        batch = fitted.release(x)
        single = torch.cat([fitted.release(x[i:i + 1]) for i in range(len(x))])
    assert len(torch.unique(masks, dim=0)) > 1, "every input got the same channel mask"
    # no pooling of pruned channels over the batch: a sample's release does not depend on its batch mates
    torch.testing.assert_close(batch, single)


def test_soft_mask_is_centred_on_the_k_plus_first_score(tiny_data, tiny_backbone):
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5)
    s = torch.randn(4, d.num_channels)
    b = d.soft_mask(s)
    k = d.pruned
    ranks = s.argsort(1)
    at_tau = b.gather(1, ranks[:, k:k + 1])
    torch.testing.assert_close(at_tau, torch.full_like(at_tau, 0.5))
    assert (b.gather(1, ranks[:, k + 1:]) > 0.5).all() and (b.gather(1, ranks[:, :k]) < 0.5).all()


def _one_step(data, backbone, sensitive):
    train = data.train.subset(32)
    train = Split(train.images, train.task, sensitive(train.sensitive), train.info)
    d = smoke_defense(DEFENSES.get(NAME), backbone, data.info, prune_ratio=0.5,
                     train={"epochs": 1, "batch_size": 32})
    before = {k: v.clone() for k, v in d.state_dict().items()}
    d.fit(dataclasses.replace(data, train=train), Trainer("cpu", seed=0, progress=False))
    return d, before


def test_adversary_gradient_never_reaches_the_client(tiny_data, tiny_backbone):
    """One training step with the true vs. shuffled sensitive labels: the adversary's loss differs, so F and
    the adversary move differently, but the client's update is bit-identical (it sees the task loss only)."""
    torch.manual_seed(0)
    a, before = _one_step(tiny_data, tiny_backbone, lambda s: s)
    torch.manual_seed(0)
    b, _ = _one_step(tiny_data, tiny_backbone, lambda s: s[torch.randperm(len(s), generator=torch.Generator()
                                                                         .manual_seed(5))])
    moved = False
    for (name, pa), pb in zip(a.client.named_parameters(), b.client.parameters()):
        moved |= not torch.equal(pa, before[f"split.client.{name}"])
        assert torch.equal(pa, pb), f"client parameter {name} depends on the adversary"
    assert moved, "the client did not train"
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.filter.parameters(), b.filter.parameters())), \
        "the filter network got no adversary gradient"
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.adversary.parameters(), b.adversary.parameters()))
    for name, p in a.filter.named_parameters():  # workshop bug 1: F must receive gradients and train
        if not torch.equal(p, before[f"filter.{name}"]):
            break
    else:
        pytest.fail("the filter network did not train")


def test_client_group_loss_carries_no_adversary_term(tiny_data, tiny_backbone):
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5)
    batch = next(tiny_data.train.batches(16))
    losses = d.losses(batch.x, batch.y, batch.s)
    params = list(d.client.parameters())
    g_client = torch.autograd.grad(losses["client"], params, retain_graph=True)
    g_task = torch.autograd.grad(losses["server"], params, retain_graph=True)
    g_adv = torch.autograd.grad(losses["adversary"], params, retain_graph=True, allow_unused=True)
    for gc, gt in zip(g_client, g_task):
        torch.testing.assert_close(gc, gt)
    # the adversary loss does depend on the client's weights, so routing (not luck) keeps it away
    assert any(g is not None and g.abs().sum() > 0 for g in g_adv)


def test_reconstruction_adversary_without_a_sensitive_attribute(tiny_data, tiny_backbone):
    info = dataclasses.replace(tiny_data.info, sensitive=None, sensitive_classes=None)
    data = dataclasses.replace(
        tiny_data, info=info,
        train=Split(tiny_data.train.images[:64], tiny_data.train.task[:64], None, info))
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, info, prune_ratio=0.5)
    assert d.adversary_kind == "reconstruction"
    d.fit(data, Trainer("cpu", seed=0, progress=False))
    x = info.normalize(tiny_data.eval.images[:4])
    assert d.adversary(d.eval().release(x)).shape == x.shape
    with pytest.raises(ValueError):
        smoke_defense(DEFENSES.get(NAME), tiny_backbone, info, adversary="attribute")


def _server_inputs_during_fit(data, backbone, **overrides):
    """Fit on 64 training images; return the model and every batch the server and the adversary were fed."""
    train = data.train.subset(64)
    d = smoke_defense(DEFENSES.get(NAME), backbone, data.info, train={"epochs": 1, "batch_size": 32}, **overrides)
    fed = {"server": [], "adversary": []}
    hooks = [getattr(d, k).register_forward_pre_hook(lambda m, args, k=k: fed[k].append(args[0].detach().clone()))
             for k in fed]
    torch.manual_seed(0)
    d.fit(dataclasses.replace(data, train=train), Trainer("cpu", seed=0, progress=False))
    for h in hooks:
        h.remove()
    return d, fed


@pytest.mark.parametrize("ratio", [0.25, 0.75])
def test_training_forward_pass_sends_exactly_the_released_channels(ratio, tiny_data, tiny_backbone):
    d, fed = _server_inputs_during_fit(tiny_data, tiny_backbone, prune_ratio=ratio)
    c = d.num_channels
    kept = c - int(c * ratio)
    assert len(fed["server"]) == len(fed["adversary"]) == 2 * 2  # 2 batches, 2 calls each (adversary_steps=2)
    for z_hat in fed["server"] + fed["adversary"]:
        assert (observed_mask(z_hat).sum(1) <= kept).all(), "training saw channels the release never sends"
        assert (observed_mask(z_hat).sum(1) >= kept - 1).all()  # a kept channel is rarely all zero after ReLU
    # the training forward value is exactly the release of the same batch
    d.train()
    x = tiny_data.info.normalize(tiny_data.train.images[:16])
    seen = []
    h = d.server.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    batch_y = tiny_data.train.task[:16]
    d.losses(x, batch_y, tiny_data.train.sensitive[:16])
    h.remove()
    with torch.no_grad():
        z = d.client(x)
        mask = d.hard_mask(d.scores(z))
    assert (mask.sum(1) == kept).all()
    assert torch.equal(seen[0], apply_channel_mask(z, mask))


def test_soft_training_mask_sends_every_channel(tiny_data, tiny_backbone):
    """The previous behaviour, kept as train_mask='soft': the server trained on all C channels (scaled)."""
    d, fed = _server_inputs_during_fit(tiny_data, tiny_backbone, prune_ratio=0.75, train_mask="soft",
                                       adversary_steps=1)
    assert len(fed["server"]) == len(fed["adversary"]) == 2  # 2 batches, one call each
    assert any((observed_mask(z_hat).sum(1) > d.num_channels - d.pruned).any() for z_hat in fed["server"])


def test_straight_through_mask_has_the_hard_value_and_the_soft_gradient(tiny_data, tiny_backbone):
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5)
    s = torch.randn(4, d.num_channels, requires_grad=True)
    w = torch.randn(4, d.num_channels)
    st = d.train_mask(s)
    assert torch.equal(st.detach(), d.hard_mask(s.detach()))
    g_st, = torch.autograd.grad((st * w).sum(), s)
    g_soft, = torch.autograd.grad((d.soft_mask(s) * w).sum(), s)
    torch.testing.assert_close(g_st, g_soft, rtol=0, atol=0)
    assert g_st.abs().sum() > 0


def test_gradients_reach_the_filter_network_through_the_hard_mask(tiny_data, tiny_backbone):
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5)
    d.train()
    batch = next(tiny_data.train.batches(16))
    losses = d.losses(batch.x, batch.y, batch.s)
    params = list(d.filter.parameters())
    for name in ("filter", "server", "adversary"):  # F's own loss, and each of its two terms
        grads = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient of the {name} loss reaches F"


def test_adversary_is_updated_adversary_steps_times_per_batch(tiny_data, tiny_backbone):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    train = tiny_data.train.subset(64)
    d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5, adversary_steps=3,
                      train={"epochs": 1, "batch_size": 32})
    owner = {id(p): k for k in ("client", "server", "filter", "adversary") for p in getattr(d, k).parameters()}
    counts: dict[str, int] = {}

    def count(opt, args, kwargs):
        k = owner[id(opt.param_groups[0]["params"][0])]
        counts[k] = counts.get(k, 0) + 1

    handle = register_optimizer_step_post_hook(count)
    try:
        d.fit(dataclasses.replace(tiny_data, train=train), Trainer("cpu", seed=0, progress=False))
    finally:
        handle.remove()
    batches = 64 // 32
    assert counts == {"client": batches, "server": batches, "filter": batches, "adversary": 3 * batches}


@pytest.mark.parametrize("value", [0, -2])
def test_adversary_steps_below_one_is_a_one_line_error(value, tiny_data, tiny_backbone):
    cls = DEFENSES.get(NAME)
    with pytest.raises(ValueError, match=r"^adversary_steps must be an integer >= 1, got") as e:
        cls.Config(adversary_steps=value).validate()
    assert "\n" not in str(e.value)
    with pytest.raises(SplitbenchError, match="adversary_steps") as e:
        build_config(cls.Config, {"adversary_steps": value}, "dynamic_channel_pruning")
    assert "\n" not in str(e.value)


def test_the_light_scorer_is_a_small_fraction_of_the_server_copy_and_both_prune_exactly(tiny_data, tiny_backbone):
    from benchmark.kit.cost import count_macs
    from benchmark.models.backbones import BackboneSpec

    counts, macs = {}, {}
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    for scorer in ("light", "server_copy"):
        d = smoke_defense(DEFENSES.get(NAME), tiny_backbone, tiny_data.info, prune_ratio=0.5, scorer=scorer).eval()
        counts[scorer] = sum(p.numel() for p in d.filter.parameters())
        with torch.no_grad():
            assert (d.channel_mask(x).sum(1) == d.num_channels - d.pruned).all()
        # as deployed on the standard suite's backbone: what the client computes in all
        deployed = d.deployed_on(BackboneSpec("resnet18", "layer1"), 64)
        macs[scorer] = count_macs(deployed.release, torch.zeros(1, 3, 64, 64))
    server = sum(p.numel() for p in d.server.parameters())
    assert counts["light"] < 0.1 * server <= counts["server_copy"]
    assert macs["light"] < 0.5 * macs["server_copy"]
    assert DEFENSES.get(NAME).Config().scorer == "light"  # the default, as the paper describes F


def test_an_unknown_scorer_is_refused():
    with pytest.raises(ValueError, match="scorer must be 'light' or 'server_copy'"):
        DEFENSES.get(NAME).Config(scorer="big").validate()
