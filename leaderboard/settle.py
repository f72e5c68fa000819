"""The settle rule: more admission seeds for the preregistered settings a run left *borderline*.

A suite's ``settle: {step, up_to}`` asks that, after a run, every preregistered setting whose admission verdict is
borderline (its validation Δutility's lower bound within the band of the budget that a re-run on other numerics may
move it by) be trained and validated at ``step`` more seeds, the reference with it, and judged again, until it is
clear or has ``up_to`` seeds in all. The band narrows as seeds are added (at twenty seeds it is about a third of its
width at five), so a verdict near the budget gets decided where it is close, and only there.

Each round is a run of the same suite with the seeds added so far in its ``settled_seeds`` (so the run's newest
manifest holds every cell, and an entry made from it can be verified cell by cell); finished cells are not
recomputed. Every round uses the same new seeds for every setting it extends, so the reference is trained once per
seed. The rule looks at validation data only, never at eval.

A sequential rule looks more than once: a setting whose bound leaves the band at ten seeds is not looked at again,
so a run that stops there is not the same experiment as one fixed at twenty seeds. What it keeps is the band's
meaning at the seed count where it stopped: a verdict outside the band is one that another machine's re-run of
that many seeds is unlikely to reverse.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.store.manifest import load_manifest
from benchmark.suites.model import Suite
from benchmark.suites.parse import parse_suite
from leaderboard.protocol import Row, Track

#: build the tracks of a run folder's newest manifest (``leaderboard.render.build_tracks`` in use)
TrackBuilder = Callable[[Path], list[Track]]
#: run the suite once more with these extra overrides; returns the exit code
RunOnce = Callable[[dict[str, Any]], int]


def _suite_of(run_dir: Path) -> Suite:
    man = load_manifest(run_dir)
    return parse_suite(man["resolved_suite"], f"{run_dir}: manifest {man['manifest_id']}")


def wanting(tracks: list[Track], up_to: int) -> dict[str, int]:
    """Row -> the most seeds any of its preregistered settings has, over the rows that are borderline on some
    track and have fewer than ``up_to`` seeds there."""
    out: dict[str, int] = {}
    for t in tracks:
        for r in t.rows:
            if _unsettled(r, t) and len(r.val_delta_seeds) < up_to:
                out[r.defense] = max(out.get(r.defense, 0), len(r.val_delta_seeds))
    return out


def _unsettled(r: Row, t: Track) -> bool:
    return r.preregistered and r.borderline and r.defense != t.reference


def next_seeds(suite: Suite, count: int) -> list[int]:
    """``count`` seeds that no model of the suite uses yet: the integers after the largest in use."""
    used = {*suite.seeds, *suite.admission_seeds, *(s for v in suite.settled_seeds.values() for s in v)}
    start = max(used, default=-1) + 1
    return list(range(start, start + count))


def settle(run_dir: str | Path, run_once: RunOnce, build: TrackBuilder,
           log: Callable[[str], None] | None = None) -> dict[str, tuple[int, ...]]:
    """Apply the settle rule of the suite in ``run_dir``'s newest manifest: while some preregistered setting is
    borderline with fewer than ``up_to`` seeds, add ``step`` seeds (fewer where ``up_to`` is nearer) to each such
    row and run again. Returns the settled seeds ({} when the suite has no rule or nothing was borderline); stops
    early, keeping what was recorded, when a round's run fails."""
    run_dir = Path(run_dir)
    log = log or (lambda line: print(line, file=sys.stderr))
    suite = _suite_of(run_dir)
    rule = suite.settle
    if rule is None:
        return {}
    settled: dict[str, tuple[int, ...]] = dict(suite.settled_seeds)
    rounds = 0
    before: dict[str, int] = {}
    while True:
        want = wanting(build(run_dir), rule.up_to)
        if not want:
            if rounds:
                log(f"settle: no preregistered setting is borderline with fewer than {rule.up_to} seeds; done after "
                    f"{rounds} round{'s' if rounds != 1 else ''}")
            return settled
        stuck = sorted(r for r, k in want.items() if before.get(r, -1) >= k)
        if stuck:  # a round that added no validated seed to a row (its fits not applicable, say) would repeat
            log(f"settle: the last round added no validated seed to {', '.join(stuck)}; stopping")
            return settled
        before = dict(want)
        fresh = next_seeds(suite, rule.step)
        for row, have in sorted(want.items()):
            settled[row] = (*settled.get(row, ()), *fresh[:min(rule.step, rule.up_to - have)])
        rounds += 1
        log(f"settle round {rounds}: {len(want)} borderline preregistered setting{'s' if len(want) != 1 else ''} "
            f"({', '.join(f'{r} at {k} seeds' for r, k in sorted(want.items()))}); training seeds "
            f"{fresh[0]}-{fresh[-1]} for {'them' if len(want) != 1 else 'it'} and the reference")
        code = run_once({"settled_seeds": {row: list(v) for row, v in settled.items()}})
        if code:
            log(f"settle: round {rounds}'s run failed (exit code {code}); what it recorded is kept")
            return settled
        suite = dataclasses.replace(suite, settled_seeds=dict(settled))




def settle_after(first: Any, suite: Any, out: str | Path, log: Callable[[str], None] | None = None,
                 report: Callable[[Any], None] | None = None, **run_kwargs: Any) -> Any:
    """The suite's settle rule after ``first``, a finished ``benchmark.run(suite, out, **run_kwargs)``: each round
    is that run again with the seeds added so far (``report`` sees each round's summary). Returns the last run's
    summary (``first`` when it failed or nothing was borderline)."""
    from benchmark.engine.runner import run
    from leaderboard.render import build_tracks

    if first.exit_code:
        return first
    overrides = dict(run_kwargs.pop("overrides", None) or {})
    last = [first]

    def once(extra: dict[str, Any]) -> int:
        last[0] = run(suite, out=out, overrides={**overrides, **extra}, **run_kwargs)
        if report is not None:
            report(last[0])
        return last[0].exit_code

    settle(out, once, lambda d: build_tracks(d, partial=True)[0], log)
    return last[0]


def run_and_settle(suite: Any, out: str | Path, log: Callable[[str], None] | None = None, **run_kwargs: Any) -> Any:
    """``benchmark.run(suite, out, **run_kwargs)`` and then the suite's settle rule, as ``splitbench run`` does
    (``benchmark.run`` alone does not settle). Returns the last run's summary."""
    from benchmark.engine.runner import run

    return settle_after(run(suite, out=out, **run_kwargs), suite, out, log, **run_kwargs)
