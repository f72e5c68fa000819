"""Hardware rows: what every defense's trained client (and the server tail) costs on a given machine.

``splitbench hardware --suite S --device D --out RUN`` loads (or trains, like ``splitbench run``, into the same
cache) the first seed's model of every defense setting of suite ``S`` and measures, for what the client computes and
sends (``Defense.sent``) and for the server's prediction from it (``Defense.received``, then ``predict``):

- latency per call at batch 1 (MLPerf's single-stream scenario) and at larger batches (its offline scenario, 8
  and 64 by default): p50 / p90 / p99 over at least ``min_seconds`` of timed calls after warm-up, each call
  synchronised with the device; throughput (samples per second at the p50 latency);
- peak memory of the call (CUDA: the allocator's peak; CPU: the rise of the process's peak resident set, reset
  before each measurement through ``/proc/self/clear_refs`` where Linux offers it);
- bytes per sample actually sent (``Defense.payload_bytes``);
- in fp32, and in bf16 autocast on CUDA; eager and ``torch.compile`` d (a compile that fails is recorded as such).

Each record carries the machine's fingerprint (CPU model and cores, GPU name, driver, CUDA, torch), so records of
several machines merge into one table (:func:`hardware_table`; ``splitbench hardware --table DIR ...``) and the
static site's hardware page. Records are written to ``RUN/hardware/<machine>.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import config_hash
from benchmark.core.io import atomic_write_text
from benchmark.kit.cost import latency_stats
from benchmark.store.records import cpu_name

PARTS = ("client", "server")
KEYS = ("machine", "suite", "scenario", "backbone", "split", "defense", "knob", "knob_value", "part", "precision",
        "mode", "batch")
# rows of a client deployed on a suite's real backbone (``deployment``) also carry "deployed_from" (the track's
# backbone label) and "image_size"; their "backbone" and "split" are the real backbone's


def _gpu_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def fingerprint(device: torch.device) -> dict[str, Any]:
    """The machine a measurement was taken on, and a short id of it."""
    fp: dict[str, Any] = {"cpu": cpu_name(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "platform": platform.platform(), "device_type": device.type,
                          "gpu": None, "gpu_driver": None, "cuda": torch.version.cuda}
    if device.type == "cuda":
        fp.update(gpu=torch.cuda.get_device_name(device), gpu_driver=_gpu_driver(),
                  cudnn=torch.backends.cudnn.version())
    fp["machine"] = config_hash({k: fp[k] for k in ("cpu", "cpu_cores", "gpu", "gpu_driver", "cuda", "torch",
                                                     "device_type")}, 10)
    return fp


def _reset_peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set size (VmHWM)
    except OSError:
        pass
    return _vm("VmRSS")


def _vm(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_mb(device: torch.device, base: int) -> float:
    if device.type == "cuda":
        return max(0, torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    return max(0, _vm("VmHWM") - base) / 2 ** 20


def _batch(x: Tensor, n: int) -> Tensor:
    """``n`` inputs, repeating ``x`` if it holds fewer."""
    reps = -(-n // len(x))
    return x.repeat(reps, *([1] * (x.ndim - 1)))[:n]


def measure_defense(defense: Any, x: Tensor, device: torch.device, batches: Sequence[int], min_seconds: float,
                    compile_too: bool, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Hardware rows of one trained defense: every part x precision x mode x batch."""
    rows = []
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])
    with torch.no_grad():
        z = defense.release(x[:1]).float()
        payload = float(defense.payload_bytes(z).mean())
    for part in PARTS:
        raw = defense.sent if part == "client" else defense.serve
        for precision in precisions:
            for mode in ["eager"] + (["compiled"] if compile_too else []):
                fn, note = raw, ""
                if mode == "compiled":
                    try:
                        fn = torch.compile(raw)
                    except Exception as exc:  # noqa: BLE001 - recorded, the other rows go on
                        fn, note = None, f"compile failed: {type(exc).__name__}: {exc}"
                for b in batches:
                    row = {**base, "part": part, "precision": precision, "mode": mode, "batch": int(b),
                           "bytes_per_sample": payload if part == "client" else None, "note": note}
                    if fn is None:
                        rows.append(row)
                        continue
                    xb = _batch(x, b)
                    if part == "server":
                        with torch.no_grad():
                            xb = defense.sent(xb)

                    def call(inp: Tensor, fn=fn, precision=precision) -> Tensor:
                        if precision == "bf16":
                            with torch.autocast(device.type, dtype=torch.bfloat16):
                                return fn(inp)
                        return fn(inp)

                    try:
                        mem0 = _reset_peak(device)
                        stats = latency_stats(call, xb, warmup=3, repeats=10, min_seconds=min_seconds)
                        peak = _peak_mb(device, mem0)
                    except Exception as exc:  # noqa: BLE001 - e.g. a compiled graph that fails at run time
                        row["note"] = f"{mode} call failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                        rows.append(row)
                        continue
                    row.update({"p50_ms": stats["p50"], "p90_ms": stats["p90"], "p99_ms": stats["p99"],
                                "mean_ms": stats["mean"], "runs": stats["runs"],
                                "throughput_per_s": b / (stats["p50"] / 1000.0) if stats["p50"] > 0 else None,
                                "peak_memory_mb": peak})
                    rows.append(row)
    return rows


