"""Leaderboard entries: ``splitbench submit`` packs a finished run, ``splitbench verify`` checks and re-runs it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from leaderboard import verification
from leaderboard.entry import check_run, write_checksums
from leaderboard.submission import check_entry, is_official, read_card, submit, verify_entry
from leaderboard.verification import choose_cells, compare_records, is_timing
from tests.support.entries import (
    CARD,
    PLUGIN,
    copy_entry,
    copy_run,
    edit_json,
    records_of,
    seed_drawing,
    sha,
    write_card,
)


def test_submit_packs_the_run_card_plugin_and_checksums(built, entry):
    run = built["run"]
    assert sorted(p.name for p in entry.iterdir()) == ["checksums.json", "entry.yaml", "plugin", "run"]
    (manifest,) = sorted((run / "manifests").glob("*.json"))
    assert [p.name for p in (entry / "run" / "manifests").iterdir()] == [manifest.name]
    assert (entry / "run" / "run.json").read_bytes() == manifest.read_bytes()
    cells = json.loads(manifest.read_text())["cells"]
    expected = set(cells) | {c[:-5] + ".npz" for c in cells} | {c[:-5] + ".png" for c in cells
                                                               if "inversion_decoder" in c}
    assert {p.name for p in (entry / "run" / "records").iterdir()} == expected
    for name in expected:
        assert (entry / "run" / "records" / name).read_bytes() == (run / "records" / name).read_bytes()
    assert (entry / "plugin" / "entry_noise.py").read_text() == PLUGIN
    checksums = json.loads((entry / "checksums.json").read_text())
    on_disk = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()} - {"checksums.json"}
    assert checksums["algorithm"] == "sha256" and set(checksums["files"]) == on_disk
    assert all(sha(entry / rel) == digest for rel, digest in checksums["files"].items())
    card = read_card(entry / "entry.yaml")
    assert card == {**CARD, "suite": "entrytest"} and list(card)[-1] == "suite"
    assert sorted(p.name for p in entry.parent.iterdir()) == ["noise"]  # no temporary folder left beside it
    assert not is_official(entry)


def test_official_flag_follows_the_suite(built, tmp_path):
    run = copy_run(built, tmp_path / "run")
    for rec in records_of(run):
        edit_json(rec, lambda r: r["config"].update(suite="standard"))
    (manifest,) = (run / "manifests").glob("*.json")
    edit_json(manifest, lambda m: (m.update(suite="standard"), m["resolved_suite"].update(name="standard")))
    official = submit(run, built["card"], tmp_path / "official", plugins=[built["plugin"]])
    assert read_card(official / "entry.yaml")["suite"] == "standard"
    assert is_official(official) and is_official({"suite": "standard"}) and not is_official({"suite": "quick"})


def test_submit_through_the_cli(built, tmp_path, capsys):
    out = tmp_path / "cli-entry"
    code = main(["submit", str(built["run"]), "--card", str(built["card"]), "--out", str(out), "--plugin",
                 str(built["plugin"])])
    printed = capsys.readouterr().out
    assert code == 0 and "defense entry_test_noise, suite entrytest (unofficial" in printed and "4 cells" in printed
    check_entry(out)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitbench: error: "), err
    return err[0]


def test_cli_bad_input_is_one_line_and_exit_code_2(built, entry, tmp_path, capsys):
    code = main(["submit", str(built["run"]), "--card", str(built["card"]), "--out", str(entry), "--plugin",
                 str(built["plugin"])])
    assert code == 2 and f"{entry}: already exists" in one_error_line(capsys)
    bad = copy_entry(entry, tmp_path / "bad")
    records_of(bad / "run")[0].write_text("{}")
    assert main(["verify", str(bad)]) == 2
    assert "sha256 does not match checksums.json" in one_error_line(capsys)


@pytest.mark.parametrize("changes, message", [
    ({"license": None}, "missing key 'license' (the code's license"),
    ({"licence": "MIT"}, "unknown key 'licence'; did you mean 'license'?"),
    ({"authors": "A. Author"}, "key 'authors' must be a list (a list of author names), got 'A. Author' (str)"),
    ({"authors": ["A. Author", 7]}, "key 'authors[1]' must be a string"),
    ({"schema_version": 2}, "schema_version 2 is not supported (expected one of 1)"),
    ({"code": {"plugin": ["entry_noise.py"], "builtin": True}}, "unknown key 'code.builtin'"),
    ({"code": {"package": "noise"}}, "missing key 'code.version'"),
    ({"code": "entry_noise.py"}, "key 'code' must be a mapping with exactly the keys plugin; or package, version, "
                                 "entry_point; or builtin"),
    ({"code_url": "example.org"}, "key 'code_url' is not valid: got 'example.org' (str), expected an http(s) URL"),
    ({"suite": "quick"}, "key 'suite' is 'quick', but the run is of suite 'entrytest'"),
    ({"defense": "random_pruning"}, "defense 'random_pruning' is not run in"),
    ({"code": {"builtin": True}}, "plugin files were given, but code is not {plugin: [...]}"),
    ({"code": {"plugin": ["other.py"]}}, "code.plugin lists ['other.py'], but the plugin files given are "
                                         "['entry_noise.py']"),
], ids=["missing-key", "unknown-key", "not-a-list", "not-a-string", "schema-version", "two-code-forms",
        "package-without-version", "code-not-a-mapping", "not-a-url", "other-suite", "defense-not-run",
        "builtin-with-plugins", "other-plugin-file"])
def test_submit_refuses_a_bad_card_naming_the_key(built, tmp_path, changes, message):
    card = write_card(tmp_path / "card.yaml", **changes)
    with pytest.raises(SplitbenchError) as err:
        submit(built["run"], card, tmp_path / "entry", plugins=[built["plugin"]])
    assert str(err.value).startswith(f"{card}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "entry").exists()


@pytest.mark.parametrize("code, message", [
    ({"builtin": True}, "defense 'entry_test_noise' does not ship with splitbench (it comes from splitbench_plugin_"),
    ({"plugin": ["entry_noise.py"]}, "code.plugin lists ['entry_noise.py'], but the plugin files given are none"),
    ({"package": "splitbench-noise", "version": "1.0", "entry_point": "noise"},
     "package 'splitbench-noise' is not installed (install splitbench-noise==1.0)"),
], ids=["builtin", "plugin", "package"])
def test_submit_checks_where_the_code_comes_from(built, tmp_path, code, message):
    card = write_card(tmp_path / "card.yaml", code=code)
    with pytest.raises(SplitbenchError) as err:
        submit(built["run"], card, tmp_path / "entry")
    assert str(err.value).startswith(f"{card}: ") and message in str(err.value), str(err.value)


def _fail_one(run: Path) -> Path:
    rec = records_of(run)[-1]
    edit_json(rec, lambda r: r.update(status="failed", reason="RuntimeError: out of memory"))
    return rec


def _drop_reference(run: Path) -> Path:
    (manifest,) = (run / "manifests").glob("*.json")
    edit_json(manifest, lambda m: m.update(cells=[c for c in m["cells"] if "no_pruning" not in c]))
    return manifest


def _edit_npz(run: Path) -> Path:
    npz = sorted((run / "records").glob("*.npz"))[0]
    npz.write_bytes(npz.read_bytes() + b"\0")
    return npz


def _delete_npz(run: Path) -> Path:
    npz = sorted((run / "records").glob("*.npz"))[0]
    npz.unlink()
    return npz


def _other_suite(run: Path) -> Path:
    rec = records_of(run)[0]
    edit_json(rec, lambda r: r["config"].update(suite="quick"))
    return rec


def _other_version(run: Path) -> Path:
    (manifest,) = (run / "manifests").glob("*.json")
    rec = run / "records" / json.loads(manifest.read_text())["cells"][-1]
    edit_json(rec, lambda r: r["env"].update(package_version="0.0.9"))
    return rec


def _missing_record(run: Path) -> Path:
    rec = records_of(run)[1]
    rec.unlink()
    return rec


@pytest.mark.parametrize("spoil, message", [
    (_fail_one, "the cell failed (RuntimeError: out of memory)"),
    (_drop_reference, "no finished cell of the reference defense 'no_pruning' for digits · test_resnet@layer1, "
                      "seed 0 (paired Δutility needs it"),
    (_edit_npz, "checksum does not match the one in"),
    (_delete_npz, "per-sample outcomes file is missing"),
    (_other_suite, "record of suite 'quick', not of the manifest's suite 'entrytest'"),
    (_other_version, "made by splitbench 0.0.9"),
    (_missing_record, "record named by manifest"),
], ids=["failed-cell", "no-reference", "npz-checksum", "missing-npz", "other-suite", "mixed-versions",
        "missing-record"])
def test_submit_refuses_a_bad_run_naming_the_file(built, tmp_path, spoil, message):
    run = copy_run(built, tmp_path / "run")
    named = spoil(run)
    with pytest.raises(SplitbenchError) as err:
        submit(run, built["card"], tmp_path / "entry", plugins=[built["plugin"]])
    assert str(err.value).startswith(str(named)) and message in str(err.value), str(err.value)
    assert not (tmp_path / "entry").exists()


def test_submit_never_overwrites_and_leaves_nothing_when_packing_fails(built, entry, tmp_path, monkeypatch):
    before = sha(entry / "checksums.json")
    with pytest.raises(SplitbenchError, match="already exists; submit never overwrites"):
        submit(built["run"], built["card"], entry, plugins=[built["plugin"]])
    assert sha(entry / "checksums.json") == before
    calls = []

    def flaky_copy(src, dst):
        calls.append(src)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst)

    real_copy = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", flaky_copy)
    with pytest.raises(SplitbenchError, match=f"{tmp_path / 'entry'}: could not be written .No space left"):
        submit(built["run"], built["card"], tmp_path / "entry", plugins=[built["plugin"]])
    assert list(tmp_path.iterdir()) == []


# -- the integrity half of verify -------------------------------------------------------------------------------
def _tamper_record(entry: Path) -> Path:
    rec = records_of(entry / "run")[0]
    edit_json(rec, lambda r: r["metrics"].update(utility=r["metrics"]["utility"] + 0.01))
    return rec


def _rehashed(spoil):
    def both(entry: Path) -> Path:
        named = spoil(entry)
        write_checksums(entry)
        return named
    return both


def _extra_manifest(entry: Path) -> Path:
    extra = entry / "run" / "manifests" / "000000000000.json"
    shutil.copyfile(entry / "run" / "run.json", extra)
    return extra


def _card_key(entry: Path) -> Path:
    card = entry / "entry.yaml"
    card.write_text(card.read_text() + "award: best\n")
    return card


@pytest.mark.parametrize("spoil, message", [
    (_tamper_record, "sha256 does not match checksums.json"),
    (lambda e: _edit_npz(e / "run"), "sha256 does not match checksums.json"),
    (lambda e: _delete_npz(e / "run"), "missing (listed in checksums.json)"),
    (_rehashed(lambda e: _delete_npz(e / "run")), "per-sample outcomes file is missing"),
    (_rehashed(lambda e: _other_suite(e / "run")), "record of suite 'quick', not of the manifest's suite"),
    (_rehashed(lambda e: _edit_npz(e / "run")), "checksum does not match the one in"),
    (_extra_manifest, "not listed in checksums.json"),
    (_rehashed(_extra_manifest), "an entry holds exactly one manifest, found 2"),
    (_rehashed(_card_key), "unknown key 'award'"),
], ids=["edited-record", "edited-npz", "missing-npz", "missing-npz-rehashed", "other-suite-rehashed",
        "edited-npz-rehashed", "extra-file", "extra-manifest-rehashed", "card-key-rehashed"])
def test_verify_refuses_a_damaged_entry_naming_the_file(entry, tmp_path, spoil, message):
    bad = copy_entry(entry, tmp_path / "bad")
    named = spoil(bad)
    where = named.parent if "exactly one manifest" in message else named
    with pytest.raises(SplitbenchError) as err:
        verify_entry(bad, cells=1)
    assert str(err.value).startswith(str(where)) and message in str(err.value), str(err.value)
    assert not (bad / "verification.json").exists()


# -- re-running ---------------------------------------------------------------------------------------------------
def test_verify_reruns_cells_and_finds_every_metric_equal(entry, tmp_path, capsys):
    copy = copy_entry(entry, tmp_path / "entry")
    seed = seed_drawing(copy, "entry_test_noise")  # a plugin cell, so the reference cell is re-run beside it
    t0 = time.perf_counter()
    assert main(["verify", str(copy), "--cells", "1", "--seed", str(seed), "--trust-code", "--report",
                 str(copy / "verification.json")]) == 0
    seconds = time.perf_counter() - t0
    printed = capsys.readouterr().out
    (report,) = json.loads((copy / "verification.json").read_text())["machines"].values()
    assert report["status"] == "verified" and report["mismatches"] == [] and report["cells"] == 2
    assert sorted(c["role"] for c in report["compared"]) == ["reference", "sampled"]
    assert {c["comparison"] for c in report["compared"]} == {"exact"} and report["mode"] == "exact"
    sampled = next(c for c in report["compared"] if c["role"] == "sampled")
    rec = json.loads((copy / "run" / "records" / f"{sampled['cell']}.json").read_text())
    assert rec["config"]["defense"]["name"] == "entry_test_noise"
    reference = next(c["cell"] for c in report["compared"] if c["role"] == "reference")
    assert reference.startswith("digits__test_resnet@layer1__no_pruning@0__attribute_inference__s0__")
    timing = [k for k in rec["metrics"] if is_timing(k)]
    assert sampled["metrics"] == len(rec["metrics"]) - len(timing) and sampled["arrays"] >= 5
    assert report["device"]["device"] == "cpu" and report["versions"]["submitted"]["torch"]
    assert f"{copy}: verified: 2 cell(s) re-run (1 sampled, 1 reference)" in printed
    assert "compared exactly (this machine's fingerprint is the records'" in printed
    check_entry(copy)  # the report is not part of the checksummed entry
    print(f"verify re-ran 2 cells in {seconds:.1f} s")


def test_verify_reports_each_metric_a_forged_entry_changed(entry, tmp_path, capsys):
    forged = copy_entry(entry, tmp_path / "forged")
    for path in records_of(forged / "run"):
        if "entry_test_noise" in path.name:  # the submitted defense's numbers, not the reference's
            edit_json(path, lambda r: r["metrics"].update(leakage=r["metrics"]["leakage"] + 0.25))
    write_checksums(forged)  # a forger can recompute checksums; the re-run still catches the numbers
    seed = seed_drawing(forged, "entry_test_noise")
    assert main(["verify", str(forged), "--cells", "1", "--seed", str(seed), "--trust-code", "--report",
                 str(tmp_path / "report.json")]) == 1
    (report,) = json.loads((tmp_path / "report.json").read_text())["machines"].values()
    assert report["status"] == "mismatch" and report["cells"] == 2  # the drawn cell and its reference
    (bad,) = report["mismatches"]
    assert bad["metric"] == "leakage" and bad["submitted"] == pytest.approx(bad["rerun"] + 0.25)
    assert f"mismatch: {bad['cell']} leakage: submitted" in capsys.readouterr().out


def test_verify_draws_the_submitted_defense_cells_not_only_the_reference(entry):
    contents = check_run(entry / "run")
    names = {r["config"]["defense"]["name"] for _, r in contents.records}
    assert names == {"no_pruning", "entry_test_noise"}
    for seed in range(20):
        chosen = choose_cells(contents, 2, seed, "entry_test_noise")
        sampled = [r["config"]["defense"]["name"] for _, r, role in chosen if role == "sampled"]
        assert sampled == ["entry_test_noise"] * 2
        assert {r["config"]["defense"]["name"] for _, r, role in chosen if role == "reference"} <= {"no_pruning"}
    # without a defense to favour (or one the run lacks), every finished cell can be drawn
    drawn = {r["config"]["defense"]["name"] for seed in range(40) for _, r, role in choose_cells(contents, 1, seed)
             if role == "sampled"}
    assert drawn == names


def test_verify_runs_plugin_code_only_with_trust_code(entry, tmp_path, capsys, monkeypatch):
    copy = copy_entry(entry, tmp_path / "entry")

    def imported(*args, **kwargs):
        raise AssertionError("the plugin files were imported before --trust-code was checked")

    monkeypatch.setattr(verification, "check_code", imported)
    assert main(["verify", str(copy), "--cells", "1"]) == 2
    line = one_error_line(capsys)
    assert f"imports and runs the entry's plugin file(s) {copy / 'plugin' / 'entry_noise.py'}; read them" in line
    assert "pass --trust-code" in line
    # with --trust-code it runs: test_verify_reruns_cells_and_finds_every_metric_equal


def test_a_one_seed_entry_made_elsewhere_cannot_be_checked_for_consistency(entry, tmp_path):
    copy = copy_entry(entry, tmp_path / "entry")
    for path in records_of(copy / "run"):
        edit_json(path, lambda r: r["env"].update(cpu="AMD EPYC 7B13", device_name="AMD EPYC 7B13", isa="AVX2"))
    write_checksums(copy)
    with pytest.raises(SplitbenchError, match=r"made on AMD EPYC 7B13 \(cpu, ISA AVX2, .*it has one seed; a check "
                                              r"on another machine needs the spread of 2 or more seeds"):
        verify_entry(copy, cells=1, trust_code=True)


def test_compare_records_is_exact():
    import numpy as np

    sub = {"status": "ok", "config_hash": "x", "samples": {"eval": 8}, "budget": {"epochs": 1, "seconds": 3.0},
           "metrics": {"utility": 0.90, "psnr": 20.0, "ssim": 0.50, "client_params": 100, "fit_seconds": 1.0,
                       "client_ms_b1_p50": 0.2, "suppression_ratio_max": 2.0}}
    arrays = {"model/utility": np.array([1.0, 0.0, 1.0, 1.0], np.float32), "model/task": np.array([0, 1, 0, 1])}
    timing = {**sub, "budget": {"epochs": 1, "seconds": 9.0},
              "metrics": {**sub["metrics"], "fit_seconds": 7.0, "client_ms_b1_p50": 0.9}}
    assert compare_records("c", sub, arrays, timing, dict(arrays)) == (5, 2, [])  # timings are never compared
    near = {**timing, "metrics": {**timing["metrics"], "utility": 0.90000001, "psnr": 20.4}}
    flipped = {"model/utility": np.array([1.0, 1.0, 1.0, 0.0], np.float32), "model/task": arrays["model/task"]}
    _, _, bad = compare_records("c", sub, arrays, near, flipped)
    assert {b["metric"] for b in bad} == {"utility", "psnr", "outcomes:model/utility"}
    assert next(b for b in bad if b["metric"] == "outcomes:model/utility")["detail"] == "2 of 4 values differ"
