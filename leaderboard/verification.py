"""``splitbench verify``: check an entry, re-run sampled cells from its own code and config, compare every number.

After :func:`leaderboard.entry.check_entry` (checksums, card, records, per-sample files), ``--cells N`` cells with
status ``ok`` are drawn with ``--seed``; for each drawn cell of another defense, one cell of the reference defense
of the same track and seed is re-run too, because paired Δutility rests on the reference's per-sample utility. The
cells are re-run into a temporary folder from the manifest's resolved suite (models are trained afresh, never
taken from a cache) and compared with the submitted records:

- every metric but the timing ones (names ending in ``_seconds``, and the ``client_ms*`` / ``server_ms*``
  latencies), the status, the config hash and the sample counts; in an exact comparison also the attack's budget
  (timing keys left out);
- every per-sample outcomes array (its shape always, its values as below).

The comparison is **exact** when the re-run's device type and torch / timm versions are the submitted record's
(splitbench runs are bit-for-bit reproducible then). Otherwise numbers must agree within :data:`TOLERANCE`: 0.02
absolute for accuracy-, SSIM- and leakage-like metrics (and the attack's own diagnostics get 10% relative),
0.5 dB for PSNR, 10% relative for ratios, 1% relative for payload bytes, and exactly for counts of parameters,
multiply-accumulates and samples; a float per-sample array must agree in its mean within the tolerance of its
metric, and integer arrays (labels, sample ids) exactly.

The report goes to ``verification.json`` in the entry; :func:`format_report` is the summary the CLI prints.
Verifying imports and runs the entry's plugin files, so an entry from someone else is read before it is verified.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import SplitbenchError
from benchmark.records import JSON_INF, atomic_write_text, read_outcomes, read_record

from .entry import (
    VERIFICATION_FILE,
    RunContents,
    check_code,
    check_entry,
    entry_plugins,
    parse_resolved_suite,
    track_of,
)

#: Tolerances of a comparison across device types or library versions (see the module docstring).
TOLERANCE: dict[str, Any] = {
    "absolute": {"default": 0.02, "psnr": 0.5},
    "relative": {"ratio": 0.10, "payload_bytes": 0.01, "attack.*": 0.10},
    "exact": ["client_params", "client_macs", "eval_samples", "val_samples", "latency_batch", "release_draws"],
    "per_sample": "float arrays: mean within the metric's tolerance; integer arrays (labels, sample ids): exact",
}
TIMING_PREFIXES = ("client_ms", "server_ms")


def is_timing(name: str) -> bool:
    """Timing figures depend on the machine and its load, so verify never compares them."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf == "seconds" or leaf.endswith("_seconds") or leaf.startswith(TIMING_PREFIXES)


def _rule(name: str) -> tuple[str, float]:
    """How metric ``name`` is compared across devices or versions: ("exact" | "abs" | "rel", amount)."""
    if name in TOLERANCE["exact"]:
        return "exact", 0.0
    if "psnr" in name:
        return "abs", TOLERANCE["absolute"]["psnr"]
    if "ratio" in name:
        return "rel", TOLERANCE["relative"]["ratio"]
    if name == "payload_bytes":
        return "rel", TOLERANCE["relative"]["payload_bytes"]
    if name.startswith("attack."):
        return "rel", TOLERANCE["relative"]["attack.*"]
    return "abs", TOLERANCE["absolute"]["default"]


def _number(v: Any) -> float:
    if v is None:
        return math.nan
    v = float(v)
    return math.copysign(math.inf, v) if abs(v) >= JSON_INF else v


def _close(name: str, a: Any, b: Any, exact: bool) -> bool:
    if exact:
        return a == b or (a is None and b is None)
    x, y = _number(a), _number(b)
    if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
        return (math.isnan(x) and math.isnan(y)) or x == y
    kind, amount = _rule(name)
    if kind == "exact":
        return x == y
    if kind == "rel":
        return abs(x - y) <= amount * max(abs(x), abs(y)) + 1e-12
    return abs(x - y) <= amount + 1e-12


