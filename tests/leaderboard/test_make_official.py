"""entries/make-official.sh: the maintainers' recipe for the official standard-cpu entries. Its baseline table must
name registered defenses at settings of the pre-study's grid, every command it builds must be one the CLI accepts on
the official track, and a bad step or name is one line with exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sysconfig
from pathlib import Path

import pytest

from benchmark.cli import _kv, _parser
from benchmark.suites.narrow import restrict
from benchmark.suites.parse import load_suite

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "entries" / "make-official.sh"
SPLITBENCH = str(Path(sysconfig.get_path("scripts")) / "splitbench")  # the CLI of the Python running the tests


def _script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPLITBENCH": "echo", "ENTRIES_OUT": str(cwd or REPO / "entries-new")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def _baselines() -> list[list[str]]:
    text = SCRIPT.read_text()
    table = text.split('BASELINES="', 1)[1].split('"', 1)[0]
    return [line.split() for line in table.strip().splitlines()]


def test_every_baseline_row_is_a_registered_defense_at_settings_of_the_prestudy_grid():
    prestudy = load_suite("standard-cpu-prestudy")
    grid: dict[str, set[float]] = {}
    for d in prestudy.defenses:
        grid.setdefault(d.name, set()).add(d.knob_value)
    rows = _baselines()
    assert len(rows) == 11
    assert not {r[1] for r in rows} & {d.name for d in load_suite("standard-cpu").defenses}  # none twice
    for entry, defense, prereg, neighbour, *_extra in rows:
        assert (REPO / "entries" / f"standard-cpu-{entry}" / "entry.yaml").is_file(), entry
        assert float(prereg) in grid[defense] and float(neighbour) in grid[defense], entry
        assert float(prereg) != float(neighbour)


@pytest.mark.parametrize("names", [["noise", "quantize"], ["dynamic-channel-pruning-light"],
                                   ["dynamic-channel-pruning"]])
def test_the_baselines_step_builds_a_run_the_cli_accepts_on_the_official_track(names):
    out = _script("/tmp/run", "baselines", *names)
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout.replace("[", "'[").replace("]", "]'"))
    args = _parser().parse_args(argv)
    assert args.suite == "standard-cpu" and args.out == "/tmp/run"
    suite = restrict(load_suite(args.suite), defenses=args.defense, overrides=_kv(args.overrides, "--set"))
    rows = {r[0]: r for r in _baselines()}
    assert suite.name == "standard-cpu" and suite.reference == "no_pruning"
    for name in names:
        _, defense, prereg, neighbour, *extra = rows[name]
        knobs = sorted(d.knob_value for d in suite.defenses if d.name == defense)
        assert knobs == sorted([float(prereg), float(neighbour)])
        (row,) = {d.row for d in suite.defenses if d.name == defense}  # a non-default config names its row
        assert set(suite.preregistered[row].values()) == {float(prereg)}
        if extra:
            key, value = extra[0].split("=")
            assert all(getattr(d.config, key) == value for d in suite.defenses if d.name == defense)
    assert {d.name for d in suite.defenses} == {"no_pruning"} | {rows[n][1] for n in names}


@pytest.mark.parametrize("args, message", [
    (["/tmp/run", "baselines", "nois"], "nois is not a baseline of this script"),
    (["/tmp/run", "frob"], "unknown step 'frob'"),
    (["/tmp/run"], "usage: make-official.sh"),
    (["/tmp/run", "baselines", "noise", "noise"], "noise is already in this step"),
    (["/tmp/run", "baselines", "dynamic-channel-pruning", "dynamic-channel-pruning-light"],
     "dynamic_channel_pruning is already in this step"),
    (["/tmp/run", "seed", "/nonexistent"], "not an entry folder"),
    (["/tmp/run", "install", "noise"], "install takes no names"),
])
def test_bad_steps_and_names_are_one_line_and_exit_2(args, message):
    out = _script(*args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""


def test_pack_takes_the_shipped_card_with_the_hardware_of_the_runs_records(built, tmp_path):
    """The card packed is the shipped one but for `hardware`, which says what machine made the run's records (so an
    entry made again on another machine does not carry the previous machine's name)."""
    import sys

    import yaml

    fake = tmp_path / "fake-splitbench"
    fake.write_text('#!/bin/bash\necho "$@"\n[ "$1" != submit ] || cp "$4" "$CARD_COPY"\n')
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(SCRIPT), str(built["run"]), "pack", "noise"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "SPLITBENCH": str(fake), "ENTRIES_OUT": str(tmp_path / "new"),
                                           "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
                                           "CARD_COPY": str(tmp_path / "card.yaml")})
    assert out.returncode == 0, out.stderr
    submit, share = out.stdout.strip().splitlines()
    argv = submit.split()
    assert argv[:3] == ["submit", str(built["run"]), "--card"]
    assert argv[-2:] == ["--out", str(tmp_path / "new" / "standard-cpu-noise")]
    assert share == f"share {tmp_path / 'new'}"
    assert not list((tmp_path / "new").iterdir())  # the rewritten card is not left behind
    shipped = yaml.safe_load((REPO / "entries" / "standard-cpu-noise" / "entry.yaml").read_text())
    packed = yaml.safe_load((tmp_path / "card.yaml").read_text())
    env = json.loads(next((built["run"] / "records").glob("*.json")).read_text())["env"]
    assert packed == {**shipped, "hardware": f"{env['cpu']} CPU ({env['isa']}), {env['threads']} torch thread per "
                                             "worker process, no GPU"}


