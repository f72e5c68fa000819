"""Files on disk, below everything else: atomic writes, checksums and the one JSON codec for numbers JSON lacks.

This module imports nothing from the project, so every layer (records, manifests, the cache, entries, the
verification reports and the site) can write and read through it without an import circle.

JSON has no NaN and no infinity. A figure can be either (a suppression ratio over a zero accuracy is +inf; a metric
an attack could not compute is NaN), so every file the project writes stores NaN as ``null`` and +-inf as
+-:data:`JSON_INF`, and every reader turns them back with :func:`json_number`:

    >>> encode_json({"ratio": float("inf"), "ssim": float("nan"), "n": [1, -float("inf")]})
    {'ratio': 1e+308, 'ssim': None, 'n': [1, -1e+308]}
    >>> json_number(1e308), json_number(None), json_number(0.5)
    (inf, nan, 0.5)
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: what +-inf is stored as (JSON has no infinity; the largest double that is still a plain number)
JSON_INF = 1e308
_NONFINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
                      "-infinity": -math.inf}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_number(v: Any) -> Any:
    """A number as JSON can hold it: NaN becomes ``None``, +-inf becomes +-:data:`JSON_INF`; anything else as is."""
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else math.copysign(JSON_INF, v)
    return v


def encode_json(obj: Any) -> Any:
    """``obj`` with every non-finite float inside mappings, lists and tuples encoded by :func:`encode_number`."""
    if isinstance(obj, float):
        return encode_number(obj)
    if isinstance(obj, Mapping):
        return {k: encode_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_json(v) for v in obj]
    return obj


def json_number(v: Any) -> float:
    """A stored figure back as a float: ``None`` is NaN, +-:data:`JSON_INF` (or more) is +-inf again; the strings
    ``"nan"``, ``"inf"`` and ``"-inf"`` of older verification reports are read too. Anything else that is not a
    number (a bool, a word, a list) is NaN."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        return _NONFINITE_STRINGS.get(v.strip().lower(), math.nan)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    v = float(v)
    return math.copysign(math.inf, v) if abs(v) >= JSON_INF else v
