"""The static site: every page written, every link and image resolving, hostile text escaped, no remote assets,
clear errors, ranks across entries; then the pages in a real headless Chromium (rendered tables, sorting, images,
no script from the data running, no console errors), with screenshots."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
import types
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from markupsafe import escape

import benchmark
from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.core.registry import DEFENSES, load_plugin
from benchmark.measure.intervals import Estimate
from leaderboard.site import build_site, plots
from leaderboard.site import gather as site_gather
from leaderboard.site.views import site_tracks

# Each payload, if it ever ran, would mark the page's root element; the browser test looks for that mark.
# (its backtick and pipe would end a markdown code span and table cell: see the markdown test)
HOSTILE_DEFENSE = "<script>document.documentElement.dataset.pwned='defense'</script>`|"
HOSTILE_AUTHOR = "<img src=x onerror=\"document.documentElement.dataset.pwned='author'\">"
HOSTILE_NOTE = "<b onmouseover=\"document.documentElement.dataset.pwned='note'\">paper note</b>"
HOSTILE_URL = "javascript:document.documentElement.dataset.pwned='url'"
HOSTILE_HARDWARE = "<svg onload=\"document.documentElement.dataset.pwned='hardware'\"></svg>"
HOSTILE = (HOSTILE_DEFENSE, HOSTILE_AUTHOR, HOSTILE_NOTE, HOSTILE_URL, HOSTILE_HARDWARE)

PLUGIN = textwrap.dedent('''
    from baselines.no_pruning import NoPruning
    from benchmark import register_defense


    @register_defense({name!r})
    class MarkupNamed(NoPruning):
        """no_pruning under a name made of markup: the site must show it as text."""
''')

# A tiny suite whose reference clearly learns the task (so the track is ranked), named like the official suite
# so that an entry around it is official while the bare run directory stays unofficial.
SUITE = {
    "name": "standard",
    "description": "a tiny suite for the site tests",
    "reference": "no_pruning",
    "utility_budget": 0.1,
    "bootstrap": 200,
    "eval_counts": {"reconstruction": 8},
    "seeds": [0],
    "scenarios": [{"name": "digits", "config": {"max_samples": 200}}],
    "backbones": [{"name": "test_resnet", "split": "layer1"}],
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.005},
    "defenses": [{"name": "no_pruning"}, {"name": "random_pruning", "knob": [0.25, 0.5]},
                 {"name": HOSTILE_DEFENSE}],
    "attacks": [{"name": "attribute_inference", "config": {"epochs": 1}},
                {"name": "inversion_decoder", "config": {"epochs": 1}}],
    "paper": {"citation": "A. Author: <i>A paper</i>, 2026",
              "numbers": [{"defense": "no_pruning", "attack": "inversion_decoder", "metric": "ssim", "value": 0.5,
                           "note": HOSTILE_NOTE}]},
}


def make_entry(run: Path, where: Path, card: dict, verification: dict | None = None,
               hardware: list | None = None) -> Path:
    """An entry folder in the layout `splitbench submit` writes, around a copy of ``run``."""
    shutil.copytree(run, where / "run", ignore=shutil.ignore_patterns("cache"))
    (where / "entry.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    sums = {str(p.relative_to(where)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((where / "run").rglob("*")) if p.is_file()}
    (where / "checksums.json").write_text(json.dumps(sums, indent=2))
    if verification is not None:
        (where / "verification.json").write_text(json.dumps(verification))
    if hardware is not None:
        (where / "hardware").mkdir()
        (where / "hardware" / "machines.json").write_text(json.dumps(hardware))
    return where


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real run (with a defense whose name is markup), two entries around it, and the site of all three."""
    root = tmp_path_factory.mktemp("site")
    plugin = root / "markup_named.py"
    plugin.write_text(PLUGIN.format(name=HOSTILE_DEFENSE))
    load_plugin(plugin)
    try:
        (root / "standard.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
        summary = benchmark.run(str(root / "standard.yaml"), out=root / "run", progress=False, latency_repeats=2)
        assert summary.failed == 0
        card = {"schema_version": 1, "name": "Markup Lab", "authors": [HOSTILE_AUTHOR, "B. Researcher"],
                "paper": "A paper title", "code_url": HOSTILE_URL, "license": "MIT", "hardware": "2-core CPU",
                "contact": "lab@example.org", "defense": HOSTILE_DEFENSE, "code": {"plugin": ["markup_named.py"]},
                "suite": "standard"}
        lab = make_entry(root / "run", root / "entries" / "markup-lab", card,
                         verification={"status": "verified", "cells": 2, "date": "2026-11-20T10:00:00+00:00",
                                       "device": {"device": "cpu", "name": "Test CPU", "threads": 2}},
                         hardware=[{"device": "cpu", "threads": 2, "note": HOSTILE_HARDWARE},
                                   {"device": "gpu", "threads": 16, "extra": {"nested": [1, 2]}}])
        twin = make_entry(root / "run", root / "entries" / "twin", {**card, "name": "Twin Lab", "authors": ["C. D."],
                                                                     "code_url": "https://example.org/code"})
        started = time.perf_counter()
        index = build_site([lab, twin, root / "run"], root / "site")
        seconds = time.perf_counter() - started
        yield {"root": root, "site": index.parent, "index": index, "lab": lab, "twin": twin, "run": root / "run",
               "build_seconds": seconds}
    finally:
        DEFENSES.unregister(HOSTILE_DEFENSE)


# -- HTML helpers ---------------------------------------------------------------------------------------------------
class Page(HTMLParser):
    """The tags, attributes, ids and inline script text of one page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.inline_script = ""
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.tags.append((tag, d))
        if "id" in d:
            self.ids.add(d["id"])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_script += data

    def refs(self) -> list[tuple[str, str, str]]:
        """(tag, attribute, value) of every reference to another file."""
        out = []
        for tag, attrs in self.tags:
            for attr in ("src", "href"):
                if attrs.get(attr) is not None and tag in ("a", "img", "link", "script", "source", "iframe"):
                    out.append((tag, attr, attrs[attr]))
        return out


def pages(site: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted(site.rglob("*.html"))}


# -- unit checks ----------------------------------------------------------------------------------------------------
def test_every_page_is_written(built):
    site = built["site"]
    names = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    for name in ("index.html", "paper.html", "hardware.html", "assets/site.css", "assets/sort.js",
                 "assets/palette.css", "assets/favicon.svg"):
        assert name in names
    assert len([n for n in names if n.startswith("tracks/")]) == 2  # official (two entries) and the bare run
    defense_pages = [n for n in names if n.startswith("defenses/")]
    assert len(defense_pages) == 3  # no_pruning, random_pruning, the markup-named one
    assert all(re.fullmatch(r"defenses/[a-z0-9-]+\.html", n) for n in defense_pages)
    assert len([n for n in names if n.startswith("plots/") and n.endswith(".png")]) >= 2 * 2 + 3
    assert [n for n in names if n.startswith("galleries/")]
    index = built["index"].read_text()
    assert index.index('id="official"') < index.index('id="unofficial"')
    official, unofficial = index.split('id="unofficial"')
    assert "Markup Lab" in index and "Twin Lab" in index
    assert "tracks/" in official and "tracks/" in unofficial
    assert "2 entries" in official and "1 source" in unofficial


def test_every_link_and_image_resolves_inside_the_site(built):
    site = built["site"]
    checked = 0
    for path, text in pages(site).items():
        page = Page(text)
        for tag, attr, value in page.refs():
            if tag == "a" and re.match(r"https?://", value):
                continue  # a link out (a card's code URL), never an asset
            assert not re.match(r"[a-z][a-z0-9+.-]*:|//", value, re.I), f"{path.name}: {tag} {attr}={value!r}"
            target, _, fragment = value.partition("#")
            resolved = (path.parent / target).resolve() if target else path
            assert resolved.is_file(), f"{path.relative_to(site)}: {tag} {attr}={value!r} resolves to nothing"
            assert site.resolve() in resolved.parents, f"{value!r} points outside the site"
            if fragment:
                assert fragment in Page(resolved.read_text()).ids, f"{value!r}: no element with id {fragment!r}"
            checked += 1
    assert checked > 50


def test_hostile_text_is_escaped_everywhere(built):
    site = built["site"]
    seen = {h: 0 for h in HOSTILE}
    for path, text in pages(site).items():
        page = Page(text)
        for h in HOSTILE:
            assert h not in text, f"{path.name} holds {h!r} unescaped"
            seen[h] += str(escape(h)) in text
        # the only scripts are the site's own file; no element carries an event handler or a javascript: URL
        assert [a.get("src", "") for t, a in page.tags if t == "script"] == [
            "../" * (len(path.relative_to(site).parts) - 1) + "assets/sort.js"]
        assert page.inline_script.strip() == ""
        assert not [(t, k) for t, a in page.tags for k in a if k.lower().startswith("on")]
        assert not [v for _, _, v in page.refs() if v.strip().lower().startswith("javascript:")]
    assert all(seen[h] for h in (HOSTILE_DEFENSE, HOSTILE_AUTHOR, HOSTILE_NOTE, HOSTILE_HARDWARE)), seen
    lab_page = (site / "defenses").glob("*.html")
    assert any(str(escape(HOSTILE_URL)) in p.read_text() for p in lab_page)  # shown as text, not as a link


def _markdown_cells(markdown: str) -> list[list]:
    """Every table cell of a markdown text, as markdown-it's inline children; asserts no raw HTML anywhere."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    assert not [t for t in tokens if t.type == "html_block"]
    inline = [t for t in tokens if t.type == "inline"]
    assert not [c for t in inline for c in t.children if c.type == "html_inline"]
    cells, inside = [], False
    for t in tokens:
        inside = {"td_open": True, "th_open": True, "td_close": False, "th_close": False}.get(t.type, inside)
        if inside and t.type == "inline":
            cells.append(t.children)
    return cells


def test_markdown_tables_keep_hostile_text_as_text(built):
    """The run's leaderboard (with its paper section) and the site's leaderboard.md show a defense named with
    markup, a backtick and a pipe as one code span in one cell, and a paper note made of HTML as text."""
    from leaderboard.render import render_run

    run_md = render_run(built["run"], write=False)
    for markdown in (run_md, (built["site"] / "leaderboard.md").read_text()):
        cells = _markdown_cells(markdown)
        spans = [c.content for cell in cells for c in cell if c.type == "code_inline"]
        assert HOSTILE_DEFENSE in spans
    run_cells = _markdown_cells(run_md)
    assert any("".join(c.content for c in cell if c.type == "text") == HOSTILE_NOTE for cell in run_cells)


def test_site_markdown_ranks_as_the_site_does(built):
    """leaderboard.md beside the site's index: one ranking row per ranked site row, in the site's order, with the
    site's rank text and the row's source; linked from the index page."""
    from leaderboard.render import rank_text

    site = built["site"]
    assert 'href="leaderboard.md"' in (site / "index.html").read_text()
    text = (site / "leaderboard.md").read_text()
    sources = [site_gather.load_source(p) for p in (built["lab"], built["twin"], built["run"])]
    tracks = site_tracks(sources)
    assert text.count("### Ranking") == len(tracks) >= 2
    for st in tracks:
        section = text.split(f"(suite `{st.suite}`, {'official' if st.official else 'unofficial'})", 1)[1]
        table = section.split("### Ranking", 1)[1].split("\n\n", 2)[1].splitlines()[2:]
        expected = [rank_text(r.rank, r.rank_point.get("rank")) if r.rank else (r.status or "–")
                    for r in st.selected()]
        assert [line.split(" | ")[0].removeprefix("| ") for line in table] == expected
        assert all(line.rstrip(" |").endswith(("Markup Lab (the same records are in 1 other entry)", "run"))
                   for line in table), table


def test_no_remote_assets(built):
    site = built["site"]
    for path, text in pages(site).items():
        for tag, _, value in Page(text).refs():
            if tag != "a":
                assert not re.match(r"(https?:)?//", value), f"{path.name}: remote asset {value!r}"
        assert not re.search(r"""\ssrc\s*=\s*["']?(https?:)?//""", text), path.name
    for css in (site / "assets").glob("*.css"):
        text = css.read_text()
        assert "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    assert not re.search(r"https?://", (site / "assets" / "sort.js").read_text())


def test_tables_numbers_and_badges(built):
    site = built["site"]
    official = next(p for p in (site / "tracks").glob("*.html") if "Twin Lab" in p.read_text())
    text = official.read_text()
    for section in ("ranking-table", "blackbox-table", "knob-table"):
        assert f'id="{section}"' in text
    assert "✓ verified" in text and 'title="verified on Test CPU (2 threads), 2 cells, 2026-11-20"' in text
    assert re.search(r'class="rank" data-sort="[0-9.]+">\d+(–\d+)?</td>', text)
    assert re.search(r'<span class="ci">\[[−0-9.]+, [−0-9.]+\]</span>', text)  # intervals in their own tone
    assert "plots/" in text and "privacy-utility.png" in text and "heatmap.png" in text


def test_ranks_span_every_entry_of_a_track(built):
    import copy

    lab = site_gather.load_source(built["lab"])
    twin = site_gather.load_source(built["twin"])
    # two entries of one run ship the same records (the reference's, say): one row each, naming the other entry
    (st,) = site_tracks([lab, twin])
    assert st.official and st.multi and len(st.rows) == len(lab.tracks[0].rows)
    for r in st.rows:
        assert r.source is lab and r.also == [twin] and r.rank == r.row.rank
        assert r.source_text == "Markup Lab (the same records are in 1 other entry)"
    # records that differ (another machine's run of the same cells) stay apart and are ranked together
    other = copy.deepcopy(twin)
    for row in other.tracks[0].rows:
        row.cells = tuple((h, status, "another run") for h, status, _ in row.cells)
    (st,) = site_tracks([lab, other])
    assert len(st.rows) == 2 * len(lab.tracks[0].rows) and not any(r.also for r in st.rows)
    for r in st.rows:
        own = r.row.rank
        if own is None:
            assert r.rank is None
            continue
        # two copies of equal figures, resampled with the same draw: in every replicate each row ties with its
        # twin (equal values share the better rank) and every row better than it counts twice
        assert r.rank == (2 * own[0] - 1, 2 * own[1] - 1)
        assert r.rank_point["rank"] == 2 * r.row.rank_point["rank"] - 1


def test_transfer_and_black_box_views_of_a_track(tmp_path):
    from tests.support.fake_runs import FakeCell, write_run

    def cells(defense, knob, **kw):
        return [FakeCell(defense, knob, attack, value, **kw)
                for attack, value in (("attr", 0.6), ("recon", 0.5), ("xfer", 0.8))]

    write_run(tmp_path / "run", cells("ref", 0, utility=0.95) + cells("a", 0.5, utility=0.94)
              + cells("a", 0.9, utility=0.8) + cells("closed", 0.5, utility=0.94, white_box_client=False))
    index = build_site([tmp_path / "run"], tmp_path / "site")
    (track,) = (index.parent / "tracks").glob("*.html")
    text = track.read_text()
    assert 'id="transfer-table"' in text and 'id="blackbox-table"' in text and "<th class=\"num\">transfer</th>" in text
    assert re.search(r'<td class="rank" data-sort=""><span class="muted">bb only</span></td>', text)
    blackbox = text.split('id="blackbox-table"')[1].split("</table>")[0]
    assert ">closed</code>" in blackbox and "denied" in blackbox
    transfer = text.split('id="transfer-table"')[1].split("</table>")[0]
    assert transfer.count("<tr>") == 1 + 3  # ref, a and closed are each ranked on transfer
    (a_page,) = (index.parent / "defenses").glob("a-*.html")
    assert "No reconstruction attack on this track saved a gallery" in a_page.read_text()


def test_gallery_pages_show_each_reconstruction(built):
    site = built["site"]
    page = next(p for p in (site / "defenses").glob("no-pruning-*.html"))
    text = page.read_text()
    imgs = [a["src"] for t, a in Page(text).tags if t == "img" and "galleries/" in a["src"]]
    assert imgs, "no gallery image on the defense page"
    run_pngs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (built["run"] / "records").glob("*.png")}
    for src in imgs:
        assert hashlib.sha256((page.parent / src).read_bytes()).hexdigest() in run_pngs
    rec = next(json.loads(p.read_text()) for p in (built["run"] / "records").glob("*no_pruning*inversion*.json"))
    assert f"SSIM {rec['metrics']['ssim']:.3f} · PSNR {rec['metrics']['psnr']:.1f} dB" in text
    assert "<strong>inversion_decoder</strong>" in text
    assert "Entry card" not in text  # the entries' cards name the markup-named defense, not no_pruning
    hostile_page = next(p for p in (site / "defenses").glob("script-*.html")).read_text()
    assert "Entry card" in hostile_page and "Markup Lab" in hostile_page and "Twin Lab" in hostile_page
    assert "plugin: markup_named.py" in hostile_page and '<a href="https://example.org/code"' in hostile_page


