"""The site's own view of the sources: tracks that may span several entries, and one page's worth per defense.

Rows keep the numbers :mod:`leaderboard.protocol` computed for their own run (admission, Δutility and
guards are per run, against that run's reference). A track shown on the site gathers the rows of every source
of the same suite and (scenario, backbone, split); where several sources meet on one track, the rows each run
ranked are ranked again together, replicate by replicate: every source of a track resamples with the same
crossed draw (it depends only on the track and its sizes), so a rank interval there is the same computation as in
one run (:func:`benchmark.measure.intervals.rank_intervals`). Rows whose replicates cannot be lined up (other
seeds or sizes) are ranked on their point estimates only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import numpy as np

from benchmark.measure.intervals import Estimate, rank_intervals
from leaderboard.protocol import VIEWS, Matched, Row, TableBuilder, Track
from leaderboard.site.gather import Gallery, Source


def slug(text: str) -> str:
    """A file-name-safe, unique-enough name: readable ASCII part plus a short hash of the full text."""
    readable = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-") or "x"
    return f"{readable}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"


@dataclasses.dataclass
class SiteRow:
    """One defense @ knob of one source on a site track, with its rank among every source of the track."""

    source: Source
    track: Track
    row: Row
    rank: tuple[int, int] | None = None
    rank_blackbox: tuple[int, int] | None = None
    rank_transfer: tuple[int, int] | None = None
    rank_point: dict[str, int] = dataclasses.field(default_factory=dict)  # view -> the point estimate's rank
    also: list[Source] = dataclasses.field(default_factory=list)  # other sources that hold exactly these cells

    @property
    def defense(self) -> str:
        return self.row.defense

    @property
    def source_text(self) -> str:
        """The source's name, and how many other sources ship the very same records (a shared reference run)."""
        if not self.also:
            return self.source.label
        n = len(self.also)
        return f"{self.source.label} (the same records are in {n} other {'entry' if n == 1 else 'entries'})"

    @property
    def knob_text(self) -> str:
        return f"{self.row.knob}={self.row.knob_value:g}"

    @property
    def seed_text(self) -> str:
        """"attacked at K of N seeds" for a setting attacked at fewer of its track's seeds (a suite's
        ``curve_seeds``), else empty."""
        k = self.track.fewer_seeds(self.row)
        return "" if k is None else f"attacked at {k} of {len(self.track.seeds)} seeds"

    @property
    def is_reference(self) -> bool:
        return self.row.defense == self.track.reference

    @property
    def status(self) -> str:
        """What stands in the rank column when there is no rank: why the row is not ranked."""
        if not self.row.white_box_client:
            return "bb only"
        if not self.row.complete:
            return "incomplete"
        return ""


@dataclasses.dataclass
class SiteMatched:
    """One defense's privacy at matched utility from one source, ranked among every source of the track."""

    source: Source
    matched: Matched
    rank: tuple[int, int] | None = None
    rank_point: int | None = None

    @property
    def defense(self) -> str:
        return self.matched.defense


