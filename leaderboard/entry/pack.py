"""Packing (:func:`submit`) and the integrity half of ``splitbench verify`` (:func:`check_entry`)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from leaderboard.entry.card import load_yaml, read_card, validate_card, write_card
from leaderboard.entry.checksums import check_checksums, write_checksums
from leaderboard.entry.layout import CARD_FILE, CARD_KEYS, CHECKSUMS_FILE, PLUGIN_DIR, RUN_DIR, TOP_LEVEL
from leaderboard.entry.provenance import check_code
from leaderboard.entry.runcheck import RunContents, check_run, parse_resolved_suite


def submit(run_dir: str | Path, card_path: str | Path, out: str | Path, plugins: Sequence[str | Path] = ()) -> Path:
    """Validate a finished run, its card and the defense's code, and pack them into the entry folder ``out``.

    The card's ``suite`` is filled in from the run (a card that names another suite is refused). The folder is
    built beside ``out`` and renamed into place, so a failed submit leaves no half-written entry; an existing
    ``out`` is never overwritten.

    Returns:
        The entry folder.
    """
    out, card_path = Path(out), Path(card_path)
    if out.exists() or out.is_symlink():
        raise SplitbenchError(f"{out}: already exists; submit never overwrites an entry (choose another --out, or "
                              "remove the old entry first)")
    card = load_yaml(card_path)
    if not isinstance(card, dict):
        raise SplitbenchError(f"{card_path}: the card must be a YAML mapping with the keys "
                              f"{', '.join(CARD_KEYS[:-1])}")
    contents = check_run(Path(run_dir))
    if "suite" in card and card["suite"] != contents.suite:
        raise SplitbenchError(f"{card_path}: key 'suite' is {card['suite']!r}, but the run is of suite "
                              f"{contents.suite!r} (leave it out: submit fills it in)")
    card = {**card, "suite": contents.suite}
    validate_card(card, str(card_path))
    if card["defense"] not in contents.defenses:
        raise SplitbenchError(f"{card_path}: defense {card['defense']!r} is not run in {contents.manifest_path} "
                              f"(it runs {', '.join(contents.defenses)})")
    plugin_paths = check_code(card, plugins, str(card_path))
    parse_resolved_suite(contents)  # every cell can be re-run from the entry alone
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise SplitbenchError(f"{out}: could not be written ({exc.strerror or exc})") from exc
    try:
        _pack(tmp, card, contents, plugin_paths)
        check_entry(tmp)  # what was copied is what was checked
        if out.exists():
            raise SplitbenchError(f"{out}: appeared while the entry was being packed; not overwritten")
        os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SplitbenchError(f"{out}: could not be written ({exc.strerror or exc}); nothing was left behind") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _pack(root: Path, card: Mapping[str, Any], contents: RunContents, plugins: Sequence[Path]) -> None:
    write_card(root / CARD_FILE, card)
    run = root / RUN_DIR
    (run / "manifests").mkdir(parents=True)
    (run / "records").mkdir()
    manifest = contents.manifest_path.read_bytes()
    (run / "manifests" / contents.manifest_path.name).write_bytes(manifest)
    (run / "run.json").write_bytes(manifest)
    for path, rec in contents.records:
        for name in [path.name] + contents.sidecars(rec):
            shutil.copyfile(path.parent / name, run / "records" / name)
    if plugins:
        (root / PLUGIN_DIR).mkdir()
        for p in plugins:
            shutil.copyfile(p, root / PLUGIN_DIR / p.name)
    write_checksums(root)


def check_entry(entry: str | Path) -> tuple[dict[str, Any], RunContents]:
    """Check an entry folder without running anything: checksums, card, layout, and every record and per-sample file
    of its manifest. Returns the card and the run's contents."""
    entry = Path(entry)
    if not entry.is_dir() or not (entry / CARD_FILE).is_file():
        raise SplitbenchError(f"{entry}: not an entry folder (expected {CARD_FILE}, {RUN_DIR}/ and {CHECKSUMS_FILE}, "
                              "as written by `splitbench submit`)")
    check_checksums(entry)
    card = read_card(entry / CARD_FILE)
    for item in sorted(entry.iterdir()):
        if item.name not in TOP_LEVEL:
            raise SplitbenchError(f"{item}: not part of an entry (expected only {', '.join(sorted(TOP_LEVEL))})")
    run = entry / RUN_DIR
    manifests = sorted((run / "manifests").glob("*.json"))
    if len(manifests) != 1:
        raise SplitbenchError(f"{run / 'manifests'}: an entry holds exactly one manifest, found {len(manifests)}")
    contents = check_run(run)
    for item in sorted(run.iterdir()):
        if item.name not in ("manifests", "records", "run.json"):
            raise SplitbenchError(f"{item}: not part of an entry's run (expected manifests/, records/, run.json)")
    run_json = run / "run.json"
    if not run_json.is_file() or run_json.read_bytes() != contents.manifest_path.read_bytes():
        raise SplitbenchError(f"{run_json}: must be a copy of {contents.manifest_path.name}")
    expected = {name for path, rec in contents.records for name in [path.name] + contents.sidecars(rec)}
    for item in sorted((run / "records").iterdir()):
        if item.name not in expected:
            raise SplitbenchError(f"{item}: not named by manifest {contents.manifest['manifest_id']} (an entry holds "
                                  "only the submitted run's files)")
    if card["suite"] != contents.suite:
        raise SplitbenchError(f"{entry / CARD_FILE}: key 'suite' is {card['suite']!r}, but the run is of suite "
                              f"{contents.suite!r}")
    if card["defense"] not in contents.defenses:
        raise SplitbenchError(f"{entry / CARD_FILE}: defense {card['defense']!r} is not run in the entry (it runs "
                              f"{', '.join(contents.defenses)})")
    listed = sorted(card["code"].get("plugin", []))
    folder = entry / PLUGIN_DIR
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if present != listed:
        raise SplitbenchError(f"{folder}: holds {present or 'nothing'}, but the card's code.plugin lists "
                              f"{listed or 'nothing'}")
    return card, contents


def entry_plugins(entry: str | Path, card: Mapping[str, Any]) -> list[Path]:
    """The entry's own plugin files, in the card's order."""
    return [Path(entry) / PLUGIN_DIR / name for name in card["code"].get("plugin", [])]
