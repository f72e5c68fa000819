"""What a site is built from: entry folders and run directories, read into :class:`Source` objects.

A source is either a **run directory** (the ``--out`` of ``splitbench run``: ``records/`` and ``manifests/``) or an
**entry folder** (``entry.yaml``, the card; ``run/``, a run directory; ``checksums.json``; and, once verified,
``verification.json``: one result per verifying machine, or a single result in the older form, each shown as one
:class:`Verification` line). Entries of the ``standard`` suite are official; everything else is shown apart. Entries
are not validated here (``splitbench verify`` does that): this module reads only what the pages show, and turns
anything it cannot read into one :class:`~benchmark.core.errors.SplitbenchError` line.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import json_number, sha256_file
from benchmark.store.records import iter_records, load_frame
from benchmark.suites import load_suite
from leaderboard.entry import OFFICIAL_SUITES
from leaderboard.entry.objects import complete_entry
from leaderboard.protocol import CellData, Track
from leaderboard.render import build_tracks, paper_rows

ENTRIES_DIR = Path(__file__).resolve().parents[2] / "entries"  # the checkout's entries/ (data, not code)


@dataclasses.dataclass
class Gallery:
    """One reconstruction gallery PNG of a run: eval images in the top row, an attack's reconstructions below."""

    track: tuple[str, str, str]
    defense: str
    knob: str
    knob_value: float
    attack: str
    seed: int
    file: Path
    ssim: float
    psnr: float
    sha256: str = ""


@dataclasses.dataclass
class Verification:
    """One verifying machine's result, as the pages show it ("exact on AMD EPYC (1 thread)")."""

    status: str  # verified / mismatch (exact), consistent / inconsistent (another machine), or an older word
    mode: str  # exact, consistency, tolerance (reports of older splitbench versions), or "" when not said
    machine: str  # the CPU model (the GPU's name on CUDA)
    device: str
    threads: Any
    cells: Any
    date: str

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "consistent")

    @property
    def text(self) -> str:
        if self.device and self.device != "cpu":
            where = f"{self.machine} ({self.device})"
        elif isinstance(self.threads, int) and not isinstance(self.threads, bool):
            where = f"{self.machine} ({self.threads} thread{'' if self.threads == 1 else 's'})"
        else:
            where = self.machine
        if self.mode == "exact":
            return f"{'exact' if self.ok else self.status} on {where}"
        if self.mode == "tolerance":
            return f"{'within fixed tolerances' if self.ok else self.status + ' (fixed tolerances)'} on {where}"
        # consistency too names the thread count: on the entry's own CPU, another one is what differs
        return f"{self.status} on {where}"

    @property
    def line(self) -> str:
        """The verdict, its cell count and its date ("exact on AMD EPYC (1 thread), 1 cell, 2026-12-07")."""
        return f"{self.text}, {self.cells} cell{'' if self.cells == 1 else 's'}, {self.date[:10] or '?'}"


def _verifications(report: Path, data: Any) -> list[Verification]:
    """Every machine's result in a verification report (either form), oldest first."""
    from leaderboard.verification import legacy_fingerprint, report_results

    out = []
    for result in report_results(data, str(report)).values():
        fp = result.get("fingerprint")
        fp = fp if isinstance(fp, dict) else legacy_fingerprint(result)
        device = result.get("device") if isinstance(result.get("device"), dict) else {}
        tolerance = result.get("tolerance") if isinstance(result.get("tolerance"), dict) else {}
        kind = fp.get("device") or device.get("device") or ""
        out.append(Verification(
            status=str(result.get("status") or "unknown"), mode=str(result.get("mode") or tolerance.get("mode") or ""),
            machine=str(fp.get("device_name") or fp.get("cpu") or device.get("name") or "an unnamed machine"),
            device=str(kind).split(":", 1)[0], threads=fp.get("threads", device.get("threads")),
            cells=result.get("cells", "?"), date=str(result.get("date") or "")))
    return sorted(out, key=lambda v: v.date)


