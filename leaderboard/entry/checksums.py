"""``checksums.json``: the sha256 of every file an entry holds, written by submit, checked before anything is
read."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from benchmark.core.errors import SplitbenchError
from benchmark.core.io import atomic_write_text, sha256_file
from leaderboard.entry.layout import CHECKSUMS_FILE, HEX64, VERIFICATION_FILE


def _files_under(root: Path) -> list[str]:
    """Every file below ``root`` as a POSIX path relative to it; links are refused (an entry holds plain files)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise SplitbenchError(f"{p}: is a symbolic link; an entry holds plain files only")
        out += [Path(dirpath, f).relative_to(root).as_posix() for f in filenames]
    return sorted(out)


def write_checksums(root: Path) -> dict[str, str]:
    """Hash every file of the entry but the checksum file and the verification report; write ``checksums.json``."""
    files = {rel: sha256_file(root / rel) for rel in _files_under(root) if rel not in (CHECKSUMS_FILE,
                                                                                         VERIFICATION_FILE)}
    atomic_write_text(root / CHECKSUMS_FILE, json.dumps({"algorithm": "sha256", "files": files}, indent=2) + "\n")
    return files


def read_checksums(root: Path) -> dict[str, str]:
    """The files ``checksums.json`` lists (path relative to the entry -> sha256), each a path inside the entry with
    a sha256 hex digest; one clear error for a missing, unreadable or malformed list. Nothing is hashed here."""
    path = Path(root) / CHECKSUMS_FILE
    if not path.is_file():
        raise SplitbenchError(f"{path}: missing (an entry lists the sha256 of each of its files there)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitbenchError(f"{path}: not readable JSON ({exc})") from exc
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise SplitbenchError(f"{path}: expected {{\"algorithm\": \"sha256\", \"files\": {{PATH: SHA256}}}}")
    for rel, digest in files.items():
        parts = PurePosixPath(rel).parts
        if (PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel or rel in (CHECKSUMS_FILE,
                                                                                          VERIFICATION_FILE)
                or not isinstance(digest, str) or not HEX64.match(digest)):
            raise SplitbenchError(f"{path}: entry {rel!r}: expected a path inside the entry and a sha256 hex digest")
    return files


def check_checksums(root: Path) -> dict[str, str]:
    """Every file listed in ``checksums.json`` exists and matches; every file of the entry is listed."""
    files = read_checksums(root)
    for rel, digest in files.items():
        f = root / rel
        if not f.is_file():
            raise SplitbenchError(f"{f}: missing (listed in {CHECKSUMS_FILE})")
        if sha256_file(f) != digest:
            raise SplitbenchError(f"{f}: sha256 does not match {CHECKSUMS_FILE} (the file was changed after submit)")
    extra = [rel for rel in _files_under(root) if rel not in files and rel not in (CHECKSUMS_FILE,
                                                                                    VERIFICATION_FILE)]
    if extra:
        raise SplitbenchError(f"{root / extra[0]}: not listed in {CHECKSUMS_FILE} (an entry holds only the files "
                              "`splitbench submit` packed)")
    return files
