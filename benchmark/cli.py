"""The ``splitbench`` command: ``list``, ``run``, ``leaderboard``, ``hardware``, ``site``, ``submit``, ``share``,
``verify``.

Errors a user can cause exit with status 2 and one line on stderr (``--traceback`` for the full stack); a run
in which some cells failed exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.progress import ENV as PROGRESS_ENV

EPILOG = "Docs: README.md. Exit codes: 0 success, 1 some cells failed, 2 bad input."


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Options several commands share, defined once (argparse parent parsers)."""
    plugin = argparse.ArgumentParser(add_help=False)
    plugin.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="a Python file that registers extra defenses or attacks (repeatable)")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-root", default=None, help="folder with local copies of datasets")
    data.add_argument("--download", action="store_true", help="allow downloading datasets")
    return {"plugin": plugin, "device": device, "data": data}


def _parser() -> argparse.ArgumentParser:
    from benchmark.engine.executors import EXECUTORS
    from benchmark.store.records import package_version

    p = argparse.ArgumentParser(prog="splitbench", description="Benchmark privacy defenses of released "
                                "representations in split inference.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"splitbench {package_version()}")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    share = _parents()

    ls = sub.add_parser("list", parents=[share["plugin"]],
                        help="list defenses, attacks, scenarios, suites or backbones",
                        description="List registered defenses, attacks, scenarios, suites, or timm backbones.")
    ls.add_argument("what", nargs="?", default="all",
                    choices=["all", "defenses", "attacks", "scenarios", "suites", "backbones"])
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'resnet*'")
    ls.add_argument("-v", "--verbose", action="store_true", help="show each method's config fields")

    run = sub.add_parser("run", parents=[share["device"], share["data"], share["plugin"]],
                        help="run a suite and write one record per cell",
                         description="Run a suite: train each defended model once (cached), run every attack "
                                     "on it, and write one JSON record per cell to OUT/records/. Rerunning "
                                     "skips finished cells. Prints the leaderboard at the end.")
    run.add_argument("--suite", default="quick", help="a built-in suite name or a suite YAML file (default: quick)")
    run.add_argument("--out", default=None, help="output directory (default: runs/<suite>)")
    run.add_argument("--scenario", action="append", metavar="NAME", help="run only / also these scenarios")
    run.add_argument("--scenario-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="set a scenario config field, e.g. task=gender (repeatable)")
    run.add_argument("--backbone", action="append", metavar="NAME[@SPLIT]",
                     help="run only / also these timm backbones, e.g. resnet18@layer2")
    run.add_argument("--defense", action="append", metavar="NAME", help="run only / also these defenses")
    run.add_argument("--attack", action="append", metavar="NAME", help="run only / also these attacks")
    run.add_argument("--seed", action="append", type=int, metavar="N", help="seeds (replace the suite's)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a setting: train.KEY, defense.NAME.KEY or attack.NAME.KEY (repeatable), "
                          "e.g. --set train.epochs=2 --set attack.attribute_inference.epochs=5")
    run.add_argument("--cache-dir", default=None, help="trained-model cache (default: OUT/cache)")
    run.add_argument("--latency-repeats", type=int, default=20, metavar="N",
                     help="timed repeats of each latency measurement (default: 20)")
    run.add_argument("--executor", default="auto", choices=EXECUTORS,
                     help="who runs the trained models: auto (default: on the CPU one single-threaded worker "
                          "process per core, on CUDA one per visible GPU), this process (local), one worker per GPU, "
                          "CPU worker processes (--workers), or Ray tasks (--ray-address, else a local cluster)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="worker processes for --executor processes or auto (or CPUs of a local Ray cluster)")
    run.add_argument("--ray-address", default=None, metavar="ADDR", help="address of an existing Ray cluster")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="torch threads per worker (default: 1 for auto, all cores for local, shared among "
                          "workers otherwise); records of two executors are identical at the same threads per "
                          "worker")
    run.add_argument("--no-retry-failed", action="store_true", help="keep cells recorded as failed")
    run.add_argument("--quiet", action="store_true", help="no progress bars or per-cell log lines")
    run.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    run.add_argument("--no-settle", action="store_true",
                     help="do not apply the suite's settle rule (more admission seeds for preregistered settings "
                          "left borderline)")

    lb = sub.add_parser("leaderboard", help="render the leaderboard of a run directory",
                        description="Render one table per track (scenario, backbone, split) from a run "
                                    "directory's records; write leaderboard.md and leaderboard.csv into it.")
    lb.add_argument("run_dir", help="the --out directory of `splitbench run`")
    lb.add_argument("--format", choices=["md", "csv"], default="md", help="what to print (both are written)")
    lb.add_argument("--budget", type=float, default=None, help="utility budget in [0, 1] (default: the suite's)")
    lb.add_argument("--reference", default=None, help="reference defense (default: the suite's)")
    lb.add_argument("--bootstrap", type=int, default=None, metavar="N",
                    help="bootstrap replicates of every interval (default: the suite's)")
    lb.add_argument("--manifest", default=None, metavar="ID",
                    help="which run manifest to render (default: the most recent one in the folder)")
    lb.add_argument("--partial", action="store_true",
                    help="render a run whose manifest names cells not finished yet (they are left out)")
    lb.add_argument("--no-write", action="store_true", help="print only; do not write files")

    timing = sub.add_parser("timing", help="where a run's compute time went, from its records",
                            description="Sum a run's recorded fit seconds (once per trained model) and attack "
                                        "seconds (the workers' CPU time where the records have it) by part (the "
                                        "fits, the fits of models trained for admission only, each attack) or by "
                                        "setting, with each part's share and the wall time the run would take with "
                                        "its work spread evenly over N workers.")
    timing.add_argument("run_dir", help="the --out directory of `splitbench run`")
    timing.add_argument("--by", choices=["part", "setting"], default="part", help="how to split (default: part)")
    timing.add_argument("--workers", type=int, default=2, metavar="N",
                        help="workers for the even-spread wall time (default: 2)")
    timing.add_argument("--manifest", default=None, metavar="ID",
                        help="which run manifest to read (default: the most recent one in the folder)")
    timing.add_argument("--partial", action="store_true",
                        help="read a run whose manifest names cells not finished yet (they are left out)")
    timing.add_argument("--defense", default=None, metavar="NAME", help="only the cells of this defense")
    timing.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                        help="cpu: each worker process's CPU time (not inflated by other work on its core); wall: "
                             "each worker's wall clock; auto (default): cpu when every record has it")

    site = sub.add_parser("site", help="render a static leaderboard site from entries and run directories",
                          description="Render a static HTML site (readable offline) from leaderboard entries and "
                                      "run directories: tracks, ranked tables, plots, heatmaps, galleries.")
    site.add_argument("sources", nargs="*", metavar="ENTRY_OR_RUN",
                      help="entry folders or run directories (default: every entry under entries)")
    site.add_argument("--out", default="site", help="output folder (default: site/)")

    hw = sub.add_parser("hardware", parents=[share["device"], share["data"], share["plugin"]],
                        help="measure every defense's client and server on this machine",
                        description="Latency (p50/p90/p99 at several batch sizes), throughput, peak memory and bytes "
                                    "per sample of every defense setting of a suite (first seed; models are loaded "
                                    "from the run's cache or trained), in fp32 (and bf16 on CUDA), eager and "
                                    "torch.compile'd, written to OUT/hardware/<machine>.json; then the merged table "
                                    "of every machine's records under OUT. With --table, only merge and print.")
    hw.add_argument("--suite", default="quick", help="a built-in suite name or a suite YAML file (default: quick)")
    hw.add_argument("--out", default=None, help="run directory whose cache and hardware/ folder to use "
                                                "(default: runs/<suite>)")
    hw.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64], metavar="N", help="batch sizes (1 8 64)")
    hw.add_argument("--min-seconds", type=float, default=1.0, help="measured time per row at least (default 1 s)")
    hw.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd rows")
    hw.add_argument("--defense", action="append", metavar="NAME", help="only these defenses")
    hw.add_argument("--table", nargs="+", default=None, metavar="DIR",
                    help="merge and print the hardware records under these folders; measure nothing")
    hw.add_argument("--format", choices=["md", "csv"], default="md", help="table format (default: md)")

    submit = sub.add_parser("submit", parents=[share["plugin"]],
                        help="pack and validate a run directory as a leaderboard entry",
                            description="Pack a finished run directory, its card and the defense's code into an "
                                        "entry folder with checksums, after validating all of it.")
    submit.add_argument("run_dir", help="the --out directory of `splitbench run`")
    submit.add_argument("--card", required=True, help="the entry card (entry.yaml)")
    submit.add_argument("--out", required=True, help="the entry folder to write")

    shared = sub.add_parser("share", help="store the files several entries hold in common once, by checksum",
                           description="In a folder of entry folders, move every file that two or more entries list "
                                       "with the same sha256 into DIR/objects/ and remove the copies. Entries keep "
                                       "listing all their files; check, verify and site read them from there.")
    shared.add_argument("collection", nargs="?", default="entries",
                       help="the folder of entry folders (default: entries)")

    verify = sub.add_parser("verify", parents=[share["device"], share["data"]],
                        help="re-run sampled cells of an entry and compare every metric",
                            description="Check an entry's checksums and schema and re-run N sampled cells from its "
                                        "own code and config: on the machine that made the records (same CPU model, "
                                        "ISA, thread count, torch and timm) every number must be identical; on "
                                        "another machine with the same torch and timm, the cells are re-run at the "
                                        "entry's seeds and every figure must lie inside the entry's predictive "
                                        "interval for a new seed. Writes a report only with --report.")
    verify.add_argument("entry", help="an entry folder")
    verify.add_argument("--cells", type=int, default=2, metavar="N", help="cells to re-run (default: 2)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the cell (and seed) sampling (default: 0)")
    verify.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="on another machine: re-run each drawn cell at N of the entry's seeds, at least 2 "
                             "(default: all of them)")
    verify.add_argument("--threads", type=int, default=None, metavar="N",
                        help="re-run with N torch threads instead of the records' count: on the machine that made "
                             "them, a consistency check under other numerics (default: the records' count)")
    verify.add_argument("--report", default=None, metavar="FILE",
                        help="merge this machine's result into the report FILE (one result per machine; e.g. "
                             "ENTRY/verification.json); without it nothing is written")
    verify.add_argument("--trust-code", action="store_true",
                        help="import and run the entry's plugin file(s); read them first")
    return p


