"""Text from records, suites, cards and plugins, made safe to put into a markdown table or sentence.

Every name a table shows (a defense, an attack, a scenario, a backbone, an entry) can come from a plugin or a
record written elsewhere, so none of it is written into markdown as it is: a ``|`` would end a table cell, a
backtick would end a code span and let what follows be read as markdown, and ``<...>`` would be raw HTML to a
renderer that passes HTML through. :func:`code` writes a name as an inline code span (HTML inside a code span is
literal text), :func:`text` writes free text with every character markdown could act on escaped. Both keep to one
line and work inside GFM table cells (where ``\\|`` is a literal pipe, even in a code span).
"""

from __future__ import annotations

import re
from typing import Any

# ASCII punctuation that markdown (CommonMark, GFM tables and strikethrough, HTML, entities) can act on anywhere in a
# line; CommonMark lets a backslash escape any ASCII punctuation. Links need "[" (and images "![", "](" ), so escaping
# the brackets is enough for those. An underscore only opens or closes emphasis at a word's edge, so one inside a word
# (attribute_inference) is left as it is and the raw tables stay readable.
_ACTIVE = re.compile(r"([\\`*\[\]<>|&~])|(?<![A-Za-z0-9])(_)|(_)(?![A-Za-z0-9])")


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def text(value: Any) -> str:
    """``value`` as plain markdown text: one line, every character markdown could act on escaped."""
    return _ACTIVE.sub(lambda m: "\\" + m.group(0), _one_line(value))


def code(value: Any) -> str:
    """``value`` as an inline code span that a backtick or a pipe in it cannot end (safe in a table cell).

    Example:
        >>> code("no_pruning")
        '`no_pruning`'
        >>> code("a`b|c")
        '``a`b\\\\|c``'
    """
    s = _one_line(value).replace("|", "\\|")
    if not s:
        return "``"
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s[0] == "`" or s[-1] == "`" or (s[0] == " " and s[-1] == " ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"
