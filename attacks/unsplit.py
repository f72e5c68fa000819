"""``unsplit``: UnSplit's data-free model inversion (Erdoğan, Küpçü, Çiçek, WPES'22).

The server knows only the client's **architecture**: no weights, no data of the client's distribution, no queries.
It starts from an input estimate x_hat and a surrogate client F_hat of that architecture, freshly (randomly)
initialised, and alternates between the two, each time with the other held fixed::

    repeat outer_iters times:
        input_steps Adam steps on x_hat: mean_j (F_hat(x_hat)_j - z_j)^2 + tv_weight TV(x_hat) + l2_weight L2(x_hat)
        model_steps Adam steps on F_hat: mean_j (F_hat(x_hat)_j - z_j)^2

    TV(x) = mean_{c,i,j} (x[c,i+1,j] - x[c,i,j])^2 + mean_{c,i,j} (x[c,i,j+1] - x[c,i,j])^2
    L2(x) = mean_{c,i,j} x[c,i,j]^2

x_hat lives in pixel space ([0, 1] for the true images; the model sees it normalized with the scenario's
statistics), starts at the constant ``init`` (grey 0.5), and is clamped to [0, 1] only when it is returned (or,
with ``output="minmax"``, rescaled per image to [0, 1], as the code does for CIFAR-10 and JAST for every set). The
attack needs nothing but the releases and the public architecture (``requires`` is empty): it is the **zero-data
end** of attacker knowledge, below every attack that reads aux data, and it runs in the leaderboard's black-box
view since it needs no client weights.

What the sources say, and what was chosen (``[paper]`` / ``[code]`` mark defaults taken from them):

- Alternation and priors: the paper's algorithm (coordinate descent on input and clone, TV prior); the L2 prior is
  in the official code only (``lambda_l2 = 1``), not in the paper's algorithm. Weights: ``tv_weight=0.1``,
  ``l2_weight=1`` [code defaults]. TV and L2 normalised per image as the code's helpers do (mean squared
  difference per direction, mean square).
- Budget: the official demo runs 1000 outer iterations of 100 input and 100 model steps per image (200,000 Adam
  steps) [code]; those are the defaults here, and suites that must fit a CPU budget lower them and say so.
- Optimiser: Adam with AMSGrad at lr 1e-3 for both [code] (the paper says Adam). Each optimiser keeps its state
  across outer iterations, as the code's two optimisers do.
- Batching. The code inverts one image per call, and its demo reuses **one clone for every image in turn**,
  never re-initialising it (image k starts from the clone image k - 1 left); its attack function itself would
  fit one clone to a whole batch (its loss is the batch mean). Here ``batch_size`` images share one freshly
  initialised surrogate (one per chunk, drawn from the attack seed and the chunk's first index): the images'
  input losses are summed (with the surrogate fixed, each image's gradient is its own), the surrogate's loss is
  the batch mean. A chunk of one image is the code's per-call attack from a fresh clone.
- Surrogate: the target's public backbone, freshly initialised, cut at the split point whose output has the
  release's shape (a defense such as ``patrol`` releases a deeper stage); where no split point matches (an
  image-shaped release) a small generic convolutional encoder stands in (both as ``substitute_client`` builds
  them). Its batch norms, if any, run in eval mode (running statistics at their initial values), so images of
  a chunk do not interact through batch statistics. Releases are compared in
  :func:`~benchmark.kit.channels.as_spatial`'s view (tokens on their grid, vectors as 1 x 1 maps); every element,
  sent or masked, counts, as in the paper.
- Grayscale (``grayscale="auto"``): splitbench stores grayscale data as three identical channels; when the
  scenario's public normalization statistics are equal across channels, one channel is optimised and
  replicated, as the paper's one-channel MNIST models see it. Data-free, so the test is on the scenario's
  description, never on images.
- Nothing is selected against ground truth: the last iterate is returned (unless a plateau rule stops an image
  earlier, off by default since the paper runs its whole budget).

Recorded (see :mod:`attacks.inversion_kit`): the relative feature error ``||F_hat(x_hat) - z||^2 / ||z||^2``
through the surrogate, at every step of both phases, and its first / best / last values; what it measures is how
well surrogate and estimate explain the release together, not how close the estimate is to the truth.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from attacks.inversion_kit import (
    PlateauRule,
    Trajectory,
    ended_by,
    full_precision,
    release_energy,
    release_mse,
    run_checks,
    stopping_checks,
    summarize,
)
from attacks.optimization import chunks, image_seed
from attacks.substitute_client import build_substitute
from benchmark.api import MethodCard, register_attack
from benchmark.api.contract import Attack, AttackKind, AttackOutput, Target
from benchmark.core.fields import field
from benchmark.data.types import ScenarioInfo
from benchmark.kit.channels import as_spatial
from benchmark.models.trainer import ParamGroup, Trainer, place


@dataclasses.dataclass(frozen=True)
class UnSplitConfig:
    """Hyperparameters of UnSplit's alternating inversion (defaults: the official code's, see the module)."""

    outer_iters: int = field(1000, "[code] outer iterations, each input_steps steps on the input estimate then "
                                   "model_steps steps on the surrogate client")
    input_steps: int = field(100, "[code] Adam steps on the input estimate per outer iteration")
    model_steps: int = field(100, "[code] Adam steps on the surrogate client per outer iteration")
    input_lr: float = field(1e-3, "[code] Adam learning rate of the input estimate (pixel units)")
    model_lr: float = field(1e-3, "[code] Adam learning rate of the surrogate client's weights")
    tv_weight: float = field(0.1, "[code] weight of the total-variation prior on the input estimate")
    l2_weight: float = field(1.0, "[code] weight of the L2 prior (mean squared pixel) on the input estimate; the "
                                  "paper's algorithm has no L2 term, its code does")
    init: float = field(0.5, "[code] constant pixel value every input estimate starts at")
    amsgrad: bool = field(True, "[code] Adam's AMSGrad variant for both optimisers (the code's choice; the paper "
                                "says Adam)")
    batch_size: int = field(64, "[inferred] images that share one freshly initialised surrogate client (the "
                                "code: one image per call, its demo carrying one clone over every image)")
    output: Literal["clamp", "minmax"] = field(
        "clamp", "[code] how the estimate becomes the returned image: clamped to [0, 1] (the code scores MNIST-type "
                 "estimates as they are, which clamping can only bring closer), or each image's own min-max "
                 "rescaling to [0, 1] (the code's CIFAR-10 output; JAST's for every data set): it undoes the scale "
                 "the surrogate can absorb, and uses no ground truth")
    grayscale: Literal["auto", "never"] = field(
        "auto", "[inferred] auto: when the scenario's normalization statistics are equal across channels "
                "(grayscale stored as copies), optimise one channel and replicate it; never: every channel")
    plateau_window: int = field(0, "[inferred] an image's run ends when the mean relative feature error of its "
                                   "last plateau_window steps improved on the window before by less than "
                                   "plateau_tol (0 = always the whole budget, as the paper)")
    plateau_tol: float = field(1e-3, "[inferred] relative improvement per window below which an image's run ends")

    def validate(self) -> None:
        checks = (("outer_iters", self.outer_iters >= 0, "an integer >= 0"),
                  ("input_steps", self.input_steps >= 1, "an integer >= 1"),
                  ("model_steps", self.model_steps >= 0, "an integer >= 0"),
                  ("input_lr", self.input_lr > 0, "a number > 0"),
                  ("model_lr", self.model_lr > 0, "a number > 0"),
                  ("tv_weight", self.tv_weight >= 0, "a number >= 0"),
                  ("l2_weight", self.l2_weight >= 0, "a number >= 0"),
                  ("init", 0.0 <= self.init <= 1.0, "a pixel value in [0, 1]"),
                  ("batch_size", self.batch_size >= 1, "an integer >= 1"))
        run_checks(self, [*checks, *stopping_checks(self)])

    @property
    def period(self) -> int:
        """Steps of one outer iteration."""
        return self.input_steps + self.model_steps

    @property
    def total_steps(self) -> int:
        return self.outer_iters * self.period


def tv_prior(x: Tensor) -> Tensor:
    """Per-image ``[B]`` total variation of images ``[B, C, H, W]``: mean squared vertical difference plus mean
    squared horizontal difference."""
    x = full_precision(x)
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return dh + dw


def l2_prior(x: Tensor) -> Tensor:
    """Per-image ``[B]`` mean square of the pixels."""
    return full_precision(x).pow(2).flatten(1).mean(1)


def feature_mse(pred: Tensor, observed: Tensor) -> Tensor:
    """Per-image mean squared error ``[B]`` between two releases in :func:`as_spatial`'s view."""
    return release_mse(as_spatial(pred), as_spatial(observed))