def _kv(items: Sequence[str], flag: str = "--scenario-arg") -> dict[str, object]:
    """KEY=VALUE pairs; values are read as YAML, so lists work: ``models=[test_vit, test_resnet]``."""
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SplitbenchError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise SplitbenchError(f"{flag} {item!r}: the value is not valid YAML ({exc})") from exc
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    from benchmark.api.contract import data_free
    from benchmark.core import registry
    from benchmark.core.fields import describe
    from benchmark.models.backbones import TESTED_BACKBONES, list_backbones

    for f in args.plugin:
        registry.load_plugin(f)
    what = args.what
    if what in ("all", "defenses"):
        print("defenses:")
        for name, cls in registry.DEFENSES.items():
            if registry.fnmatch.fnmatch(name, args.pattern):
                paper = cls.card.paper if len(cls.card.paper) <= 70 or args.verbose else cls.card.paper[:67] + "..."
                print(f"  {name:<26} knob={cls.knob:<14} {paper} ({cls.card.year})")
                if args.verbose:
                    if cls.knob_grid:
                        print(f"    knob grid: {', '.join(f'{v:g}' for v in cls.knob_grid)}")
                    _print_fields(describe(cls.Config))
    if what in ("all", "attacks"):
        print("attacks:")
        for name, cls in registry.ATTACKS.items():
            if registry.fnmatch.fnmatch(name, args.pattern):
                needs = ",".join(sorted(a.value for a in cls.requires)) or "releases only"
                if data_free(cls.requires):
                    needs += " (data-free)"
                print(f"  {name:<26} kind={cls.kind.value:<15} needs={needs}")
                if args.verbose:
                    _print_fields(describe(cls.Config))
    if what in ("all", "scenarios"):
        print("scenarios:")
        for name, cls in registry.SCENARIOS.items():
            if registry.fnmatch.fnmatch(name, args.pattern):
                print(f"  {name:<26} {cls.description}")
                if args.verbose:
                    _print_fields(describe(cls.Config))
    if what in ("all", "suites"):
        from benchmark.suites.parse import load_suite

        print("suites:")
        for name, _ in registry.SUITES.items():
            if registry.fnmatch.fnmatch(name, args.pattern):
                text = " ".join(load_suite(name).description.split())
                if not args.verbose and len(text) > 90:
                    text = text[:87] + "..."
                print(f"  {name:<26} {text}")
    if what == "backbones":
        names = list_backbones(args.pattern)
        print(f"backbones (any of {len(names)} timm models matching {args.pattern!r}; tested on every commit: "
              f"{', '.join(TESTED_BACKBONES)}):")
        for n in names:
            print(f"  {n}")
    elif what == "all":
        print("backbones: any timm model (`splitbench list backbones PATTERN`); tested: "
              + ", ".join(TESTED_BACKBONES))
    return 0