@dataclasses.dataclass
class SiteTrack:
    """One (suite, scenario, backbone, split) of the site, official or not, over one or more sources."""

    suite: str
    official: bool
    scenario: str
    backbone: str
    split: str
    parts: list[tuple[Source, Track]]
    rows: list[SiteRow] = dataclasses.field(default_factory=list)
    matched: list[SiteMatched] = dataclasses.field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.scenario} · {self.backbone} @ {self.split}"

    @property
    def slug(self) -> str:
        return slug(f"{self.scenario} {self.backbone} {self.split} {self.suite} {'official' if self.official else ''}")

    @property
    def sources(self) -> list[Source]:
        return [s for s, _ in self.parts]

    @property
    def multi(self) -> bool:
        return len(self.parts) > 1

    @property
    def attacks(self) -> list[str]:
        return sorted({a for _, t in self.parts for a in t.attacks})

    @property
    def kinds(self) -> dict[str, str]:
        return {a: k for _, t in self.parts for a, k in t.kinds.items()}

    @property
    def data_free_attacks(self) -> list[str]:
        """Attacks that read no aux data, over every part: the zero-data end of attacker knowledge."""
        return sorted({a for _, t in self.parts for a in t.data_free_attacks})

    @property
    def defenses(self) -> list[str]:
        return sorted({r.defense for r in self.rows})

    @property
    def ranked(self) -> bool:
        return any(t.ranked for _, t in self.parts)

    @property
    def flags(self) -> list[str]:
        return [(f"{s.label}: {f}" if self.multi else f) for s, t in self.parts for f in t.flags]

    @property
    def weak_attacks(self) -> list[str]:
        return [(f"{a} ({s.label})" if self.multi else a) for s, t in self.parts for a in t.weak_attacks]

    def tuned(self, attack: str) -> bool:
        return any(t.tuned(attack) for _, t in self.parts if attack in t.attacks)

    @property
    def admission(self) -> str:
        """The admission rule of the track's sources (``mixed`` when they differ)."""
        rules = {t.admission for _, t in self.parts}
        return rules.pop() if len(rules) == 1 else "mixed"

    @property
    def budget(self) -> float:
        return self.parts[0][1].budget

    def selected(self) -> list[SiteRow]:
        """The ranked view: each source's selected row per defense, best first, unranked ones last."""
        rows = [r for r in self.rows if r.row.selected]
        return sorted(rows, key=lambda r: (r.rank is None, r.rank_point.get("rank", 0), _order(r.row.privacy),
                                           r.defense))

    def unselected_defenses(self) -> list[str]:
        chosen = {(id(r.source), r.defense) for r in self.rows if r.row.selected}
        return sorted({r.defense for r in self.rows if (id(r.source), r.defense) not in chosen})

    def borderline_unranked(self) -> set[str]:
        """Defenses whose preregistered setting is not admitted but lies within a re-run's noise of the budget."""
        return {r.defense for r in self.rows if r.row.borderline and not r.row.selected}

    def blackbox(self) -> list[SiteRow]:
        return sorted([r for r in self.rows if r.rank_blackbox],
                      key=lambda r: (r.rank_point.get("rank_blackbox", 0), r.defense))

    def transfer(self) -> list[SiteRow]:
        return sorted([r for r in self.rows if r.rank_transfer],
                      key=lambda r: (r.rank_point.get("rank_transfer", 0), r.defense))

    def knob_rows(self) -> list[SiteRow]:
        """Every setting run, the reference first, then by defense and knob."""
        return sorted(self.rows, key=lambda r: (not r.is_reference, r.defense, r.source.label, r.row.knob_value))

    def references(self) -> list[SiteRow]:
        """Each source's reference row (the one its knob selection and Δutility are measured against)."""
        return [r for r in self.rows if r.is_reference and r.row.selected]


@dataclasses.dataclass
class DefenseView:
    """Everything the site shows about one defense: its cards, its rows per track, its galleries."""

    name: str
    cards: list[Source] = dataclasses.field(default_factory=list)
    tracks: list[tuple[SiteTrack, list[SiteRow]]] = dataclasses.field(default_factory=list)
    galleries: dict[str, list[tuple[Source, Gallery]]] = dataclasses.field(default_factory=dict)  # by track slug

    @property
    def slug(self) -> str:
        return slug(self.name)


def _order(e: Estimate) -> float:
    return math.inf if math.isnan(e.value) else e.value


def rerank(rows: list[SiteRow], view: str) -> None:
    """Rank together, in ``view`` (a key of :data:`~leaderboard.protocol.VIEWS`), the rows each source ranked on
    its own (so each run's admission rules still hold), replicate by replicate where their draws line up."""
    figure = VIEWS[view]
    eligible = [r for r in rows if getattr(r.row, view) is not None]
    points = [(r.row.family["transfer"] if figure == "transfer" else getattr(r.row, figure)).value for r in eligible]
    reps = [r.row.reps.get(f"rank/{figure}") for r in eligible]
    lined_up = bool(reps) and all(x is not None and len(x) > 1 for x in reps) and len({len(x) for x in reps}) == 1
    for r, (p, lo, hi) in zip(eligible, rank_intervals(points, np.stack(reps) if lined_up else None)):
        setattr(r, view, (lo, hi))
        r.rank_point[view] = p


def site_tracks(sources: list[Source]) -> list[SiteTrack]:
    """The site's tracks, official first, each with its rows and their ranks across sources."""
    by_key: dict[tuple, SiteTrack] = {}
    for s in sources:
        for t in s.tracks:
            key = (not s.official, s.suite, t.scenario, t.backbone, t.split)
            st = by_key.setdefault(key, SiteTrack(s.suite, s.official, t.scenario, t.backbone, t.split, []))
            st.parts.append((s, t))
            st.rows += [SiteRow(s, t, r) for r in t.rows]
    tracks = [by_key[k] for k in sorted(by_key)]
    for st in tracks:
        st.rows = _merge_same_records(st.rows)
        _pool_bands(st)
        st.matched = _matched(st)
        if not st.multi:
            for r in st.rows:
                r.rank, r.rank_blackbox, r.rank_transfer = r.row.rank, r.row.rank_blackbox, r.row.rank_transfer
                r.rank_point = dict(r.row.rank_point)
            continue
        for view in VIEWS:
            rerank(st.rows, view)
    return tracks


