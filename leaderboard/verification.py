"""``splitbench verify``: check an entry, re-run sampled cells from its own code and config, compare the numbers.

After :func:`leaderboard.entry.check_entry` (checksums, card, records, per-sample files), ``--cells N`` cells with
status ``ok`` are drawn with ``--seed``; for each drawn cell of another defense, the reference defense's cell of the
same track and seed is re-run too, because paired Δutility rests on the reference's per-sample utility. The cells
are re-run into a temporary folder from the manifest's resolved suite (models are trained afresh, never taken from a
cache), with the torch thread count of the entry's records. What the re-run is compared with depends on the machine.

**Which machine made the records.** Every record's ``env`` names what decides its arithmetic, read into a
:func:`~benchmark.store.records.machine_fingerprint`: the device type and name, the CPU model, the instruction set torch
dispatches to (``torch.backends.cpu.get_cpu_capability()``), the CPU's numeric flags, the torch thread count, the
torch / timm versions and the harness's numerics version (records older than these keys have an unknown ISA or
numerics, so they never count as this machine's).
Training on a CPU is bit-exact only under one fingerprint; on another CPU model or ISA the same seed's numbers differ
in the last bits and then chaotically (about as much as a change of seed moves them).

- **Exact** (this machine's fingerprint is the records'): every metric but the timing ones (names ending in
  ``_seconds``, the ``client_ms*`` / ``server_ms*`` latencies), the status, the config hash, the sample counts, the
  attack's budget (timing keys left out) and every per-sample outcomes array must be identical. Verdict ``verified``
  or ``mismatch``.
- **Consistency** (another CPU model, ISA, flags, thread count, device or harness numerics, the same torch and timm
  versions): the drawn cells (distinct configurations) are re-run at every seed the entry has (``--seeds N``: N of
  them, drawn with ``--seed``, at least 2), each with its reference cell, and each re-run figure is judged against the
  **entry's own seed spread**. For a figure whose values at the entry's k seeds of the same configuration are x_1..x_k
  (mean m, standard deviation s), the predictive interval for one new seed on another machine is
  ``m ± t_{k-1, 1-α'/2} · max(s, floor) · sqrt(1 + 1/k)`` (Student t), where

  - ``floor`` = max(1, min(|m|, |y|)) / n, y the re-run figure, n the fewest samples any figure of the cell is
    scored on (the cell's eval count, its validation count): the resolution of a mean over n samples, one sample
    of n moving by the figure's own size, the size the entry and the re-run agree on (1/n for an accuracy; for the
    bytes a dynamic pruning sends per sample, a 1,572-byte mean, 1.6 bytes), so
    a figure whose seeds agree exactly (an accuracy of 1.0 at every seed, a payload the ratio fixes) does not get a
    zero-width interval (it widens only figures whose seeds spread by less than that);
  - α' = :data:`ALPHA` / F (Bonferroni over the F figures judged in the run, so the chance that an entry whose
    numbers vary only as seeds do is called inconsistent is at most :data:`ALPHA` = 0.05 under the interval's
    normal model);
  - its z-score is (y − m) / (max(s, floor) · sqrt(1 + 1/k)); y is outside when |z| > t;
  - ratios of two judged figures (:data:`DERIVED_RATIOS`: the suppression ratios, an accuracy over another) are
    not judged themselves: their parts are, and a ratio whose denominator comes near zero spreads over orders of
    magnitude across seeds (−76 to 117 in an official entry) or is NaN, so no interval for it means anything.

  Figures fixed by the data and the architecture are not judged by an interval but must still be identical
  (:data:`EXACT_FIGURES`: sample counts, release draws, image size, latency batch, the floors and baselines each
  scale is measured from, client parameters and multiply-accumulates), as must the status, the config hash and the
  sample counts. Per-sample arrays and the attack's budget are not compared in this mode (another machine's
  per-sample outcomes differ as a new seed's do). A figure that is not finite (NaN, ±inf) must equal one of the
  entry's values. Verdict ``consistent`` when every re-run figure lies inside its interval and every exact figure
  matches, else ``inconsistent``, naming each figure outside with its cell, value, z-score and interval.
- **Refused** (another torch or timm version): one line; neither comparison holds across library versions.

The entry's plugin files are imported and run only with ``trust_code=True`` (``--trust-code``), as
``trust_remote_code`` in Hugging Face libraries; built-in and installed defenses need no flag.

**Reports.** :func:`verify_entry` returns this machine's result; it writes nothing unless ``report`` names a file,
which keeps one result per verifying machine (keyed by :func:`~benchmark.store.records.fingerprint_key` of its
fingerprint) and is merged into, never overwriting another machine's result. ``--report ENTRY/verification.json``
records it in the entry (not checksummed: it is a report about the entry). A report of the older single-result
form is read as one machine's result (:func:`report_results`). :func:`format_report` is the summary the CLI prints.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import atomic_write_text, encode_json, json_number
from benchmark.measure.scoring import convergence
from benchmark.store.records import fingerprint_key, machine_fingerprint, read_outcomes, read_record
from leaderboard.entry import (
    CARD_FILE,
    VERIFICATION_FILE,
    RunContents,
    check_code,
    check_entry,
    entry_plugins,
    parse_resolved_suite,
    track_of,
)
from leaderboard.entry.objects import complete_entry

#: Family-wise error rate of a consistency check (Bonferroni over the figures judged).
ALPHA = 0.05
#: Figures fixed by the data, the suite and the architecture (never by training): compared exactly in every mode.
#: Matched on the last part of the name, so ``deployed/<backbone>@<split>/client_params`` is one too.
EXACT_FIGURES = ("eval_samples", "val_samples", "release_draws", "latency_batch", "image_size", "attribute_floor",
                 "attribute_majority", "psnr_baseline", "ssim_baseline", "unintended_chance", "client_params",
                 "client_macs")
TIMING_PREFIXES = ("client_ms", "server_ms")
#: figures that are a ratio of two figures judged on their own; a consistency check judges the parts, not the ratio
DERIVED_RATIOS = ("suppression_ratio",)
#: Format of a report file: ``{"format": REPORT_FORMAT, "entry": ..., "manifest_id": ..., "machines": {KEY: result}}``.
REPORT_FORMAT = "splitbench-verification/2"


def _leaf(name: str) -> str:
    """A metric's name without its prefix (``holdout/leakage`` -> ``leakage``)."""
    return name.rsplit("/", 1)[-1]