def _array_problem(name: str, a: np.ndarray, b: np.ndarray, exact: bool) -> tuple[str, str, str] | None:
    """None when two per-sample arrays agree, else (submitted, re-run, detail) for the report."""
    if a.shape != b.shape:
        return f"shape {list(a.shape)}", f"shape {list(b.shape)}", "the arrays differ in shape"
    floats = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    if floats:
        same = np.array_equal(a, b, equal_nan=True)
    else:
        same = a.dtype.kind == b.dtype.kind and np.array_equal(a, b)
    if same:
        return None
    if floats and not exact:
        ma, mb = float(np.nanmean(a)) if a.size else 0.0, float(np.nanmean(b)) if b.size else 0.0
        if _close(name.rsplit("/", 1)[-1], ma, mb, exact=False):
            return None
        return f"mean {ma:.6g}", f"mean {mb:.6g}", f"means of {a.size} values differ beyond the tolerance"
    if a.dtype.kind != b.dtype.kind:
        return f"dtype {a.dtype}", f"dtype {b.dtype}", "the arrays differ in type"
    if floats:
        differ = int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b)))))
        shown = [f"mean {float(np.nanmean(x)):.6g}" for x in (a, b)]
    else:
        differ = int(np.sum(a != b))
        shown = [f"sum {int(np.sum(x))}" if x.dtype.kind in "biu" else f"{x.size} values" for x in (a, b)]
    return shown[0], shown[1], f"{differ} of {a.size} values differ"


