"""What the optimisation attacks (``optimization``, ``deep_image_prior``, ``learned_prior``, ``substitute_client``)
share beyond their objectives: a record of the objective's trajectory and the plateau rule that ends a run,
expectation over transformation for random releases, grayscale detection from the attacker's aux images, and the
depth of a split.

**Trajectory and plateau.** Every optimisation records, at every step, each image's feature-matching error
relative to the release's energy, ``||release(x) - z||^2 / ||z||^2`` (the attacker's own objective, measured on
the image being optimised, never on anything scored against the truth). An image's run ends on a **plateau**: at
a check (every ``max(1, window // 5)`` steps, so a GPU run is not synchronised with the host at every step), the
mean of its last ``window`` values improved on the mean of the ``window`` before them by less than ``tol``
(relative); so no image stops before ``2 * window`` steps. The configured ``steps`` is the cap. Images of one
batch stop one by one: the image an image had when its own rule fired is kept (a snapshot) while the others go
on, and the batch stops when every image has stopped. Every image's gradient depends on that image alone (the
batch's loss is the sum of per-image losses) and Adam's update is elementwise, so the kept image is the one that
inverting it alone would have ended with: plateau stopping keeps batched and one-at-a-time inversion equal.

**Expectation over transformation.** On a release with fresh noise at every call, the attacker's objective is the
expected feature error over the noise; averaging the feature term over several white-box release draws per step
estimates its gradient with less variance. It lowers that objective (the noise-free release of the
reconstruction lands closer to the observed release: see the tests), but it need not bring the image closer to
the truth: for additive noise the expected objective's minimiser fits the observation's own noise too. Measured
on the quick backbone with Gaussian noise of std 0.5 on the activations (8 digits, 100 rMLE steps, one grayscale
channel): 13.5 dB with one draw per step, 13.0 dB with eight.

Recorded (``AttackOutput.metrics``, stored as ``attack.<name>``): ``objective_first`` (at the start),
``objective_best`` (the lowest value the image reached, the end included), ``objective_last`` (of the image
returned), each a mean over images; ``steps_run`` (mean over images of the steps each ran), ``steps_run_max``,
and ``ended_by_cap`` (the share of images whose run the cap ended rather than a plateau).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from benchmark.api.contract import WhiteBox
from benchmark.kit.channels import as_spatial


def full_precision(t: Tensor) -> Tensor:
    """``t`` in at least float32 (bf16 / fp16 values from autocast are upcast; float64 stays float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def release_mse(released: Tensor, observed: Tensor) -> Tensor:
    """Per-image mean squared error ``[B]`` between a release and the observed one."""
    return (full_precision(released) - full_precision(observed)).pow(2).flatten(1).mean(1)


def release_energy(observed: Tensor) -> Tensor:
    """Per-image mean square ``[B]`` of the observed release (the divisor of the relative error)."""
    return full_precision(observed).pow(2).flatten(1).mean(1).clamp_min(1e-12)


# -- configuration ----------------------------------------------------------------------------------------------
Check = tuple[str, bool, str]  # (field, whether its value is valid, what was expected)


def stopping_checks(cfg) -> list[Check]:
    """The checks of the fields every optimisation attack's config shares: the plateau rule and, where the config
    has it, the EOT draw count."""
    checks = [("plateau_window", cfg.plateau_window >= 0, "an integer >= 0"),
              ("plateau_tol", cfg.plateau_tol >= 0, "a number >= 0")]
    if hasattr(cfg, "eot_samples"):
        checks.insert(0, ("eot_samples", cfg.eot_samples >= 1, "an integer >= 1"))
    return checks


def run_checks(cfg, checks: list[Check] | tuple[Check, ...]) -> None:
    """Raise a one-line ``ValueError`` naming the first field of ``cfg`` whose check fails."""
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {getattr(cfg, name)!r}")


# -- expectation over transformation ---------------------------------------------------------------------------
def eot_draws(stochastic: bool, eot_samples: int, release: Callable[[Tensor, Tensor], Tensor], x: Tensor,
              z: Tensor) -> int:
    """How many white-box release draws the feature term averages per step.

    1 for a deterministic defense. For a stochastic one, ``eot_samples``, unless two calls of the white-box release
    on the same input (``x`` normalized, ``z`` its observed release) give bit-identical results: then the white-box
    release is deterministic given what was observed (e.g. ``random_pruning`` draws its channel mask at release
    time, and its white-box release applies the mask it observed), every draw would be the same, and one is used.
    """
    if not stochastic or eot_samples <= 1:
        return 1
    with torch.no_grad():
        a, b = release(x, z), release(x, z)
    return 1 if torch.equal(a, b) else eot_samples


def eot_mse(wb: WhiteBox, x: Tensor, z: Tensor, draws: int) -> Tensor:
    """Per-image feature error ``[B]`` averaged over ``draws`` white-box releases, each with its own draw
    (:meth:`~benchmark.api.contract.WhiteBox.draws`: the same as that many calls of the white-box release)."""
    releases = wb.draws(x, z, draws)
    total = release_mse(releases[0], z)
    for r in releases[1:]:
        total = total + release_mse(r, z)
    return total / draws


# -- grayscale -------------------------------------------------------------------------------------------------
def is_grayscale(images: Tensor) -> bool:
    """Whether every image of ``images`` ``[N, C, H, W]`` (C > 1) has identical channels: the attacker's aux images
    then say the data are grayscale stored as copies, and an inversion need only find one channel."""
    if images.ndim != 4 or images.shape[1] < 2 or len(images) == 0:
        return False
    return bool((images == images[:, :1]).all())


# -- depth of a split ------------------------------------------------------------------------------------------
def reduction_factor(image_size: int, observed: Tensor) -> float:
    """How many times smaller the release's side is than the image's (``as_spatial`` view: token releases on their
    patch grid, vectors as 1 x 1 maps)."""
    return image_size / max(1, as_spatial(observed[:1]).shape[-1])


# -- trajectory and plateau ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PlateauRule:
    """An image's run ends when the mean of its last ``window`` objective values improved on the mean of the
    ``window`` before by less than ``tol`` (relative), checked every ``max(1, window // 5)`` steps. ``window = 0``
    never stops early (the cap ends every run)."""

    window: int
    tol: float

    @property
    def every(self) -> int:
        return max(1, self.window // 5)


class Trajectory:
    """The per-image objective of one optimisation of ``n`` images (or latents), step by step, and which images'
    runs have ended.

    Use: ``record`` the objective ``[n]`` inside the step function (values stay on the device), pass ``stop`` to
    :meth:`~benchmark.models.trainer.Trainer.optimize` (it is called after each update), and ``finish`` after the loop.
    ``snapshot(mask)`` (from the caller) is called when the images of ``mask`` stop, after the update of that step,
    so the caller keeps what those images are then.
    """

    def __init__(self, n: int, cap: int, rule: PlateauRule, snapshot: Callable[[Tensor], None]):
        self.n, self.cap, self.rule, self.snapshot = n, cap, rule, snapshot
        # one buffer [rows, n] on the objective's device, doubled when full: a list of one small tensor per step
        # fragments the CPU heap between the step's large activations (about 250 KB of resident memory lost per
        # step on a LeNet at batch 32, so 50 GB over UnSplit's 200,000 steps)
        self._history: Tensor | None = None
        self.count = 0
        self.steps_run = torch.zeros(n, dtype=torch.long)
        self.by_cap = torch.zeros(n, dtype=torch.bool)
        self.done = torch.zeros(n, dtype=torch.bool)
        self.last: Tensor | None = None

    def record(self, objective: Tensor) -> None:
        """The objective ``[n]`` of the current iterate (before this step's update)."""
        value = full_precision(objective.detach()).reshape(self.n)
        if self._history is None:
            self._history = value.new_empty((max(1, min(self.cap, 4096)), self.n))
        elif self.count == len(self._history):
            grown = self._history.new_empty((2 * len(self._history), self.n))
            grown[:self.count] = self._history
            self._history = grown
        self._history[self.count] = value
        self.count += 1

    @property
    def values(self) -> Tensor:
        """Every recorded objective, ``[steps, n]`` (on the objective's device)."""
        if self._history is None:
            return torch.zeros(0, self.n)
        return self._history[:self.count]

    def plateaued(self) -> Tensor:
        """Which images' last two windows say they have plateaued (host booleans ``[n]``)."""
        w = self.rule.window
        if w <= 0 or self.count < 2 * w:
            return torch.zeros(self.n, dtype=torch.bool)
        recent = self.values[-2 * w:]
        before, after = recent[:w].mean(0), recent[w:].mean(0)
        return ((before - after) < self.rule.tol * before.abs()).cpu()

    def stop(self, i: int) -> bool:
        """Called after update ``i`` (0-based); True when every image has stopped."""
        ran = i + 1
        if self.rule.window <= 0 or ran % self.rule.every or ran >= self.cap:
            return False
        newly = self.plateaued() & ~self.done
        if newly.any():
            self.snapshot(newly)
            self.done |= newly
            self.steps_run[newly] = ran
        return bool(self.done.all())

    def finish(self) -> None:
        """After the loop: images still running ran to the cap (or to wherever the loop stopped)."""
        ran = self.count
        rest = ~self.done
        if rest.any():
            self.snapshot(rest)
            self.steps_run[rest] = ran
            self.by_cap[rest] = True
            self.done |= rest

    def first(self, final: Tensor) -> Tensor:
        """Per-image objective at the start (``final`` when no step ran)."""
        return self.values[0].cpu() if self.count else final.cpu()

    def best(self, final: Tensor) -> Tensor:
        """Per-image lowest objective reached while it ran, the returned iterate's (``final``) included."""
        final = final.cpu()
        if not self.count:
            return final
        hist = self.values.cpu()  # [steps, n]
        steps = torch.arange(len(hist))[:, None]
        live = steps < self.steps_run[None, :]
        return torch.minimum(torch.where(live, hist, torch.inf).amin(0), final)


def summarize(trajectories: list[Trajectory], finals: list[Tensor], prefix: str = "") -> dict[str, float]:
    """The recorded metrics of a run made of several chunks (``finals``: the returned images' objectives)."""
    if not trajectories:
        return {}
    final = torch.cat([f.detach().float().cpu() for f in finals])
    first = torch.cat([t.first(f).float() for t, f in zip(trajectories, finals)])
    best = torch.cat([t.best(f).float() for t, f in zip(trajectories, finals)])
    steps = torch.cat([t.steps_run for t in trajectories]).float()
    cap = torch.cat([t.by_cap for t in trajectories]).float()
    return {f"{prefix}objective_first": float(first.mean()), f"{prefix}objective_best": float(best.mean()),
            f"{prefix}objective_last": float(final.mean()), f"{prefix}steps_run": float(steps.mean()),
            f"{prefix}steps_run_max": float(steps.max()), f"{prefix}ended_by_cap": float(cap.mean())}


def ended_by(metrics: dict[str, float], prefix: str = "") -> str:
    """``"cap"``, ``"plateau"`` or ``"both"`` (some images each way), for the record's budget."""
    share = metrics.get(f"{prefix}ended_by_cap", 0.0)
    return "cap" if share == 1.0 else "plateau" if share == 0.0 else "both"
