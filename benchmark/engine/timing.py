"""Where a run's time went, read back from its records: the seconds of every fit and every attack.

Each record carries its model's training time (the same on every cell of one model, counted once per
``model_hash``), its attack's time and, when the suite tunes the attack, the tuning's (a part of its own), each on two
clocks (:mod:`benchmark.core.clock`): the wall clock (``fit_seconds``, ``attack_seconds``, ``tuning_seconds``), which
grows when a worker shares its core or is paused, and the worker process's CPU time (``fit_cpu_seconds``,
``attack_cpu_seconds``, ``tuning_cpu_seconds``), which does not. ``--clock auto`` (the default) reads the CPU clock
when every timed record has it and the wall clock otherwise (records written before the CPU clock was kept);
the table's first line says which. Summed over a manifest's cells they are the run's worker-seconds, whatever
executor or resumption wrote them; divided by the number of workers they give the wall time the run would take with
its work spread evenly on idle cores (a lower bound: the last models keep one worker busy alone). On the CPU clock
that holds for one torch thread per worker (with T threads the CPU seconds are up to T times the wall time); on a
GPU the CPU clock leaves out the device's time, so read the wall clock there.
``splitbench timing RUN_DIR`` prints it by part (the fits, the fits of models trained for admission only, each
attack) or by setting (defense and knob).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path

from benchmark.api.contract import defense_row
from benchmark.core.errors import SplitbenchError, did_you_mean
from benchmark.store.manifest import load_manifest
from benchmark.store.records import iter_records

FIT = "fit"
FIT_ADMISSION = "fit (admission only)"
#: clock -> the record keys of (a fit, an attack, its tuning) on it
CLOCKS = {"wall": ("fit_seconds", "attack_seconds", "tuning_seconds"),
          "cpu": ("fit_cpu_seconds", "attack_cpu_seconds", "tuning_cpu_seconds")}
CLOCK_NAMES = {"wall": "wall clock of each worker", "cpu": "CPU time of each worker process"}


@dataclasses.dataclass
class TimeSplit:
    """Seconds per part of a run (``by``: "part" or "setting"), with the counts a reader needs beside them."""

    manifest: str
    by: str
    seconds: dict[str, float]
    counts: dict[str, int]  # part -> models (fit parts, settings) or cells (attacks)
    models: int = 0
    admission_models: int = 0
    cells: int = 0
    missing: int = 0  # attack cells without a time (failed before timing, or records from before times were kept)
    missing_fits: int = 0  # models without a fit time on the clock read
    clock: str = "wall"

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def table(self, workers: int = 2) -> str:
        """The split as aligned text, largest part first, with the even-spread wall time at ``workers``."""
        if workers < 1:
            raise SplitbenchError(f"--workers must be at least 1, got {workers}")
        unit = "models" if self.by == "setting" else "n"
        head = (f"manifest {self.manifest}: {self.models} models ({self.models - self.admission_models} attacked, "
                f"{self.admission_models} trained and validated for admission only), {self.cells} cells; "
                f"seconds on the {CLOCK_NAMES[self.clock]}")
        width = max([len(k) for k in self.seconds] + [5])
        lines = [head, "", f"{'part' if self.by == 'part' else 'setting':<{width}}  {'seconds':>9}  {'share':>6}  "
                           f"{unit:>6}  {'per one':>8}"]
        total = self.total
        for k, v in sorted(self.seconds.items(), key=lambda kv: (-kv[1], kv[0])):
            n = self.counts.get(k, 0)
            share = v / total if total > 0 else math.nan
            lines.append(f"{k:<{width}}  {v:9.0f}  {share:6.1%}  {n:6d}  {v / max(n, 1):8.1f}")
        lines.append(f"{'total':<{width}}  {total:9.0f}  {1.0 if total > 0 else math.nan:6.1%}")
        lines += ["", f"at {workers} worker{'s' if workers != 1 else ''}: {total / workers / 60:.1f} minutes with the "
                      "work spread evenly (a lower bound on the wall time)"]
        if self.missing:
            lines.append(f"{self.missing} attack cells carry no time on this clock and are not counted")
        if self.missing_fits:
            lines.append(f"{self.missing_fits} models carry no fit time on this clock and are not counted")
        return "\n".join(lines)


def _seconds(value: object) -> float | None:
    """A recorded time, or None where the record has none (or not a finite number)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _has_cpu(rec: dict) -> bool:
    """Whether every time a record has on the wall clock it has on the CPU clock too."""
    metrics = rec.get("metrics") or {}
    return all(_seconds(metrics.get(wall)) is None or _seconds(metrics.get(cpu)) is not None
               for wall, cpu in zip(CLOCKS["wall"], CLOCKS["cpu"]))


