"""Metadata cards: what every registered method is, where it comes from, and what we had to infer."""

from __future__ import annotations

import dataclasses
from typing import Literal

ThreatModel = Literal["black-box", "white-box", "query", "none"]


@dataclasses.dataclass(frozen=True)
class MethodCard:
    """The provenance of a registered defense or attack.

    Attributes:
        paper: full citation ("Authors, Title, Venue"), or "splitbench" for a baseline of our own.
        year: publication year.
        url: a link to the paper (arXiv or venue page).
        threat_model: who the method defends against (defense) or what the attacker can access (attack),
            in a sentence.
        knob: for defenses, the config field that trades privacy for utility and how; for attacks, the budget.
        inferred: choices the sources leave open that splitbench made, one per entry (may be empty only when
            the method is fully specified by its sources).
        code: the official code's URL, or "" when none is public.
        notes: anything else a reader of a leaderboard row must know.
    """

    paper: str
    year: int
    url: str
    threat_model: str
    knob: str
    inferred: tuple[str, ...]
    code: str = ""
    notes: str = ""

    REQUIRED = ("paper", "year", "url", "threat_model", "knob")

    def missing(self) -> list[str]:
        """Names of required fields that are empty."""
        return [f for f in self.REQUIRED if not getattr(self, f)]
