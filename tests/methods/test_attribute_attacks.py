"""The attribute attackers: the server-model access right (a copy of the designated model, isolated from the
defense, with no path to the client), the epoch chosen on the attacker's own hold-out, the fine-tuned server
starting from the server's weights, and the probe reading the features the server's classifier reads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attacks.attribute_finetune import AttributeFinetune, AttributeFinetuneConfig
from attacks.attribute_probe import AttributeProbe, AttributeProbeConfig
from attacks.learning_based import (
    AttributeInferenceConfig,
    classifier_name,
    fit_choosing_epoch,
    penultimate,
    split_holdout,
)
from benchmark.api.contract import Access
from benchmark.core.errors import AccessError, NotApplicable
from benchmark.core.fields import build_config
from benchmark.core.registry import DEFENSES
from benchmark.data.types import TensorSplit
from benchmark.models.backbones import create_model, cut_model
from benchmark.models.trainer import ParamGroup, Trainer
from tests.support.helpers import fitted_frozen, make_target, smoke_defense

SERVER = frozenset({Access.AUX_PAIRS, Access.SERVER_MODEL})


def unfitted(name, backbone, info, seed=0):
    """An unfitted, frozen defense whose every parameter is perturbed by noise, so that no two of its tensors are
    equal by value (at initialisation BatchNorm weights are all ones and biases all zeros, in client and server
    alike) and equality by value means a copy."""
    defense = smoke_defense(DEFENSES.get(name), backbone, info, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in defense.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return defense.freeze()


def tensors_reachable(module: nn.Module) -> tuple[list[torch.Tensor], list[nn.Module]]:
    """Every tensor and module reachable from ``module`` through module attributes and containers in them."""
    tensors, modules, seen = [], [], set()

    def walk(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            tensors.append(obj)
        elif isinstance(obj, nn.Module):
            modules.append(obj)
            for v in vars(obj).values():
                walk(v)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v)

    walk(module)
    return tensors, modules


def reaches_client(model: nn.Module, client: nn.Module) -> list[str]:
    """What of ``client`` is reachable from ``model``: its modules or parameters by identity, or a tensor equal to
    one of its parameters by value."""
    tensors, modules = tensors_reachable(model)
    found = []
    client_modules = {id(m) for m in client.modules()}
    client_params = list(client.parameters())
    if any(id(m) in client_modules for m in modules):
        found.append("a client module")
    if any(id(t) in {id(p) for p in client_params} for t in tensors):
        found.append("a client parameter")
    for t in tensors:
        for p in client_params:
            if t.shape == p.shape and t.dtype == p.dtype and torch.equal(t.detach(), p.detach()):
                found.append(f"a tensor equal to a client parameter of shape {tuple(p.shape)}")
    return found


def storages(module: nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in module.state_dict().values()}


# -- the access right --------------------------------------------------------------------------------------------
def test_server_model_needs_the_declared_access(tiny_data, tiny_backbone, trainer):
    target = make_target(unfitted("no_pruning", tiny_backbone, tiny_data.info), tiny_data,
                         {Access.AUX_PAIRS}, trainer, limit=4)
    with pytest.raises(AccessError, match="server_model"):
        target.server_model()


@pytest.mark.parametrize("defense_name", ["no_pruning", "latent_masking", "dynamic_channel_pruning"])
def test_the_server_model_is_an_isolated_copy_of_the_designated_model_without_the_client(
        defense_name, tiny_data, tiny_backbone, trainer):
    defense = unfitted(defense_name, tiny_backbone, tiny_data.info)
    designated = defense.designated_model()
    before = {k: v.clone() for k, v in defense.state_dict().items()}
    target = make_target(defense, tiny_data, SERVER, trainer, limit=4)
    model = target.server_model()

    # a copy of the designated model: same weights, same function, nothing shared
    assert model is not designated
    assert model.state_dict().keys() == designated.state_dict().keys()
    for k, v in designated.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not storages(model) & storages(defense)
    assert not model.training and all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in defense.parameters())  # the defense stays frozen
    z = target.eval_releases()
    with torch.no_grad():
        torch.testing.assert_close(model(z), defense.predict(z))
    # every call is a fresh copy
    again = target.server_model()
    assert not storages(again) & storages(model)

    # changing and training the copy leaves the defense as it was
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(z).square().mean().backward()
    opt.step()
    after = defense.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    # nothing of the client is reachable from the copy, by identity or by value
    assert reaches_client(again, defense.client) == []


def test_the_client_check_detects_a_client_copied_by_value(tiny_data, tiny_backbone):
    """The check above is not vacuous: a copy that carries the client (here the whole split) is caught by value
    even though none of its tensors is the client's by identity."""
    defense = unfitted("no_pruning", tiny_backbone, tiny_data.info)
    leaky = copy.deepcopy(defense.split)
    found = reaches_client(leaky, defense.client)
    assert found and all("equal to a client parameter" in f for f in found)


