"""adversarial: lambda 0 is no defense; a larger lambda leaves the co-trained proxies less able to attack."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import assert_trains_no_pruning, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def _fit(data, name, epochs=1, **over):
    from benchmark.models.trainer import Trainer

    torch.manual_seed(0)
    train = {"epochs": epochs, "batch_size": 32, "lr": 0.002}
    d = smoke_defense(DEFENSES.get(name), SPEC, data.info, seed=2, train=train, **over)
    d.fit(data, Trainer("cpu", seed=2, progress=False))
    return d.freeze()


def test_lambda_zero_is_no_defense(tiny_data):
    train = {"epochs": 1, "batch_size": 32, "lr": 0.002}
    assert_trains_no_pruning("adversarial", SPEC, tiny_data, train=train, lam=0.0)


def test_a_larger_lambda_defeats_the_co_trained_attribute_proxy(tiny_data):
    x = tiny_data.info.normalize(torch.cat([tiny_data.train.images, tiny_data.eval.images]))
    s = torch.cat([tiny_data.train.sensitive, tiny_data.eval.sensitive])
    acc = {}
    for lam in (0.0, 3.0):
        d = _fit(tiny_data, "adversarial", epochs=8, lam=lam, proxies="attribute")
        with torch.no_grad():
            acc[lam] = float((d.attribute_proxy(d.release(x)).argmax(1) == s).float().mean())
    # the game works: the proxy that learned alongside the client ends up worse against the obfuscated release
    # (whether a *fresh* attacker is beaten is what the benchmark's attacks measure)
    assert acc[3.0] < acc[0.0] - 0.05, acc


def test_proxies_refused_without_what_they_need(tiny_data):
    import dataclasses

    info = dataclasses.replace(tiny_data.info, sensitive=None, sensitive_classes=None)
    with pytest.raises(ValueError, match="proxies='attribute' needs a sensitive attribute"):
        smoke_defense(DEFENSES.get("adversarial"), SPEC, info, proxies="attribute")
    both = smoke_defense(DEFENSES.get("adversarial"), SPEC, info)  # both: the decoder alone plays
    assert both.attribute_proxy is None and both.decoder is not None
    with pytest.raises(ValueError, match="proxies must be both, reconstruction or attribute"):
        DEFENSES.get("adversarial").Config(proxies="nope").validate()
