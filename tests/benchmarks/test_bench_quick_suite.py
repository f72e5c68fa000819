"""Wall time of the quick suite (the README's main job), optionally side by side with an older revision.

Slow lane only (``pytest -m slow -s tests/benchmarks/test_bench_quick_suite.py``): each round runs
``python -m benchmark run --suite quick`` into a fresh output directory (nothing cached) in a subprocess and
times it. With ``SPLITBENCH_BENCH_BASELINE=REV`` (any git revision, e.g. ``23b5bf2``) a detached worktree of
that revision is timed in alternation with this checkout (A B A B ...), both with this environment's Python, and
the ratio of the medians is printed: the way to compare two revisions on a machine whose speed drifts.

Environment:
    SPLITBENCH_BENCH_BASELINE: a git revision to time beside this checkout (default: none).
    SPLITBENCH_BENCH_ROUNDS: rounds (default 1).
    SPLITBENCH_BENCH_RUN_ARGS: extra ``run`` arguments for this checkout only (e.g.
        ``--executor local``), split on spaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BASELINE = os.environ.get("SPLITBENCH_BENCH_BASELINE")
ROUNDS = int(os.environ.get("SPLITBENCH_BENCH_ROUNDS", 1))
EXTRA = os.environ.get("SPLITBENCH_BENCH_RUN_ARGS", "").split()


def _time_quick(tree: Path, out: Path, extra: list[str]) -> float:
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "PYTHONPATH": str(tree), "SPLITBENCH_PROGRESS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--suite", "quick", "--out", str(out), *extra],
                          cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"quick suite failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return seconds


@pytest.fixture(scope="module")
def baseline_tree(tmp_path_factory):
    if not BASELINE:
        yield None
        return
    tree = tmp_path_factory.mktemp("baseline") / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), BASELINE], check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def test_quick_suite_wall_time(baseline_tree, tmp_path, benchmark):
    ours, theirs = [], []

    def one_round():
        if baseline_tree is not None:
            theirs.append(_time_quick(baseline_tree, tmp_path / "baseline", []))
        ours.append(_time_quick(ROOT, tmp_path / "this", EXTRA))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    benchmark.extra_info.update(seconds=ours, baseline=BASELINE, baseline_seconds=theirs, run_args=EXTRA,
                                cores=os.cpu_count())
    line = f"\nquick suite on {os.cpu_count()} cores ({' '.join(EXTRA) or 'default executor'}): " \
           f"{', '.join(f'{s:.0f}' for s in ours)} s"
    if theirs:
        line += (f"; {BASELINE}: {', '.join(f'{s:.0f}' for s in theirs)} s; this / baseline "
                 f"{med(ours) / med(theirs):.2f} (speed-up {med(theirs) / med(ours):.2f}x)")
    print(line)
    assert all(s > 0 for s in ours)
