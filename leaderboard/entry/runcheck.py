"""The run inside an entry: its one manifest, every record and per-sample file it names, their identities and code
versions, and the reference cells paired Δutility needs."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import config_hash
from benchmark.core.io import sha256_file
from benchmark.store.manifest import load_manifest
from benchmark.store.records import read_outcomes, read_record


def track_of(rec: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """(scenario, backbone, split, seed) of a record: the rows paired Δutility compares."""
    cfg = rec["config"]
    return cfg["scenario"]["name"], cfg["backbone"]["name"], cfg["backbone"]["split"], cfg["seed"]


@dataclasses.dataclass
class RunContents:
    """One manifest of a run directory with its records, all checked."""

    run_dir: Path
    manifest: dict[str, Any]
    manifest_path: Path
    records: list[tuple[Path, dict[str, Any]]]

    @property
    def suite(self) -> str:
        return str(self.manifest["suite"])

    @property
    def reference(self) -> str:
        return str(self.manifest["presentation"].get("reference"))

    @property
    def defenses(self) -> list[str]:
        return sorted({rec["config"]["defense"]["name"] for _, rec in self.records})

    def sidecars(self, rec: Mapping[str, Any]) -> list[str]:
        """The file names of the outcomes and gallery files a record references."""
        return [rec[k]["file"] for k in ("outcomes", "gallery") if isinstance(rec.get(k), dict)]


def check_run(run_dir: Path, manifest_id: str | None = None) -> RunContents:
    """Check that the manifest of ``run_dir`` (its latest unless ``manifest_id``) describes a finished run that can be
    submitted: every cell recorded and finished, every record and per-sample file intact, one code version, the cells
    of the reference defense that paired Δutility needs, and the resolved suite for re-running any cell."""
    run_dir = Path(run_dir)
    man = load_manifest(run_dir, manifest_id)
    mid = man["manifest_id"]
    mpath = run_dir / "manifests" / f"{mid}.json"
    resolved = man.get("resolved_suite")
    if not isinstance(resolved, dict):
        raise SplitbenchError(f"{mpath}: the manifest has no resolved suite, so its cells cannot be re-run (rerun the "
                              "same `splitbench run` command with this splitbench: it recomputes nothing)")
    if resolved.get("name") != man["suite"]:
        raise SplitbenchError(f"{mpath}: the resolved suite is named {resolved.get('name')!r}, the manifest's suite "
                              f"{man['suite']!r}")
    records = []
    first: tuple[Path, tuple[Any, Any]] | None = None
    for name in man["cells"]:
        path = run_dir / "records" / name
        if Path(name).name != name or not name.endswith(".json"):
            raise SplitbenchError(f"{mpath}: cell {name!r} is not a record file name")
        if not path.is_file():
            raise SplitbenchError(f"{path}: record named by manifest {mid} is missing (the run has not finished; "
                                  "rerun `splitbench run` with the same settings)")
        rec = read_record(path)
        _check_identity(path, rec, man["suite"], mid)
        if rec["status"] == "failed":
            reason = " ".join(str(rec.get("reason") or "no reason recorded").split())[:200]
            raise SplitbenchError(f"{path}: the cell failed ({reason}); an entry holds only finished cells (rerun "
                                  "`splitbench run` to retry it)")
        if rec["status"] == "ok" or rec.get("outcomes"):
            _check_file_ref(path, rec, "outcomes")
            read_outcomes(path, rec)
        if rec.get("gallery"):
            _check_file_ref(path, rec, "gallery")
            png = path.parent / rec["gallery"]["file"]
            if not png.is_file():
                raise SplitbenchError(f"{png}: gallery image is missing (named by {path.name})")
            if sha256_file(png) != rec["gallery"].get("sha256"):
                raise SplitbenchError(f"{png}: checksum does not match the one in {path.name} (the image was "
                                      "changed or swapped)")
        env = rec["env"] if isinstance(rec["env"], dict) else {}
        # every record names the code that wrote it (read when it was written), so a run whose code changed midway
        # (a commit, or uncommitted edits made or undone) shows two versions here
        version = (env.get("package_version"), env.get("git_commit"), env.get("git_dirty"))
        if first is None:
            first = (path, version)
        elif version != first[1]:
            raise SplitbenchError(f"{path}: made by {_code_version(version)}, but {first[0].name} by "
                                  f"{_code_version(first[1])}; an entry's records must all come from one code version "
                                  "(the code changed during the run: rerun it with one version)")
        records.append((path, rec))
    if not records:
        raise SplitbenchError(f"{mpath}: the manifest names no cells")
    contents = RunContents(run_dir, man, mpath, records)
    _check_reference(contents)
    return contents


def _code_version(version: tuple[Any, Any, Any]) -> str:
    package, commit, dirty = version
    return f"splitbench {package} (commit {commit}{' with uncommitted changes' if dirty else ''})"


def _check_identity(path: Path, rec: Mapping[str, Any], suite: str, mid: str) -> None:
    """The record is the cell its file name says, of the manifest's suite, with an unedited config."""
    cfg = rec["config"]
    try:
        d = copy.deepcopy(cfg)
        d.pop("suite")
        if "attack" in d:  # a model cell (a seed only admission reads) has none
            d["attack"].pop("label")
        digest = config_hash(d, 16)
        record_suite = cfg["suite"]
        _ = track_of(rec), cfg["defense"]["name"]  # the fields the checks below and the leaderboard group by
    except (KeyError, TypeError, AttributeError) as exc:
        raise SplitbenchError(f"{path}: the record's config lacks {exc} (not a record of `splitbench run`)") from exc
    if record_suite != suite:
        raise SplitbenchError(f"{path}: record of suite {record_suite!r}, not of the manifest's suite {suite!r} "
                              f"(manifest {mid}); an entry holds the records of one suite")
    if rec["config_hash"] != digest or rec["cell_id"] != path.stem or not path.stem.endswith(digest[:10]):
        raise SplitbenchError(f"{path}: the record's config does not hash to its config_hash and file name (the "
                              "record was edited or renamed)")


def _check_file_ref(path: Path, rec: Mapping[str, Any], key: str) -> None:
    ref = rec.get(key)
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) or Path(ref["file"]).name != ref["file"] \
            or ref["file"] in ("", ".", ".."):
        raise SplitbenchError(f"{path}: {key!r} must name a file beside the record and its sha256")


def _check_reference(contents: RunContents) -> None:
    """Every (track, seed) of the run has a finished cell of the reference defense (paired Δutility needs its
    per-sample utility)."""
    ref = contents.reference
    have = {track_of(rec) for _, rec in contents.records
            if rec["config"]["defense"]["name"] == ref and rec["status"] in ("ok", "not_applicable")}
    for _, rec in contents.records:
        key = track_of(rec)
        if key not in have:
            scenario, backbone, split, seed = key
            raise SplitbenchError(f"{contents.manifest_path}: no finished cell of the reference defense {ref!r} for "
                                  f"{scenario} · {backbone}@{split}, seed {seed} (paired Δutility needs it; run the "
                                  "reference in the same run)")


def parse_resolved_suite(contents: RunContents):
    """The suite as it was run, read back from the manifest (every method it names must be registered)."""
    from benchmark.suites.parse import parse_suite

    return parse_suite(copy.deepcopy(contents.manifest["resolved_suite"]), str(contents.manifest_path))
