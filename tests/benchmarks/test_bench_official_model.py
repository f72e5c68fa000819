"""Where the time of one model of the official CPU track goes: its fit, each attack, and the rest (data, utility,
releases, latency, records), from the seconds every record carries.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_official_model.py``): runs ``standard-cpu``
narrowed to one defense and one seed (one trained model and every attack of the track, nothing cached) in this
process at one torch thread, as each worker of the default executor runs it, and prints one line per part with its
share of the wall time, so a regression in any part is visible. Needs the Fashion-MNIST files (Debian's
``dataset-fashion-mnist``, or ``--data-root``-style ``SPLITBENCH_BENCH_DATA_ROOT``).

Environment:
    SPLITBENCH_BENCH_DEFENSE: the defense of the model (default: no_pruning, the reference).
    SPLITBENCH_BENCH_DATA_ROOT: a folder with the Fashion-MNIST files (default: the scenario's own search).
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

pytestmark = pytest.mark.slow

DEFENSE = os.environ.get("SPLITBENCH_BENCH_DEFENSE", "no_pruning")
DATA_ROOT = os.environ.get("SPLITBENCH_BENCH_DATA_ROOT")


def test_one_official_model_per_part_seconds(tmp_path, benchmark):
    import benchmark as splitbench
    from benchmark.core.errors import SplitbenchError
    from benchmark.engine.timing import time_split

    out = tmp_path / "run"
    before = torch.get_num_threads()

    def one_model():
        t0 = time.perf_counter()
        try:
            splitbench.run("standard-cpu", out=out, defenses=[DEFENSE], seeds=[0], progress=False, threads=1,
                           data_root=DATA_ROOT)
        except SplitbenchError as exc:
            pytest.fail(f"the official track could not run here: {exc}")
        return time.perf_counter() - t0

    wall = benchmark.pedantic(one_model, rounds=1, iterations=1)
    assert torch.get_num_threads() == before
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    assert all(r["status"] == "ok" for r in records if r["config"]["defense"]["name"] == DEFENSE)
    # the run's wall clock, so that the rest is what no record times; admission-only fits are a part of their own
    split = time_split(out, clock="wall", defense=DEFENSE)
    parts = dict(split.seconds)
    parts["everything else (data, utility, releases, latency, records)"] = wall - split.total
    print(f"\none standard-cpu model ({DEFENSE}, seed 0, 1 torch thread, with the suite's admission seeds of its "
          f"setting): {wall:.1f} s wall")
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:7.1f} s  {100 * seconds / wall:5.1f}%  {name}")
    benchmark.extra_info.update(wall_seconds=wall, **{f"seconds/{k}": v for k, v in parts.items()})
    assert split.missing == 0 and split.missing_fits == 0
    assert parts["everything else (data, utility, releases, latency, records)"] > 0