def _print_fields(fields) -> None:
    for name, tp, default, help_ in fields:
        print(f"      {name} ({tp}, default {default!r}): {help_}")


def _cmd_run(args: argparse.Namespace) -> int:
    from benchmark.engine.executors import start_worker_server

    # first, so that the worker processes' imports run on another core while this process imports and checks the run
    start_worker_server(args.executor, args.workers, args.threads, args.device)
    from benchmark.core import registry
    from benchmark.engine.runner import run

    for f in args.plugin:
        registry.load_plugin(f)
    if args.quiet:
        os.environ[PROGRESS_ENV] = "0"
    out = Path(args.out) if args.out else Path("runs") / Path(args.suite).stem
    run_kwargs = dict(device=args.device, scenarios=args.scenario, backbones=args.backbone,
                      defenses=args.defense, attacks=args.attack, seeds=args.seed,
                      scenario_args=_kv(args.scenario_arg), overrides=_kv(args.overrides, "--set"),
                      data_root=args.data_root, download=args.download,
                      cache_dir=args.cache_dir, progress=False if args.quiet else None,
                      retry_failed=not args.no_retry_failed, latency_repeats=args.latency_repeats,
                      executor=args.executor, workers=args.workers, ray_address=args.ray_address,
                      plugins=args.plugin, threads=args.threads)
    summary = run(args.suite, out=out, **run_kwargs)
    _report_run(summary)
    if not args.no_settle:
        from leaderboard.settle import settle_after

        summary = settle_after(summary, args.suite, out, report=_report_run, **run_kwargs)
    if not args.no_leaderboard:
        from leaderboard import render_run

        print(render_run(out, fmt="md", write=True, manifest=summary.manifest))
        print(f"records in {out}/records; leaderboard in {out}/leaderboard.md and .csv", file=sys.stderr)
    return summary.exit_code


