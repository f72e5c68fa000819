"""Write the static site: pages from Jinja2 templates (autoescaped), local CSS and JS, PNG plots, galleries.

Layout of the output folder::

    index.html                 tracks (official first, unofficial apart), defenses, sources
    tracks/<track>.html        ranked table, plots, black-box and transfer views, every knob setting, flags
    defenses/<defense>.html    card(s), knob curve per track, per-attack numbers, reconstruction galleries
    paper.html                 paper vs splitbench, for runs whose manifest carries a paper block
    hardware.html              hardware records found in the sources' hardware/ folders
    assets/                    site.css, palette.css (one colour per defense), sort.js, favicon.svg
    plots/, galleries/         PNG files

The site is built in a fresh folder beside ``--out`` and moved into place only when complete, so a failure
leaves the previous site (or nothing) there, never half a site; a folder that is not empty and was not written
by this command is never replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from benchmark.core.errors import SplitbenchError
from benchmark.store.records import package_version
from leaderboard.protocol import admission_text
from leaderboard.site import plots
from leaderboard.site.gather import ENTRIES_DIR, Source, default_sources, load_sources
from leaderboard.site.tables import site_markdown
from leaderboard.site.views import DefenseView, SiteRow, SiteTrack, defense_views, site_tracks, slug

MARKER = ".splitbench-site"
STATIC = ("site.css", "sort.js", "favicon.svg")


def build_site(sources: Sequence[str | Path] | None, out: str | Path) -> Path:
    """Build the static leaderboard site from entry folders and run directories; return its ``index.html``.

    Args:
        sources: entry folders or run directories; empty or ``None`` for every entry under
            ``entries/`` (an empty or missing folder gives a site that says so).
        out: the folder to write; created if missing, replaced if it holds an earlier site.

    Example:
        >>> build_site(["runs/quick"], "site")  # doctest: +SKIP
        PosixPath('site/index.html')
    """
    out = Path(out)
    from_default = not sources
    loaded = load_sources(list(sources) if sources else default_sources())
    _check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    except OSError as exc:
        raise SplitbenchError(f"--out {out}: cannot write there ({exc.strerror or exc}); expected a writable "
                              "folder") from exc
    try:
        SiteWriter(loaded, staging, from_default).write()
        _move_into_place(staging, out)
    except OSError as exc:
        raise SplitbenchError(f"--out {out}: could not write the site ({exc.strerror or exc}: "
                              f"{exc.filename or out}); the previous contents are unchanged") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def cmd_site(args: Any) -> int:
    """``splitbench site [ENTRY_OR_RUN ...] --out DIR``: build the site and say where it is."""
    index = build_site(args.sources, args.out)
    print(f"splitbench: site written to {index} (open it in a browser; every file it needs is in {index.parent}); "
          f"its tables as markdown: {index.parent / 'leaderboard.md'}")
    return 0


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SplitbenchError(f"--out {out}: is a file; expected a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SplitbenchError(f"--out {out}: folder is not empty and holds no site written by `splitbench site` "
                              f"(no {MARKER}); expected a new, empty or earlier site folder")


def _move_into_place(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "site")
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old / "site", out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- formatting helpers (Jinja filters and tests) -----------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_num(v: Any, digits: int = 3, sign: bool = False) -> str:
    """A number for a table cell: fixed decimals, thousands separators from 1,000, a true minus sign."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return str(v)
    if round(v, digits) == 0:
        v = 0.0  # no "-0.00"
    text = f"{v:+,.0f}" if abs(v) >= 1000 and sign else f"{v:,.0f}" if abs(v) >= 1000 else (
        f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}")
    return text.replace("-", "−")


def fmt_si(v: Any) -> str:
    """Large counts in engineering form (3.06 M), small ones in full."""
    if not _finite(v):
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:g}"


def sort_key(v: Any) -> str:
    """The ``data-sort`` value of a numeric cell: the number, or empty (sorted last) when there is none."""
    return repr(float(v)) if _finite(v) else ""


def rank_of(item: Any, view: str = "rank") -> str:
    """A site row's rank in ``view`` as the tables write it: the point estimate's rank and its interval."""
    from leaderboard.render import rank_text

    point = item.rank_point.get(view) if isinstance(item.rank_point, dict) else item.rank_point
    return rank_text(getattr(item, view), point)


def rank_key(item: Any, view: str = "rank") -> str:
    """The ``data-sort`` value of a rank cell: the point rank, ties broken by the interval's width."""
    rank = getattr(item, view)
    if rank is None:
        return ""
    point = item.rank_point.get(view) if isinstance(item.rank_point, dict) else item.rank_point
    return repr((point or rank[0]) + (rank[1] - rank[0]) / 1000.0)


def is_link(v: Any) -> bool:
    """Only plain web addresses become links (a card's ``javascript:`` URL stays text)."""
    return isinstance(v, str) and v.strip().lower().startswith(("https://", "http://")) and " " not in v.strip()


