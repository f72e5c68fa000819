"""``splitbench submit`` and ``splitbench verify``: the command-line side of leaderboard entries.

The work is done in :mod:`leaderboard.entry` (the card, checksums, submit, integrity checks) and
:mod:`leaderboard.verification` (re-running sampled cells); this module turns their results into a few printed
lines and an exit code: 0 for a written entry or one verified exactly or found consistent, 1 when a re-run differs
from the entry (exactly) or lies outside its seed spread (another machine). Bad input raises
:class:`~benchmark.core.errors.SplitbenchError`, which the CLI prints as one line with exit code 2.

The folder ``entries/`` holds the shipped entries (data, not code).
"""

from __future__ import annotations

import argparse
import json

from leaderboard.entry import CHECKSUMS_FILE, check_entry, is_official, read_card, submit
from leaderboard.verification import format_report, verify_entry

__all__ = ["check_entry", "cmd_submit", "cmd_verify", "is_official", "read_card", "submit", "verify_entry"]


def cmd_submit(args: argparse.Namespace) -> int:
    """``splitbench submit RUN_DIR --card entry.yaml --out ENTRY [--plugin FILE ...]``."""
    out = submit(args.run_dir, args.card, args.out, args.plugin)
    card = read_card(out / "entry.yaml")
    files = json.loads((out / CHECKSUMS_FILE).read_text())["files"]
    cells = sum(1 for f in files if f.startswith("run/records/") and f.endswith(".json"))
    flag = "official" if is_official(card) else ("unofficial: only entries of the `standard` and `standard-cpu` "
                                                  "suites are official")
    print(f"{out}: entry written: defense {card['defense']}, suite {card['suite']} ({flag}), {cells} cells, "
          f"{len(files)} files checksummed")
    print(f"check it with: splitbench verify {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``splitbench verify ENTRY [--cells N] [--seed S] [--device D] [--seeds N] [--report FILE] [--threads N]
    [--trust-code]``:
    0 verified (exact) or consistent, 1 a number differs or lies outside the entry's seed spread."""
    report = verify_entry(args.entry, cells=args.cells, seed=args.seed, device=args.device,
                          data_root=args.data_root, download=args.download,
                          seeds=getattr(args, "seeds", None), report=getattr(args, "report", None),
                          trust_code=getattr(args, "trust_code", False), threads=getattr(args, "threads", None))
    print(format_report(report, args.entry, getattr(args, "report", None)))
    return 0 if report["status"] in ("verified", "consistent") else 1
