"""The one tiny suite file the tests share (``tiny.yaml`` beside this file), changed per test by keyword."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY_FILE = Path(__file__).resolve().parent / "tiny.yaml"


def tiny(**changes: Any) -> str:
    """The tiny suite as YAML text, each top-level key given replaced by its value (``None`` removes the key).

    >>> "name: pool" in tiny(name="pool") and "release_draws" not in tiny(release_draws=None)
    True
    """
    suite = yaml.safe_load(TINY_FILE.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            suite.pop(key, None)
        else:
            suite[key] = value
    return yaml.safe_dump(suite, sort_keys=False)
