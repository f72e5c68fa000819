"""Run manifests: which cells one invocation of ``splitbench run`` expanded to, and how to present them.

``OUT/manifests/<id>.json`` lists the record files of the run's cells and the presentation settings (reference
defense, utility budget, bootstrap replicates, the paper block) — settings that change how records combine but not
what a cell computes, so they are not part of any cell's hash. Running a suite again with other settings into the
same folder writes another manifest; the leaderboard reads the cells of exactly one manifest (the most recently
written unless asked for another) and says which.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import config_hash
from benchmark.core.io import atomic_write_text

MANIFEST_KEYS = ("manifest_id", "suite", "cells", "presentation", "updated")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def write_manifest(out: Path, suite: str, source: str, cells: list[str], presentation: dict[str, Any],
                   paper: dict[str, Any], env: dict[str, Any], resolved: dict[str, Any] | None = None) -> str:
    """Write (or refresh) the manifest of these cells and settings; return its id. ``resolved`` is the whole suite
    as run (:func:`benchmark.suites.parse.suite_to_raw`), so that any of its cells can be re-run from the manifest."""
    mid = config_hash({"cells": sorted(cells), "presentation": presentation}, 12)
    path = Path(out) / "manifests" / f"{mid}.json"
    created = _now()
    if path.is_file():
        try:
            created = json.loads(path.read_text()).get("created", created)
        except (OSError, json.JSONDecodeError):
            pass
    manifest = {"manifest_id": mid, "suite": suite, "source": source, "cells": list(cells),
                "presentation": presentation, "paper": paper, "created": created, "updated": _now(), "env": env,
                "resolved_suite": resolved}
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_text(path, text)
    atomic_write_text(Path(out) / "run.json", text)  # the latest run, for a quick look
    return mid


def list_manifests(run_dir: Path) -> list[dict[str, Any]]:
    """Every readable manifest of a run directory, most recently written first."""
    found = []
    for p in sorted((Path(run_dir) / "manifests").glob("*.json")):
        found.append(_read(p))
    return sorted(found, key=lambda m: m["updated"], reverse=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        man = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"{path}: not a readable run manifest ({exc})") from exc
    if not isinstance(man, dict) or any(k not in man for k in MANIFEST_KEYS) or not isinstance(man["cells"], list):
        raise SplitbenchError(f"{path}: not a run manifest (expected the keys {', '.join(MANIFEST_KEYS)})")
    return man


def load_manifest(run_dir: Path, manifest_id: str | None = None) -> dict[str, Any]:
    """The manifest ``manifest_id`` (a prefix is enough) of ``run_dir``, or its most recent one."""
    run_dir = Path(run_dir)
    if not (run_dir / "records").is_dir():
        raise SplitbenchError(f"{run_dir}: not a run directory (no records/ folder; expected the --out of "
                              "`splitbench run`)")
    found = list_manifests(run_dir)
    if not found:
        raise SplitbenchError(f"{run_dir}: no run manifest (manifests/*.json); was this folder written by "
                              "`splitbench run`?")
    if manifest_id is None:
        man = found[0]
    else:
        match = [m for m in found if m["manifest_id"].startswith(manifest_id)]
        if len(match) != 1:
            known = ", ".join(m["manifest_id"] for m in found)
            raise SplitbenchError(f"{run_dir}: manifest {manifest_id!r} {'is ambiguous' if match else 'not found'} "
                                  f"(manifests here: {known})")
        man = match[0]
    man = dict(man)
    man["others"] = [m["manifest_id"] for m in found if m["manifest_id"] != man["manifest_id"]]
    return man