def test_paper_and_hardware_pages(built, tmp_path, monkeypatch, capsys):
    site = built["site"]
    paper = (site / "paper.html").read_text()
    assert paper.count("<tbody>") == 3  # one table per source whose manifest carries paper numbers
    assert "0.500" in paper and str(escape("A. Author: <i>A paper</i>, 2026")) in paper
    hardware = (site / "hardware.html").read_text()
    assert "<th>device</th>" in hardware and "<th>threads</th>" in hardware and "nested: 1, 2" in hardware
    assert hardware.count("<tr>") == 1 + 2
    # no sources at all: the default entries folder is missing, and the site says so instead of failing
    monkeypatch.setattr(site_gather, "ENTRIES_DIR", tmp_path / "entries")
    index = build_site([], tmp_path / "empty-site")
    assert "No entries yet" in index.read_text() and "No official entries yet" in index.read_text()
    assert "No hardware rows exist yet" in (index.parent / "hardware.html").read_text()
    assert "No source carries paper numbers" in (index.parent / "paper.html").read_text()
    # the command line builds the same, and a second build replaces the first site in place
    assert main(["site", "--out", str(tmp_path / "empty-site")]) == 0
    assert "site written to" in capsys.readouterr().out and index.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-site"]


def test_bad_sources_and_outputs_are_one_clear_error(built, tmp_path, capsys):
    with pytest.raises(SplitbenchError, match=r"no such folder .*expected an entry folder"):
        build_site([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SplitbenchError, match=r"plain: neither an entry folder .* nor a run directory"):
        build_site([tmp_path / "plain"], tmp_path / "out")
    assert main(["site", str(tmp_path / "plain"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "neither an entry folder" in err
    bad_card = tmp_path / "bad-card"
    bad_card.mkdir()
    (bad_card / "entry.yaml").write_text("- just\n- a list\n")
    with pytest.raises(SplitbenchError, match=r"entry card must be a YAML mapping"):
        build_site([bad_card], tmp_path / "out")
    # --out: a file, or a folder of someone else's files, is refused and left as it was
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(SplitbenchError, match=r"is a file; expected a folder"):
        build_site([built["run"]], tmp_path / "afile")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SplitbenchError, match=r"not empty and holds no site"):
        build_site([built["run"]], tmp_path / "mine")
    assert (tmp_path / "afile").read_text() == "keep" and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "out").exists()
    # a hardware record that is not JSON names its file
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("cache"))
    (run / "hardware").mkdir()
    (run / "hardware" / "h100.json").write_text("{not json")
    with pytest.raises(SplitbenchError, match=r"h100\.json: not readable JSON"):
        build_site([run], tmp_path / "out")


def test_a_corrupt_gallery_fails_the_build_and_keeps_the_previous_site(built, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(built["site"], site)
    before = (site / "index.html").read_text()
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("cache"))
    png = next((run / "records").glob("*.png"))
    png.write_bytes(png.read_bytes() + b"tampered")
    with pytest.raises(SplitbenchError, match=re.escape(png.name) + r": checksum does not match"):
        build_site([run], site)
    assert (site / "index.html").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "site"]  # no half-built folder left behind


