"""Peak resident memory of loading a large parquet image dataset, at several dataset sizes.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_memory.py``). Writes a synthetic dataset in the
hub's parquet layout (FairFace's: ``0.25/train-*.parquet`` with an ``image`` struct column of JPEG bytes and
ClassLabel columns ``gender`` / ``race``), which both the ``fairface`` loader (through ``datasets``) and the
``custom`` loader (through pyarrow) read. Each measurement runs in a fresh Python process that imports the
libraries, resets its peak-RSS counter (``/proc/self/clear_refs``), loads, and reports ``VmHWM`` from
``/proc/self/status``, so the figure is the load's own peak and not the parent's or the imports'.

For every loader and size it measures, in this order:

- ``load_arrays`` cold: the decode cache is empty, so every image is decoded and resized;
- ``load_arrays`` warm: a second load, which may read the decode cache;
- ``Scenario.load`` cold and warm: the same plus the split into train / val / aux / eval (which copies the
  images it selects).

Printed per row: the peak RSS of the process (MiB; about 700 MiB of it is the imported libraries), how far the
load raised it above the RSS the process had before loading, that rise as a multiple of the theoretical size of
the decoded images (N x 3 x S x S bytes), the resident memory left at the end split into anonymous and
file-backed pages, the wall time, whether the returned images live in a memory-mapped file, and the size of the
decode cache on disk. A cold load that decodes into a memory-mapped store still rises by a bounded amount:
the pages written since the last release (64 MiB), one parquet row group being read (this writer puts up to
about 100 MiB in one) or the ``datasets`` arrow file's mapped pages, and the decoder's buffers.

Environment:
    SPLITBENCH_BENCH_MEMORY_SIZES: comma-separated numbers of images (default ``5000,20000,50000``).
    SPLITBENCH_BENCH_MEMORY_PX: decode target size in pixels (default 128, the paper-dcp suite's).
    SPLITBENCH_BENCH_MEMORY_LOADERS: scenarios to load with (default ``custom,fairface``).
    SPLITBENCH_BENCH_MEMORY_SOURCE_PX: side of the source JPEGs (default 64; small keeps the build quick).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZES = [int(v) for v in os.environ.get("SPLITBENCH_BENCH_MEMORY_SIZES", "5000,20000,50000").split(",") if v.strip()]
PX = int(os.environ.get("SPLITBENCH_BENCH_MEMORY_PX", 128))
LOADERS = [v.strip() for v in os.environ.get("SPLITBENCH_BENCH_MEMORY_LOADERS", "custom,fairface").split(",")
           if v.strip()]
SOURCE_PX = int(os.environ.get("SPLITBENCH_BENCH_MEMORY_SOURCE_PX", 64))
POOL = 512  # distinct source images, cycled over the rows: decoding costs the same whichever image a row holds
RACES = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]
REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: argv[1] is a JSON object with scenario, data_root, image_size and what to call.
CHILD = r"""
import json, sys, time
from pathlib import Path

args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
import datasets, numpy, torch  # noqa: F401  (imported before the peak is reset, so they are not counted)
from benchmark.core.fields import build_config
from benchmark.data.types import DataOptions
from benchmark.core.registry import SCENARIOS

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out

def file_backed(address):
    # whether the address lies in a mapping of a file on disk (a memory-mapped store)
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(v, 16) for v in fields[0].split("-"))
        if start <= address < end:
            return len(fields) == 6 and fields[5].startswith("/")
    return False

cls = SCENARIOS.get(args["scenario"])
scenario = cls(build_config(cls.Config, args["config"]))
options = DataOptions(Path(args["data_root"]))
if args["call"] == "prepare":
    from benchmark.data.scenarios.hf import load_hf_table
    load_hf_table(cls.hub_id, cls.hub_config, cls.name, options, cls.subfolder)
    print(json.dumps({}))
    raise SystemExit
try:
    Path("/proc/self/clear_refs").write_text("5")
    reset = True
except OSError:
    reset = False
before = status()
t0 = time.perf_counter()
if args["call"] == "load_arrays":
    images, task, sens, info = scenario.load_arrays(options)
    n, shape = len(images), list(images.shape)
    mapped = file_backed(images.data_ptr())
else:
    data = scenario.load(options)
    n = sum(len(data.split(s)) for s in ("train", "val", "aux", "eval") if hasattr(data, s))
    shape = list(data.train.images.shape)
    mapped = False
seconds = time.perf_counter() - t0
after = status()
print(json.dumps({"n": n, "shape": shape, "seconds": seconds, "reset": reset, "rss_before": before["VmRSS"],
                  "hwm": after["VmHWM"], "rss": after["VmRSS"], "anon": after.get("RssAnon", 0),
                  "file": after.get("RssFile", 0), "mapped": mapped}))
