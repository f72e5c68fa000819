"""``noise``: additive Gaussian or Laplace noise on every release, the server trained on noisy releases.

He, Zhang, Lee (IEEE IoT-J 2021) study noise on the released features as a defense against inversion and report
that it fails against their attacks; Titcombe et al. (arXiv 2104.05743) add a Laplacian noise layer to the client's
output; SIMBA's ``uniform_noise`` adds noise of an absolute ``sigma`` (and ``mean``) drawn from a normal or a
Laplace distribution. splitbench's choices [inf]:

- **Relative scale (the knob).** The noise's standard deviation is ``sigma`` times the standard deviation of the
  sample's own clean release (over all its elements, with no gradient through it), so the client cannot escape the
  noise by scaling its features up, and one ``sigma`` means the same signal-to-noise ratio on every backbone and
  split. An absolute sigma (SIMBA's) would be defeated by a client that learns larger activations.
- **Laplace** has the same standard deviation as the Gaussian at the same ``sigma`` (scale ``sigma / sqrt 2``), so
  the two distributions are compared at equal noise power.
- **Training**: client and server learn the task end to end through the noisy release (fresh noise every batch);
  the deployed client draws fresh noise on every query. ``sigma = 0`` draws nothing: the model is ``no_pruning``'s.
- **Attacks** see a stochastic release: utility and leakage are averaged over the suite's release draws, and
  white-box attackers get a release function that draws fresh noise on each call, so the optimisation attacks
  average their objective over draws (expectation over transformation). Learning-based attackers query the
  client afresh for every batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field


@dataclasses.dataclass(frozen=True)
class NoiseConfig(DefenseConfig):
    sigma: float = field(0.5, "the knob: noise standard deviation relative to the sample's release standard deviation")
    distribution: Literal["gaussian", "laplace"] = field("gaussian", "noise distribution (equal std at equal sigma)")

    def validate(self) -> None:
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma}")
        if self.distribution not in ("gaussian", "laplace"):
            raise ValueError(f"distribution must be 'gaussian' or 'laplace', got {self.distribution!r}")


def noise_scale(z: Tensor, sigma: float) -> Tensor:
    """``sigma`` times each sample's release std (detached), shaped to broadcast over ``z``."""
    return z.detach().flatten(1).std(dim=1).reshape(-1, *([1] * (z.ndim - 1))) * sigma


def relative_noise(z: Tensor, sigma: float, distribution: str, scale: Tensor | None = None) -> Tensor:
    """Noise shaped like ``z`` whose standard deviation is ``sigma`` times each sample's release std (detached);
    ``scale`` is :func:`noise_scale` of ``z`` when the caller already has it."""
    scale = noise_scale(z, sigma) if scale is None else scale
    # drawn contiguous (not *_like, which follows z's memory layout): the same seed gives the same noise whether
    # the client computes in channels-last or not
    if distribution == "gaussian":
        unit = torch.randn(z.shape, dtype=z.dtype, device=z.device)
    else:  # Laplace(0, 1/sqrt 2) has unit variance: inverse CDF of a uniform draw
        u = torch.rand(z.shape, dtype=z.dtype, device=z.device).clamp(1e-7, 1 - 1e-7) - 0.5
        unit = -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2.0)
    return unit * scale


@register_defense("noise")
class Noise(Defense):
    Config = NoiseConfig
    knob = "sigma"
    knob_grid = (0.25, 0.5, 1.0, 2.0)
    variants = ("distribution",)  # Gaussian and Laplace noise are two rows
    stochastic_release = True
    card = MethodCard(
        paper="He, Zhang, Lee: Attacking and Protecting Data Privacy in Edge-Cloud Collaborative Inference Systems "
              "(IEEE Internet of Things Journal 8(12), 2021) - noise defense",
        year=2021,
        url="https://doi.org/10.1109/JIOT.2020.3022358",
        threat_model="honest-but-curious server sees the client activations plus fresh random noise",
        knob="sigma: noise std relative to the sample's release std; higher = noisier release, less utility",
        inferred=("sigma is relative to each sample's own release std (no gradient through it), not absolute as in "
                  "SIMBA's uniform_noise, so a client cannot outgrow the noise",
                  "Laplace noise has the same std as the Gaussian at the same sigma (scale sigma/sqrt 2)",
                  "client and server trained end to end through noisy releases; fresh noise per batch and per query",
                  "white-box attackers get a release that draws fresh noise per call (EOT); the noise itself is "
                  "never handed out"),
        code="",
        notes="Stochastic: evaluated over the suite's release draws and attacked with expectation over "
              "transformation.",
    )

    def release(self, x: Tensor) -> Tensor:
        return self._noisy(self.client(x))

    def _noisy(self, z: Tensor, scale: Tensor | None = None) -> Tensor:
        """The client's output ``z`` plus one fresh draw of the noise (``z`` itself at sigma 0)."""
        if self.config.sigma == 0:
            return z
        return z + relative_noise(z, self.config.sigma, self.config.distribution, scale)

    def white_box_release(self, x: Tensor, observed: Tensor) -> Tensor:
        return self.release(x)  # the mechanism is public, the draw is not: every call draws afresh

    def white_box_draws(self, x: Tensor, observed: Tensor, draws: int) -> list[Tensor]:
        z = self.client(x)  # deterministic: computed once (and its std), the noise drawn per release as separate
        scale = noise_scale(z, self.config.sigma)  # calls would draw it
        return [self._noisy(z, scale) for _ in range(draws)]

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.release, [self.client, self.server], "noise")