@dataclasses.dataclass
class Source:
    """One entry folder or run directory, with everything the pages show about it."""

    path: Path
    kind: str  # "entry" or "run"
    run_dir: Path
    tracks: list[Track]
    manifest: dict[str, Any]
    card: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    verifications: list[Verification] = dataclasses.field(default_factory=list)
    galleries: list[Gallery] = dataclasses.field(default_factory=list)
    hardware: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    paper_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    paper_citation: str = ""

    @property
    def suite(self) -> str:
        return str(self.manifest.get("suite") or "")

    @property
    def official(self) -> bool:
        """An entry of the standard suite; anything else (other suites, plain run directories) is unofficial."""
        return self.kind == "entry" and self.suite in OFFICIAL_SUITES

    @property
    def label(self) -> str:
        """How pages name the source: the card's name for an entry, the folder's name for a run."""
        if self.card and str(self.card.get("name") or "").strip():
            return str(self.card["name"]).strip()
        return self.path.name or str(self.path)

    @property
    def verified(self) -> str | None:
        """``"verified"`` when every verifying machine found the entry exact or consistent, else the first other
        status (``"mismatch"``, ``"inconsistent"``, ...); ``None`` for an entry nobody verified."""
        if not self.verifications:
            return None
        bad = [v.status for v in self.verifications if not v.ok]
        return bad[0] if bad else "verified"

    @property
    def verification_text(self) -> str:
        """Every machine's verification as one line ("exact on AMD EPYC (1 thread), 3 cells, 2026-12-04; ...")."""
        return "; ".join(v.line for v in self.verifications)

    def card_defenses(self) -> set[str]:
        """The defenses the card describes: the one it names, else every defense of the run but the reference."""
        if not self.card:
            return set()
        named = self.card.get("defense")
        if isinstance(named, dict):
            named = named.get("name")
        if isinstance(named, str) and named.strip():
            return {named.strip()}
        return {r.defense for t in self.tracks for r in t.rows if r.defense != t.reference}

    def describes(self, row: Any) -> bool:
        """Whether the card describes a row of a run: the row's defense, or a variant of it (a card names the
        registered defense; its rows may be a variant, e.g. ``NAME[field=value]``)."""
        named = self.card_defenses()
        return row.defense in named or bool(getattr(row, "method", "")) and row.method in named


def default_sources() -> list[Path]:
    """Every entry folder under ``entries/`` (none when the folder is missing)."""
    if not ENTRIES_DIR.is_dir():
        return []
    return sorted(p for p in ENTRIES_DIR.iterdir() if p.is_dir() and (p / "entry.yaml").is_file())


def load_sources(paths: list[str | Path]) -> list[Source]:
    """Read every source; two arguments naming the same folder count once."""
    seen: set[Path] = set()
    out = []
    for p in paths:
        resolved = Path(p).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        out.append(load_source(Path(p)))
    return out


def load_source(path: Path) -> Source:
    """An entry folder or a run directory; anything else is one clear error."""
    path = Path(path)
    if not path.exists():
        raise SplitbenchError(f"{path}: no such folder (expected an entry folder with entry.yaml and run/, or a run "
                              "directory with records/ and manifests/)")
    if path.is_dir() and (path / "entry.yaml").is_file():
        return _load_entry(path)
    if path.is_dir() and (path / "records").is_dir():
        return _load_run(path, path, "run")
    raise SplitbenchError(f"{path}: neither an entry folder (entry.yaml and run/) nor a run directory (records/ and "
                          "manifests/, the --out of `splitbench run`)")


