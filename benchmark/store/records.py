"""Result records: one JSON file per cell, written atomically, with a schema version and the environment.

A record holds ``schema_version``, ``status`` (ok / failed / not_applicable), ``reason``, ``cell_id``, the
fully resolved ``config`` and its ``config_hash``, ``model_hash``, ``metrics`` (numbers only),
``higher_is_better`` per metric, ``budget``, ``samples`` (counts), ``outcomes`` (the name and sha256 of the
cell's per-sample outcomes file) and ``env``: the versions, the git commit and dirty state of the code that wrote the
record (read when it is written), and what decides its arithmetic (device, CPU model, the ISA torch dispatches to,
the CPU's numeric flags, thread count, the harness's own numerics version: :func:`machine_fingerprint`).

Per-sample outcomes (the designated model's correctness per eval sample, the attack's per-sample scores) live in a
sidecar ``<cell>.npz`` beside the JSON (numeric and string arrays only, read with ``allow_pickle=False``), so the
leaderboard can put an interval on every number. Its checksum in the record makes a swapped or edited file an
error, not a silent change.

A run directory also holds **manifests** (``manifests/<id>.json``): the cells one invocation of ``splitbench run``
expanded to, with the presentation settings (reference, utility budget, bootstrap replicates). The leaderboard
reads exactly the cells of one manifest, so records of another run with other settings in the same folder are
never mixed in. :func:`load_frame` reads a run directory into one pandas DataFrame.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import atomic_write_bytes, atomic_write_text, encode_number, json_number, sha256_file

SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "not_applicable")
REQUIRED_KEYS = ("schema_version", "status", "cell_id", "config", "config_hash", "metrics", "budget", "env")


def clean_metrics(metrics: dict[str, Any]) -> dict[str, float | int | None]:
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"metric {k!r} must be a number, got {type(v).__name__}")
        out[k] = encode_number(v)
    return out


def write_record(path: Path, record: dict[str, Any]) -> None:
    from benchmark.measure.metrics import higher_is_better  # imports torch: not needed to read records

    record = dict(record)
    record["schema_version"] = SCHEMA_VERSION
    record["metrics"] = clean_metrics(record.get("metrics", {}))
    record["higher_is_better"] = {k: higher_is_better(k) for k in record["metrics"]}
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"{path}: not a readable result record ({exc})") from exc
    validate_record(rec, str(path))
    return rec


def validate_record(rec: Any, where: str) -> None:
    if not isinstance(rec, dict):
        raise SplitbenchError(f"{where}: a record must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise SplitbenchError(f"{where}: record is missing key(s) {missing}")
    if rec["schema_version"] != SCHEMA_VERSION:
        raise SplitbenchError(f"{where}: schema_version {rec['schema_version']!r} is not supported "
                              f"(expected {SCHEMA_VERSION})")
    if rec["status"] not in STATUSES:
        raise SplitbenchError(f"{where}: status {rec['status']!r} is not one of {STATUSES}")
    for k, v in rec["metrics"].items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise SplitbenchError(f"{where}: metric {k!r} must be a number, got {v!r}")


def write_outcomes(path: Path, arrays: dict[str, Any]) -> dict[str, str]:
    """Write per-sample outcomes atomically as a compressed ``.npz``; return ``{"file", "sha256"}`` for the record."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in sorted(arrays.items())})
    atomic_write_bytes(path, buf.getvalue())
    return {"file": path.name, "sha256": sha256_file(path)}