# -- the epoch chosen on the hold-out --------------------------------------------------------------------------------
def test_split_holdout_is_seeded_disjoint_and_sized():
    train = TensorSplit(torch.arange(50).float()[:, None], torch.arange(50))
    fit, hold = split_holdout(train, 0.2, seed=3)
    assert (len(fit), len(hold)) == (40, 10)
    assert sorted(fit.y.tolist() + hold.y.tolist()) == list(range(50))
    assert torch.equal(fit.x[:, 0].long(), fit.y)  # rows stay paired
    again, other = split_holdout(train, 0.2, seed=3)[1], split_holdout(train, 0.2, seed=4)[1]
    assert torch.equal(again.y, hold.y) and not torch.equal(other.y, hold.y)
    assert split_holdout(train, 0.0, seed=3) == (train, None)
    assert len(split_holdout(TensorSplit(torch.zeros(3, 1), torch.zeros(3).long()), 0.01, 0)[1]) == 1


def _flipped_task(n=64):
    """A fit part labelled against the hold-out (the label is the sign of x, flipped on the fit part) and a linear
    model that starts out right on the hold-out: training on the fit part makes it worse there, epoch by epoch."""
    g = torch.Generator().manual_seed(0)
    x_fit, x_hold = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    fit = TensorSplit(x_fit, (x_fit[:, 0] < 0).long())
    hold = TensorSplit(x_hold, (x_hold[:, 0] > 0).long())

    def model():
        m = nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            m.bias.zero_()
        return m

    return fit, hold, model