# -- plots and the site extra ----------------------------------------------------------------------------------------
# a name that math text would parse (and fail on: there is no such macro); the figures must draw it as text
MATH_NAME = "a$\\nosuchmacro{x}_1^2$ % {b}"


def draw_every_plot(folder: Path) -> list[Path]:
    """Each figure once, with ``MATH_NAME`` in every place a name goes, an empty heatmap cell, points without
    intervals and a point off the plane."""
    E = Estimate
    ref = plots.Curve("ref", plots.REFERENCE_COLOR, [plots.Point(E(0.95, 0.93, 0.97), E(0.9, 0.85, 0.95), True)],
                      reference=True)
    named = plots.Curve(MATH_NAME, "#0072B2", [plots.Point(E(0.94, 0.9, 0.96), E(0.7, 0.6, 0.8)),
                                               plots.Point(E(0.9), E(0.5), True), plots.Point(E(math.nan), E(0.2))])
    alone = plots.Curve("single", "#E69F00", [plots.Point(E(0.92, 0.9, 0.94), E(0.6, 0.5, 0.7), True)])
    costs = [plots.CostPoint("ref", plots.REFERENCE_COLOR, 1.0, E(0.9, 0.85, 0.95), True, True),
             plots.CostPoint(MATH_NAME, "#0072B2", 0.6, E(0.5, 0.4, 0.6), True),
             plots.CostPoint("single", "#E69F00", 1.4, E(0.6))]
    return [plots.privacy_utility(folder / "pu.png", [ref, named, alone], [0.93, math.nan], title=MATH_NAME),
            plots.privacy_cost(folder / "cost.png", costs, MATH_NAME, budget=1.5),
            plots.leakage_heatmap(folder / "heatmap.png", ["ref", MATH_NAME], [plots.REFERENCE_COLOR, "#0072B2"],
                                  [f"{MATH_NAME}\n(attribute)", "recon\n(reconstruction)"],
                                  np.array([[0.9, 0.7], [0.4, math.nan]]))]