def write_gallery(path: Path, grid: Any) -> dict[str, str]:
    """Save a reconstruction gallery (uint8 ``[rows, K, H, W, C]``: eval images above their reconstructions) as
    one small PNG at the images' own resolution, 2-pixel white gaps between them, written atomically; return
    ``{"file", "sha256"}`` for the record."""
    import io

    import numpy as np
    from PIL import Image

    g = np.asarray(grid, dtype=np.uint8)
    rows, k, h, w, c = g.shape
    pad = 2
    canvas = np.full((rows * (h + pad) + pad, k * (w + pad) + pad, c), 255, dtype=np.uint8)
    for r in range(rows):
        for i in range(k):
            y, x = pad + r * (h + pad), pad + i * (w + pad)
            canvas[y:y + h, x:x + w] = g[r, i]
    # stored at native size, pixel for pixel (the site enlarges it with nearest-neighbour scaling in CSS); an
    # enlarged copy would weigh about 4x as much in every entry for no extra information
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return {"file": path.name, "sha256": sha256_file(path)}


def read_outcomes(record_path: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """The per-sample outcomes a record references, checked against its checksum (numeric/string arrays only)."""
    import numpy as np

    ref = rec.get("outcomes")
    if not ref:
        raise SplitbenchError(f"{record_path}: the record references no per-sample outcomes file")
    path = Path(record_path).parent / ref["file"]
    if not path.is_file():
        raise SplitbenchError(f"{path}: per-sample outcomes file is missing (named by {Path(record_path).name})")
    if sha256_file(path) != ref.get("sha256"):
        raise SplitbenchError(f"{path}: checksum does not match the one in {Path(record_path).name} (the file was "
                              "changed or swapped)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise SplitbenchError(f"{path}: not a readable outcomes file ({exc})") from exc


def iter_records(run_dir: Path, manifest: str | None = None, partial: bool = False
                 ) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The records named by a run directory's manifest (the latest one unless ``manifest`` names another).

    Args:
        partial: skip cells the manifest names but whose record is missing (a run still in progress or killed)
            instead of failing.
    """
    from benchmark.store.manifest import load_manifest

    run_dir = Path(run_dir)
    rec_dir = run_dir / "records"
    if not rec_dir.is_dir():
        raise SplitbenchError(f"{run_dir}: not a run directory (no records/ folder; expected the --out of "
                              "`splitbench run`)")
    man = load_manifest(run_dir, manifest)
    for name in man["cells"]:
        path = rec_dir / name
        if not path.is_file():
            if partial:
                continue
            raise SplitbenchError(f"{path}: record named by manifest {man['manifest_id']} is missing (rerun "
                                  "`splitbench run` with the same settings to finish it, or pass --partial)")
        yield path, read_record(path)


def load_frame(run_dir: str | Path, manifest: str | None = None, partial: bool = False):
    """The records of one manifest of a run directory as a pandas DataFrame, one row per cell.

    Columns: scenario, backbone, split, defense, knob, knob_value, attack, seed, status, reason, and one column
    per metric (prefixed ``m.``).
    """
    import pandas as pd

    rows = []
    for path, rec in iter_records(Path(run_dir), manifest, partial):
        cfg = rec["config"]
        attack = cfg.get("attack") or {}
        row = {
            "cell_id": rec["cell_id"],
            "suite": cfg.get("suite"),
            "scenario": cfg["scenario"]["name"],
            "backbone": cfg["backbone"]["name"],
            "split": cfg["backbone"]["split"],
            "defense": cfg["defense"]["name"],
            "knob": cfg["defense"]["knob"],
            "knob_value": cfg["defense"]["knob_value"],
            # a model cell (a seed only admission reads) has no attack
            "attack": attack.get("label", attack.get("name", "")),
            "attack_name": attack.get("name", ""),
            "attack_kind": attack.get("kind", "model"),
            "attack_requires": ",".join(attack.get("requires", [])),
            "white_box_client": cfg["defense"].get("white_box_client", True),
            "seed": cfg["seed"],
            "status": rec["status"],
            "reason": rec.get("reason"),
            "device": rec["env"].get("device"),
            "path": str(path),
        }
        for k, v in rec["metrics"].items():
            row[f"m.{k}"] = json_number(v)
        rows.append(row)
    return pd.DataFrame(rows)


def git_provenance() -> dict[str, Any]:
    """The code that is running now: ``{"git_commit": SHA or None, "git_dirty": bool or None}`` (None without git or
    outside a checkout). Read afresh on every call (one ``git status``, a few ms), so a record written after a commit
    or an edit names the code that wrote it; ``--no-optional-locks`` keeps it from touching the index."""
    src = Path(__file__).resolve().parents[2]  # the checkout (benchmark/store/records.py -> ../../..)
    try:
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(src), "status", "--porcelain=v2", "--branch",
                              "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    if out.returncode != 0:
        return {"git_commit": None, "git_dirty": None}
    lines = out.stdout.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if commit is None or not re.fullmatch(r"[0-9a-f]{40,64}", commit):  # "(initial)": a repository without commits
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": any(not line.startswith("#") for line in lines)}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_name() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


#: The CPU flags that decide which kernels torch (and oneDNN / MKL under it) runs on x86 and Arm: a record keeps
#: those its CPU has, so two machines whose arithmetic may differ are told apart even under one model name.
NUMERIC_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                     "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm")


def cpu_flags() -> list[str]:
    """The :data:`NUMERIC_CPU_FLAGS` this CPU reports in ``/proc/cpuinfo``, sorted (empty where it is not readable)."""
    for line in _cpuinfo():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            have = set(value.split())
            return sorted(f for f in NUMERIC_CPU_FLAGS if f in have)
    return []


def cpu_isa() -> str | None:
    """The instruction set torch's CPU kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``: "AVX512",
    "AVX2", "DEFAULT", ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("splitbench")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def environment(device: str) -> dict[str, Any]:
    """The environment block of a record."""
    import timm
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numerics": NUMERICS,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "cpu": cpu_name(),
        "isa": cpu_isa(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **git_provenance(),
        "package_version": package_version(),
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return env


#: The harness's own numerics, raised whenever a change computes the same seed's numbers differently on one machine
#: (the same functions summed in another order, say): records of another value are never compared bit for bit.
#: Records written before the version was recorded have none (read as None: the numerics of commit ebc5b86 and
#: before); 2: convolutions on a 1x1 map computed as a matrix product
#: (:func:`benchmark.models.backbones.one_pixel_convs`); 3: every convolution whose output is one pixel so computed,
#: from the window it reads (test_resnet's layer4 at 28x28, its layer2 at 8x8).
NUMERICS = 3

#: What decides the numbers a run computes on one machine: two records made under the same fingerprint (same seed)
#: are bit-identical; see :func:`machine_fingerprint`.
FINGERPRINT_KEYS = ("device", "device_name", "cpu", "isa", "cpu_flags", "threads", "torch", "timm", "numerics")


def machine_fingerprint(env: dict[str, Any]) -> dict[str, Any]:
    """The machine fingerprint of a record's (or a manifest's) ``env`` block: the device type (``cuda:1`` is
    ``cuda``), the device's name, the CPU model, the instruction set torch dispatches to, the CPU's numeric flags,
    the torch thread count, the torch / timm versions and the harness's numerics version (:data:`NUMERICS`). A key an
    older record lacks is None (an unknown ISA, unknown flags, numerics before the version was recorded), so an old
    record never matches a new machine's fingerprint by accident."""
    env = env if isinstance(env, dict) else {}
    device = env.get("device")
    flags = env.get("cpu_flags")
    return {
        "device": str(device).split(":", 1)[0] if device is not None else None,
        "device_name": env.get("device_name"),
        "cpu": env.get("cpu"),
        "isa": env.get("isa"),
        "cpu_flags": sorted(str(f) for f in flags) if isinstance(flags, list) else None,
        "threads": env.get("threads"),
        "torch": env.get("torch"),
        "timm": env.get("timm"),
        "numerics": env.get("numerics"),
    }


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    """A short stable name of a fingerprint (16 hex digits of the sha256 of its canonical JSON)."""
    import hashlib

    text = json.dumps({k: fingerprint.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