def _report_run(summary: Any) -> None:
    """A run's summary line and its first failures, on stderr."""
    print(f"splitbench: {summary.line()}", file=sys.stderr)
    for f in summary.failures[:20]:
        print(f"  failed: {f}", file=sys.stderr)


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboard import render_run

    print(render_run(Path(args.run_dir), fmt=args.format, budget=args.budget, write=not args.no_write,
                     manifest=args.manifest, partial=args.partial, replicates=args.bootstrap,
                     reference=args.reference))
    return 0


def _cmd_timing(args: argparse.Namespace) -> int:
    from benchmark.engine.timing import time_split

    print(time_split(Path(args.run_dir), args.manifest, args.partial, args.by, args.clock, args.defense)
          .table(args.workers))
    return 0


def _cmd_hardware(args: argparse.Namespace) -> int:
    from benchmark.core import registry
    from benchmark.engine.hardware import hardware_table, load_rows, run_hardware
    from benchmark.suites.narrow import restrict
    from benchmark.suites.parse import load_suite

    if args.table:
        print(hardware_table(load_rows([Path(d) for d in args.table]), args.format), end="")
        return 0
    for f in args.plugin:
        registry.load_plugin(f)
    suite = restrict(load_suite(args.suite), defenses=args.defense)
    out = Path(args.out) if args.out else Path("runs") / Path(args.suite).stem
    path = run_hardware(suite, out, args.device, args.batch, args.min_seconds, not args.no_compile,
                        data_root=Path(args.data_root) if args.data_root else None, download=args.download)
    print(f"splitbench: hardware records in {path}", file=sys.stderr)
    print(hardware_table(load_rows([out]), args.format), end="")
    return 0


def _cmd_site(args: argparse.Namespace) -> int:
    from leaderboard.site import cmd_site

    return cmd_site(args)


def _cmd_submit(args: argparse.Namespace) -> int:
    from leaderboard.submission import cmd_submit

    return cmd_submit(args)


def _cmd_share(args: argparse.Namespace) -> int:
    from leaderboard.entry.objects import share

    s = share(Path(args.collection))
    unused = f", {s['objects_removed']} no entry lists any more removed" if s["objects_removed"] else ""
    print(f"splitbench: {s['entries']} entries in {args.collection}: {s['files_moved']} copies now stored once "
          f"({s['objects']} shared files{unused}); {s['bytes_before'] / 1e6:.1f} MB -> "
          f"{s['bytes_after'] / 1e6:.1f} MB")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from leaderboard.submission import cmd_verify

    return cmd_verify(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        handler = {"list": _cmd_list, "run": _cmd_run, "leaderboard": _cmd_leaderboard, "site": _cmd_site,
                   "hardware": _cmd_hardware, "submit": _cmd_submit, "share": _cmd_share,
                   "verify": _cmd_verify, "timing": _cmd_timing}[args.command]
        return handler(args)
    except SplitbenchError as exc:
        if args.traceback:
            raise
        print(f"splitbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("splitbench: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`splitbench list -v | head`): stop quietly, as `cat` would
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush of the closed pipe raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
