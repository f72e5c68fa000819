"""Behaviour of ``latent_masking``: exactly k latent dimensions kept, the mask schedule, a frozen target
classifier, and an image-shaped release consumed by that classifier."""

from __future__ import annotations

import pytest
import torch

from benchmark.api.contract import ReleaseKind
from benchmark.core.registry import DEFENSES
from benchmark.models.trainer import Trainer
from tests.support.helpers import smoke_defense

NAME = "latent_masking"


def _defense(data, backbone, **over):
    torch.manual_seed(0)
    return smoke_defense(DEFENSES.get(NAME), backbone, data.info, **over)


@pytest.fixture(scope="module")
def phases(tiny_data, tiny_backbone):
    """A defense after each phase of fit: (defense, classifier state after phase 1, bottleneck state before
    phase 2)."""
    d = _defense(tiny_data, tiny_backbone, keep_ratio=0.25, train={"epochs": 2, "batch_size": 32},
                 warmup_epochs=1, mask_every=1)
    trainer = Trainer("cpu", seed=0, progress=False)
    d.fit_classifier(tiny_data, trainer)
    clf_state = {k: v.clone() for k, v in d.classifier.state_dict().items()}
    vae_state = {k: v.clone() for k, v in d.bottleneck.state_dict().items()}
    d.fit_bottleneck(tiny_data, trainer)
    return d.eval(), clf_state, vae_state


def test_keeps_exactly_k_latent_dimensions(phases):
    d, _, _ = phases
    k = round(0.25 * d.config.latent_dim)
    assert d.kept_dims == k
    mask = d.bottleneck.mask
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert int(mask.sum()) == k
    assert d.mask_epochs == [1], "the mask is computed after the warm-up epoch"


def test_release_ignores_the_masked_dimensions(phases, tiny_data):
    d, _, _ = phases
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    with torch.no_grad():
        mu, _ = d.bottleneck.encode(x)
        noise = torch.randn_like(mu) * 10 * (1 - d.bottleneck.mask)
        torch.testing.assert_close(d.release(x), d.bottleneck.decode((mu + noise) * d.bottleneck.mask))
        torch.testing.assert_close(d.release(x), d.release(x))  # mu at release: deterministic


def test_target_classifier_is_unchanged_by_the_masking_phase(phases):
    d, clf_state, vae_state = phases
    for k, v in d.classifier.state_dict().items():  # weights and BN statistics
        assert torch.equal(v, clf_state[k]), f"classifier {k} changed while the bottleneck trained"
    assert not all(p.requires_grad for p in d.classifier.parameters())
    changed = [k for k, v in d.bottleneck.state_dict().items() if not torch.equal(v, vae_state[k])]
    assert changed, "the bottleneck did not train"


def test_release_is_image_shaped_for_the_frozen_classifier(phases, tiny_data):
    d, _, _ = phases
    x = tiny_data.info.normalize(tiny_data.eval.images[:8])
    with torch.no_grad():
        z = d.release(x)
        assert z.shape == x.shape
        assert d.release_kind == ReleaseKind.IMAGE
        assert d.designated_model() is d.classifier
        torch.testing.assert_close(d.predict(z), d.classifier(z))
        assert d.fresh_tail(5, seed=1)(z).shape == (8, 5)


@pytest.mark.parametrize("ratio,dim", [(0.1, 16), (0.5, 16), (1.0, 16), (0.01, 16)])
def test_mask_size_follows_the_knob_and_the_schedule(ratio, dim, tiny_data, tiny_backbone):
    d = _defense(tiny_data, tiny_backbone, keep_ratio=ratio, latent_dim=dim, train={"epochs": 3, "batch_size": 64},
                 classifier_epochs=0, warmup_epochs=10, mask_every=1, mask_samples=32)
    d.fit(tiny_data, Trainer("cpu", seed=0, progress=False))
    assert int(d.bottleneck.mask.sum()) == max(1, round(ratio * dim))
    assert d.mask_epochs == [2], "the warm-up is capped so that at least one epoch trains with the mask"


def test_the_client_sends_k_code_values_and_the_server_decodes(phases, tiny_data):
    """The bytes charged are the k kept code values, not the decoded image, and the client's measured cost is the
    encoder's alone (the decoder runs on the server, which holds it)."""
    from benchmark.engine.evaluation import client_cost
    from benchmark.kit.cost import count_macs

    d, _, _ = phases
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        sent = d.sent(x)
        z = d.release(x)
    assert sent.shape == (4, d.kept_dims)
    assert d.payload_bytes(z).tolist() == [4.0 * d.kept_dims] * 4
    assert d.payload_bytes(z)[0] < z[0].numel() * 4, "a decoded image would be charged instead"
    encoder_macs = count_macs(d.sent, x)
    assert 0 < encoder_macs < count_macs(d.release, x)
    cost = client_cost(d, tiny_data, Trainer("cpu", seed=0, progress=False), latency_batch=4, repeats=1)
    assert cost["client_macs"] == encoder_macs
    decoder = sum(p.numel() for p in d.bottleneck.decoder.parameters()) + d.bottleneck.from_code.weight.numel()
    assert cost["client_params"] <= sum(p.numel() for p in d.bottleneck.parameters()) - decoder