def test_the_kept_weights_are_those_of_the_best_hold_out_epoch():
    fit, hold, make = _flipped_task()
    trainer = Trainer("cpu", seed=0, progress=False)

    def train(epochs, hold_part):
        m = make()
        choice = fit_choosing_epoch(trainer, {"m": ParamGroup(list(m.parameters()), 0.05)}, m, [m], fit, hold_part,
                                    lambda x: x, epochs, 16, desc="test")
        return m, choice

    model, choice = train(12, hold)
    accs = [a for _, a in choice.curve]
    assert [e for e, _ in choice.curve] == list(range(1, 13))
    assert accs[0] > accs[-1] + 0.3, "the hold-out accuracy must peak early and fall for this test to mean anything"
    assert choice.chosen_epoch == 1 + accs.index(max(accs))
    assert choice.chosen_epoch < 12
    # the kept weights are exactly those the same training had after the chosen epoch
    early, _ = train(choice.chosen_epoch, None)
    for a, b in zip(model.parameters(), early.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    last, no_hold = train(12, None)
    assert no_hold.chosen_epoch == 12 and no_hold.curve == []
    assert not torch.equal(last.weight, model.weight)
    with torch.no_grad():
        assert float((model(hold.x).argmax(1) == hold.y).float().mean()) == max(accs)
    m = choice.metrics()
    assert m["chosen_epoch"] == choice.chosen_epoch and m["holdout_acc_best"] == max(accs)
    assert m["holdout_acc_last"] == accs[-1]
    assert choice.budget()["holdout_curve"][0] == [1, round(accs[0], 4)]


def test_ties_keep_the_earlier_epoch_and_eval_every_spaces_the_measurements():
    fit, hold, make = _flipped_task()
    trainer = Trainer("cpu", seed=0, progress=False)
    m = make()
    # a tiny learning rate: the weights move, the hold-out predictions do not -> every measurement ties
    choice = fit_choosing_epoch(trainer, {"m": ParamGroup(list(m.parameters()), 1e-6)}, m, [m], fit, hold,
                                lambda x: x, 5, 16, eval_every=2, desc="test")
    assert [e for e, _ in choice.curve] == [2, 4, 5]
    assert len({a for _, a in choice.curve}) == 1
    assert choice.chosen_epoch == 2
    m2 = make()
    fit_choosing_epoch(trainer, {"m": ParamGroup(list(m2.parameters()), 1e-6)}, m2, [m2], fit, None,
                       lambda x: x, 2, 16, desc="test")
    torch.testing.assert_close(m.weight, m2.weight, rtol=0, atol=0)


def test_patience_stops_on_the_hold_out_plateau_and_keeps_the_same_best_epoch():
    """With patience, training ends once that many measurements in a row have not beaten the best; the epochs run
    are those of the full run (same curve prefix), and the kept weights are the same best epoch's."""
    fit, hold, make = _flipped_task()
    trainer = Trainer("cpu", seed=0, progress=False)

    def train(patience):
        m = make()
        return m, fit_choosing_epoch(trainer, {"m": ParamGroup(list(m.parameters()), 0.05)}, m, [m], fit, hold,
                                     lambda x: x, 12, 16, desc="test", patience=patience)

    full_m, full = train(0)
    short_m, short = train(3)
    best = full.chosen_epoch
    assert short.epochs == best + 3 < full.epochs == 12  # stopped three measurements after the best
    assert short.curve == full.curve[:short.epochs] and len(short.history) == short.epochs
    assert short.chosen_epoch == best
    torch.testing.assert_close(short_m.weight, full_m.weight, rtol=0, atol=0)
    assert short.budget()["epochs"] == short.epochs


@pytest.mark.parametrize(("cls", "values", "field"), [
    (AttributeInferenceConfig, {"holdout_fraction": 1.0}, "holdout_fraction"),
    (AttributeInferenceConfig, {"eval_every": 0}, "eval_every"),
    (AttributeInferenceConfig, {"patience": -1}, "patience"),
    (AttributeFinetuneConfig, {"backbone_lr": -1e-3}, "backbone_lr"),
    (AttributeProbeConfig, {"weight_decay": -1.0}, "weight_decay"),
    (AttributeProbeConfig, {"holdout_fraction": -0.1}, "holdout_fraction"),
    (AttributeProbeConfig, {"release_pool": -1}, "release_pool"),
])
def test_bad_settings_are_one_line_naming_the_field(cls, values, field):
    with pytest.raises(Exception, match=field) as info:
        build_config(cls, values, "attack")
    assert "\n" not in str(info.value)


# -- the attacks -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tiny_data, tiny_backbone):
    return fitted_frozen("no_pruning", tiny_backbone, tiny_data)


def test_finetune_starts_from_the_servers_weights_with_a_new_head(served, tiny_data, trainer):
    target = make_target(served, tiny_data, SERVER, trainer, limit=8)
    attack = AttributeFinetune(AttributeFinetuneConfig(epochs=1), seed=0)
    model, head = attack.build(target)
    server = served.designated_model().state_dict()
    name = classifier_name(served.server)
    assert name == "fc" and model.get_submodule(name) is head
    assert head.out_features == tiny_data.info.num_sensitive_classes
    body = {k: v for k, v in model.state_dict().items() if not k.startswith(f"{name}.")}
    assert body.keys() == {k for k in server if not k.startswith(f"{name}.")}
    for k, v in body.items():
        assert torch.equal(v, server[k]), k


@pytest.mark.parametrize("backbone_lr", [0.0, 1e-3])
def test_finetune_trains_the_server_layers_at_backbone_lr(served, tiny_data, trainer, backbone_lr, monkeypatch):
    target = make_target(served, tiny_data, SERVER, trainer, limit=8)
    attack = AttributeFinetune(AttributeFinetuneConfig(epochs=2, backbone_lr=backbone_lr), seed=0)
    kept = {}
    build = attack.build

    def spy(t):
        model, head = build(t)
        kept["model"] = model
        return model, head

    monkeypatch.setattr(attack, "build", spy)
    out = attack.run(target, trainer)
    conv = "layer2.0.conv1.weight"
    moved = not torch.equal(kept["model"].state_dict()[conv], served.server.state_dict()[conv])
    assert moved == (backbone_lr > 0)
    head = sum(p.numel() for p in kept["model"].get_submodule("fc").parameters())
    assert out.budget["trained_params"] == (out.budget["attacker_params"] if backbone_lr > 0 else head)
    assert out.budget["fit_samples"] + out.budget["holdout_samples"] == len(tiny_data.aux)
    assert 1 <= out.budget["chosen_epoch"] <= 2


@pytest.mark.parametrize(("name", "split"), [("test_resnet", "layer1"), ("test_efficientnet", "blocks.1"),
                                             ("test_vit", "blocks.0"), ("test_convnext", "stages.0")])
def test_the_probe_reads_what_the_classifier_reads(name, split):
    """The split server without its classifier computes timm's pre-logits features of the whole model."""
    model = create_model(name, 4, 32, seed=0).eval()
    client, server = cut_model(model, split, name)
    extractor, width = penultimate(copy.deepcopy(server))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
        got = extractor(client(x))
        whole, whole_width = penultimate(copy.deepcopy(model))
        torch.testing.assert_close(whole(x), expected)
    torch.testing.assert_close(got, expected)
    assert width == whole_width == expected.shape[1] == model.get_classifier().in_features


def test_a_model_without_a_linear_classifier_is_not_applicable():
    with pytest.raises(NotApplicable, match="linear classifier"):
        classifier_name(torch.fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten())))