def _setting(cfg: dict) -> str:
    """``SCENARIO BACKBONE@SPLIT ROW@KNOB``: the track and the leaderboard row of a record's setting."""
    d = cfg["defense"]
    row = defense_row(d["name"], d.get("config"))
    return f"{cfg['scenario']['name']} {cfg['backbone']['name']}@{cfg['backbone']['split']} {row}@{d['knob_value']:g}"


def time_split(run_dir: str | Path, manifest: str | None = None, partial: bool = False,
               by: str = "part", clock: str = "auto", defense: str | None = None) -> TimeSplit:
    """The seconds of one manifest of ``run_dir`` (the latest unless ``manifest`` names one), by part or setting,
    on one clock (``wall``, ``cpu``, or ``auto``: CPU time when every timed record has it); with ``defense``, only
    the cells of that defense."""
    if by not in ("part", "setting"):
        raise SplitbenchError(f"--by must be 'part' or 'setting', got {by!r}")
    if clock not in ("auto", *CLOCKS):
        raise SplitbenchError(f"--clock must be one of auto, {', '.join(CLOCKS)}; got {clock!r}")
    run_dir = Path(run_dir)
    records = [rec for _, rec in iter_records(run_dir, manifest, partial)]
    if defense is not None:
        names = sorted({rec["config"]["defense"]["name"] for rec in records})
        if defense not in names:
            raise SplitbenchError(f"--defense: the run has no cells of {defense!r} (it has "
                                  f"{', '.join(names) or 'none'}){did_you_mean(defense, names)}")
        records = [rec for rec in records if rec["config"]["defense"]["name"] == defense]
    if clock == "auto":
        clock = "cpu" if all(_has_cpu(rec) for rec in records) else "wall"
    fit_key, attack_key, tuning_key = CLOCKS[clock]
    seconds: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    models: dict[str, bool] = {}  # model hash -> attacked
    fitted: set[str] = set()
    per_setting: dict[str, set[str]] = collections.defaultdict(set)
    out = TimeSplit("", by, seconds, counts, clock=clock)
    unfitted: set[str] = set()
    for rec in records:
        cfg, metrics = rec["config"], rec.get("metrics") or {}
        out.cells += 1
        key = str(rec.get("model_hash") or rec["cell_id"])
        attack = cfg.get("attack")
        models[key] = models.get(key, False) or attack is not None
        setting = _setting(cfg)
        per_setting[setting].add(key)
        fit = _seconds(metrics.get(fit_key))
        if fit is None:
            unfitted.add(key)
        elif key not in fitted:
            fitted.add(key)
            part = setting if by == "setting" else (FIT if attack is not None else FIT_ADMISSION)
            seconds[part] += fit
            if by == "part":
                counts[part] += 1
        if attack is None:
            continue
        label = str(attack.get("label", attack["name"]))
        if _seconds(metrics.get(attack_key)) is None:
            out.missing += 1
            continue
        for part, name in ((label, attack_key), (f"{label} (tuning)", tuning_key)):
            value = _seconds(metrics.get(name))
            if value is not None:
                part = setting if by == "setting" else part
                seconds[part] += value
                if by == "part":
                    counts[part] += 1
    out.manifest = load_manifest(run_dir, manifest)["manifest_id"]  # the records were read: the folder is a run
    if by == "setting":
        counts.update({k: len(v) for k, v in per_setting.items()})
    out.missing_fits = len(unfitted - fitted)
    out.models = len(models)
    out.admission_models = sum(1 for attacked in models.values() if not attacked)
    return out
