"""Scenarios: a dataset with a task label, an optional sensitive attribute, and disjoint train/aux/eval splits.

Images are held as ``uint8`` tensors of shape ``[N, C, H, W]`` (small enough to keep on the GPU for every
scenario splitbench ships) and normalized batch by batch with the scenario's mean and std.

``train`` is the defender's, ``val`` the defender's own held-out part of it (carved from ``train``: every choice
a defense or a suite makes — knob, hyperparameters, early stopping — is made on it), ``aux`` the attacker's (same
distribution, never seen by the defender), ``eval`` is read only by the final scorer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field

SPLITS = ("train", "val", "aux", "eval")


@dataclasses.dataclass(frozen=True)
class ScenarioInfo:
    """What a model needs to know about a scenario. Recorded in every result."""

    name: str
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    task_classes: tuple[str, ...]
    sensitive: str | None = None
    sensitive_classes: tuple[str, ...] | None = None

    @property
    def num_task_classes(self) -> int:
        return len(self.task_classes)

    @property
    def num_sensitive_classes(self) -> int | None:
        return None if self.sensitive_classes is None else len(self.sensitive_classes)

    @property
    def has_sensitive(self) -> bool:
        return self.sensitive is not None

    def _stats(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, device=ref.device, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=ref.device, dtype=torch.float32).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 images (or floats in [0, 1]) to the normalized float input of the models."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalized images back to [0, 1] (not clamped)."""
        mean, std = self._stats(x)
        return x.float() * std + mean


class Batch(NamedTuple):
    x: Tensor  # normalized float images
    y: Tensor  # task labels
    s: Tensor | None  # sensitive labels
    index: Tensor  # positions in the split