def test_the_probe_trains_only_a_linear_layer_and_records_its_hold_out(served, tiny_data, trainer):
    before = {k: v.clone() for k, v in served.state_dict().items()}
    target = make_target(served, tiny_data, SERVER, trainer, limit=8)
    out = AttributeProbe(AttributeProbeConfig(epochs=4, eval_every=2), seed=0).run(target, trainer)
    width = served.server.get_submodule("fc").in_features
    assert out.budget["attacker_params"] == (width + 1) * tiny_data.info.num_sensitive_classes
    assert out.budget["fit_samples"] + out.budget["holdout_samples"] == len(tiny_data.aux)
    assert out.budget["holdout_samples"] == round(0.2 * len(tiny_data.aux))
    assert [e for e, _ in out.budget["holdout_curve"]] == [2, 4]
    assert out.metrics["holdout_acc_best"] == max(a for _, a in out.budget["holdout_curve"])
    assert out.attributes.shape == (8,)
    assert all(torch.equal(before[k], v) for k, v in served.state_dict().items())


@pytest.fixture(scope="module")
def served_stochastic(tiny_data, tiny_backbone):
    return fitted_frozen("random_pruning", tiny_backbone, tiny_data)


def _counting_releases(target, monkeypatch) -> list[int]:
    """Spy on the target's release of attacker-chosen inputs: the number of images of every call."""
    calls: list[int] = []
    release_of = target.release_of

    def spy(x):
        calls.append(len(x))
        return release_of(x)

    monkeypatch.setattr(target, "release_of", spy)
    return calls


