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


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'x' or 'y'?"`` for the closest choices, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), sorted(set(choices)), n=n, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
