"""dropout: element-wise zeroing redrawn on every query, rescaled; p 0 is no defense; white-box sees the zeros."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion_kit import eot_draws
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import assert_trains_no_pruning, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def _x(data, n=16):
    return data.info.normalize(data.eval.images[:n])


def test_p_zero_is_no_defense(tiny_data):
    assert_trains_no_pruning("dropout", SPEC, tiny_data, p=0.0)


def test_elements_are_dropped_at_rate_p_and_survivors_rescaled(tiny_data):
    d = smoke_defense(DEFENSES.get("dropout"), SPEC, tiny_data.info, p=0.75).freeze()
    x = _x(tiny_data)
    with torch.no_grad():
        z = d.client(x)
        r = d.release(x)
    live = z != 0
    dropped = (r == 0) & live
    assert abs(float(dropped.sum() / live.sum()) - 0.75) < 0.02
    kept = (r != 0)
    torch.testing.assert_close(r[kept], z[kept] * 4.0)
    # element-wise, not channel-wise: no sample has a channel dropped as a whole by the mask alone
    assert not ((r == 0) & live).flatten(2).all(2)[live.flatten(2).any(2)].any()


def test_fresh_draws_per_query_and_a_white_box_release_fixed_by_what_was_seen(tiny_data):
    d = smoke_defense(DEFENSES.get("dropout"), SPEC, tiny_data.info, p=0.5).freeze()
    x = _x(tiny_data, 4)
    with torch.no_grad():
        z = d.release(x)
        assert not torch.equal(z, d.release(x))
        torch.testing.assert_close(d.white_box_release(x, z), z)  # at the true input it reproduces the release
    assert eot_draws(True, 8, d.white_box_release, x, z) == 1


def test_bytes_sent_fall_with_p(tiny_data):
    x = _x(tiny_data, 4)
    sent = {}
    for p in (0.0, 0.9):
        d = smoke_defense(DEFENSES.get("dropout"), SPEC, tiny_data.info, p=p).freeze()
        with torch.no_grad():
            z = d.release(x)
        sent[p] = d.payload_bytes(z)
        assert (sent[p] <= z[0].numel() * z.element_size()).all()
    assert (sent[0.9] < 0.3 * sent[0.0]).all()


def test_p_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        DEFENSES.get("dropout").Config(p=1.0).validate()
