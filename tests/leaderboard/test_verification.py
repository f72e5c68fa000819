"""``splitbench verify`` across machines: exact on the machine that made an entry, a consistency check with the
entry's own seed spread on another, refused across library versions; reports kept per machine; provenance per
record."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from scipy.stats import t as student_t

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.store.records import NUMERICS, environment, fingerprint_key, machine_fingerprint
from leaderboard import verification
from leaderboard.entry import check_run, submit, write_checksums
from leaderboard.site import build_site
from leaderboard.site.gather import load_source
from leaderboard.site.views import slug
from leaderboard.verification import (
    ALPHA,
    choose_configs,
    consistency_compare,
    predictive_interval,
    read_report,
    report_results,
    sd_floor,
    verify_entry,
    write_report,
)
from tests.support.helpers import run_pinned
from tests.support.suites import tiny

SUITE = tiny(name="verifytest", description="three seeds of a tiny suite, for the verification tests",
             eval_counts=None, release_draws=None, seeds=[0, 1, 2],
             attacks=[{"name": "attribute_inference", "config": {"epochs": 1}}])

CARD = {"schema_version": 1, "name": "Random pruning", "authors": ["A. Author"], "paper": "A. Author, Pruning, 2024",
        "code_url": "https://example.org/pruning", "license": "MIT", "hardware": "2-core x86 CPU",
        "contact": "a.author@example.org", "defense": "random_pruning", "code": {"builtin": True}}

#: a machine that is not this one: another CPU model, ISA and flags, the same libraries
ELSEWHERE = {"cpu": "AMD EPYC 7B13", "device_name": "AMD EPYC 7B13", "isa": "AVX2", "cpu_flags": ["avx", "avx2", "fma"]}
#: a single-result report in the format verify wrote before reports were kept per machine (from a shipped entry)
LEGACY_REPORT = Path(__file__).resolve().parents[1] / "support" / "legacy-verification.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One finished run of the reference and random pruning at three seeds (6 cells), and its entry."""
    root = tmp_path_factory.mktemp("verify")
    (root / "verifytest.yaml").write_text(SUITE)
    summary = run_pinned(str(root / "verifytest.yaml"), out=root / "run", progress=False, latency_repeats=2)
    assert (summary.ok, summary.failed) == (6, 0)
    (root / "card.yaml").write_text(yaml.safe_dump(CARD, sort_keys=False))
    entry = submit(root / "run", root / "card.yaml", root / "entry")
    return {"root": root, "run": root / "run", "entry": entry}


