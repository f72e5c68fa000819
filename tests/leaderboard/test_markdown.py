"""Names and text from records, suites, cards and plugins stay text in every markdown table: no cell split by a
pipe, no code span ended by a backtick, no raw HTML, no emphasis or link made of someone's name."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from leaderboard.markdown import code, text

NASTY = [
    "no_pruning",
    "a|b",
    "a`b",
    "``x``",
    "`lead and trail`",
    "<script>alert(1)</script>",
    "<img src=x onerror=\"alert(1)\">",
    "*bold* _em_ __strong__ ~~gone~~",
    "[link](javascript:alert(1)) ![img](x.png)",
    "&lt; &amp; &#60;",
    "back\\slash \\| \\`",
    "two\nlines\tand  spaces",
    "dynamic_channel_pruning[scorer=server_copy]",
]
PARSER = MarkdownIt("commonmark").enable("table")
STRUCTURE = {"html_inline", "html_block", "em_open", "strong_open", "link_open", "image", "s_open"}


def _cell(cell_markdown: str):
    """The inline children of the one body cell of a one-column table holding ``cell_markdown``."""
    tokens = PARSER.parse(f"| head |\n|---|\n| {cell_markdown} |\n")
    cells = [t for t in tokens if t.type == "inline"]
    assert [t.content for t in cells][0] == "head"
    assert len(cells) == 2, f"the cell was split: {[t.content for t in cells]}"
    return cells[1].children


@pytest.mark.parametrize("value", NASTY)
def test_code_is_one_code_span_with_the_value_inside_a_table_cell(value):
    children = _cell(code(value))
    assert [c.type for c in children] == ["code_inline"], children
    assert children[0].content == " ".join(value.split())


@pytest.mark.parametrize("value", NASTY)
def test_text_shows_the_value_and_makes_no_markup(value):
    for where in ("table", "line"):
        if where == "table":
            children = _cell(text(value))
        else:
            (inline,) = [t for t in PARSER.parse(f"Not ranked: {text(value)}.\n") if t.type == "inline"]
            children = inline.children
        assert not [c.type for c in children if c.type in STRUCTURE]
        shown = "".join(c.content for c in children if c.type in ("text", "code_inline"))
        if where == "line":
            shown = shown.removeprefix("Not ranked: ").removesuffix(".")
        assert shown == " ".join(value.split())


def test_plain_names_stay_readable():
    assert text("attribute_inference") == "attribute_inference"
    assert code("no_pruning") == "`no_pruning`"
    assert text("keep_ratio") == "keep_ratio"
