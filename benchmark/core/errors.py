"""User-facing errors.

Every problem a user can cause (an unknown name, a malformed suite file, missing data) raises a
:class:`SplitbenchError` whose message is one line naming the thing and what was expected. The CLI prints
that line and exits with status 2, without a traceback (``--traceback`` shows it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SplitbenchError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class AccessError(SplitbenchError):
    """An attack asked for something its declared threat model does not give it."""


class NotApplicable(Exception):
    """A method cannot apply here, for a reason that is no one's mistake: an attack whose target lacks what it
    needs (no sensitive attribute), or a defense that cannot run on this backbone or split (an operation its
    analysis does not support, a budget no pruning can meet). The runner records the cells as ``not_applicable``
    with the reason, instead of ``failed``."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'x' or 'y'?"`` for the closest choices, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), sorted(set(choices)), n=n, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
