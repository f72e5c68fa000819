"""Files several entries share, stored once and referenced by checksum.

Entries of one official track are packed from the same run, so they hold the same records byte for byte (every
cell of the run, the reference's included). In a collection of entries (``entries/``), :func:`share` moves each
file that two or more entries list with the same sha256 into ``objects/<first two hex digits>/<sha256>`` and
removes the copies; every entry keeps listing all its files in its ``checksums.json``, so nothing about what an
entry holds changes, only where the bytes lie. :func:`complete_entry` gives readers (``check_entry``,
``verify``, the site) a folder where every listed file is present again: the entry itself when nothing is
shared, else a temporary folder of links to its own files and to the shared objects.

A shared object is trusted only as far as its checksum: the entry check hashes every file of the completed
folder against the entry's list, so an edited object fails the check of every entry that uses it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import sha256_file
from leaderboard.entry.checksums import read_checksums
from leaderboard.entry.layout import CARD_FILE, CHECKSUMS_FILE

OBJECTS_DIR = "objects"


def object_path(collection: Path, digest: str) -> Path:
    """Where the shared file with this sha256 lies in a collection of entries."""
    return Path(collection) / OBJECTS_DIR / digest[:2] / digest


def listed_files(entry: Path) -> dict[str, str]:
    """The files an entry lists (relative path -> sha256), read and checked as the entry check reads them."""
    return read_checksums(Path(entry))


def stored_object(entry: Path, rel: str, digest: str) -> Path:
    """The shared file that stands for ``entry/rel`` in the entry's collection; one clear error when there is none."""
    src = object_path(Path(entry).parent, digest)
    if not src.is_file():
        raise SplitbenchError(f"{Path(entry) / rel}: missing, and not stored once in the collection either "
                              f"(expected {src}, listed in {CHECKSUMS_FILE})")
    return src


def missing_files(entry: Path) -> dict[str, str]:
    """The listed files that are not in the entry folder itself (stored once in the collection)."""
    entry = Path(entry)
    return {rel: digest for rel, digest in listed_files(entry).items() if not (entry / rel).is_file()}


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: copy
        shutil.copy2(src, dst)


@contextlib.contextmanager
def complete_entry(entry: str | Path) -> Iterator[Path]:
    """A folder with every file the entry lists: the entry itself when none is shared, else a temporary one (removed
    on exit) with the entry's files and the shared objects of its collection (the entry's parent folder)."""
    entry = Path(entry)
    try:
        missing = missing_files(entry) if (entry.parent / OBJECTS_DIR).is_dir() else {}
    except SplitbenchError:
        missing = {}  # no readable list of files: the entry check says what is wrong
    if not missing:
        yield entry  # complete, or a lone entry with files missing: the entry check names the first one
        return
    with tempfile.TemporaryDirectory(prefix="splitbench-entry-") as tmp:
        root = Path(tmp) / entry.name
        shutil.copytree(entry, root, copy_function=_link_or_copy)
        for rel, digest in sorted(missing.items()):
            src = stored_object(entry, rel, digest)
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(src, dst)
        try:
            yield root
        except SplitbenchError as exc:  # name the entry's own paths, not the temporary copy's
            raise SplitbenchError(str(exc).replace(str(root), str(entry))) from None


def share(collection: str | Path) -> dict[str, Any]:
    """Store once, under ``collection/objects/``, every file that two or more entries of ``collection`` list with
    the same sha256; remove the entries' copies, and the stored files no entry lists any more (left by an entry
    removed or replaced). Every file is checked against its listed sha256 before anything moves (a damaged entry
    stops the whole operation before anything changes). Idempotent; returns counts and sizes."""
    collection = Path(collection)
    if not collection.is_dir():
        raise SplitbenchError(f"{collection}: no such folder (expected a folder of entry folders, e.g. entries/)")
    entries = sorted(p for p in collection.iterdir() if p.is_dir() and (p / CARD_FILE).is_file())
    if not entries:
        raise SplitbenchError(f"{collection}: holds no entry folder (expected folders with {CARD_FILE}, as written by "
                              "`splitbench submit`)")
    lists = {e: listed_files(e) for e in entries}
    uses = Counter(digest for files in lists.values() for digest in set(files.values()))
    for e, files in lists.items():  # check everything first: nothing moves unless every file is what it claims
        for rel, digest in files.items():
            here = e / rel
            src = here if here.is_file() else stored_object(e, rel, digest)
            if sha256_file(src) != digest:
                raise SplitbenchError(f"{src}: sha256 does not match {e / CHECKSUMS_FILE} (changed after submit); "
                                      "nothing was moved")
    before = _bytes(collection)
    moved = 0
    for e, files in lists.items():
        for rel, digest in sorted(files.items()):
            here = e / rel
            if uses[digest] < 2 or rel == CARD_FILE or not here.is_file():
                continue
            target = object_path(collection, digest)
            if target.is_file():
                here.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(here, target)
            moved += 1
        _prune_empty_dirs(e)
    removed = 0
    store = collection / OBJECTS_DIR
    if store.is_dir():
        for f in sorted(store.glob("*/*")):
            if f.is_file() and f.name not in uses and f.parent.name == f.name[:2]:
                f.unlink()
                removed += 1
        _prune_empty_dirs(store)
    return {"entries": len(entries), "files_moved": moved, "objects": _count(store), "objects_removed": removed,
            "bytes_before": before, "bytes_after": _bytes(collection)}


def _prune_empty_dirs(root: Path) -> None:
    for dirpath, _, _ in sorted(os.walk(root), key=lambda t: len(t[0]), reverse=True):
        p = Path(dirpath)
        if p != root and not any(p.iterdir()):
            p.rmdir()


def _bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def _count(root: Path) -> int:
    return sum(1 for p in Path(root).rglob("*") if p.is_file()) if root.is_dir() else 0