"""


def _source_pool(rng: np.random.Generator) -> list[bytes]:
    """Smooth random JPEGs (noise at a quarter of the size, upsampled), so they compress like photographs."""
    from PIL import Image

    pool = []
    for _ in range(POOL):
        small = rng.integers(0, 256, (SOURCE_PX // 4, SOURCE_PX // 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((SOURCE_PX, SOURCE_PX), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    return pool


def _write_dataset(root: Path, n: int, pool: list[bytes], seed: int) -> Path:
    """FairFace's hub layout with ``n`` rows in one train shard."""
    import datasets

    rng = np.random.default_rng(seed)
    features = datasets.Features({"image": datasets.Image(), "gender": datasets.ClassLabel(names=["Male", "Female"]),
                                  "race": datasets.ClassLabel(names=RACES)})
    data = {"image": [{"bytes": pool[i % len(pool)], "path": None} for i in range(n)],
            "gender": rng.integers(0, 2, n).tolist(), "race": rng.integers(0, len(RACES), n).tolist()}
    path = root / "0.25" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(data, features=features).to_parquet(str(path))
    return path


def _child(call: str, scenario: str, data_root: Path, work: Path) -> dict:
    args = {"repo": str(REPO), "call": call, "scenario": scenario, "data_root": str(data_root),
            "config": {"image_size": PX, "task": "gender", "sensitive": "race"} if scenario == "custom" else
            {"image_size": PX}}
    env = dict(os.environ, SPLITBENCH_DATA=str(work / "data"), HF_DATASETS_CACHE=str(work / "hf"),
               HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", SPLITBENCH_PROGRESS="0", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{call} {scenario} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _store_bytes(work: Path) -> int:
    folder = work / "data" / "_decoded"
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


def test_peak_rss_of_loading_a_parquet_dataset(tmp_path_factory):
    pool = _source_pool(np.random.default_rng(0))
    mib = 1 << 20
    rows = []
    for n in SIZES:
        t0 = time.perf_counter()
        root = tmp_path_factory.mktemp(f"parquet{n}")
        path = _write_dataset(root, n, pool, seed=n)
        print(f"\nwrote {n:,} rows of {SOURCE_PX}-px JPEGs ({path.stat().st_size / mib:.1f} MiB parquet) in "
              f"{time.perf_counter() - t0:.1f} s")
        theory = n * 3 * PX * PX
        for loader in LOADERS:
            work = tmp_path_factory.mktemp(f"{loader}{n}")
            data_root = root / "0.25" if loader == "custom" else root
            if loader != "custom":
                _child("prepare", loader, data_root, work)  # the datasets arrow cache, so cold means decoding
            for call in ("load_arrays", "load"):
                for phase in ("cold", "warm"):
                    if phase == "cold":
                        shutil.rmtree(work / "data" / "_decoded", ignore_errors=True)
                    r = _child(call, loader, data_root, work)
                    if not r["reset"]:
                        print("  (this kernel refused to reset the peak counter: the peak includes the imports)")
                    assert n - 4 <= r["n"] <= n and r["shape"][1:] == [3, PX, PX]
                    over = (r["hwm"] - r["rss_before"]) * 1024
                    rows.append((loader, n, "load_arrays" if call == "load_arrays" else "Scenario.load",
                                 phase, r["hwm"] / 1024, over / theory, over / mib,
                                 r["anon"] / 1024, r["file"] / 1024, r["seconds"], r["mapped"],
                                 _store_bytes(work) / mib, theory / mib))
                    print("  " + _fmt(rows[-1]), flush=True)
    print(f"\npeak RSS of loading, {PX} px (counter reset after the imports; 'rise' = peak minus the RSS before "
          "loading; 'x data' = rise / (N*3*S*S))")
    print(_header())
    for row in rows:
        print(_fmt(row))
    assert len(rows) == len(SIZES) * len(LOADERS) * 4


def _header() -> str:
    return (f"{'loader':<9}{'images':>8}  {'call':<14}{'cache':<6}{'peak MiB':>10}{'x data':>8}{'rise MiB':>12}"
            f"{'end anon':>10}{'end file':>10}{'seconds':>9}  {'mmap':<5}{'store MiB':>10}{'N*3*S*S MiB':>13}")


def _fmt(row: tuple) -> str:
    loader, n, call, phase, peak, ratio, rise, anon, file, secs, mapped, store, theory = row
    return (f"{loader:<9}{n:>8}  {call:<14}{phase:<6}{peak:>10.0f}{ratio:>8.2f}{rise:>12.0f}{anon:>10.0f}"
            f"{file:>10.0f}{secs:>9.1f}  {'yes' if mapped else 'no':<5}{store:>10.0f}{theory:>13.0f}")
