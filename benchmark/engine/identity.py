"""What identifies a trained model in the cache: its spec, a fingerprint of its data, the device type, the
precision and the library versions (:func:`model_cache_key`). A model is reused only where all of these agree."""

from __future__ import annotations

from typing import Any

import torch

from benchmark.data.types import ScenarioData
from benchmark.suites.model import ModelSpec


def model_cache_key(spec: ModelSpec, data: ScenarioData, device: torch.device, amp: bool) -> dict[str, Any]:
    """Everything a trained model depends on: its spec, the data, the device type, the precision and the library
    versions (a model trained under other versions is retrained, not silently reused)."""
    import timm

    from benchmark.store.records import package_version

    return {**spec.as_dict(), "data": data_fingerprint(data), "device_type": device.type,
            "precision": "bf16-autocast" if amp else "fp32", "torch": torch.__version__, "timm": timm.__version__,
            "splitbench": package_version()}


def data_fingerprint(data: ScenarioData) -> str:
    """A hash of every image and label, so a cached model is never reused on different data."""
    import hashlib

    h = hashlib.sha256()
    for sp in (data.train, data.val, data.aux, data.eval):
        for t in (sp.images, sp.task, sp.sensitive):
            if t is not None:
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]