def minmax(x: Tensor) -> Tensor:
    """Each image of ``[B, C, H, W]`` rescaled so that its lowest pixel is 0 and its highest 1 (a constant image
    becomes 0)."""
    flat = x.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(1e-12)
    return ((flat - low[:, None]) / span[:, None]).where((high > low)[:, None], torch.zeros_like(flat)).view_as(x)


def grayscale_scenario(mode: str, info: ScenarioInfo) -> bool:
    """Whether to optimise one channel: ``mode`` is "auto", the images have several channels and the scenario's
    public normalization statistics are the same for every channel."""
    return (mode == "auto" and info.channels > 1 and len(set(info.mean)) == 1 and len(set(info.std)) == 1)


@dataclasses.dataclass
class Chunk:
    """One chunk's result: images in [0, 1], their final relative feature error through the surrogate, the run's
    record, and the surrogate's description."""

    images: Tensor
    objective: Tensor
    trajectory: Trajectory
    surrogate: str
    surrogate_params: int


def invert_chunk(target: Target, trainer: Trainer, cfg: UnSplitConfig, z: Tensor, seed: int, gray: bool) -> Chunk:
    """UnSplit on the releases ``z`` of one chunk, with one fresh surrogate client seeded by ``seed``."""
    c, h, w = target.image_shape
    surrogate, arch = build_substitute(target, tuple(as_spatial(z[:1]).shape[1:]), seed)
    surrogate = place(surrogate, z.device).eval()
    weights = [p for p in surrogate.parameters()]
    for p in weights:
        p.requires_grad_(True)
    x_hat = nn.Parameter(torch.full((len(z), 1 if gray else c, h, w), cfg.init, device=z.device,
                                    dtype=torch.get_default_dtype()))
    energy = release_energy(z)

    def model_input(x: Tensor) -> Tensor:
        return target.info.normalize(x.expand(-1, c, -1, -1) if gray else x).to(x.dtype)

    kept = x_hat.detach().clone()

    def snapshot(rows: Tensor) -> None:
        rows = rows.to(kept.device)
        kept[rows] = x_hat.detach()[rows]

    traj = Trajectory(len(z), cfg.total_steps, PlateauRule(cfg.plateau_window, cfg.plateau_tol), snapshot)

    def step(i: int) -> dict[str, Tensor]:
        on_input = i % cfg.period < cfg.input_steps
        # the phase's variables alone take gradients: the trainer updates only parameters that require them
        x_hat.requires_grad_(on_input)
        for p in weights:
            p.requires_grad_(not on_input)
        mse = feature_mse(surrogate(model_input(x_hat)), z)
        traj.record(mse / energy)
        if on_input:
            loss = (mse + cfg.tv_weight * tv_prior(x_hat) + cfg.l2_weight * l2_prior(x_hat)).sum()
        else:
            loss = mse.mean()
        return {"input": loss, "surrogate": loss}

    groups = {"input": ParamGroup([x_hat], cfg.input_lr, amsgrad=cfg.amsgrad),
              "surrogate": ParamGroup(weights, cfg.model_lr, amsgrad=cfg.amsgrad)}
    trainer.optimize(groups, step, cfg.total_steps, desc="unsplit", stop=traj.stop)
    traj.finish()
    x_hat.requires_grad_(False)
    images = minmax(kept) if cfg.output == "minmax" else kept.clamp(0, 1)
    with torch.no_grad(), trainer.autocast():
        final = feature_mse(surrogate(model_input(images)), z) / energy
    out = images.expand(-1, c, -1, -1) if gray else images
    return Chunk(out.float().contiguous(), final.float(), traj, arch, sum(p.numel() for p in weights))