def _flatten(obj: Any, prefix: str) -> dict[str, Any]:
    """Nested budget / sample-count mappings as ``a.b[0].c`` keys, timing keys left out."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not is_timing(str(k)):
                out.update(_flatten(v, f"{prefix}.{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def _same_environment(sub: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    import torch

    def kind(env: Mapping[str, Any]) -> str:
        try:
            return torch.device(str(env.get("device"))).type
        except (RuntimeError, TypeError):
            return str(env.get("device"))

    return kind(sub) == kind(new) and sub.get("torch") == new.get("torch") and sub.get("timm") == new.get("timm")


def compare_records(cell: str, sub: Mapping[str, Any], sub_out: Mapping[str, np.ndarray], new: Mapping[str, Any],
                    new_out: Mapping[str, np.ndarray], exact: bool) -> tuple[int, int, list[dict[str, Any]]]:
    """Compare a submitted record and its re-run; return (metrics compared, arrays compared, mismatches)."""
    mismatches: list[dict[str, Any]] = []

    def differ(metric: str, a: Any, b: Any, detail: str | None = None) -> None:
        item = {"cell": cell, "metric": metric, "submitted": a, "rerun": b}
        if detail:
            item["detail"] = detail
        mismatches.append(item)

    for key in ("status", "config_hash"):
        if sub[key] != new[key]:
            differ(key, sub[key], new[key], new.get("reason") if key == "status" else None)
    n_metrics = 0
    sm, nm = sub["metrics"], new["metrics"]
    for name in sorted(set(sm) | set(nm)):
        if is_timing(name):
            continue
        n_metrics += 1
        if name not in nm or name not in sm:
            differ(name, sm.get(name, "absent"), nm.get(name, "absent"))
        elif not _close(name, sm[name], nm[name], exact):
            differ(name, sm[name], nm[name])
    for block in ("samples", "budget") if exact else ("samples",):
        a, b = _flatten(sub.get(block) or {}, block), _flatten(new.get(block) or {}, block)
        for key in sorted(set(a) | set(b)):
            if a.get(key, "absent") != b.get(key, "absent"):
                differ(key, a.get(key, "absent"), b.get(key, "absent"))
    n_arrays = 0
    for name in sorted(set(sub_out) | set(new_out)):
        n_arrays += 1
        if name not in new_out or name not in sub_out:
            differ(f"outcomes:{name}", "present" if name in sub_out else "absent",
                   "present" if name in new_out else "absent")
            continue
        problem = _array_problem(name, np.asarray(sub_out[name]), np.asarray(new_out[name]), exact)
        if problem:
            differ(f"outcomes:{name}", problem[0], problem[1], problem[2])
    return n_metrics, n_arrays, mismatches


def choose_cells(contents: RunContents, n: int, seed: int,
                 defense: str | None = None) -> list[tuple[Path, dict[str, Any], str]]:
    """``n`` cells with status ok drawn with ``seed`` — from the submitted ``defense``'s cells where it has any, so a
    check of an entry re-runs what the entry is about and not only the reference it ships — plus the reference cell
    of each drawn cell's track and seed (the same attack where it finished, else the first finished one); each
    with its role."""
    ok = sorted(((p, r) for p, r in contents.records if r["status"] == "ok"), key=lambda pr: pr[0].name)
    if not ok:
        raise SplitbenchError(f"{contents.manifest_path}: no cell finished with status ok, so none can be re-run")
    pool = [(p, r) for p, r in ok if r["config"]["defense"]["name"] == defense] or ok
    drawn = sorted(random.Random(seed).sample(pool, min(n, len(pool))), key=lambda pr: pr[0].name)
    chosen = [(p, r, "sampled") for p, r in drawn]
    names = {p.name for p, _ in drawn}
    ref = contents.reference
    for _, rec, _ in list(chosen):
        if rec["config"]["defense"]["name"] == ref:
            continue
        same_track = [(p, r) for p, r in ok if r["config"]["defense"]["name"] == ref and track_of(r) == track_of(rec)]
        label = rec["config"]["attack"].get("label")
        pick = [pr for pr in same_track if pr[1]["config"]["attack"].get("label") == label] or same_track
        if pick and pick[0][0].name not in names:
            names.add(pick[0][0].name)
            chosen.append((pick[0][0], pick[0][1], "reference"))
    return chosen


def _versions(device: str) -> dict[str, Any]:
    from benchmark.records import environment

    env = environment(device)
    keys = ("package_version", "git_commit", "git_dirty", "torch", "timm", "python")
    return {**{k: env.get(k) for k in keys}, "numpy": np.__version__}


def verify_entry(entry: str | Path, cells: int = 2, seed: int = 0, device: str = "cpu",
                 data_root: str | Path | None = None, download: bool = False) -> dict[str, Any]:
    """Check ``entry``, re-run sampled cells and compare them; write and return the verification report.

    Problems with the entry itself (a checksum, the card, a record, a missing file) raise
    :class:`~benchmark.errors.SplitbenchError`; numbers that differ are reported, with status ``mismatch``.

    Example:
        >>> report = verify_entry("leaderboard/entries/my-defense", cells=2)   # doctest: +SKIP
        >>> report["status"]                                                    # doctest: +SKIP
        'verified'
    """
    import benchmark
    from benchmark.suite import expand

    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise SplitbenchError(f"--cells {cells!r}: expected a positive number of cells to re-run")
    t0 = time.perf_counter()
    entry = Path(entry)
    card, contents = check_entry(entry)
    plugins = entry_plugins(entry, card)
    check_code(card, plugins, str(entry / "entry.yaml"))
    suite = parse_resolved_suite(contents)
    chosen = choose_cells(contents, cells, seed, card["defense"])
    producible = {c.file_name for _, cs in expand(suite) for c in cs}
    for path, rec, _ in chosen:
        if path.name not in producible:
            env = rec["env"]
            raise SplitbenchError(f"{path}: this splitbench does not produce that cell from the entry's suite (a "
                                  "method's version or config changed since the run); verify with splitbench "
                                  f"{env.get('package_version')} at commit {env.get('git_commit')}")
    compared, mismatches = [], []
    n_metrics = n_arrays = 0
    with tempfile.TemporaryDirectory(prefix="splitbench-verify-") as tmp:
        out = Path(tmp) / "run"
        # latencies are never compared, so one timed repeat is enough; every other number is computed as in the
        # run, with the torch thread count its records were made with (CPU training rounds differently with another)
        threads = {rec["env"].get("threads") for _, rec, _ in chosen} - {None}
        benchmark.run(suite, out=out, device=device, only=[p.name for p, _, _ in chosen], data_root=data_root,
                      download=download, latency_repeats=1, executor="auto",
                      threads=min(threads) if len(threads) == 1 else None)
        rerun_env: dict[str, Any] = {}
        for path, rec, role in chosen:
            new_path = out / "records" / path.name
            if not new_path.is_file():
                mismatches.append({"cell": path.stem, "metric": "record", "submitted": "present",
                                   "rerun": "absent"})
                continue
            new = read_record(new_path)
            rerun_env = new["env"]
            exact = _same_environment(rec["env"], new["env"])
            sub_out = read_outcomes(path, rec)
            new_out = read_outcomes(new_path, new) if new.get("outcomes") else {}
            m, a, bad = compare_records(path.stem, rec, sub_out, new, new_out, exact)
            n_metrics, n_arrays = n_metrics + m, n_arrays + a
            mismatches += bad
            compared.append({"cell": path.stem, "role": role, "comparison": "exact" if exact else "tolerance",
                             "metrics": m, "arrays": a, "mismatches": len(bad)})
    all_exact = all(c["comparison"] == "exact" for c in compared)
    submitted = contents.records[0][1]["env"]
    tolerance: dict[str, Any] = {"mode": "exact" if all_exact else "tolerance"}
    if all_exact:
        tolerance["why"] = (f"same device type, torch {submitted.get('torch')} and timm {submitted.get('timm')} as "
                            "the submitted records")
    else:
        tolerance.update(TOLERANCE)
        tolerance["why"] = (f"submitted on {submitted.get('device')} with torch {submitted.get('torch')} / timm "
                            f"{submitted.get('timm')}, re-run on {rerun_env.get('device')} with torch "
                            f"{rerun_env.get('torch')} / timm {rerun_env.get('timm')}")
    report = {
        "status": "mismatch" if mismatches else "verified",
        "cells": len(compared),
        "sampled": sum(1 for c in compared if c["role"] == "sampled"),
        "seed": seed,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"device": device, "name": rerun_env.get("device_name"), "threads": rerun_env.get("threads")},
        "versions": {**_versions(device), "submitted": {k: submitted.get(k) for k in (
            "package_version", "git_commit", "torch", "timm", "python", "device", "device_name")}},
        "tolerance": tolerance,
        "ignored": "timing metrics: names ending in _seconds, client_ms*, server_ms*",
        "metrics_compared": n_metrics,
        "arrays_compared": n_arrays,
        "compared": compared,
        "mismatches": mismatches,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(entry / VERIFICATION_FILE, json.dumps(report, indent=2, default=str) + "\n")
    return report


def format_report(report: Mapping[str, Any], entry: str | Path, limit: int = 50) -> str:
    """A few lines for the terminal: the verdict, what was compared, and each mismatch (up to ``limit``)."""
    roles = [c["role"] for c in report["compared"]]
    tol = report["tolerance"]
    if tol["mode"] == "exact":
        how = f"compared exactly ({tol['why']})"
    else:
        how = (f"compared within {tol['absolute']['default']} (accuracy-, SSIM-, leakage-like), "
               f"{tol['absolute']['psnr']} dB (PSNR), {tol['relative']['ratio']:.0%} (ratios), since {tol['why']}")
    lines = [f"{entry}: {report['status']}: {report['cells']} cell(s) re-run ({roles.count('sampled')} sampled, "
             f"{roles.count('reference')} reference), {report['metrics_compared']} metrics and "
             f"{report['arrays_compared']} per-sample arrays {how}; {report['seconds']} s"]
    for m in report["mismatches"][:limit]:
        detail = f" ({m['detail']})" if m.get("detail") else ""
        lines.append(f"  mismatch: {m['cell']} {m['metric']}: submitted {m['submitted']}, re-run {m['rerun']}{detail}")
    if len(report["mismatches"]) > limit:
        lines.append(f"  ... and {len(report['mismatches']) - limit} more in {VERIFICATION_FILE}")
    lines.append(f"report: {Path(entry) / VERIFICATION_FILE}")
    return "\n".join(lines)
