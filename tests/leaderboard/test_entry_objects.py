"""Files several entries hold in common are stored once in their collection and referenced by checksum; check,
verify and the site read deduplicated entries as if every file were there."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from leaderboard.entry import check_entry
from leaderboard.entry.objects import complete_entry, listed_files, missing_files, object_path, share
from tests.support.entries import copy_entry, seed_drawing, sha


@pytest.fixture
def collection(entry, tmp_path):
    """Two entries of one run (as the official entries are), plus a differing card in the second."""
    root = tmp_path / "entries"
    a = copy_entry(entry, root / "noise-a")
    b = copy_entry(entry, root / "noise-b")
    return root, a, b


def _bytes(root):
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_share_stores_each_common_file_once_and_entries_still_list_everything(collection, capsys):
    root, a, b = collection
    before = {e: {rel: sha(e / rel) for rel in listed_files(e)} for e in (a, b)}
    size = _bytes(root)
    assert main(["share", str(root)]) == 0
    line = capsys.readouterr().out
    assert "2 entries" in line and "stored once" in line
    assert _bytes(root) < 0.6 * size  # the second copy of the run is gone
    for e in (a, b):
        assert listed_files(e) == {rel: d for rel, d in before[e].items()}  # the lists are untouched
        assert (e / "entry.yaml").is_file()  # the card always stays with its entry
        gone = missing_files(e)
        assert gone and all(object_path(root, d).is_file() for d in gone.values())
        with complete_entry(e) as full:
            assert full != e
            assert {rel: sha(full / rel) for rel in listed_files(e)} == before[e]
            card, contents = check_entry(full)
            assert card["defense"] == "entry_test_noise" and len(contents.records) == 4
        assert not full.exists()  # the temporary folder is removed on exit
    again = share(root)  # idempotent
    assert again["files_moved"] == 0 and again["bytes_after"] == again["bytes_before"]


def test_share_removes_the_stored_files_no_entry_lists_any_more(collection, capsys):
    """Replacing or removing an entry leaves its shared files behind; the next share removes exactly those."""
    root, a, b = collection
    share(root)
    stored = {p.name for p in (root / "objects").rglob("*") if p.is_file()}
    assert stored
    shutil.rmtree(b)  # a lists every file b did: nothing is unused yet
    orphan = object_path(root, "f" * 64)
    orphan.parent.mkdir(parents=True)
    orphan.write_text("a file of an entry that was replaced")
    assert main(["share", str(root)]) == 0
    assert "1 no entry lists any more removed" in capsys.readouterr().out
    assert not orphan.exists() and not orphan.parent.exists()
    assert {p.name for p in (root / "objects").rglob("*") if p.is_file()} == stored
    with complete_entry(a) as full:  # the remaining entry still reads whole
        assert {rel: sha(full / rel) for rel in listed_files(a)} == listed_files(a)


def test_a_complete_entry_is_read_in_place(entry):
    with complete_entry(entry) as full:
        assert full == entry


def test_an_edited_shared_object_fails_the_check_of_every_entry_using_it(collection):
    root, a, b = collection
    share(root)
    rel, digest = next((r, d) for r, d in sorted(missing_files(a).items()) if r.endswith(".json"))
    obj = object_path(root, digest)
    obj.write_text(obj.read_text().replace("entry_test_noise", "entry_test_nois3"))
    for e in (a, b):
        with pytest.raises(SplitbenchError, match="sha256 does not match") as err, complete_entry(e) as full:
            check_entry(full)
        assert str(err.value).startswith(str(e / rel))  # the entry's path, not the temporary copy's
    with pytest.raises(SplitbenchError, match="sha256 does not match .*nothing was moved"):
        share(root)


def test_a_missing_shared_object_is_one_line_naming_it(collection, capsys):
    root, a, _ = collection
    share(root)
    rel, digest = sorted(missing_files(a).items())[0]
    object_path(root, digest).unlink()
    assert main(["verify", str(a), "--cells", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not stored once in the collection" in err[0] and digest in err[0]


def test_share_of_a_folder_without_entries_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["share", str(tmp_path / "empty")]) == 2
    assert "holds no entry folder" in capsys.readouterr().err
    assert main(["share", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_verify_and_the_site_read_a_deduplicated_entry(collection, tmp_path, capsys):
    from leaderboard.site.gather import load_source

    root, a, b = collection
    share(root)
    seed = seed_drawing(entry_of(a), "entry_test_noise")
    assert main(["verify", str(a), "--cells", "1", "--seed", str(seed), "--trust-code", "--report",
                 str(a / "verification.json")]) == 0
    (report,) = json.loads((a / "verification.json").read_text())["machines"].values()
    assert report["status"] == "verified" and report["mode"] == "exact"
    src = load_source(b)
    assert src.path == b and src.kind == "entry" and src.galleries
    assert all(g.file.is_file() for g in src.galleries)  # the images the site copies exist while the source lives


def entry_of(e):
    """A complete copy of an entry, for helpers that read the folder directly."""
    with complete_entry(e) as full:
        dst = e.parent.parent / f"{e.name}-complete"
        if not dst.exists():
            shutil.copytree(full, dst)
    return dst
