"""Scoring: one scorer per attack kind (attribute, reconstruction, transfer), per-sample outcomes, bootstrap
intervals, and the leaderboard's aggregation of records into rows (knob selection on validation data, privacy
score, ranks with ties).

Used by the runner (what a record stores) and by the leaderboard (how records combine), so every number has one
definition.
"""

from __future__ import annotations

from benchmark.api.contract import AttackKind
from benchmark.measure.intervals import Estimate, TrackResample, bootstrap, rank_intervals
from benchmark.measure.scoring.attribute import AttributeScorer
from benchmark.measure.scoring.base import Samples, Scorer, Truth, pool
from benchmark.measure.scoring.reconstruction import ReconstructionScorer
from benchmark.measure.scoring.transfer import TransferScorer

SCORERS: dict[AttackKind, Scorer] = {s.kind: s for s in (AttributeScorer(), ReconstructionScorer(), TransferScorer())}


def scorer_for(kind: AttackKind | str) -> Scorer:
    return SCORERS[AttackKind(kind)]


__all__ = ["SCORERS", "Estimate", "Samples", "Scorer", "TrackResample", "Truth", "bootstrap", "pool",
           "rank_intervals", "scorer_for"]
