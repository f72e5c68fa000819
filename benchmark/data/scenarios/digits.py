"""``digits``: the embedded default scenario, from scikit-learn's bundled 8x8 handwritten digits.

1,797 real images, resized to 32x32 and repeated over 3 channels. Task = parity of the digit (even / odd);
sensitive attribute = the digit itself (10 classes). Needs no download: the data ships with scikit-learn.

The images are read from scikit-learn's bundled data file (``sklearn/datasets/data/digits.csv.gz``, what
``sklearn.datasets.load_digits`` parses) without importing scikit-learn, whose import takes 1.4-2 s, paid by a
run's main process and again by each worker before its first model; where that file is not found,
``load_digits`` is called. Both give the same arrays (tested).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.types import DataOptions, Scenario, ScenarioConfig, ScenarioInfo, resize_uint8


def bundled_file() -> Path | None:
    """scikit-learn's bundled digits file, found without importing scikit-learn (None when it is not there)."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as float64 [N, 8, 8] (values 0..16) and their int labels, as ``load_digits`` gives them."""
    path = bundled_file()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


@dataclasses.dataclass(frozen=True)
class DigitsConfig(ScenarioConfig):
    image_size: int = field(32, "images are resized from 8x8 to image_size x image_size")


@register_scenario("digits")
class Digits(Scenario):
    Config = DigitsConfig
    description = "scikit-learn digits (embedded, 1,797 images): task = parity, sensitive = digit"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def load_arrays(self, options: DataOptions):
        pixels, labels = digits_arrays()
        raw = pixels / 16.0  # values 0..16
        images = torch.from_numpy(np.round(raw * 255.0).astype(np.uint8)).unsqueeze(1).expand(-1, 3, -1, -1)
        images = resize_uint8(images.contiguous(), self.config.image_size)
        digit = torch.from_numpy(labels)
        parity = digit % 2
        info = ScenarioInfo(
            name="digits", image_size=self.config.image_size, channels=3, mean=self.mean, std=self.std,
            task="parity", task_classes=("even", "odd"),
            sensitive="digit", sensitive_classes=tuple(str(i) for i in range(10)),
        )
        return images, parity, digit, info
