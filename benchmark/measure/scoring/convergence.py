"""Did an optimisation attack converge? One rule, used by the runner (which writes the flag into the records) and
the leaderboard (which shows it).

Every reconstruction cell records ``release_error``: the mean over its eval rows of how far the release of its
reconstruction is from the release the server received, relative to that release's energy,
``||release(x_hat) - z||^2 / ||z||^2``, measured by the harness with the defense's white-box release (the one
white-box attackers optimise through). An **optimisation attack** (one that reports its own objective,
``attack.objective_last``) whose release error ends far above the lowest any reconstruction attack of the same
model reached on the same releases has not solved its own problem: the cell is flagged **not converged**, and a
defense that looks private against it has been flattered by the attack, not protected.

The rule: not converged when ``release_error > RATIO * best`` **and** ``release_error > FLOOR``, where ``best`` is the
lowest release error of any reconstruction attack on the same model (the same seed's releases). ``FLOOR`` keeps
two attacks that both reproduce the release to a fraction of a percent of its energy from being told apart by
noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: how many times the best release error an attack may end at before it is flagged
RATIO = 10.0
#: release errors below this share of the release's energy are never flagged
FLOOR = 0.01
OPTIMISATION_MARK = "attack.objective_last"


def is_optimisation(metrics: Mapping[str, float]) -> bool:
    """Whether a cell's attack optimises an objective of its own (it reports ``attack.objective_last``)."""
    return OPTIMISATION_MARK in metrics


def not_converged(error: float, best: float) -> bool:
    """The rule (see the module docstring) for one cell's release error against the model's best."""
    if math.isnan(error) or math.isnan(best):
        return False
    return error > RATIO * best and error > FLOOR


def _errors(cells: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {c: float(m["release_error"]) for c, m in cells.items()
            if m.get("release_error") is not None and not math.isnan(float(m["release_error"]))}


def flags(cells: Mapping[str, Mapping[str, float]]) -> dict[str, bool]:
    """``{cell: metrics}`` of one model's reconstruction cells -> ``{cell: not converged}`` for its optimisation
    attacks (cells without a release error are left out)."""
    errors = _errors(cells)
    if not errors:
        return {}
    best = min(errors.values())
    return {c: not_converged(e, best) for c, e in errors.items() if is_optimisation(cells[c])}


def budget(cells: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """What a flagged cell's record keeps under ``budget.convergence``: the rule and the best release error of the
    model's cells it was judged against (the runner writes it, verify recomputes it for a re-run cell)."""
    errors = _errors(cells)
    return {"rule": rule_text(), "best_release_error": min(errors.values()) if errors else None}


def rule_text() -> str:
    return (f"release error above {RATIO:g}x the lowest any reconstruction attack reached on the same releases and "
            f"above {FLOOR:g} of the release's energy")