def flat(v: Any) -> str:
    """A card or hardware value as one line of text (lists joined, mappings as key: value)."""
    if isinstance(v, dict):
        return "; ".join(f"{k}: {flat(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(flat(x) for x in v)
    if v is None:
        return "–"
    return str(v)


def day(v: Any) -> str:
    """The date part of an ISO timestamp (other text as it is)."""
    text = "?" if v in (None, "") else str(v)
    return text[:10] if len(text) > 10 and text[4:5] == "-" and text[10:11] == "T" else text


def noun(n: int, one: str, many: str | None = None) -> str:
    """``one`` for a count of 1, else ``many`` (default: ``one`` + "s")."""
    return one if n == 1 else (many or one + "s")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("leaderboard.site", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(num=fmt_num, si=fmt_si, sortkey=sort_key, rank=rank_of, rankkey=rank_key, slug=slug,
                       flat=flat, noun=noun, day=day)
    env.tests.update(finite=_finite, link=is_link)
    from benchmark.measure.scoring.convergence import rule_text

    env.globals["convergence_rule"] = rule_text()
    env.globals["admission_text"] = admission_text
    return env


# -- the writer -----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Figure:
    """A figure of a page: its file (relative to the site root), alt text, caption and display size in CSS pixels
    (the PNG is drawn at 1.5 device pixels per CSS pixel, so it stays sharp on high-density screens)."""

    src: str
    alt: str
    caption: str
    width: int = 0
    height: int = 0

    @classmethod
    def of(cls, root: Path, src: str, alt: str, caption: str) -> Figure:
        from PIL import Image

        with Image.open(root / src) as im:
            w, h = im.size
        scale = 96 / plots.DPI
        return cls(src, alt, caption, round(w * scale), round(h * scale))


class SiteWriter:
    """Renders every page of the site into ``root`` (an empty folder)."""

    def __init__(self, sources: list[Source], root: Path, from_default: bool):
        self.sources = sources
        self.root = root
        self.from_default = from_default
        self.tracks = site_tracks(sources)
        self.defenses = defense_views(sources, self.tracks)
        references = {t.reference for s in sources for t in s.tracks}
        self.colors = plots.defense_colors([d.name for d in self.defenses], references)
        self.env = _environment()
        self.written: list[Path] = []

    # -- helpers ----------------------------------------------------------------------------------------------------
    def render(self, template: str, rel: str, **context: Any) -> None:
        depth = rel.count("/")
        page = self.env.get_template(template).render(root="../" * depth, site=self.site_info(), rel=rel,
                                                      **context)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        self.written.append(path)

    def site_info(self) -> dict[str, Any]:
        updated = sorted(str(s.manifest.get("updated", ""))[:10] for s in self.sources)
        return {"version": package_version(), "sources": len(self.sources), "data_date": updated[-1] if updated
                else "", "colors": self.colors}

    def color(self, name: str) -> str:
        return self.colors.get(name, plots.REFERENCE_COLOR)

    # -- the whole site ---------------------------------------------------------------------------------------------
    def write(self) -> None:
        assets = self.root / "assets"
        assets.mkdir(parents=True)
        static = resources.files("leaderboard.site") / "static"
        for name in STATIC:
            (assets / name).write_bytes((static / name).read_bytes())
        (assets / "palette.css").write_text(self.palette_css(), encoding="utf-8")
        track_figs = {st.slug: self.track_figures(st) for st in self.tracks}
        for st in self.tracks:
            self.render("track.html.j2", f"tracks/{st.slug}.html", track=st, figures=track_figs[st.slug],
                        nav="tracks")
        for d in self.defenses:
            self.render("defense.html.j2", f"defenses/{d.slug}.html", d=d, sections=self.defense_sections(d),
                        nav="defenses")
        self.render("paper.html.j2", "paper.html", sources=[s for s in self.sources if s.paper_rows], nav="paper")
        self.render("hardware.html.j2", "hardware.html", **self.hardware_table(), nav="hardware")
        self.render("index.html.j2", "index.html", official=[t for t in self.tracks if t.official],
                    unofficial=[t for t in self.tracks if not t.official], defenses=self.defenses,
                    sources=self.sources, from_default=self.from_default,
                    entries_dir=f"{ENTRIES_DIR.name}/", nav="index")
        (self.root / "leaderboard.md").write_text(site_markdown(self.tracks), encoding="utf-8")
        (self.root / MARKER).write_text("written by `splitbench site`; the folder is replaced on the next build\n")

    def palette_css(self) -> str:
        lines = ["/* one colour per defense, the same in every table and plot */"]
        for name, color in sorted(self.colors.items()):
            lines.append(f".d-{slug(name)} {{ --dc: {color}; }}")
        return "\n".join(lines) + "\n"

    # -- tracks -----------------------------------------------------------------------------------------------------
    def curves(self, rows: list[SiteRow], multi: bool) -> list[plots.Curve]:
        by: dict[tuple[int, str], list[SiteRow]] = defaultdict(list)
        for r in rows:
            by[(id(r.source), r.defense)].append(r)
        curves = []
        for group in by.values():
            group.sort(key=lambda r: r.row.knob_value)
            first = group[0]
            label = plots.short(first.defense, 30) + (f" · {plots.short(first.source.label, 16)}" if multi else "")
            curves.append(plots.Curve(label, self.color(first.defense),
                                      [plots.Point(r.row.utility, r.row.privacy, r.row.selected) for r in group],
                                      reference=first.is_reference))
        return sorted(curves, key=lambda c: (not c.reference, c.label))

    def budget_lines(self, st: SiteTrack) -> list[float]:
        return [r.row.utility.value - r.track.budget for r in st.references()]

    def track_figures(self, st: SiteTrack) -> list[Figure]:
        figs = []
        pu = f"plots/{st.slug}-privacy-utility.png"
        plots.privacy_utility(self.root / pu, self.curves(st.rows, st.multi), self.budget_lines(st))
        figs.append(Figure.of(self.root, pu, f"privacy–utility plot of {st.title}",
                           "Privacy–utility: each defense's knob settings (x: utility, y: privacy score, 95% "
                           "intervals on both); the reference as a star, the ranked setting of each defense "
                           "outlined, the dashed line at the reference's utility minus the budget."))
        chosen = st.selected()
        costly = [r for r in chosen if r.row.rank is not None and r.row.cost_ratio]
        if costly:
            pc = f"plots/{st.slug}-privacy-cost.png"
            track = costly[0].track
            points = [plots.CostPoint(plots.short(r.defense, 30) + f" @ {r.row.knob_value:g}"
                                      + (f" · {plots.short(r.source.label, 16)}" if st.multi else ""),
                                      self.color(r.defense), r.row.cost_ratio.get("client_macs", math.nan),
                                      r.row.privacy, r.row.pareto, r.is_reference) for r in costly]
            plots.privacy_cost(self.root / pc, points, track.cost_basis, track.cost_budget.get("client_macs"))
            figs.append(Figure.of(self.root, pc, f"privacy by client cost plot of {st.title}",
                               "Privacy × client cost: each ranked setting's privacy score (95% interval) against "
                               f"its client MACs as a ratio to the reference's ({track.cost_basis}); the Pareto "
                               "front (no other ranked row is clearly more private and cheaper) outlined and "
                               "joined; the dashed line is the suite's cost budget, if it has one."))
        if chosen and st.attacks:
            values = np.array([[r.row.attacks[a].leakage.value if a in r.row.attacks
                                and r.row.attacks[a].status == "ok" else math.nan for a in st.attacks]
                               for r in chosen])
            labels = [f"{plots.short(r.defense, 30)} @ {r.row.knob_value:g}"
                      + (f" · {plots.short(r.source.label, 16)}" if st.multi else "") for r in chosen]
            columns = [f"{a}\n({st.kinds.get(a, '')})" for a in st.attacks]
            hm = f"plots/{st.slug}-heatmap.png"
            plots.leakage_heatmap(self.root / hm, labels, [self.color(r.defense) for r in chosen], columns, values)
            figs.append(Figure.of(self.root, hm, f"attack by defense leakage heatmap of {st.title}",
                               "Attack × defense: each defense's ranked setting against every attack, leakage on "
                               "the attack family's scale (0 = no more than the floor, 1 = as much as everything); "
                               "blank: not run or not applicable."))
        return figs

    # -- defenses ---------------------------------------------------------------------------------------------------
    def defense_sections(self, d: DefenseView) -> list[dict[str, Any]]:
        sections = []
        for st, rows in d.tracks:
            refs = [r for r in st.rows if r.is_reference and not any(x.is_reference for x in rows)]
            fig_rel = f"plots/{st.slug}-{d.slug}-curve.png"
            plots.privacy_utility(self.root / fig_rel, self.curves(rows + refs, st.multi), self.budget_lines(st),
                                  size=(5.6, 3.4))
            gallery = []
            for source, g in d.galleries.get(st.slug, []):
                digest = hashlib.sha256(g.file.read_bytes()).hexdigest()[:16]
                rel = f"galleries/{digest}.png"
                if not (self.root / rel).exists():
                    (self.root / "galleries").mkdir(exist_ok=True)
                    shutil.copyfile(g.file, self.root / rel)
                gallery.append({"src": rel, "g": g, "source": source})
            sections.append({"track": st, "rows": rows, "figure": Figure.of(
                self.root, fig_rel, f"knob curve of {d.name} on {st.title}",
                "Knob curve: each setting's utility and privacy score with 95% intervals, the reference as a star, "
                "the ranked setting outlined, the dashed line at the utility budget."), "gallery": gallery})
        return sections

    # -- hardware ---------------------------------------------------------------------------------------------------
    def hardware_table(self) -> dict[str, Any]:
        columns: list[str] = []
        rows = []
        for s in self.sources:
            for rec in s.hardware:
                for k in rec:
                    if str(k) not in columns:
                        columns.append(str(k))
                rows.append((s, {str(k): v for k, v in rec.items()}))
        return {"columns": columns, "hw_rows": rows}