def measure_deployed(defense: Any, target: Any, device: torch.device, batches: Sequence[int], min_seconds: float,
                     compile_too: bool, base: dict[str, Any], spec: Any) -> list[dict[str, Any]]:
    """Hardware rows of ``defense`` deployed on the suite's real backbone for its track (a suite's
    ``deployment``; :meth:`~benchmark.api.contract.Defense.deployed_on`), on synthetic inputs of its image size."""
    import logging

    from benchmark.api.contract import NotApplicable
    from benchmark.engine.evaluation import deployed_client

    try:
        copy, x = deployed_client(defense, target, device, max(batches))
    except NotApplicable as exc:
        logging.getLogger("splitbench").info("  not deployable on %s: %s", target.label, exc)
        return []
    base = {**base, "backbone": target.name, "split": target.split, "image_size": target.image_size,
            "deployed_from": spec.backbone.label}
    return measure_defense(copy, x, device, batches, min_seconds, compile_too, base)


def run_hardware(suite: Any, out: Path, device: str = "cpu", batches: Sequence[int] = (1, 8, 64),
                 min_seconds: float = 1.0, compile_too: bool = True, cache_dir: Path | None = None,
                 data_root: Path | None = None, download: bool = False) -> Path:
    """Measure every defense setting of ``suite`` (first seed) on ``device``; write ``out/hardware/<machine>.json``."""
    import logging

    from benchmark.data.types import DataOptions
    from benchmark.engine.runner import Runner, RunOptions
    from benchmark.engine.summary import RunSummary

    log = logging.getLogger("splitbench")
    if not batches or any(b < 1 for b in batches):
        raise SplitbenchError(f"--batch sizes must be positive integers, got {list(batches)}")
    if min_seconds < 0:
        raise SplitbenchError(f"--min-seconds must be >= 0, got {min_seconds}")
    runner = Runner(suite, RunOptions(out=Path(out), device=device, cache_dir=cache_dir, progress=False,
                                      data=DataOptions(data_root, download)))
    dev = runner.device
    fp = fingerprint(dev)
    plan = [(spec, cells) for spec, cells in runner.plan() if spec.seed == suite.seeds[0]]
    runner.check(plan)
    rows: list[dict[str, Any]] = []
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for i, (spec, _) in enumerate(plan, 1):
        data = runner.data_for(spec)
        defense, _, _ = runner.defense_for(spec, data, RunSummary(runner.out))
        x = data.info.normalize(data.eval.images[: max(batches)])
        base = {**fp, "suite": suite.name, "scenario": spec.scenario.name, "backbone": spec.backbone.name,
                "split": spec.backbone.split, "defense": spec.defense.name, "knob": spec.defense.knob,
                "knob_value": spec.defense.knob_value, "date": date}
        log.info("[%d/%d] %s %s %s: measuring", i, len(plan), spec.scenario.name, spec.backbone.label,
                 spec.defense.label)
        rows += measure_defense(defense, x, dev, batches, min_seconds, compile_too, base)
        target = suite.deployment.get(spec.backbone.label)
        if target is not None:
            rows += measure_deployed(defense, target, dev, batches, min_seconds, compile_too, base, spec)
    path = Path(out) / "hardware" / f"{fp['machine']}-{suite.name}.json"
    atomic_write_text(path, json.dumps(rows, indent=1, sort_keys=True, default=str) + "\n")
    return path