@pytest.mark.parametrize("pool", [0, 3])
def test_a_stochastic_defense_is_released_as_a_pool_computed_once_or_afresh_per_batch(
        served_stochastic, tiny_data, trainer, monkeypatch, pool):
    """With ``release_pool`` > 0 every aux image is released that many times, once, before training (fit and
    hold-out together); with 0 every training batch is released afresh (and the fit part once more for the
    standardisation, the hold-out once)."""
    target = make_target(served_stochastic, tiny_data, SERVER, trainer, limit=8)
    assert target.stochastic
    calls = _counting_releases(target, monkeypatch)
    epochs = 3
    out = AttributeProbe(AttributeProbeConfig(epochs=epochs, batch_size=16, release_pool=pool), seed=0).run(
        target, trainer)
    n_aux = len(tiny_data.aux)
    fit_n = out.budget["fit_samples"]
    if pool:
        assert sum(calls) == pool * n_aux
        assert out.budget["release_pool"] == pool
    else:
        assert sum(calls) == fit_n + (n_aux - fit_n) + epochs * fit_n
        assert out.budget["release_pool"] == 0
    assert out.attributes.shape == (8,)


def test_every_training_row_reads_a_pooled_draw_of_its_own_image(served_stochastic, tiny_data, trainer):
    """The pool holds distinct draws of each image; a batch of image indices maps to one of those draws per row,
    and the draws chosen vary (the pool is used, not one draw), reproducibly for the attack's seed."""
    target = make_target(served_stochastic, tiny_data, SERVER, trainer, limit=8)
    attack = AttributeProbe(AttributeProbeConfig(epochs=1, release_pool=4), seed=0)
    aux = target.aux()
    train, release = target.aux_training_set(aux.sensitive)
    extractor, _ = attack.features(target)

    def feats(z):
        return extractor(z).float()

    runs = []
    for _ in range(2):
        torch.manual_seed(5)  # the releases' own draws (the defense's masks) come from the global generator
        fit, hold, transform, f_fit = attack.pooled(trainer, feats, release, *split_holdout(train, 0.2, 1), 4)
        idx = fit.x[:6]
        rows = torch.stack([transform(idx) for _ in range(20)])  # [20, 6, width]
        runs.append(rows)
        assert f_fit.shape[0] == 4 * len(fit) and hold is not None and len(hold) == len(train) - len(fit)
        assert torch.equal(fit.y, split_holdout(train, 0.2, 1)[0].y)
    pool = f_fit.view(4, len(fit), -1)
    assert not torch.equal(pool[0], pool[1])  # the draws differ (random masks)
    for r in range(6):
        seen = {int(d) for row in runs[0][:, r] for d in range(4) if torch.equal(row, pool[d, idx[r]])}
        assert seen and all(any(torch.equal(row, pool[d, idx[r]]) for d in range(4)) for row in runs[0][:, r])
    assert len({tuple(torch.stack([(runs[0][t, r] == pool[:, idx[r]]).all(1).int().argmax() for r in range(6)])
                      .tolist()) for t in range(20)}) > 1
    torch.testing.assert_close(runs[0], runs[1])


def test_the_pool_leaves_a_deterministic_defense_as_it_was(served, tiny_data, trainer):
    """A deterministic release has one draw: ``release_pool`` changes nothing, bit for bit."""
    target = make_target(served, tiny_data, SERVER, trainer, limit=8)
    outs = [AttributeProbe(AttributeProbeConfig(epochs=3, release_pool=pool), seed=0).run(target, trainer)
            for pool in (0, 8)]
    assert torch.equal(outs[0].attributes, outs[1].attributes)
    assert outs[0].budget == outs[1].budget and "release_pool" not in outs[0].budget


def test_server_reusing_attackers_beat_chance_on_digits(served, tiny_data, trainer):
    """On digits (sensitive: the digit, 10 classes) the server's own features of a no_pruning model carry the
    digit: the probe and the fine-tuned server, trained on the 40 aux images, read it well above chance (0.1) on
    the 40 eval images."""
    target = make_target(served, tiny_data, SERVER, trainer)
    for attack in (AttributeProbe(AttributeProbeConfig(epochs=30, batch_size=8, holdout_fraction=0.0), seed=0),
                   AttributeFinetune(AttributeFinetuneConfig(epochs=15, batch_size=8, holdout_fraction=0.0), seed=0)):
        out = attack.run(target, trainer)
        acc = float((out.attributes == tiny_data.eval.sensitive).float().mean())
        assert acc > 0.3, (type(attack).__name__, acc)