@register_attack("unsplit")
class UnSplit(Attack):
    """Data-free inversion: alternate between the input estimate and a randomly initialised surrogate client."""

    Config = UnSplitConfig
    kind = AttackKind.RECONSTRUCTION
    requires = frozenset()  # the releases and the public architecture only: the zero-data end of knowledge
    version = "1"
    smoke_config = {"outer_iters": 2, "input_steps": 4, "model_steps": 4}
    # no search space: tuning runs on the attacker's aux data, which this attacker does not have
    card = MethodCard(
        paper="Erdoğan, Küpçü, Çiçek: UnSplit: Data-Oblivious Model Inversion, Model Stealing, and Label Inference "
              "Attacks Against Split Learning (WPES 2022), model inversion and stealing attack",
        year=2022,
        url="https://arxiv.org/abs/2108.09033",
        threat_model="data-free black-box: the server knows only the client's architecture (no weights, no data, "
                     "no queries) and alternately optimises an input estimate and a randomly initialised "
                     "surrogate client so that the surrogate's output on the estimate matches the release; the "
                     "zero-data end of attacker knowledge",
        knob="budget: outer iterations x (input steps + model steps) per chunk of images",
        inferred=("defaults are the official code's (1000 outer iterations of 100 input and 100 model steps, "
                  "Adam with AMSGrad at lr 1e-3 for both, tv_weight 0.1, l2_weight 1, grey 0.5 start); the L2 "
                  "prior is in the code only, not in the paper's algorithm",
                  "each optimiser keeps its state across outer iterations, as in the code",
                  "batch_size images share one freshly initialised surrogate (input losses summed, surrogate loss "
                  "the batch mean); the code inverts one image per call and its demo carries one clone over every "
                  "image without re-initialising it",
                  "surrogate: the public backbone freshly initialised and cut at the split point whose output has "
                  "the release's shape, or a small generic conv encoder when none has (image releases); batch "
                  "norms in eval mode",
                  "the estimate is optimised in pixel space and normalized with the scenario's statistics before "
                  "the surrogate (the code's models read raw [0, 1] pixels); TV and L2 priors on the pixels",
                  "grayscale scenarios (equal normalization statistics per channel): one channel optimised and "
                  "replicated, as the paper's one-channel models",
                  "the estimate is clamped to [0, 1] when returned (the code scores MNIST-type estimates unclamped); "
                  "output='minmax' rescales each image to [0, 1] instead, as the code's CIFAR-10 path and JAST do",
                  "releases compared in as_spatial's view; every element counts, sent or masked",
                  "the last iterate is returned; a plateau rule is available but off by default"),
        code="https://github.com/ege-erdogan/unsplit",
    )

    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        cfg = self.config
        observed = target.eval_releases()
        gray = grayscale_scenario(cfg.grayscale, target.info)
        parts = [invert_chunk(target, trainer, cfg, observed[part], image_seed(self.seed, part.start), gray)
                 for part in chunks(len(observed), cfg.batch_size)]
        images = torch.cat([p.images for p in parts])
        record = summarize([p.trajectory for p in parts], [p.objective for p in parts])
        return AttackOutput(
            index=torch.arange(len(images)), images=images,
            budget={"outer_iters": cfg.outer_iters, "input_steps": cfg.input_steps, "model_steps": cfg.model_steps,
                    "steps": cfg.total_steps, "images": len(images), "input_lr": cfg.input_lr,
                    "model_lr": cfg.model_lr, "amsgrad": cfg.amsgrad, "tv_weight": cfg.tv_weight,
                    "l2_weight": cfg.l2_weight, "init": cfg.init, "output": cfg.output,
                    "batch_size": min(cfg.batch_size, len(images)), "grayscale": gray,
                    "surrogate": parts[0].surrogate if parts else "",
                    "surrogate_params": parts[0].surrogate_params if parts else 0, "aux_samples": 0,
                    "plateau_window": cfg.plateau_window, "plateau_tol": cfg.plateau_tol,
                    "ended_by": ended_by(record)},
            metrics={**record, "final_feature_error": float(torch.cat([p.objective for p in parts]).mean())
                     if parts else float("nan")},
        )