def test_a_run_seeded_from_a_shared_entry_holds_its_records_and_reruns_none_of_them(built, entry, tmp_path):
    import sys

    from leaderboard.entry.objects import share
    from tests.support.entries import copy_entry
    from tests.support.helpers import run_pinned

    root = tmp_path / "entries"
    a = copy_entry(entry, root / "a")
    copy_entry(entry, root / "b")
    share(root)
    run = tmp_path / "run"
    out = subprocess.run(["bash", str(SCRIPT), str(run), "seed", str(a)], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    original = built["run"] / "records"
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    copied = sorted(p.relative_to(run / "records") for p in (run / "records").rglob("*") if p.is_file())
    assert files and copied == files
    assert all((run / "records" / f).read_bytes() == (original / f).read_bytes() for f in files)
    summary = run_pinned(str(built["root"] / "entrytest.yaml"), out=run, progress=False, latency_repeats=2)
    assert (summary.skipped, summary.models_trained, summary.ok, summary.failed) == (4, 0, 0, 0)


def _official_names() -> list[str]:
    return ["no-pruning", "random-pruning", "latent-masking", "patrol", "paoding"] + [r[0] for r in _baselines()]


def _entry(folder: Path, name: str, files: dict[str, str]) -> None:
    """A minimal entry in the layout `splitbench submit` writes: a card, files, and their sha256 list."""
    folder.mkdir(parents=True)
    files = {"entry.yaml": f"name: {name}\n", **files}
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(content)
    sums = {rel: hashlib.sha256(content.encode()).hexdigest() for rel, content in files.items()}
    (folder / "checksums.json").write_text(json.dumps({"algorithm": "sha256", "files": sums}))


def _packed(out: Path, names: list[str]) -> None:
    """Stand-ins for packed, shared and verified entries: the reference's records in common, one record each."""
    for name in names:
        _entry(out / f"standard-cpu-{name}", name, {"run/records/reference.json": "new reference",
                                                    "run/records/own.json": f"new {name}"})
        (out / f"verify-{name}.json").write_text(f'{{"verified": "{name}"}}')
    subprocess.run([SPLITBENCH, "share", str(out)], check=True, capture_output=True, timeout=120)


def _installed_before(dest: Path) -> None:
    """The entries as shipped before: the old official ones and a community entry, sharing the old reference."""
    _entry(dest / "standard-cpu-noise", "noise", {"run/records/reference.json": "old reference",
                                                  "run/records/old-shared.json": "old shared"})
    _entry(dest / "standard-cpu-community-lab", "community-lab", {"run/records/reference.json": "old reference"})
    _entry(dest / "standard-cpu-patrol", "patrol", {"run/records/old-shared.json": "old shared"})
    for name in ("noise", "community-lab"):
        (dest / f"standard-cpu-{name}" / "verification.json").write_text('{"old machine": 1}')
    subprocess.run([SPLITBENCH, "share", str(dest)], check=True, capture_output=True, timeout=120)
    (dest / "README.md").write_text("the folder's own files stay")


def _install(new: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "/tmp/run", "install"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ENTRIES_OUT": str(new), "ENTRIES_DIR": str(dest),
                               "SPLITBENCH": SPLITBENCH})


def test_install_replaces_every_official_entry_keeps_any_other_and_stores_what_they_share_once(tmp_path):
    from leaderboard.entry.objects import complete_entry, listed_files

    new, dest = tmp_path / "new", tmp_path / "entries"
    names = _official_names()
    _packed(new, names)
    _installed_before(dest)
    out = _install(new, dest)
    assert out.returncode == 0, out.stderr
    assert f"installed {len(names)} entries" in out.stdout
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["README.md", "objects", "standard-cpu-community-lab"] + [f"standard-cpu-{n}" for n in names])
    for name in names:
        entry = dest / f"standard-cpu-{name}"
        assert (entry / "verification.json").read_text() == f'{{"verified": "{name}"}}'
        with complete_entry(entry) as full:
            assert (full / "run" / "records" / "own.json").read_text() == f"new {name}"
            assert (full / "run" / "records" / "reference.json").read_text() == "new reference"
    community = dest / "standard-cpu-community-lab"
    with complete_entry(community) as full:  # its file was shared with the replaced noise entry: still there
        assert (full / "run" / "records" / "reference.json").read_text() == "old reference"
    assert (community / "verification.json").read_text() == '{"old machine": 1}'
    # stored once: the new reference and the community's old one; the file only the replaced noise and PATROL
    # entries shared, listed by no entry now, is gone
    listed = {d for e in dest.glob("standard-cpu-*") for d in listed_files(e).values()}
    stored = {p.name for p in (dest / "objects").rglob("*") if p.is_file()}
    assert stored <= listed and len(stored) == 2
    assert hashlib.sha256(b"old shared").hexdigest() not in stored
    assert (dest / "README.md").read_text() == "the folder's own files stay"


def test_install_refuses_while_an_entry_is_not_packed_or_not_verified_and_changes_nothing(tmp_path):
    new, dest = tmp_path / "new", tmp_path / "entries"
    _packed(new, _official_names())
    (new / "verify-shredder.json").unlink()
    _installed_before(dest)
    before = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    out = _install(new, dest)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert "not yet packed and verified" in out.stderr and out.stderr.strip().endswith(
        "shredder (expected every official entry, from one run)")
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_pack_of_a_folder_that_is_not_a_finished_run_is_one_line_and_packs_nothing(tmp_path):
    import sys

    (tmp_path / "run" / "records").mkdir(parents=True)
    out = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "run"), "pack", "noise"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "SPLITBENCH": "echo", "ENTRIES_OUT": str(tmp_path / "new"),
                                           "PYTHON": sys.executable, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "no run manifest" in out.stderr
    assert not list((tmp_path / "new").iterdir())
