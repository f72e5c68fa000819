"""Expectation over transformation at one client pass: white-box attacks on stochastic defenses, with the EOT draws
from the defense's ``white_box_draws`` against the same draws as separate calls of its white-box release.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_eot.py``). For every registered defense that
overrides ``white_box_draws`` (its randomness follows a deterministic client), rMLE and deep image prior run at the
quick suite's settings (200 and 150 steps, 8 draws per step) on ``SPLITBENCH_BENCH_IMAGES`` digits, alternately
through the two paths, ``SPLITBENCH_BENCH_ROUNDS`` rounds; the best time of each path and their ratio are
printed. Both paths draw the same noise in the same order, so the attack's answer agrees up to float rounding
(the contract tests check the draws and gradients); only the time may differ.

Environment:
    SPLITBENCH_BENCH_IMAGES: eval releases inverted (default 32, the quick suite's count).
    SPLITBENCH_BENCH_ROUNDS: alternating rounds (default 1).

The defended models are fitted with their smoke configs (an inversion's cost does not depend on how well the
client was trained).
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from attacks.deep_image_prior import DeepImagePrior, DeepImagePriorConfig
from attacks.optimization import RMLEConfig, RMLEInversion
from benchmark.api.contract import Defense, WhiteBox
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from benchmark.models.trainer import Trainer
from tests.support.helpers import fitted_frozen, make_target

pytestmark = pytest.mark.slow

IMAGES = int(os.environ.get("SPLITBENCH_BENCH_IMAGES", 32))
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", 1))
ATTACKS = {
    "optimization": (RMLEInversion, RMLEConfig(steps=200)),
    "deep_image_prior": (DeepImagePrior, DeepImagePriorConfig(steps=150, lr=0.02, channels=(8, 16, 32),
                                                              kernels=(3, 3, 3), code_channels=8)),
}
OVERRIDING = [n for n in DEFENSES.names() if DEFENSES.get(n).white_box_draws is not Defense.white_box_draws]


def separate_calls(self: WhiteBox, x, observed, n):
    return [self.release(x, observed) for _ in range(n)]


@pytest.fixture(scope="module")
def digits():
    from benchmark.data.scenarios.digits import Digits, DigitsConfig

    return Digits(DigitsConfig(max_samples=400)).load()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("defense", OVERRIDING)
def test_eot_draws_at_one_client_pass(defense, attack, digits, monkeypatch):
    model = fitted_frozen(defense, BackboneSpec("test_resnet", "layer1"), digits)
    cls, cfg = ATTACKS[attack]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    fast = WhiteBox.draws
    times: dict[str, list[float]] = {"separate calls": [], "one client pass": []}

    def once(path):
        monkeypatch.setattr(WhiteBox, "draws", separate_calls if path == "separate calls" else fast)
        trainer = Trainer("cpu", seed=0, progress=False)
        target = make_target(model, digits, cls.requires, trainer, limit=IMAGES)
        t0 = time.perf_counter()
        out = cls(cfg, seed=0).run(target, trainer)
        times[path].append(time.perf_counter() - t0)
        return out

    try:
        outs = {}
        for _ in range(ROUNDS):
            for path in times:
                outs[path] = once(path)
    finally:
        torch.set_num_threads(before)
    assert outs["one client pass"].budget["eot_samples"] == 8, "the defense must be attacked with EOT"
    slow, quick = min(times["separate calls"]), min(times["one client pass"])
    print(f"\n{defense} {attack}, {IMAGES} images, 1 thread: separate calls {slow:.1f} s, one client pass "
          f"{quick:.1f} s, ratio {slow / quick:.2f}")