def _pool_bands(st: SiteTrack) -> None:
    """On a track of several sources under the preregistered rule, each preregistered row's borderline band from
    the seed spread and pooled seed deviations of every source's settings, as one run of them all would have it,
    not from its own source's settings alone (a seed that collapses in one entry is evidence about them all).
    Which settings are admitted does not change; only the band, the *borderline* flag and the note."""
    if not st.multi:
        return
    rows = [r for r in st.rows if r.track.admission == "preregistered"]
    others = [r.row for r in rows if r.row.defense != r.track.reference]
    if not others:
        return
    spread = TableBuilder.seed_spread(others)
    deviations = TableBuilder.pooled_deviations(others, rows[0].track.budget)
    for r in rows:
        if r.row.preregistered and r.row.defense != r.track.reference:
            TableBuilder.mark_borderline(r.row, r.track.budget, spread, deviations)


def _matched(st: SiteTrack) -> list[SiteMatched]:
    """Every source's privacy at matched utility, one per defense and figure (a reference run shipped in several
    entries shows once), ranked together replicate by replicate where the draws line up."""
    out: list[SiteMatched] = []
    seen: dict[tuple, SiteMatched] = {}
    for s, t in st.parts:
        for m in t.matched.values():
            key = (m.defense, m.privacy, m.settings)
            if math.isnan(m.privacy.value):
                continue
            if key not in seen:
                seen[key] = SiteMatched(s, m)
                out.append(seen[key])
            elif s.describes(m) and not seen[key].source.describes(m):
                seen[key].source = s  # shown as the entry whose card describes the defense, not the first that ships it
    reps = [x.matched.reps for x in out]
    lined_up = bool(reps) and all(r is not None and len(r) > 1 for r in reps) and len({len(r) for r in reps}) == 1
    for x, (p, lo, hi) in zip(out, rank_intervals([x.matched.privacy.value for x in out],
                                                   np.stack(reps) if lined_up else None)):
        x.rank, x.rank_point = (lo, hi), p
    return sorted(out, key=lambda x: (x.rank_point or 0, x.defense))


def _merge_same_records(rows: list[SiteRow]) -> list[SiteRow]:
    """One row for rows of several sources that hold the very same cells (same config hashes, statuses and per-sample
    files): each entry of a run ships the reference defense's records, which must show once, not once per entry.
    The row kept is the one from a source whose card describes that defense, else the first."""
    groups: dict[tuple, list[SiteRow]] = {}
    for r in rows:
        key = (r.row.defense, r.row.knob_value, r.row.cells) if r.row.cells else (id(r),)
        groups.setdefault(key, []).append(r)
    out = []
    for group in groups.values():
        keep = next((r for r in group if r.source.describes(r.row)), group[0])
        keep.also = [r.source for r in group if r is not keep]
        out.append(keep)
    return out


def defense_views(sources: list[Source], tracks: list[SiteTrack]) -> list[DefenseView]:
    """One view per defense name seen anywhere, with the tracks it ran on and its reconstruction galleries."""
    views: dict[str, DefenseView] = {}
    for st in tracks:
        for name in st.defenses:
            views.setdefault(name, DefenseView(name)).tracks.append((st, [r for r in st.knob_rows()
                                                                          if r.defense == name]))
        for s, t in st.parts:
            for g in s.galleries:
                if g.track == t.key and g.defense in views:
                    shown = views[g.defense].galleries.setdefault(st.slug, [])
                    if not any(g.sha256 and g.sha256 == other.sha256 for _, other in shown):  # one image, one place
                        shown.append((s, g))
    for s in sources:  # a card goes with the rows of its own source that it describes (a variant's row included)
        for name in sorted({r.defense for t in s.tracks for r in t.rows if s.describes(r)}):
            if name in views:
                views[name].cards.append(s)
    for v in views.values():
        for items in v.galleries.values():
            items.sort(key=lambda sg: (sg[1].knob_value, sg[1].attack, sg[1].seed, sg[0].label))
    return [views[k] for k in sorted(views)]