@dataclasses.dataclass
class Split:
    """One of train / aux / eval: uint8 images and integer labels, on one device."""

    images: Tensor
    task: Tensor
    sensitive: Tensor | None
    info: ScenarioInfo

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise SplitbenchError(f"scenario {self.info.name!r}: images must be uint8 [N, C, H, W], got "
                                  f"{self.images.dtype} {tuple(self.images.shape)}")
        if len(self.task) != n or (self.sensitive is not None and len(self.sensitive) != n):
            raise SplitbenchError(f"scenario {self.info.name!r}: images and labels differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.task.to(device),
                     None if self.sensitive is None else self.sensitive.to(device), self.info)

    def subset(self, n: int | None) -> Split:
        """The first ``n`` samples (the split is already shuffled), or all when ``n`` is None."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.task[:n], None if self.sensitive is None else self.sensitive[:n],
                     self.info)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[Batch]:
        """Normalized batches on the split's device. Shuffling is seeded, so it is reproducible."""
        n = len(self)
        if shuffle:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=g).to(self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield Batch(self.info.normalize(self.images[idx]), self.task[idx],
                        None if self.sensitive is None else self.sensitive[idx], idx)


@dataclasses.dataclass
class ScenarioData:
    """The splits of a scenario and its :class:`ScenarioInfo`: ``train`` and ``val`` are the defender's, ``aux``
    the attacker's, ``eval`` the scorer's."""

    info: ScenarioInfo
    train: Split
    val: Split
    aux: Split
    eval: Split
    config: Any = None

    def to(self, device: torch.device | str) -> ScenarioData:
        return ScenarioData(self.info, self.train.to(device), self.val.to(device), self.aux.to(device),
                            self.eval.to(device), self.config)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise SplitbenchError(f"unknown split {name!r} (expected one of {', '.join(SPLITS)})")
        return getattr(self, name)

    @property
    def device(self) -> torch.device:
        return self.train.images.device


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Where data comes from; environment-specific, so never part of a config hash."""

    data_root: Path | None = None
    download: bool = False


@dataclasses.dataclass(frozen=True)
class ScenarioConfig:
    """Fields shared by every scenario."""

    split_seed: int = field(0, "seed of the permutation that assigns samples to train / aux / eval")
    fractions: tuple[float, ...] = field((0.6, 0.2, 0.2), "fractions of the pooled data for train, aux, eval")
    val_fraction: float = field(0.15, "fraction of the train part held out as the defender's validation split "
                                      "(every knob, hyperparameter and early-stopping choice is made on it)")
    max_samples: int | None = field(None, "use at most this many samples in total (after shuffling)")
    image_size: int = field(32, "images are resized to image_size x image_size")

    def validate(self) -> None:
        if len(self.fractions) != 3 or any(f <= 0 for f in self.fractions) or sum(self.fractions) > 1.0 + 1e-9:
            raise ValueError(f"fractions must be three positive numbers summing to at most 1, got {self.fractions}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.max_samples is not None and self.max_samples < 4:
            raise ValueError(f"max_samples must be at least 4, got {self.max_samples}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


class Scenario:
    """Base class of a registered scenario. Subclasses set ``Config`` and implement :meth:`load_arrays`."""

    name: ClassVar[str]
    Config: ClassVar[type] = ScenarioConfig
    description: ClassVar[str] = ""
    mean: ClassVar[tuple[float, ...]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, ...]] = (0.229, 0.224, 0.225)

    def __init__(self, config: Any):
        self.config = config

    def load_arrays(self, options: DataOptions) -> tuple[Tensor, Tensor, Tensor | None, ScenarioInfo]:
        """Return all images (uint8 [N, C, S, S] at the configured size), task labels, sensitive labels or None,
        and the info. Splitting is done by :meth:`load`."""
        raise NotImplementedError

    def load(self, options: DataOptions = DataOptions()) -> ScenarioData:
        images, task, sens, info = self.load_arrays(options)
        n = len(images)
        cfg = self.config
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed))
        if cfg.max_samples is not None:
            order = order[: cfg.max_samples]
        train, aux, ev = split_indices(len(order), cfg.fractions)
        n_train = train.stop - train.start
        n_val = min(n_train - 1, max(1, int(n_train * cfg.val_fraction)))
        parts = [slice(train.start, train.stop - n_val), slice(train.stop - n_val, train.stop), aux, ev]
        splits = []
        for sl in parts:
            idx = order[sl]
            splits.append(Split(images[idx].contiguous(), task[idx].contiguous(),
                                None if sens is None else sens[idx].contiguous(), info))
        for name, sp in zip(SPLITS, splits):
            if len(sp) == 0:
                raise SplitbenchError(f"scenario {info.name!r}: split {name!r} is empty ({n} samples in all); "
                                      "raise max_samples or the fraction")
        return ScenarioData(info, *splits, config=cfg)


def split_indices(n: int, fractions: tuple[float, ...]) -> list[slice]:
    """Contiguous, disjoint slices of ``range(n)`` with the given fractions (rounded down, at least 1 each)."""
    sizes = [max(1, int(n * f)) for f in fractions]
    bounds = np.cumsum([0] + sizes)
    if bounds[-1] > n:
        raise SplitbenchError(f"cannot split {n} samples into fractions {fractions}")
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def resize_uint8(images: Tensor, size: int, out: Tensor | None = None) -> Tensor:
    """Resize uint8 [N, C, H, W] images to ``size`` x ``size`` (antialiased bilinear), 2048 images at a time.

    Each resized chunk is written straight into one preallocated uint8 [N, C, size, size] tensor (``out`` when
    given, e.g. a slice of a larger store) instead of being collected and concatenated, so the result is never
    held twice. Without ``out``, images that already have the size are returned as they are.
    """
    shape = (*images.shape[:2], size, size)
    if out is None:
        if tuple(images.shape[-2:]) == (size, size):
            return images
        out = torch.empty(shape, dtype=torch.uint8, device=images.device)
    elif tuple(out.shape) != shape or out.dtype != torch.uint8:
        raise ValueError(f"resize_uint8: out must be uint8 {list(shape)}, got {out.dtype} {list(out.shape)}")
    if tuple(images.shape[-2:]) == (size, size):
        return out.copy_(images)
    for start in range(0, len(images), 2048):
        chunk = images[start:start + 2048]
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + len(chunk)].copy_(r.round_().clamp_(0, 255))
    return out


class TensorSplit:
    """Tensors of equal length served in :class:`Batch` es, so the trainer can fit on releases too.

    ``x`` is used as it is (no normalization); ``y`` and ``s`` are optional label tensors.
    """

    def __init__(self, x: Tensor, y: Tensor | None = None, s: Tensor | None = None):
        n = len(x)
        for name, t in (("y", y), ("s", s)):
            if t is not None and len(t) != n:
                raise ValueError(f"TensorSplit: {name} has {len(t)} rows, x has {n}")
        self.x, self.y, self.s = x, y, s

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, n: int | None) -> TensorSplit:
        if n is None or n >= len(self):
            return self
        return TensorSplit(self.x[:n], None if self.y is None else self.y[:n], None if self.s is None else self.s[:n])

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
                ) -> Iterator[Batch]:
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield Batch(self.x[idx], None if self.y is None else self.y[idx],
                        None if self.s is None else self.s[idx], idx)