def load_rows(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """Hardware rows from ``hardware/*.json`` under each folder (a run directory, an entry, or the folder itself);
    rows of the same machine and measurement keep only the most recent."""
    latest: dict[tuple, dict[str, Any]] = {}
    for folder in folders:
        folder = Path(folder)
        hw = folder / "hardware" if (folder / "hardware").is_dir() else folder
        if not hw.is_dir():
            raise SplitbenchError(f"{folder}: no hardware records (expected a folder with hardware/*.json)")
        for f in sorted(hw.glob("*.json")):
            try:
                items = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SplitbenchError(f"{f}: not a readable hardware record file ({exc})") from exc
            items = items if isinstance(items, list) else [items]
            for r in items:
                if not isinstance(r, dict) or any(k not in r for k in KEYS):
                    raise SplitbenchError(f"{f}: not a hardware record (expected objects with {', '.join(KEYS)})")
                key = tuple(r[k] for k in KEYS)
                if key not in latest or str(r.get("date", "")) >= str(latest[key].get("date", "")):
                    latest[key] = r
    return sorted(latest.values(), key=lambda r: tuple(str(r[k]) for k in KEYS))


def _deployed(row: Any) -> str:
    src = row.get("deployed_from")
    if not isinstance(src, str) or not src:
        return ""
    return f" (deployed from {src}, {int(row.get('image_size') or 0)} px)"


def hardware_table(rows: list[dict[str, Any]], fmt: str = "md") -> str:
    """One table of hardware rows from any number of machines (markdown or CSV)."""
    import pandas as pd

    cols = ["gpu", "cpu", "device_type", "torch", "scenario", "backbone", "split", "deployed_from", "image_size",
            "defense", "knob_value", "part", "precision", "mode", "batch", "p50_ms", "p90_ms", "p99_ms",
            "throughput_per_s", "peak_memory_mb", "bytes_per_sample", "note"]
    frame = pd.DataFrame(rows, columns=cols)
    if fmt == "csv":
        return frame.to_csv(index=False)
    frame["machine"] = [r.get("gpu") or r.get("cpu") for r in rows]
    head = ["machine", "backbone @ split", "defense", "part", "precision", "mode", "batch", "p50 ms", "p90 ms",
            "p99 ms", "samples/s", "peak MiB", "bytes/sample"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]

    def num(v: Any, digits: int = 3) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"

    for _, r in frame.iterrows():
        lines.append("| " + " | ".join([
            str(r["machine"]), f"{r['backbone']}@{r['split']}" + _deployed(r), f"{r['defense']}@{r['knob_value']:g}",
            r["part"],
            r["precision"], r["mode"] + (f" ({r['note']})" if r["note"] else ""), str(r["batch"]),
            num(r["p50_ms"]), num(r["p90_ms"]), num(r["p99_ms"]), num(r["throughput_per_s"]),
            num(r["peak_memory_mb"]), num(r["bytes_per_sample"])]) + " |")
    return "\n".join(lines) + "\n"