def test_plots_draw_names_as_text_and_the_same_bytes_every_time(tmp_path, monkeypatch):
    first, again = draw_every_plot(tmp_path / "a"), draw_every_plot(tmp_path / "b")
    for a, b in zip(first, again):
        assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.stat().st_size > 5000
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two draws of the same figure"
    # nothing on the plane (every point off it) still draws the axes
    off = [plots.CostPoint("x", "#0072B2", math.nan, Estimate(0.5))]
    assert plots.privacy_cost(tmp_path / "off.png", off, "basis").is_file()
    assert plots.privacy_utility(tmp_path / "off-pu.png", [], [math.nan]).is_file()
    # the name really is math text that would fail to parse: only the style's parsing switch keeps it as text
    monkeypatch.setitem(plots.STYLE, "text.parse_math", True)
    with pytest.raises(ValueError, match="nosuchmacro"):
        draw_every_plot(tmp_path / "c")


@pytest.mark.parametrize("package", ["seaborn", "matplotlib", "jinja2"])
def test_the_site_without_its_extra_is_one_line_saying_what_to_install(package, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now fails as if it were not installed
    for name in [n for n in sys.modules if n == "leaderboard.site" or n.startswith("leaderboard.site.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh (the originals come back after the test)
    with pytest.raises(SplitbenchError, match=re.escape("pip install 'splitbench[site]'")):
        import leaderboard.site  # noqa: F401
    assert main(["site", "--out", str(tmp_path / "site")]) == 2
    assert capsys.readouterr().err == (f"splitbench: error: the site needs the 'site' extra ({package} is not "
                                       "installed): pip install 'splitbench[site]'\n")
    assert not (tmp_path / "site").exists()


# -- a real browser -------------------------------------------------------------------------------------------------
INSTALL = ("install a browser with `apt-get install -y chromium chromium-driver` (Debian) and selenium with "
           "`pip install -e .[dev]`")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through the Debian chromedriver; fails under CI=true when it cannot start, else skips."""
    profile = tempfile.mkdtemp(prefix="splitbench-chromium-")
    try:
        from selenium import webdriver

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"),
                                  options=opts)
    except Exception as exc:  # whatever stops the browser from starting is reported the same way
        shutil.rmtree(profile, ignore_errors=True)
        message = f"cannot start headless Chromium ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the browser test: {INSTALL}")
        pytest.skip(f"{message}; {INSTALL}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    # get() may return while a file page is still "interactive" (its images loading); the page must still finish
    # loading: the wait fails the test (TimeoutException) when it does not within 30 s
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.execute_script("return document.readyState") == "complete"


def _screenshot(driver, folder: Path, name: str) -> Path:
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 120, 8000))
    out = folder / f"{name}.png"
    assert driver.save_screenshot(str(out))
    driver.set_window_size(1400, 1000)
    return out


def _page_is_clean(driver) -> None:
    assert driver.execute_script("return document.documentElement.getAttribute('data-pwned')") is None
    assert driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)") == []
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == [], errors


def _column(driver, table_id: str, index: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".map(r => r.cells[arguments[1]].getAttribute('data-sort'))", table_id, index)


def test_the_site_in_a_real_browser(built, browser, tmp_path):
    from selenium.webdriver.common.by import By

    started = time.perf_counter()
    shots = Path(os.environ.get("SPLITBENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    site = built["site"]

    _open(browser, built["index"])
    _page_is_clean(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert HOSTILE_DEFENSE in body  # the name is shown, as text
    assert "Official tracks" in body and "Unofficial" in body and "Markup Lab" in body
    ranks = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".track-card td.rank")]
    assert ranks and all(re.fullmatch(r"\d+(–\d+)?|–|bb only|incomplete", r) for r in ranks), ranks
    assert any(re.fullmatch(r"\d+(–\d+)?", r) for r in ranks)
    sort_buttons = browser.find_elements(By.CSS_SELECTOR, "table.sortable th button")
    assert sort_buttons, "sort.js did not run"
    _screenshot(browser, shots, "index")

    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#official .track-card h3 a"))
    link.click()
    assert "/tracks/" in browser.current_url
    _page_is_clean(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranking-table tbody tr")
    # two entries of one run: the reference and the markup-named defense once each, naming the other entry
    assert len(rows) >= 2
    assert "(the same records are in 1 other entry)" in browser.find_element(By.ID, "ranking-table").text
    rank_cells = [r.find_element(By.CSS_SELECTOR, "td.rank").text for r in rows]
    assert all(re.fullmatch(r"\d+(–\d+)?|–|bb only|incomplete", r) for r in rank_cells), rank_cells
    assert HOSTILE_DEFENSE in browser.find_element(By.ID, "ranking-table").text
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking-table .badge.ok")  # the verified entry
    # sorting: the knob table by utility (column 4 with the source column), ascending then descending
    heads = browser.find_elements(By.CSS_SELECTOR, "#knob-table thead th")
    col = next(i for i, h in enumerate(heads) if h.text.split("\n")[0].strip("↕↑↓ ") == "utility")
    before = _column(browser, "knob-table", col)
    heads[col].find_element(By.TAG_NAME, "button").click()
    up = _column(browser, "knob-table", col)
    assert [float(v) for v in up] == sorted(float(v) for v in before)
    assert heads[col].get_attribute("aria-sort") == "ascending"
    heads[col].find_element(By.TAG_NAME, "button").click()
    down = _column(browser, "knob-table", col)
    assert [float(v) for v in down] == sorted((float(v) for v in before), reverse=True)
    assert up != down and (up != before or down != before)
    track_shot = _screenshot(browser, shots, "track")

    gallery = next(p for p in (site / "defenses").glob("no-pruning-*.html"))
    _open(browser, gallery)
    _page_is_clean(browser)
    captions = [f.text for f in browser.find_elements(By.CSS_SELECTOR, "figure.recon figcaption")]
    assert captions and all("SSIM" in c and "PSNR" in c for c in captions)
    _screenshot(browser, shots, "gallery")

    hostile = next(p for p in (site / "defenses").glob("script-*.html"))
    _open(browser, hostile)
    _page_is_clean(browser)
    assert HOSTILE_AUTHOR in browser.find_element(By.CSS_SELECTOR, ".entry-card").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".entry-card a[href^='javascript']")

    for extra in ("paper.html", "hardware.html"):
        _open(browser, site / extra)
        _page_is_clean(browser)
    assert HOSTILE_HARDWARE in browser.find_element(By.TAG_NAME, "table").text
    assert track_shot.stat().st_size > 10_000
    print(f"browser checks: {time.perf_counter() - started:.1f} s; site build {built['build_seconds']:.1f} s; "
          f"screenshots in {shots}")


def test_track_page_shows_admission_matched_utility_and_at_floor(tmp_path):
    from tests.support.fake_runs import FakeCell, write_run

    def cells(defense, knob, attr, recon, **kw):
        return [FakeCell(defense, knob, "attr", attr, **kw), FakeCell(defense, knob, "recon", recon, **kw)]

    run = (cells("ref", 0, 0.9, 0.8, val_utility=0.95) + cells("d", 0.5, 0.6, 0.6, val_utility=0.95)
           + cells("d", 0.9, 0.1, 0.3, val_utility=0.93))
    write_run(tmp_path / "sel", run, bootstrap=300)
    index = build_site([tmp_path / "sel"], tmp_path / "site")
    (page,) = (index.parent / "tracks").glob("*.html")
    text = page.read_text()
    ranking = text.split('id="ranking-table"')[1].split("</table>")[0]
    assert "chosen in" in ranking and "borderline" in ranking and "val Δutility" in ranking
    assert re.search(r'<td class="rank" data-sort="[0-9.]+">\d+( \(\d+–\d+\))?</td>', ranking)
    assert 'id="matched-table"' in text and "reached" in text.split('id="matched-table"')[1].split("</table>")[0]
    assert "at floor" in text  # d@0.9's attribute attacker is below the task-label floor
    write_run(tmp_path / "pre", run, admission="preregistered", preregistered={"d": {"*": 0.5}})
    index = build_site([tmp_path / "pre"], tmp_path / "site2")
    (page,) = (index.parent / "tracks").glob("*.html")
    text = page.read_text()
    assert "preregistered for this track" in text and "within budget" in text
    assert '<span class="tag">preregistered</span>' in text
    # a preregistered setting just outside the budget, within a re-run's noise of it: not ranked, tagged borderline
    five = [c for s, v in enumerate([0.94, 0.935, 0.94, 0.93, 0.94]) for c in
            cells("ref", 0, 0.9, 0.8, val_utility=0.95, seed=s, n=2000)
            + cells("d", 0.5, 0.6, 0.6, val_utility=v, seed=s, n=2000)]
    write_run(tmp_path / "near", five, admission="preregistered", preregistered={"d": {"*": 0.5}}, bootstrap=300)
    index = build_site([tmp_path / "near"], tmp_path / "site3")
    (page,) = (index.parent / "tracks").glob("*.html")
    unranked = page.read_text().split("Not ranked (")[1].split("</p>")[0]
    assert "<code>d</code></a> <span" in unranked and '<span class="tag warn">borderline</span>' in unranked
    assert "re-run on other numerics" in page.read_text()


def test_track_page_shows_the_attacker_knowledge_view(tmp_path):
    from tests.support.fake_runs import FakeCell, write_run

    run = [FakeCell("ref", 0, "attr", 0.9), FakeCell("a", 0.5, "attr", 0.6),
           FakeCell("ref", 0, "attr", 0.7, aux_fraction=0.25), FakeCell("a", 0.5, "attr", 0.3, aux_fraction=0.25)]
    write_run(tmp_path / "run", run)
    index = build_site([tmp_path / "run"], tmp_path / "site")
    (page,) = (index.parent / "tracks").glob("*.html")
    section = page.read_text().split('id="knowledge"')[1].split("</section>")[0]
    assert "25% of aux" in section and "attr" in section and section.count("<tr>") == 3  # head + ref + a


def test_an_official_entry_ranks_on_the_attacks_its_suite_runs_today(built, tmp_path, monkeypatch):
    """An entry made before an attack left the official suite ranks like one made after: its records of that attack
    stay in the entry but do not count, so the two entries' reference rows are the same cells and show once."""
    full = site_gather.load_source(built["lab"])
    assert full.manifest["attacks_left_out"] == []
    assert any("inversion_decoder" in r.attacks for r in full.tracks[0].rows)
    # the entry made after: the same run without the attack's records (as a run of the trimmed suite writes it)
    after = shutil.copytree(built["twin"], tmp_path / "after")
    man_path = next((after / "run" / "manifests").glob("*.json"))
    man = json.loads(man_path.read_text())
    man["cells"] = [c for c in man["cells"] if "__inversion_decoder__" not in c]
    man_path.write_text(json.dumps(man))
    for p in (after / "run" / "records").glob("*__inversion_decoder__*"):
        p.unlink()
    today = types.SimpleNamespace(attacks=[types.SimpleNamespace(label="attribute_inference")])
    monkeypatch.setattr(site_gather, "load_suite", lambda name: today)
    lab, later = site_gather.load_source(built["lab"]), site_gather.load_source(after)
    assert lab.manifest["attacks_left_out"] == ["inversion_decoder"] and later.manifest["attacks_left_out"] == []
    assert all(set(r.attacks) == {"attribute_inference"} for r in lab.tracks[0].rows)
    (st,) = site_tracks([lab, later])
    assert len(st.rows) == len(lab.tracks[0].rows) and all(r.also == [later] for r in st.rows)
    # the track page names what it left out
    index = build_site([built["lab"]], tmp_path / "site")
    page = "".join(p.read_text() for p in index.parent.rglob("*.html"))
    assert "kept in the entry but not ranked" in page and "<code>inversion_decoder</code>" in page
    # without the rule the two entries' rows are different cells: each shows twice
    monkeypatch.setattr(site_gather, "_official_attacks", lambda card: None)
    (st,) = site_tracks([site_gather.load_source(built["lab"]), site_gather.load_source(after)])
    assert len(st.rows) == 2 * len(lab.tracks[0].rows)


def test_a_track_with_admission_seeds_says_how_many_seeds_admission_read(tmp_path):
    from tests.support.fake_runs import FakeCell, write_run

    def cells(defense, knob, seed):
        return [FakeCell(defense, knob, attack, value, seed=seed) for attack, value in (("attr", 0.6), ("recon", 0.5))]

    admission_only = [FakeCell(d, k, "model", seed=s) for d, k in (("ref", 0), ("a", 0.5)) for s in (5, 6)]
    run = cells("ref", 0, 0) + cells("a", 0.5, 0) + admission_only
    write_run(tmp_path / "run", run)
    index = build_site([tmp_path / "run"], tmp_path / "site")
    (track,) = (index.parent / "tracks").glob("*.html")
    text = track.read_text()
    assert "1 seed (+ 2 for admission only)" in text
    assert "Admission reads 3 seeds: the 1 attacked and 2 more whose models were trained and validated" in text
    assert "model" not in [a for a in re.findall(r"<strong>([^<]+)</strong>", text)]  # no attack named model


def test_a_setting_attacked_at_fewer_seeds_says_so_in_the_knob_table(tmp_path):
    from tests.support.fake_runs import FakeCell, write_run

    run = [FakeCell(d, k, "attr", 0.5, seed=s) for s in range(3) for d, k in (("ref", 0), ("a", 0.5))]
    run += [FakeCell("a", 0.25, "attr", 0.6, seed=0)]
    write_run(tmp_path / "run", run, admission="preregistered", preregistered={"a": {"*": 0.5}})
    index = build_site([tmp_path / "run"], tmp_path / "site")
    (track,) = (index.parent / "tracks").glob("*.html")
    text = track.read_text()
    assert text.count("attacked at 1 of 3 seeds") == 1 and "attacked at 3 of 3" not in text


def test_the_borderline_band_of_a_track_of_several_entries_pools_every_entry_s_seeds(tmp_path):
    """Entries of one official track are one experiment split in folders: a seed that collapses in one entry is
    evidence that any entry's seed may collapse on another machine, so the site's band pools every entry's seed
    deviations. Alone, the steady entry's setting is clearly admitted; beside the wobbly entry it is borderline,
    still admitted (admission itself does not move)."""
    from leaderboard.protocol import TableBuilder, tail_band
    from tests.support.fake_runs import FakeCell, write_run

    def five(defense, vals):
        knob = 0 if defense == "ref" else 0.5
        return [FakeCell(defense, knob, attack, 0.5, val_utility=v, seed=s, n=2000)
                for s, v in enumerate(vals) for attack in ("attr", "recon")]

    ref = five("ref", [0.95] * 5)
    tight = [0.9450, 0.9460, 0.9440, 0.9455, 0.9445]
    write_run(tmp_path / "one", ref + five("steady", [0.9485, 0.9495, 0.9490, 0.9500, 0.9480])
              + five("calm0", tight) + five("calm1", tight), admission="preregistered", bootstrap=300,
              preregistered={d: {"*": 0.5} for d in ("steady", "calm0", "calm1")})
    write_run(tmp_path / "two", ref + five("wobbly", [0.9450, 0.9460, 0.8850, 0.9455, 0.9445]) + five("calm2", tight),
              admission="preregistered", bootstrap=300, preregistered={d: {"*": 0.5} for d in ("wobbly", "calm2")})
    (alone,) = site_tracks(site_gather.load_sources([tmp_path / "one"]))
    steady = next(r.row for r in alone.rows if r.defense == "steady")
    assert steady.selected and not steady.borderline
    (both,) = site_tracks(site_gather.load_sources([tmp_path / "one", tmp_path / "two"]))
    assert both.multi
    rows = {r.defense: r.row for r in both.rows}
    others = [r for d, r in rows.items() if d != "ref"]
    pooled = TableBuilder.pooled_deviations(others, 0.02)
    assert len(pooled) == 25 and rows["steady"].admission_margin == pytest.approx(tail_band(pooled, 5))
    assert rows["steady"].selected and rows["steady"].borderline
    index = build_site([tmp_path / "one", tmp_path / "two"], tmp_path / "site")
    (page,) = (index.parent / "tracks").glob("*.html")
    assert "pooled seed deviations of every entry" in page.read_text()


def test_a_verification_line_counts_its_cells_in_words():
    from leaderboard.site.gather import Verification

    def line(cells, threads=1, mode="exact", status="verified"):
        return Verification(status, mode, "AMD EPYC", "cpu", threads, cells, "2026-12-07T07:04:36+00:00").line

    assert line(1) == "exact on AMD EPYC (1 thread), 1 cell, 2026-12-07"
    assert line(6, 2, "consistency", "consistent") == "consistent on AMD EPYC (2 threads), 6 cells, 2026-12-07"
    assert line("?") == "exact on AMD EPYC (1 thread), ? cells, 2026-12-07"  # a report that does not say
