"""Every docstring example of the project runs (those marked ``+SKIP`` need data or a finished run): a module with
``>>>`` lines is found by reading the source, so a new example is tested without being listed here."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "leaderboard", "defenses", "attacks", "baselines")


def _modules_with_examples() -> list[str]:
    out = []
    for top in PACKAGES:
        for p in sorted((ROOT / top).rglob("*.py")):
            if ">>>" in p.read_text(encoding="utf-8"):
                parts = list(p.relative_to(ROOT).with_suffix("").parts)
                out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    assert {"benchmark.core.io", "benchmark.kit.chains", "benchmark.measure.intervals"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see above)"
