"""Helpers shared by the scenario loaders."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.core.errors import SplitbenchError


def default_data_root() -> Path:
    """``$SPLITBENCH_DATA`` or ``~/.cache/splitbench/data``."""
    env = os.environ.get("SPLITBENCH_DATA")
    return Path(env) if env else Path.home() / ".cache" / "splitbench" / "data"


def decode_image(value: Any, size: int, where: str) -> np.ndarray:
    """A PIL image, ``{"bytes": ..., "path": ...}`` struct, raw bytes or a path, as uint8 [size, size, 3].

    Converted to RGB and resized with PIL's bilinear filter when it is not already ``size`` x ``size``.

    Raises:
        SplitbenchError: naming ``where``, when the value holds no image or the image cannot be decoded.
    """
    from PIL import Image

    try:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict):
            if value.get("bytes") is not None:
                img = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                img = Image.open(value["path"])
            else:
                raise SplitbenchError(f"{where}: image struct has neither bytes nor path")
        elif isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif isinstance(value, (str, Path)):
            img = Image.open(value)
        else:
            raise SplitbenchError(f"{where}: cannot read an image from a {type(value).__name__}")
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError and truncated files are OSErrors; some corrupt PNG chunks raise SyntaxError
        raise SplitbenchError(f"{where}: unreadable image ({exc}); expected an image file PIL can decode "
                              "(PNG, JPEG, ...)") from exc


def encode_labels(values: Iterable[Any], names: Sequence[str] | None, column: str, where: str
                  ) -> tuple[Tensor, tuple[str, ...]]:
    """Integer class ids and class names for a label column.

    Integer values with known ``names`` (a ClassLabel) are kept; booleans become ("False", "True"); strings and
    integers without names are mapped to the sorted unique values.
    """
    vals = list(values)
    if not vals:
        raise SplitbenchError(f"{where}: column {column!r} is empty")
    if any(v is None for v in vals):
        raise SplitbenchError(f"{where}: column {column!r} has missing values")
    if names is not None and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        ids = np.asarray(vals, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= len(names):
            raise SplitbenchError(f"{where}: column {column!r} has ids outside 0..{len(names) - 1}")
        return torch.from_numpy(ids), tuple(str(n) for n in names)
    if all(isinstance(v, (bool, np.bool_)) for v in vals):
        return torch.tensor([int(v) for v in vals], dtype=torch.int64), ("False", "True")
    uniq = sorted(set(vals), key=lambda v: (str(type(v)), v))
    index = {v: i for i, v in enumerate(uniq)}
    return torch.tensor([index[v] for v in vals], dtype=torch.int64), tuple(str(u) for u in uniq)