def _load_entry(path: Path) -> Source:
    card = _read_yaml(path / "entry.yaml")
    files = complete_entry(path)
    root = files.__enter__()
    run = root / "run"
    if not (run / "records").is_dir():
        raise SplitbenchError(f"{path}: entry has no run directory (expected {path / 'run'}/records/ beside "
                              "entry.yaml)")
    src = _load_run(path, run, "entry", _official_attacks(card))
    # an entry whose files are partly stored once in its collection is read from a temporary complete copy: it
    # lives as long as this source (the site copies gallery images from it), and goes when the source does
    weakref.finalize(src, files.__exit__, None, None, None)
    src.card = card
    report = path / "verification.json"
    if report.is_file():
        data = _read_json(report)
        if not isinstance(data, dict):
            raise SplitbenchError(f"{report}: not a verification report (expected a JSON object: one result per "
                                  "machine under 'machines', or one result with status, cells, date, device)")
        src.verification = data
        src.verifications = _verifications(report, data)
    return src


def _official_attacks(card: Any) -> set[str] | None:
    """The attack labels an official entry's suite runs today (``None``: not an official entry, or a suite this
    splitbench does not ship): the site ranks every official entry on those alone."""
    suite = card.get("suite") if isinstance(card, dict) else None
    if suite not in OFFICIAL_SUITES:
        return None
    try:
        return {a.label for a in load_suite(str(suite)).attacks}
    except SplitbenchError:
        return None


def _load_run(path: Path, run_dir: Path, kind: str, attacks: set[str] | None = None) -> Source:
    tracks, manifest = build_tracks(run_dir, attacks=attacks)
    src = Source(path=path, kind=kind, run_dir=run_dir, tracks=tracks, manifest=manifest)
    src.galleries = _galleries(run_dir, manifest["manifest_id"])
    src.hardware = _hardware([path / "hardware"] + ([run_dir / "hardware"] if run_dir != path else []))
    paper = manifest.get("paper") or {}
    if isinstance(paper, dict) and paper.get("numbers"):
        frame = load_frame(run_dir, manifest["manifest_id"])
        if not frame.empty:
            src.paper_rows = paper_rows(frame, paper["numbers"])
        src.paper_citation = " ".join(str(paper.get("citation") or "").split())
    return src


def _galleries(run_dir: Path, manifest_id: str) -> list[Gallery]:
    """The gallery PNG of every reconstruction record of the manifest, checked against its checksum."""
    out = []
    for path, rec in iter_records(run_dir, manifest_id):
        ref = rec.get("gallery")
        if not ref or rec.get("status") != "ok":
            continue
        if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
            raise SplitbenchError(f"{path}: 'gallery' must be an object with the PNG's file name and sha256")
        png = path.parent / ref["file"]
        if png.parent != path.parent or not png.is_file():
            raise SplitbenchError(f"{png}: gallery image named by {path.name} is missing (expected it beside the "
                                  "record)")
        digest = sha256_file(png)
        if ref.get("sha256") and digest != ref["sha256"]:
            raise SplitbenchError(f"{png}: checksum does not match the one in {path.name} (the image was changed "
                                  "or swapped)")
        cell = CellData(path, rec)
        metrics = rec.get("metrics") or {}
        out.append(Gallery(track=cell.track, defense=cell.defense, knob=str(cell.config["defense"].get("knob", "")),
                           knob_value=cell.knob_value, attack=cell.attack, seed=cell.seed, file=png,
                           ssim=json_number(metrics.get("ssim")), psnr=json_number(metrics.get("psnr")), sha256=digest))
    return out


def _hardware(folders: list[Path]) -> list[dict[str, Any]]:
    """Every JSON object in ``hardware/*.json`` (a file may hold one object or a list of them)."""
    rows: list[dict[str, Any]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.json")):
            data = _read_json(f)
            items = data if isinstance(data, list) else [data]
            if not all(isinstance(i, dict) for i in items):
                raise SplitbenchError(f"{f}: not a hardware record (expected a JSON object or a list of objects)")
            rows.extend(items)
    return rows


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise SplitbenchError(f"{path}: not a readable entry card ({reason}); expected a YAML mapping") from exc
    if not isinstance(data, dict):
        raise SplitbenchError(f"{path}: the entry card must be a YAML mapping (name, authors, paper, code_url, "
                              f"license, hardware, contact, defense, suite), got {type(data).__name__}")
    return data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"{path}: not readable JSON ({exc})") from exc
