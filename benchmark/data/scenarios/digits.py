"""``digits``: the embedded default scenario, from scikit-learn's bundled 8x8 handwritten digits.

1,797 real images, resized to 32x32 and repeated over 3 channels. Task = parity of the digit (even / odd);
sensitive attribute = the digit itself (10 classes). Needs no download: the data ships with scikit-learn.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.types import DataOptions, Scenario, ScenarioConfig, ScenarioInfo, resize_uint8


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
        from sklearn.datasets import load_digits

        bunch = load_digits()
        raw = np.asarray(bunch.images, dtype=np.float64) / 16.0  # values 0..16
        images = torch.from_numpy(np.round(raw * 255.0).astype(np.uint8)).unsqueeze(1).expand(-1, 3, -1, -1)
        images = resize_uint8(images.contiguous(), self.config.image_size)
        digit = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
        parity = digit % 2
        info = ScenarioInfo(
            name="digits", image_size=self.config.image_size, channels=3, mean=self.mean, std=self.std,
            task="parity", task_classes=("even", "odd"),
            sensitive="digit", sensitive_classes=tuple(str(i) for i in range(10)),
        )
        return images, parity, digit, info