def is_derived_ratio(name: str) -> bool:
    """A ratio of two figures that are judged on their own (see :data:`DERIVED_RATIOS`)."""
    return any(part in _leaf(name) for part in DERIVED_RATIOS)


def is_timing(name: str) -> bool:
    """Timing figures depend on the machine and its load, so verify never compares them."""
    leaf = _leaf(name)
    return leaf == "seconds" or leaf.endswith("_seconds") or leaf.startswith(TIMING_PREFIXES)


def is_exact_figure(name: str) -> bool:
    """Whether a figure is fixed by the data and architecture (:data:`EXACT_FIGURES`), so compared exactly."""
    return _leaf(name) in EXACT_FIGURES


# -- exact comparison ---------------------------------------------------------------------------------------------
def _array_problem(a: np.ndarray, b: np.ndarray) -> tuple[str, str, str] | None:
    """None when two per-sample arrays are identical, else (submitted, re-run, detail) for the report."""
    if a.shape != b.shape:
        return f"shape {list(a.shape)}", f"shape {list(b.shape)}", "the arrays differ in shape"
    floats = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    if floats:
        same = np.array_equal(a, b, equal_nan=True)
    else:
        same = a.dtype.kind == b.dtype.kind and np.array_equal(a, b)
    if same:
        return None
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


def _mismatch(cell: str, metric: str, a: Any, b: Any, detail: str | None = None) -> dict[str, Any]:
    item = {"cell": cell, "metric": metric, "submitted": a, "rerun": b}
    if detail:
        item["detail"] = detail
    return item