def copy_entry(built, dst: Path, env: dict | None = None, push: dict | None = None, defense: str | None = None,
               drop: tuple[str, ...] = ()) -> Path:
    """A copy of the entry, its records' env changed by ``env`` (keys in ``drop`` removed), metric ``name`` of the
    card's defense's records moved by ``push[name]``, the card's defense set to ``defense``; checksums rewritten, as a
    submitter could."""
    shutil.copytree(built["entry"], dst)
    card = yaml.safe_load((dst / "entry.yaml").read_text())
    if defense:
        card["defense"] = defense
        (dst / "entry.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    for path in sorted((dst / "run" / "records").glob("*.json")):
        rec = json.loads(path.read_text())
        rec["env"].update(env or {})
        for key in drop:
            del rec["env"][key]
        if rec["config"]["defense"]["name"] == card["defense"]:
            for name, delta in (push or {}).items():
                rec["metrics"][name] += delta
        path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    write_checksums(dst)
    return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def spread(built, defense: str, metric: str) -> tuple[float, float]:
    """(standard deviation used, sqrt(1 + 1/k)) of a metric over the entry's seeds of ``defense``'s cell."""
    recs = [r for _, r in check_run(built["entry"] / "run").records if r["config"]["defense"]["name"] == defense]
    values = [r["metrics"][metric] for r in recs]
    floor = sd_floor(recs[0])
    return max(statistics.stdev(values), floor), math.sqrt(1 + 1 / len(values))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("splitbench: error: "), err
    return err[0]


# -- the statistics -------------------------------------------------------------------------------------------------
def test_predictive_interval_is_student_t_with_the_new_seed_term():
    iv = predictive_interval([0.80, 0.84, 0.86, 0.82, 0.83], floor=1e-3, alpha_each=0.01)
    s = statistics.stdev([0.80, 0.84, 0.86, 0.82, 0.83])
    t = student_t.ppf(1 - 0.005, 4)
    assert iv.mean == pytest.approx(0.83) and iv.sd_used == pytest.approx(s) and iv.t == pytest.approx(t)
    assert iv.hi - iv.mean == pytest.approx(t * s * math.sqrt(1 + 1 / 5))
    assert iv.contains(iv.hi - 1e-9) and not iv.contains(iv.hi + 1e-9) and iv.z(iv.hi) == pytest.approx(t)
    # seeds that agree exactly: the floor keeps the interval open (1/n, the resolution of an accuracy on n samples)
    flat = predictive_interval([1.0, 1.0, 1.0], floor=1 / 40, alpha_each=0.01)
    assert flat.sd == 0 and flat.sd_used == 1 / 40 and flat.contains(1 - 1 / 40) and not flat.contains(0.0)
    rec = {"samples": {"eval": 32, "val": 161}, "metrics": {"eval_samples": 359, "val_samples": 161}}
    assert sd_floor(rec) == pytest.approx(1 / 32) and sd_floor({"samples": {}, "metrics": {}}) == 1 / 1000


def test_consistency_compare_judges_figures_and_holds_fixed_ones_exactly():
    base = {"status": "ok", "config_hash": "h", "samples": {"eval": 40, "val": 20},
            "metrics": {"utility": 0.90, "leakage": 0.50, "client_params": 100, "attribute_floor": 0.2,
                        "fit_seconds": 1.0, "client_ms_b1_p50": 0.3}}
    group = [base, {**base, "metrics": {**base["metrics"], "utility": 0.92, "leakage": 0.54}},
             {**base, "metrics": {**base["metrics"], "utility": 0.88, "leakage": 0.52}}]
    rerun = {**base, "metrics": {**base["metrics"], "utility": 0.93, "leakage": 0.95, "fit_seconds": 9.0,
                                 "client_ms_b1_p50": 2.0}}
    judged, n_exact, bad = consistency_compare("c", base, rerun, group)
    assert sorted(j.metric for j in judged) == ["leakage", "utility"] and n_exact == 2 and bad == []
    outside, alpha_each, largest = verification._judge(judged, ALPHA)
    assert alpha_each == ALPHA / 2  # Bonferroni over the two figures judged
    (out,) = outside
    iv = predictive_interval([0.50, 0.54, 0.52], 1 / 20, ALPHA / 2)
    assert out["metric"] == "leakage" and out["z"] == pytest.approx(iv.z(0.95), abs=1e-3) and out["z"] > iv.t
    assert out["interval"] == pytest.approx([iv.lo, iv.hi]) and largest["metric"] == "leakage"
    moved = {**rerun, "metrics": {**rerun["metrics"], "client_params": 101}, "samples": {"eval": 41, "val": 20}}
    _, _, bad = consistency_compare("c", base, moved, group)
    assert {b["metric"] for b in bad} == {"client_params", "samples.eval"}


def test_the_floor_scales_with_the_figure_and_ratios_of_judged_figures_are_not_judged():
    # a payload the pruning ratio fixes: every seed sends 1572 bytes; another thread count keeps one sample's channel
    # less (1571.8 on average): within the resolution of a mean over n = 1000 samples of that size (1.572 bytes)
    base = {"status": "ok", "config_hash": "h", "samples": {"eval": 1000, "val": 2000},
            "metrics": {"payload_bytes": 1572.0, "utility": 0.95, "suppression_ratio_corrected": 2.2,
                        "holdout/suppression_ratio_max": 2.4}}
    group = [base, {**base, "metrics": {**base["metrics"], "utility": 0.96, "suppression_ratio_corrected": 108.0}},
             {**base, "metrics": {**base["metrics"], "utility": 0.94, "suppression_ratio_corrected": -32.4}}]
    rerun = {**base, "metrics": {**base["metrics"], "payload_bytes": 1571.8, "suppression_ratio_corrected": 266.0,
                                 "holdout/suppression_ratio_max": float("nan")}}
    judged, _, bad = consistency_compare("c", base, rerun, group)
    assert sorted(j.metric for j in judged) == ["payload_bytes", "utility"] and bad == []
    outside, _, largest = verification._judge(judged, ALPHA)
    assert outside == [] and largest["metric"] == "payload_bytes"
    assert largest["z"] == pytest.approx(-0.2 / (1.572 * math.sqrt(1 + 1 / 3)), abs=1e-3)
    # the same move on a figure of size one is far outside: the floor is 1/n there, not the figure's size over n
    far = {**rerun, "metrics": {**rerun["metrics"], "payload_bytes": 1572.0, "utility": 0.95 - 0.2}}
    judged, _, _ = consistency_compare("c", base, far, group)
    outside, _, _ = verification._judge(judged, ALPHA)
    assert [o["metric"] for o in outside] == ["utility"]


def test_choose_configs_pairs_each_drawn_configuration_with_the_reference(built):
    contents = check_run(built["entry"] / "run")
    for seed in range(5):
        chosen = choose_configs(contents, 1, seed, "random_pruning")
        assert [(g[0][1]["config"]["defense"]["name"], role) for _, g, role in chosen] == [
            ("random_pruning", "sampled"), ("no_pruning", "reference")]
        assert all([r["config"]["seed"] for _, r in g] == [0, 1, 2] for _, g, _ in chosen)


# -- verify ---------------------------------------------------------------------------------------------------------
def test_exact_on_the_machine_that_made_the_entry_and_nothing_written(built, tmp_path, capsys):
    entry = copy_entry(built, tmp_path / "entry")
    before = snapshot(entry)
    assert main(["verify", str(entry), "--cells", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{entry}: verified: 2 cell(s) re-run (1 sampled, 1 reference)" in printed
    assert "compared exactly (this machine's fingerprint is the records'" in printed
    assert "report: not written" in printed
    assert snapshot(entry) == before  # without --report the entry is not touched


def test_consistency_on_another_machine_names_each_figure_outside(built, tmp_path, capsys):
    sd, c = spread(built, "random_pruning", "leakage")
    far = 10 * predictive_interval([0.0, 0.5, 1.0], 1.0, 1e-6).t * sd * c  # beyond any interval of this spread
    u_sd, u_c = spread(built, "random_pruning", "utility")
    entry = copy_entry(built, tmp_path / "entry", env=ELSEWHERE, push={"leakage": -far, "utility": 0.5 * u_sd * u_c})
    shutil.copyfile(LEGACY_REPORT, entry / "verification.json")  # another machine's result, older form
    legacy = json.loads(LEGACY_REPORT.read_text())
    before = {k: v for k, v in snapshot(entry).items() if k != "verification.json"}
    code = main(["verify", str(entry), "--cells", "1", "--seeds", "2", "--report", str(entry / "verification.json")])
    printed = capsys.readouterr().out
    assert code == 1 and f"{entry}: inconsistent: 4 cell(s) re-run (2 sampled, 2 reference)" in printed
    assert "alpha 0.05 family-wise, Bonferroni" in printed and "per-sample arrays not compared" in printed
    report = json.loads((entry / "verification.json").read_text())
    machines = report["machines"]
    assert len(machines) == 2 and report["manifest_id"] == check_run(entry / "run").manifest["manifest_id"]
    old = next(r for r in machines.values() if r.get("device", {}).get("name") == "AMD EPYC")
    assert {k: v for k, v in old.items() if k != "fingerprint"} == legacy  # the other machine's result is kept
    (new,) = [r for r in machines.values() if r is not old]
    assert new["mode"] == "consistency" and new["status"] == "inconsistent" and new["seeds"] in ([0, 1], [0, 2], [1, 2])
    assert new["machine"] == fingerprint_key(new["fingerprint"]) and new["fingerprint"]["isa"]
    assert new["rule"]["alpha"] == ALPHA and new["rule"]["alpha_each"] == ALPHA / new["figures_judged"]
    assert new["mismatches"] == []
    outside = new["outside"]
    assert len(outside) == 2 and {o["metric"] for o in outside} == {"leakage"}  # the utility push stays inside
    for o in outside:
        assert "random_pruning" in o["cell"] and o["z"] > o["t"] and not o["interval"][0] <= o["rerun"] <= \
            o["interval"][1]
        assert f"outside: {o['cell']} leakage: re-run {o['rerun']:.6g}, z = {o['z']:.1f}, interval [" in printed
    assert {k: v for k, v in snapshot(entry).items() if k != "verification.json"} == before


def test_consistency_within_the_seed_spread(built, tmp_path, capsys):
    sd, c = spread(built, "no_pruning", "leakage")
    entry = copy_entry(built, tmp_path / "entry", env=ELSEWHERE, push={"leakage": 0.5 * sd * c},
                       defense="no_pruning")
    report = tmp_path / "reports" / "verification.json"
    before = snapshot(entry)
    code = main(["verify", str(entry), "--cells", "1", "--seeds", "2", "--report", str(report)])
    printed = capsys.readouterr().out
    assert code == 0 and f"{entry}: consistent: 2 cell(s) re-run (2 sampled, 0 reference)" in printed, printed
    (result,) = json.loads(report.read_text())["machines"].values()
    assert result["status"] == "consistent" and result["outside"] == [] and result["figures_judged"] > 0
    assert result["exact_figures_compared"] > 0 and abs(result["largest_z"]["z"]) <= result["largest_z"]["t"]
    assert snapshot(entry) == before and f"report: {report}" in printed


def test_another_thread_count_on_this_machine_is_a_consistency_check(built, tmp_path, capsys):
    entry = copy_entry(built, tmp_path / "entry")
    (made,) = {r["env"]["threads"] for _, r in check_run(entry / "run").records}
    other = 1 if made > 1 else 2
    report = tmp_path / "verification.json"
    code = main(["verify", str(entry), "--cells", "1", "--seeds", "2", "--threads", str(other), "--report",
                 str(report)])
    printed = capsys.readouterr().out
    (result,) = json.loads(report.read_text())["machines"].values()
    assert result["mode"] == "consistency" and result["fingerprint"]["threads"] == other
    assert result["fingerprint"] == {**machine_fingerprint(environment("cpu")), "threads": other}
    # another thread count rounds differently, but stays inside what a new seed would do
    assert code == 0 and result["status"] == "consistent" and result["figures_judged"] > 0, printed


def test_other_library_versions_are_refused_with_one_line(built, tmp_path, capsys):
    entry = copy_entry(built, tmp_path / "entry", env={"torch": "2.0.0+cpu", **ELSEWHERE})
    before = snapshot(entry)
    assert main(["verify", str(entry), "--report", str(entry / "verification.json")]) == 2
    here = environment("cpu")
    assert one_error_line(capsys) == (
        f"splitbench: error: {entry}: exact or consistent verification needs the same library versions: records made "
        f"with torch 2.0.0+cpu / timm {here['timm']}, this is torch {here['torch']} / timm {here['timm']}")
    assert snapshot(entry) == before


def test_records_of_older_harness_numerics_on_this_machine_are_a_consistency_check(built, tmp_path, capsys):
    """Records written before the harness recorded its numerics version (the same machine, libraries and threads)
    were computed another way (e.g. convolutions on 1x1 maps): re-run today they differ in the last bits, so they are
    judged against the seed spread, never bit for bit."""
    entry = copy_entry(built, tmp_path / "entry", drop=("numerics",))
    report = tmp_path / "verification.json"
    code = main(["verify", str(entry), "--cells", "1", "--seeds", "2", "--report", str(report)])
    printed = capsys.readouterr().out
    (result,) = json.loads(report.read_text())["machines"].values()
    assert result["mode"] == "consistency" and result["fingerprint"] == machine_fingerprint(environment("cpu"))
    assert result["fingerprint"]["numerics"] == NUMERICS
    assert "numerics before version 2" in result["rule"]["why"]
    assert code == 0 and result["status"] == "consistent", printed


def test_bad_seeds_and_report_paths_are_refused(built, tmp_path):
    entry = copy_entry(built, tmp_path / "entry", env=ELSEWHERE)
    with pytest.raises(SplitbenchError, match=r"--seeds 1: expected 2 or more seeds"):
        verify_entry(entry, seeds=1)
    with pytest.raises(SplitbenchError, match=r"--seeds 4: the drawn cells were run at 3 seeds \(\[0, 1, 2\]\)"):
        verify_entry(entry, seeds=4)
    with pytest.raises(SplitbenchError, match=r"--threads 0: expected a positive number of torch threads"):
        verify_entry(entry, threads=0)
    with pytest.raises(SplitbenchError, match="inside the entry only .*verification.json may be written"):
        verify_entry(entry, report=entry / "run" / "report.json")


# -- reports --------------------------------------------------------------------------------------------------------
def test_reports_keep_one_result_per_machine(tmp_path):
    path = tmp_path / "report.json"
    here = machine_fingerprint(environment("cpu"))
    there = {**here, **{k: v for k, v in ELSEWHERE.items() if k in here}}
    first = {"machine": fingerprint_key(here), "fingerprint": here, "status": "verified", "date": "2026-12-01"}
    second = {"machine": fingerprint_key(there), "fingerprint": there, "status": "consistent", "date": "2026-12-02"}
    write_report(path, first, "my-entry", "m1")
    write_report(path, second, "my-entry", "m1")
    assert read_report(path, "m1") == {first["machine"]: first, second["machine"]: second}
    again = {**first, "status": "mismatch", "date": "2026-12-03"}  # the same machine again: its own result replaced
    write_report(path, again, "my-entry", "m1")
    assert read_report(path) == {first["machine"]: again, second["machine"]: second}
    with pytest.raises(SplitbenchError, match="holds the verification of another entry .manifest m1"):
        write_report(path, first, "other-entry", "m2")
    legacy = report_results(json.loads(LEGACY_REPORT.read_text()))
    (result,) = legacy.values()
    assert result["status"] == "verified" and result["fingerprint"]["cpu"] == "AMD EPYC"
    assert result["fingerprint"]["isa"] is None  # older records and reports: an unknown ISA


def test_site_shows_one_line_per_verifying_machine(built, tmp_path):
    entry = copy_entry(built, tmp_path / "entry")
    shutil.copyfile(LEGACY_REPORT, entry / "verification.json")
    fp = {**machine_fingerprint(environment("cpu")), "device_name": "<b>Xeon</b> & co", "cpu": "<b>Xeon</b> & co"}
    write_report(entry / "verification.json", {"machine": fingerprint_key(fp), "fingerprint": fp, "mode": "consistency",
                                               "status": "inconsistent", "cells": 4, "date": "2026-12-05T00:00:00"},
                 entry, check_run(entry / "run").manifest["manifest_id"])
    src = load_source(entry)
    n = fp["threads"]
    there = f"<b>Xeon</b> & co ({n} thread{'' if n == 1 else 's'})"
    assert [v.text for v in src.verifications] == ["exact on AMD EPYC (1 thread)", f"inconsistent on {there}"]
    assert src.verified == "inconsistent"
    site = build_site([entry], tmp_path / "site").parent
    page = (site / "defenses" / f"{slug('random_pruning')}.html").read_text()
    assert "Verification: exact on AMD EPYC (1 thread) — 3 cells re-run, 2026-12-04." in page
    assert (f"Verification: inconsistent on &lt;b&gt;Xeon&lt;/b&gt; &amp; co ({n} thread{'' if n == 1 else 's'}) — 4 "
            "cells re-run, 2026-12-05.") in page
    assert "<b>Xeon" not in page


# -- provenance per record -------------------------------------------------------------------------------------------
def test_each_record_names_the_code_that_wrote_it(built, tmp_path, monkeypatch):
    import benchmark
    from benchmark.engine import runner as runner_module

    calls = []

    def provenance():
        calls.append(len(calls))
        return {"git_commit": ("a" if len(calls) == 1 else "b") * 40, "git_dirty": False}

    monkeypatch.setattr(runner_module, "git_provenance", provenance)
    out = tmp_path / "run"
    summary = benchmark.run(str(built["root"] / "verifytest.yaml"), out=out, progress=False, latency_repeats=1,
                            cache_dir=built["run"] / "cache")  # the models come from the cache: only attacks run
    assert summary.ok == 6 and len(calls) == 6  # one look at the code per record written
    commits = sorted(json.loads(p.read_text())["env"]["git_commit"] for p in (out / "records").glob("*.json"))
    assert commits == ["a" * 40] + ["b" * 40] * 5
    with pytest.raises(SplitbenchError) as err:
        submit(out, built["root"] / "card.yaml", tmp_path / "entry")
    assert f"(commit {'a' * 40})" in str(err.value) and f"(commit {'b' * 40})" in str(err.value)
    assert "the code changed during the run" in str(err.value) and not (tmp_path / "entry").exists()


def test_verify_passes_the_data_options_on(monkeypatch, tmp_path):
    import leaderboard.submission as submission
    from benchmark.cli import main

    seen = {}

    def fake(entry, **kw):
        seen.update(kw)
        raise SplitbenchError("stop here")

    monkeypatch.setattr(submission, "verify_entry", fake)
    assert main(["verify", str(tmp_path), "--data-root", str(tmp_path / "data"), "--download"]) == 2
    assert seen["data_root"] == str(tmp_path / "data") and seen["download"] is True


def test_a_rerun_cell_is_judged_converged_against_the_entrys_other_cells_of_its_model():
    """The runner flags an optimisation attack against the best release error of every reconstruction attack of the
    model; a verify re-run holds the drawn cell alone, so its own flag (never raised against itself) and best error
    are recomputed against the entry's records of that model before the exact comparison (an official entry's
    deep-image-prior cell was reported as a mismatch on `budget.convergence.best_release_error` before)."""
    from benchmark.measure.scoring import convergence
    from leaderboard.entry.runcheck import RunContents
    from leaderboard.verification import compare_records, with_model_convergence

    def rec(name, error, optimises, flagged=None, best=None, model="m1"):
        metrics = {"release_error": error, "leakage": 0.1}
        if optimises:
            metrics["attack.objective_last"] = error
        r = {"status": "ok", "config_hash": name, "model_hash": model, "metrics": metrics, "budget": {"steps": 10}}
        if flagged is not None:
            metrics["not_converged"] = float(flagged)
            r["budget"]["convergence"] = {"rule": convergence.rule_text(), "best_release_error": best}
        return Path(name), r

    submitted = [rec("a.json", 0.05, True, flagged=True, best=0.001), rec("b.json", 0.001, False),
                 rec("c.json", 0.002, True, flagged=False, best=0.001), rec("o.json", 1e-5, False, model="m2")]
    contents = RunContents(Path("."), {}, Path("m.json"), submitted)
    rerun = rec("a.json", 0.05, True, flagged=False, best=0.05)[1]  # what the re-run alone wrote
    assert compare_records("a", submitted[0][1], {}, rerun, {})[2]  # compared as written: a false mismatch
    fixed = with_model_convergence(rerun, Path("a.json"), contents)
    assert fixed["metrics"]["not_converged"] == 1.0 and fixed["budget"]["convergence"]["best_release_error"] == 0.001
    assert compare_records("a", submitted[0][1], {}, fixed, {})[2] == []
    assert rerun["metrics"]["not_converged"] == 0.0  # the re-run's own record is not modified
    # a re-run that really ends elsewhere still differs, and a record without a verdict passes through unchanged
    worse = with_model_convergence(rec("c.json", 0.5, True, flagged=False, best=0.5)[1], Path("c.json"), contents)
    assert worse["metrics"]["not_converged"] == 1.0
    assert compare_records("c", submitted[2][1], {}, worse, {})[2]
    plain = rec("b.json", 0.001, False)[1]
    assert with_model_convergence(plain, Path("b.json"), contents) is plain


def test_an_entry_with_admission_seeds_is_submitted_and_its_model_cells_verify_exactly(tmp_path, capsys):
    """Model cells (admission seeds: trained and validated, never attacked) pass the entry checks and are re-run by
    verify like any cell: the fit and its validation must come out identical on the machine that made them."""
    (tmp_path / "s.yaml").write_text(tiny(name="verifytest", eval_counts=None, release_draws=None, seeds=[0],
                                          admission_seeds=[1, 2],
                                          attacks=[{"name": "attribute_inference", "config": {"epochs": 1}}]))
    summary = run_pinned(str(tmp_path / "s.yaml"), out=tmp_path / "run", progress=False, latency_repeats=2)
    assert (summary.ok, summary.failed) == (6, 0)
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(CARD, sort_keys=False))
    entry = submit(tmp_path / "run", tmp_path / "card.yaml", tmp_path / "entry")
    models = [r for _, r in check_run(entry / "run").records if "attack" not in r["config"]]
    assert len(models) == 4
    assert main(["verify", str(entry), "--cells", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"{entry}: verified: 6 cell(s) re-run (3 sampled, 3 reference)" in printed


def test_a_consistency_check_draws_its_seeds_from_those_the_drawn_cells_were_run_at():
    """An entry whose suite fits seeds for admission only (no attack cell there) or a curve point at fewer seeds:
    the re-run seeds come from the sampled cells' seeds, not from every seed of the entry."""
    from leaderboard.verification import rerun_seed_pool

    def group(seeds):
        return [(Path(f"c_s{s}.json"), {"config": {"seed": s}}) for s in seeds]

    configs = [("curve", group([0, 1, 2]), "sampled"), ("ref", group([0, 1, 2, 3, 4]), "reference")]
    assert rerun_seed_pool(configs) == [0, 1, 2]
    both = [("a", group([0, 1, 2, 3, 4]), "sampled"), ("b", group([3, 4]), "sampled")]
    assert rerun_seed_pool(both) == [0, 1, 2, 3, 4]