def _identity_mismatches(cell: str, sub: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Status, config hash and sample counts: identical in every mode."""
    out = []
    for key in ("status", "config_hash"):
        if sub[key] != new[key]:
            out.append(_mismatch(cell, key, sub[key], new[key], new.get("reason") if key == "status" else None))
    a, b = _flatten(sub.get("samples") or {}, "samples"), _flatten(new.get("samples") or {}, "samples")
    for key in sorted(set(a) | set(b)):
        if a.get(key, "absent") != b.get(key, "absent"):
            out.append(_mismatch(cell, key, a.get(key, "absent"), b.get(key, "absent")))
    return out


def with_model_convergence(new: dict[str, Any], path: Path, contents: RunContents) -> dict[str, Any]:
    """The re-run record with its convergence verdict taken against the same cells as in the entry.

    The runner flags an optimisation attack *not converged* against the lowest release error any reconstruction
    attack of the same model reached in the run (``not_converged`` and ``budget.convergence``). A verify re-run
    holds only the drawn cells, so its verdict would be against those alone; here it is recomputed over the
    entry's records of that model's reconstruction cells, the drawn one replaced by its re-run, as the full run
    would have written it. Records without a verdict are returned unchanged."""
    if "not_converged" not in new["metrics"]:
        return new
    model = [(p, r) for p, r in contents.records
             if r.get("model_hash") == new.get("model_hash") and r.get("status") == "ok"
             and "release_error" in r.get("metrics", {})]
    cells = {p.name: r["metrics"] for p, r in model}
    cells[path.name] = new["metrics"]  # the drawn cell as re-run
    verdicts = convergence.flags(cells)
    if path.name not in verdicts:
        return new
    out = copy.deepcopy(new)
    out["metrics"]["not_converged"] = float(verdicts[path.name])
    out.setdefault("budget", {})["convergence"] = convergence.budget(cells)
    return out


def compare_records(cell: str, sub: Mapping[str, Any], sub_out: Mapping[str, np.ndarray], new: Mapping[str, Any],
                    new_out: Mapping[str, np.ndarray]) -> tuple[int, int, list[dict[str, Any]]]:
    """Compare a submitted record and its re-run on the same machine fingerprint, exactly; return (metrics compared,
    arrays compared, mismatches)."""
    mismatches = _identity_mismatches(cell, sub, new)
    n_metrics = 0
    sm, nm = sub["metrics"], new["metrics"]
    for name in sorted(set(sm) | set(nm)):
        if is_timing(name):
            continue
        n_metrics += 1
        if name not in nm or name not in sm:
            mismatches.append(_mismatch(cell, name, sm.get(name, "absent"), nm.get(name, "absent")))
        elif not (sm[name] == nm[name] or (sm[name] is None and nm[name] is None)):
            mismatches.append(_mismatch(cell, name, sm[name], nm[name]))
    a, b = _flatten(sub.get("budget") or {}, "budget"), _flatten(new.get("budget") or {}, "budget")
    for key in sorted(set(a) | set(b)):
        if a.get(key, "absent") != b.get(key, "absent"):
            mismatches.append(_mismatch(cell, key, a.get(key, "absent"), b.get(key, "absent")))
    n_arrays = 0
    for name in sorted(set(sub_out) | set(new_out)):
        n_arrays += 1
        if name not in new_out or name not in sub_out:
            mismatches.append(_mismatch(cell, f"outcomes:{name}", "present" if name in sub_out else "absent",
                                        "present" if name in new_out else "absent"))
            continue
        problem = _array_problem(np.asarray(sub_out[name]), np.asarray(new_out[name]))
        if problem:
            mismatches.append(_mismatch(cell, f"outcomes:{name}", problem[0], problem[1], problem[2]))
    return n_metrics, n_arrays, mismatches


# -- consistency: the entry's seed spread -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Interval:
    """The predictive interval of one figure for a new seed: ``mean ± t · sd_used · sqrt(1 + 1/k)``."""

    mean: float
    sd: float
    sd_used: float
    k: int
    t: float

    @property
    def half_width(self) -> float:
        return self.t * self.sd_used * math.sqrt(1 + 1 / self.k)

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width

    def z(self, y: float) -> float:
        return (y - self.mean) / (self.sd_used * math.sqrt(1 + 1 / self.k))

    def contains(self, y: float) -> bool:
        return abs(self.z(y)) <= self.t


def predictive_interval(values: Sequence[float], floor: float, alpha_each: float) -> Interval:
    """The two-sided ``1 - alpha_each`` predictive interval for one more draw of a figure whose draws at k seeds
    are ``values`` (k >= 2): Student t with k - 1 degrees of freedom, the standard deviation floored at ``floor``."""
    from scipy.stats import t as student_t

    xs = [float(v) for v in values]
    if len(xs) < 2:
        raise ValueError("a predictive interval needs the values of at least 2 seeds")
    if not floor > 0:
        raise ValueError("the floor on the standard deviation must be positive")
    sd = statistics.stdev(xs)
    t = float(student_t.ppf(1 - alpha_each / 2, len(xs) - 1))
    return Interval(mean=statistics.fmean(xs), sd=sd, sd_used=max(sd, floor), k=len(xs), t=t)


def sd_floor(rec: Mapping[str, Any]) -> float:
    """The floor on a figure's seed spread: 1 / n, n the fewest samples any figure of the cell ``rec`` is scored on
    (the resolution of an accuracy on n samples; 1/1000 for a record without sample counts)."""
    counts = []
    samples = rec.get("samples") if isinstance(rec.get("samples"), Mapping) else {}
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), Mapping) else {}
    for v in (samples.get("eval"), samples.get("val"), metrics.get("eval_samples"), metrics.get("val_samples")):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 1:
            counts.append(float(v))
    return 1.0 / (min(counts) if counts else 1000.0)


def _config_key(rec: Mapping[str, Any]) -> str:
    cfg = copy.deepcopy(dict(rec["config"]))
    cfg.pop("seed", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def seed_groups(contents: RunContents) -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """The finished (status ok) records of each cell configuration, one per seed, in the order of their seeds."""
    groups: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, rec in contents.records:
        if rec["status"] == "ok":
            groups.setdefault(_config_key(rec), []).append((path, rec))
    for g in groups.values():
        g.sort(key=lambda pr: (pr[1]["config"]["seed"], pr[0].name))
    return groups


def _attack_label(rec: Mapping[str, Any]) -> str | None:
    """The record's attack label (None for a model cell, which has no attack)."""
    return (rec["config"].get("attack") or {}).get("label")


def choose_configs(contents: RunContents, n: int, seed: int, defense: str | None = None
                   ) -> list[tuple[str, list[tuple[Path, dict[str, Any]]], str]]:
    """For a consistency check: ``n`` cell configurations finished at 2 or more seeds, drawn with ``seed`` (from the
    submitted ``defense``'s where it has any), plus the reference defense's configuration of each one's track (the
    same attack where it finished, else the first); each as (key, its records by seed, role)."""
    groups = {k: g for k, g in seed_groups(contents).items() if len(g) >= 2}
    if not groups:
        raise SplitbenchError(f"{contents.manifest_path}: no cell finished with status ok at 2 or more seeds, so the "
                              "entry has no seed spread to check another machine's re-run against")
    keys = sorted(groups, key=lambda k: groups[k][0][0].name)
    name = {k: groups[k][0][1]["config"]["defense"]["name"] for k in keys}
    pool = [k for k in keys if name[k] == defense] or keys
    drawn = sorted(random.Random(seed).sample(pool, min(n, len(pool))), key=keys.index)
    chosen = [(k, groups[k], "sampled") for k in drawn]
    taken = set(drawn)
    ref = contents.reference
    for k, group, _ in list(chosen):
        rec = group[0][1]
        if name[k] == ref:
            continue
        same_track = [k2 for k2 in keys if name[k2] == ref and track_of(groups[k2][0][1])[:3] == track_of(rec)[:3]]
        label = _attack_label(rec)
        pick = [k2 for k2 in same_track if _attack_label(groups[k2][0][1]) == label] or same_track
        if pick and pick[0] not in taken:
            taken.add(pick[0])
            chosen.append((pick[0], groups[pick[0]], "reference"))
    return chosen


def rerun_seed_pool(configs: list[tuple[str, list[tuple[Path, dict[str, Any]]], str]]) -> list[int]:
    """The seeds a consistency check may re-run: those the drawn (``sampled``) cells were run at. A suite's seeds
    trained for admission only, or a curve point's fewer seeds, have no such cell, so drawing them would re-run
    nothing."""
    return sorted({rec["config"]["seed"] for _, group, role in configs if role == "sampled" for _, rec in group})


@dataclasses.dataclass
class _Judged:
    cell: str
    metric: str
    y: float
    submitted: Any
    values: list[float]
    floor: float


def _judge(judged: Sequence[_Judged], alpha: float
           ) -> tuple[list[dict[str, Any]], float, dict[str, Any] | None]:
    """Each figure against its predictive interval, Bonferroni over all of them; (figures outside, alpha per figure,
    the figure with the largest |z|)."""
    alpha_each = alpha / max(1, len(judged))
    outside = []
    largest: dict[str, Any] | None = None
    for j in judged:
        finite = [v for v in j.values if math.isfinite(v)]
        if not math.isfinite(j.y) or len(finite) < 2:
            # NaN / inf (a ratio over a zero accuracy) or too few finite seeds: it must be one of the entry's values
            same = any((math.isnan(j.y) and math.isnan(v)) or j.y == v for v in j.values)
            if not same:
                outside.append({"cell": j.cell, "metric": j.metric, "rerun": j.y, "submitted": j.submitted,
                                "z": None, "interval": None, "values": j.values,
                                "detail": "not finite, or fewer than 2 finite seeds: must equal one of the entry's "
                                          "values"})
            continue
        # the resolution of a mean over n samples scales with the figure's size (j.floor is 1/n), the size both the
        # entry and the re-run give it (so an entry cannot widen its own intervals by inflating its figures)
        size = min(abs(statistics.fmean(finite)), abs(j.y))
        iv = predictive_interval(finite, j.floor * max(1.0, size), alpha_each)
        if largest is None or abs(iv.z(j.y)) > abs(largest["z"]):
            largest = {"cell": j.cell, "metric": j.metric, "z": round(iv.z(j.y), 3), "t": iv.t}
        if not iv.contains(j.y):
            outside.append({"cell": j.cell, "metric": j.metric, "rerun": j.y, "submitted": j.submitted,
                            "z": round(iv.z(j.y), 3), "interval": [iv.lo, iv.hi], "mean": iv.mean, "sd": iv.sd,
                            "sd_used": iv.sd_used, "seeds": iv.k, "t": iv.t})
    return outside, alpha_each, largest


def consistency_compare(cell: str, sub: Mapping[str, Any], new: Mapping[str, Any],
                        group: Sequence[Mapping[str, Any]]) -> tuple[list[_Judged], int, list[dict[str, Any]]]:
    """Compare a re-run with its submitted record (same seed) and the entry's records of its configuration at every
    seed (``group``): (figures to judge against the seed spread, exact figures compared, mismatches)."""
    mismatches = _identity_mismatches(cell, sub, new)
    judged: list[_Judged] = []
    n_exact = 0
    sm, nm = sub["metrics"], new["metrics"]
    for name in sorted(set(sm) | set(nm)):
        if is_timing(name):
            continue
        if name not in nm or name not in sm:
            mismatches.append(_mismatch(cell, name, sm.get(name, "absent"), nm.get(name, "absent")))
        elif is_derived_ratio(name):
            continue
        elif is_exact_figure(name):
            n_exact += 1
            if not (sm[name] == nm[name] or (sm[name] is None and nm[name] is None)):
                mismatches.append(_mismatch(cell, name, sm[name], nm[name], "fixed by the data and architecture: "
                                                                            "must be identical on any machine"))
        else:
            values = [json_number(r["metrics"][name]) for r in group if name in r["metrics"]]
            judged.append(_Judged(cell, name, json_number(nm[name]), sm[name], values, sd_floor(sub)))
    return judged, n_exact, mismatches


# -- machines and versions ----------------------------------------------------------------------------------------
def _check_libraries(entry: Path, contents: RunContents, here: Mapping[str, Any]) -> None:
    for _, rec in contents.records:
        env = rec["env"] if isinstance(rec["env"], Mapping) else {}
        if env.get("torch") != here.get("torch") or env.get("timm") != here.get("timm"):
            raise SplitbenchError(f"{entry}: exact or consistent verification needs the same library versions: "
                                  f"records made with torch {env.get('torch')} / timm {env.get('timm')}, this is "
                                  f"torch {here.get('torch')} / timm {here.get('timm')}")


def _check_trust(entry: Path, card: Mapping[str, Any], trust_code: bool) -> None:
    plugins = entry_plugins(entry, card)
    if plugins and not trust_code:
        files = ", ".join(str(p) for p in plugins)
        raise SplitbenchError(f"{entry}: verifying imports and runs the entry's plugin file(s) {files}; read them, "
                              "then pass --trust-code (trust_code=True) to run them")


def _versions(env: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("package_version", "git_commit", "git_dirty", "torch", "timm", "python")
    return {**{k: env.get(k) for k in keys}, "numpy": np.__version__}


def _fingerprint_text(fp: Mapping[str, Any]) -> str:
    threads = fp.get("threads")
    return (f"{fp.get('device_name') or fp.get('cpu')} ({fp.get('device')}, ISA {fp.get('isa') or 'unknown'}, "
            f"{threads} thread{'' if threads == 1 else 's'}, torch {fp.get('torch')}, timm {fp.get('timm')}, "
            f"numerics {fp.get('numerics') or 'before version 2'})")


# -- the report file ------------------------------------------------------------------------------------------------
def legacy_fingerprint(result: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of a result in the older single-result form (it named the device, its name, the thread count
    and the versions; the ISA and flags are unknown)."""
    device = result.get("device") if isinstance(result.get("device"), Mapping) else {}
    versions = result.get("versions") if isinstance(result.get("versions"), Mapping) else {}
    kind = str(device.get("device")).split(":", 1)[0] if device.get("device") is not None else None
    return machine_fingerprint({"device": kind, "device_name": device.get("name"),
                                "cpu": device.get("name") if kind == "cpu" else None, "threads": device.get("threads"),
                                "torch": versions.get("torch"), "timm": versions.get("timm")})


def report_results(data: Any, where: str = "verification report") -> dict[str, dict[str, Any]]:
    """The results of a report file's content, one per verifying machine (key: the fingerprint key); a report of the
    older single-result form (``{"status": ..., "device": ...}``) is one machine's result."""
    if not isinstance(data, Mapping):
        raise SplitbenchError(f"{where}: not a verification report (expected a JSON object)")
    if "machines" in data:
        machines = data["machines"]
        if not isinstance(machines, Mapping) or not all(isinstance(v, Mapping) for v in machines.values()):
            raise SplitbenchError(f"{where}: 'machines' must map each machine's key to its result")
        return {str(k): dict(v) for k, v in machines.items()}
    if "status" in data:
        fp = data.get("fingerprint") if isinstance(data.get("fingerprint"), Mapping) else legacy_fingerprint(data)
        return {fingerprint_key(dict(fp)): {**dict(data), "fingerprint": dict(fp)}}
    raise SplitbenchError(f"{where}: not a verification report (expected 'machines', or a single result with "
                          "'status')")


def read_report(path: str | Path, manifest_id: str | None = None) -> dict[str, dict[str, Any]]:
    """The results a report file holds (none when it does not exist yet); one that belongs to another entry (another
    manifest) or is not a report is one clear error."""
    path = Path(path)
    if path.is_dir():
        raise SplitbenchError(f"--report {path}: is a folder (expected a JSON file to write the report to)")
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"--report {path}: not readable JSON ({exc}); not overwritten") from exc
    results = report_results(data, f"--report {path}")
    other = data.get("manifest_id")
    if manifest_id and other and other != manifest_id:
        raise SplitbenchError(f"--report {path}: holds the verification of another entry (manifest {other}, this "
                              f"entry's is {manifest_id}); not overwritten")
    return results


def write_report(path: str | Path, result: Mapping[str, Any], entry: str | Path, manifest_id: str) -> Path:
    """Merge ``result`` into the report file ``path`` under its machine's key (other machines' results are kept;
    this machine's earlier result is replaced) and write it atomically."""
    path = Path(path)
    results = read_report(path, manifest_id)
    results[str(result["machine"])] = dict(result)
    data = {"format": REPORT_FORMAT, "entry": Path(entry).name, "manifest_id": manifest_id,
            "machines": dict(sorted(results.items(), key=lambda kv: str(kv[1].get("date", ""))))}
    try:
        atomic_write_text(path, json.dumps(encode_json(data), indent=2, default=str, allow_nan=False) + "\n")
    except OSError as exc:
        raise SplitbenchError(f"--report {path}: could not be written ({exc.strerror or exc}); the verdict was "
                              f"{result['status']}") from exc
    return path


def _check_report_path(path: Path, entry: Path) -> None:
    """A report inside the entry goes to its ``verification.json`` only (any other file would break the entry)."""
    try:
        inside = entry.resolve() in path.resolve().parents
    except OSError:
        inside = False
    if inside and path.resolve() != (entry / VERIFICATION_FILE).resolve():
        raise SplitbenchError(f"--report {path}: inside the entry only {entry / VERIFICATION_FILE} may be written (an "
                              "entry holds only the files submit packed)")


# -- verify -------------------------------------------------------------------------------------------------------
def verify_entry(entry: str | Path, cells: int = 2, seed: int = 0, device: str = "cpu",
                 data_root: str | Path | None = None, download: bool = False, seeds: int | None = None,
                 report: str | Path | None = None, trust_code: bool = False, alpha: float = ALPHA,
                 threads: int | None = None) -> dict[str, Any]:
    """Check ``entry``, re-run sampled cells and compare them (exactly, or for consistency with the entry's seed
    spread: see the module docstring); return this machine's result, and merge it into the report file ``report``
    when one is given (nothing is written otherwise).

    ``threads`` re-runs with that many torch threads instead of the records' own count. Another thread count
    rounds differently, so on the machine that made the records this is a consistency check under other numerics
    (the same check a different CPU model gets), not an exact one.

    Problems with the entry itself (a checksum, the card, a record, a missing file), another torch / timm version and
    plugin code without ``trust_code`` raise :class:`~benchmark.core.errors.SplitbenchError`; numbers that differ are
    reported, with status ``mismatch`` (exact) or ``inconsistent``.

    Example:
        >>> result = verify_entry("entries/my-defense", cells=2, trust_code=True)   # doctest: +SKIP
        >>> result["status"]                                                                     # doctest: +SKIP
        'consistent'
    """

    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise SplitbenchError(f"--cells {cells!r}: expected a positive number of cells to re-run")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2):
        raise SplitbenchError(f"--seeds {seeds!r}: expected 2 or more seeds to re-run (a consistency check compares "
                              "re-run seeds with the entry's seed spread)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise SplitbenchError(f"alpha {alpha!r}: expected a family-wise error rate between 0 and 1")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise SplitbenchError(f"--threads {threads!r}: expected a positive number of torch threads")
    with complete_entry(entry) as root:  # files stored once for several entries are put back (in a temporary copy)
        return _verify_complete(Path(entry), root, cells, seed, device, data_root, download, seeds, report,
                                trust_code, alpha, threads)


def _verify_complete(entry: Path, root: Path, cells: int, seed: int, device: str, data_root: str | Path | None,
                     download: bool, seeds: int | None, report: str | Path | None, trust_code: bool,
                     alpha: float, threads: int | None = None) -> dict[str, Any]:
    """:func:`verify_entry` on ``root``, a folder with every file of ``entry`` (messages and the report name
    ``entry``)."""
    import benchmark
    from benchmark.engine.checks import check_device
    from benchmark.store.records import environment
    from benchmark.suites.expand import expand

    t0 = time.perf_counter()
    card, contents = check_entry(root)
    mid = str(contents.manifest["manifest_id"])
    if report is not None:
        _check_report_path(Path(report), entry)
        read_report(report, mid)  # a report file that cannot be merged into stops verify before anything runs
    check_device(device)
    here = environment(device)
    _check_libraries(entry, contents, here)
    _check_trust(entry, card, trust_code)
    plugins = entry_plugins(root, card)
    check_code(card, plugins, str(entry / CARD_FILE))
    suite = parse_resolved_suite(contents)

    # the re-run uses the torch thread count of the entry's records (CPU training rounds differently with another),
    # unless asked for another count: then the fingerprint differs and the check is one of consistency
    if threads is None:
        counts = {rec["env"].get("threads") for _, rec in contents.records} - {None}
        threads = min(counts) if len(counts) == 1 else None
    predicted = {**machine_fingerprint(here), "threads": threads}
    exact = all(machine_fingerprint(rec["env"]) == predicted for _, rec in contents.records)
    entry_seeds = sorted({rec["config"]["seed"] for _, rec in contents.records})
    spread_seeds: list[int] = []
    if exact:
        chosen = [(path, rec, role, [rec]) for path, rec, role in choose_cells(contents, cells, seed, card["defense"])]
        rerun_seeds = sorted({rec["config"]["seed"] for _, rec, _, _ in chosen})
    else:
        if len(entry_seeds) < 2:
            made = _fingerprint_text(machine_fingerprint(contents.records[0][1]["env"]))
            raise SplitbenchError(f"{entry}: its records were made on {made}, not on this machine, and it has one "
                                  "seed; a check on another machine needs the spread of 2 or more seeds (verify it on "
                                  "the machine that made it)")
        configs = choose_configs(contents, cells, seed, card["defense"])
        spread_seeds = rerun_seed_pool(configs)
        if seeds is not None and seeds > len(spread_seeds):
            raise SplitbenchError(f"--seeds {seeds}: the drawn cells were run at {len(spread_seeds)} seeds "
                                  f"({spread_seeds})")
        rerun_seeds = spread_seeds if seeds is None else sorted(random.Random(seed).sample(spread_seeds, seeds))
        chosen = []
        for _, group, role in configs:
            records = [rec for _, rec in group]
            chosen += [(path, rec, role, records) for path, rec in group if rec["config"]["seed"] in rerun_seeds]
    producible = {c.file_name for _, cs in expand(suite) for c in cs}
    for path, rec, _, _ in chosen:
        if path.name not in producible:
            env = rec["env"]
            raise SplitbenchError(f"{path}: this splitbench does not produce that cell from the entry's suite (a "
                                  "method's version or config changed since the run); verify with splitbench "
                                  f"{env.get('package_version')} at commit {env.get('git_commit')}")

    compared: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    judged: list[_Judged] = []
    n_metrics = n_arrays = n_exact = 0
    rerun_env: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="splitbench-verify-") as tmp:
        out = Path(tmp) / "run"
        # latencies are never compared, so one timed repeat is enough
        benchmark.run(suite, out=out, device=device, only=[p.name for p, _, _, _ in chosen], data_root=data_root,
                      download=download, latency_repeats=1, executor="auto", threads=threads)
        for path, rec, role, group in chosen:
            item = {"cell": path.stem, "role": role, "seed": rec["config"]["seed"]}
            new_path = out / "records" / path.name
            if not new_path.is_file():
                mismatches.append(_mismatch(path.stem, "record", "present", "absent"))
                compared.append({**item, "mismatches": 1})
                continue
            new = with_model_convergence(read_record(new_path), path, contents)
            rerun_env = rerun_env or new["env"]
            if exact:
                bad = []
                if machine_fingerprint(new["env"]) != machine_fingerprint(rec["env"]):
                    bad.append(_mismatch(path.stem, "machine", machine_fingerprint(rec["env"]),
                                         machine_fingerprint(new["env"]), "the re-run's machine fingerprint is not "
                                                                          "the records'"))
                sub_out = read_outcomes(path, rec)
                new_out = read_outcomes(new_path, new) if new.get("outcomes") else {}
                m, a, more = compare_records(path.stem, rec, sub_out, new, new_out)
                bad += more
                n_metrics, n_arrays = n_metrics + m, n_arrays + a
                compared.append({**item, "comparison": "exact", "metrics": m, "arrays": a, "mismatches": len(bad)})
            else:
                figs, e, bad = consistency_compare(path.stem, rec, new, group)
                judged += figs
                n_exact += e
                compared.append({**item, "comparison": "consistency", "figures": len(figs), "exact_figures": e,
                                 "mismatches": len(bad)})
            mismatches += bad
    fingerprint = machine_fingerprint(rerun_env) if rerun_env else predicted
    submitted = contents.records[0][1]["env"]
    result: dict[str, Any] = {
        "machine": fingerprint_key(fingerprint),
        "fingerprint": fingerprint,
        "mode": "exact" if exact else "consistency",
        "cells": len(compared),
        "sampled": sum(1 for c in compared if c["role"] == "sampled"),
        "seed": seed,
        "seeds": rerun_seeds,
        "entry_seeds": entry_seeds,
        **({"spread_seeds": len(spread_seeds)} if not exact else {}),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"device": device, "name": fingerprint.get("device_name"), "threads": fingerprint.get("threads")},
        "versions": {**_versions(rerun_env or here), "submitted": {
            **{k: submitted.get(k) for k in ("package_version", "git_commit", "torch", "timm", "python", "device",
                                             "device_name")},
            "fingerprint": machine_fingerprint(submitted)}},
        "ignored": "timing metrics: names ending in _seconds, client_ms*, server_ms*"
                   + ("" if exact else "; ratios of judged figures (suppression_ratio*)"),
    }
    if exact:
        result.update({
            "status": "mismatch" if mismatches else "verified",
            "rule": {"why": f"this machine's fingerprint is the records': {_fingerprint_text(predicted)}"},
            "metrics_compared": n_metrics, "arrays_compared": n_arrays,
        })
        outside: list[dict[str, Any]] = []
    else:
        outside, alpha_each, largest = _judge(judged, alpha)
        result.update({
            "status": "inconsistent" if mismatches or outside else "consistent",
            "rule": {
                "why": f"records made on {_fingerprint_text(machine_fingerprint(submitted))}, re-run on "
                       f"{_fingerprint_text(fingerprint)}",
                "interval": "m ± t_{k-1, 1-alpha_each/2} · max(s, floor) · sqrt(1 + 1/k) over the entry's k seeds "
                            "of the cell's configuration",
                "alpha": alpha, "correction": "Bonferroni", "figures": len(judged), "alpha_each": alpha_each,
                "floor": "1 / n, n the fewest samples any figure of the cell is scored on",
                "exact_figures": list(EXACT_FIGURES),
                "not_compared": "per-sample arrays and the attack's budget (another machine's per-sample outcomes "
                                "differ as a new seed's do)",
            },
            "figures_judged": len(judged), "exact_figures_compared": n_exact, "largest_z": largest,
        })
    result.update({"compared": compared, "mismatches": mismatches, "outside": outside,
                   "seconds": round(time.perf_counter() - t0, 1)})
    if report is not None:
        write_report(report, result, entry, mid)
    return result


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
        label = _attack_label(rec)
        pick = [pr for pr in same_track if _attack_label(pr[1]) == label] or same_track
        if pick and pick[0][0].name not in names:
            names.add(pick[0][0].name)
            chosen.append((pick[0][0], pick[0][1], "reference"))
    return chosen


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_report(result: Mapping[str, Any], entry: str | Path, report: str | Path | None = None,
                  limit: int = 50) -> str:
    """A few lines for the terminal: the verdict, what was compared, and each difference (up to ``limit``)."""
    roles = [c["role"] for c in result["compared"]]
    rule = result["rule"]
    head = (f"{entry}: {result['status']}: {result['cells']} cell(s) re-run ({roles.count('sampled')} sampled, "
            f"{roles.count('reference')} reference)")
    if result["mode"] == "exact":
        lines = [f"{head}, {result['metrics_compared']} metrics and {result['arrays_compared']} per-sample arrays "
                 f"compared exactly ({rule['why']}); {result['seconds']} s"]
    else:
        k = result.get("spread_seeds", len(result["entry_seeds"]))
        lines = [f"{head} at seeds {result['seeds']}, {result['figures_judged']} figures judged against the entry's "
                 f"predictive interval for a new seed from its own {k}-seed spread (alpha {rule['alpha']} family-wise, "
                 f"Bonferroni: {rule['alpha_each']:.2g} per figure), {result['exact_figures_compared']} fixed figures "
                 f"compared exactly, per-sample arrays not compared ({rule['why']}); {result['seconds']} s"]
        top = result.get("largest_z")
        if top:
            lines.append(f"  largest |z|: {abs(top['z']):.2f} ({top['cell']} {top['metric']}; inside while |z| <= "
                         f"{top['t']:.3g})")
    for m in result["mismatches"][:limit]:
        detail = f" ({m['detail']})" if m.get("detail") else ""
        lines.append(f"  mismatch: {m['cell']} {m['metric']}: submitted {_fmt(m['submitted'])}, re-run "
                     f"{_fmt(m['rerun'])}{detail}")
    for o in result["outside"][:limit]:
        if o["z"] is None:
            lines.append(f"  outside: {o['cell']} {o['metric']}: re-run {_fmt(o['rerun'])}, the entry's values "
                         f"{o['values']} ({o['detail']})")
        else:
            lo, hi = o["interval"]
            lines.append(f"  outside: {o['cell']} {o['metric']}: re-run {_fmt(o['rerun'])}, z = {o['z']:.1f}, "
                         f"interval [{lo:.6g}, {hi:.6g}] (mean {o['mean']:.6g}, sd {o['sd']:.3g} over {o['seeds']} "
                         f"seeds; |z| <= {o['t']:.3g} inside)")
    more = max(0, len(result["mismatches"]) - limit) + max(0, len(result["outside"]) - limit)
    if more:
        lines.append(f"  ... and {more} more" + (f" in {report}" if report else ""))
    lines.append(f"report: {report}" if report else "report: not written (pass --report FILE to keep it, e.g. "
                                                     f"--report {Path(entry) / VERIFICATION_FILE})")
    return "\n".join(lines)
