"""The runner end to end on a tiny suite: records, resume, caching, failures, determinism."""

from __future__ import annotations

import json
import textwrap

import pytest

import benchmark
from benchmark.core.errors import SplitbenchError
from benchmark.core.registry import ATTACKS, DEFENSES, load_plugin
from benchmark.store.records import SCHEMA_VERSION, iter_records, load_frame
from tests.support.suites import tiny

TINY = tiny()

TIMING = ("client_ms", "server_ms", "seconds")


@pytest.fixture
def suite_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "tiny.yaml").write_text(TINY)
    summary = benchmark.run(str(root / "tiny.yaml"), out=root / "out", progress=False)
    return root, summary


def test_run_writes_one_valid_record_per_cell(finished_run):
    root, summary = finished_run
    assert (summary.total, summary.ok, summary.failed, summary.models_trained) == (4, 4, 0, 2)
    records = list(iter_records(root / "out"))
    assert len(records) == 4
    for _, rec in records:
        assert rec["schema_version"] == SCHEMA_VERSION and rec["status"] == "ok"
        assert rec["config"]["defense"]["name"] in ("no_pruning", "random_pruning")
        assert len(rec["config_hash"]) == 16 and rec["model_hash"]
        assert all(isinstance(v, (int, float)) for v in rec["metrics"].values())
        assert rec["higher_is_better"]["utility"] is True and rec["higher_is_better"]["leakage"] is False
        for key in ("python", "torch", "timm", "device", "git_commit", "package_version", "utc_time"):
            assert key in rec["env"]
        assert rec["budget"]["epochs"] == 1
        assert 0.0 <= rec["metrics"]["utility"] <= 1.0
    assert list((root / "out" / "cache" / "models").glob("*.safetensors"))
    frame = load_frame(root / "out")
    assert set(frame.attack) == {"attribute_inference", "inversion_decoder"}
    assert frame["m.utility"].notna().all()


def test_rerun_recomputes_nothing(finished_run):
    root, _ = finished_run
    before = {p.name: p.read_text() for p in (root / "out" / "records").glob("*.json")}
    again = benchmark.run(str(root / "tiny.yaml"), out=root / "out", progress=False)
    assert (again.skipped, again.models_trained, again.models_loaded) == (4, 0, 0)
    after = {p.name: p.read_text() for p in (root / "out" / "records").glob("*.json")}
    assert before == after


def test_new_attack_reuses_the_cached_models(finished_run, tmp_path):
    root, _ = finished_run
    out = tmp_path / "more"
    summary = benchmark.run(str(root / "tiny.yaml"), out=out, cache_dir=root / "out" / "cache",
                            attacks=["attribute_inference"], progress=False)
    assert summary.models_trained == 0 and summary.models_loaded == 2
    fits = {rec["model_hash"]: (rec["metrics"]["fit_seconds"], rec["metrics"]["fit_cpu_seconds"])
            for _, rec in iter_records(root / "out")}
    for _, rec in iter_records(out):  # a model loaded from the cache carries the times its fit took
        assert (rec["metrics"]["fit_seconds"], rec["metrics"]["fit_cpu_seconds"]) == fits[rec["model_hash"]]


def test_every_record_times_its_fit_and_attack_on_both_clocks(finished_run):
    from benchmark.engine.timing import time_split

    root, _ = finished_run
    for _, rec in iter_records(root / "out"):
        m = rec["metrics"]
        for key in ("fit_seconds", "fit_cpu_seconds", "attack_seconds", "attack_cpu_seconds"):
            assert m[key] > 0 and m[key] < 600, key
        assert rec["higher_is_better"]["attack_cpu_seconds"] is False
    assert time_split(root / "out").clock == "cpu"  # every record has the CPU clock, so it is the one read


def _numbers(run_dir):
    out = {}
    for _, rec in iter_records(run_dir):
        out[rec["cell_id"]] = {k: v for k, v in rec["metrics"].items() if not any(t in k for t in TIMING)}
    return out


def test_same_seed_same_records_on_cpu(finished_run, tmp_path):
    root, _ = finished_run
    benchmark.run(str(root / "tiny.yaml"), out=tmp_path / "second", progress=False)
    assert _numbers(root / "out") == _numbers(tmp_path / "second")


FAILING = textwrap.dedent('''
    import dataclasses, torch
    from benchmark import MethodCard, register_attack, register_defense
    from benchmark.core.fields import field
    from benchmark.api.contract import Access, Attack, AttackKind, AttackOutput, Defense, DefenseConfig

    CARD = MethodCard(paper="test", year=2024, url="https://example.org", threat_model="t", knob="k", inferred=())

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        mode: str = field("raise", "raise, nan or interrupt")

    @register_attack("{prefix}_attack")
    class Broken(Attack):
        Config = Cfg
        card = CARD
        kind = AttackKind.RECONSTRUCTION
        def run(self, target, trainer):
            if self.config.mode == "raise":
                raise RuntimeError("attack exploded")
            if self.config.mode == "interrupt":
                raise KeyboardInterrupt
            n = target.num_eval
            return AttackOutput(index=torch.arange(n), images=torch.full((n, *target.image_shape), float("nan")),
                                budget={{"steps": 0}})

    @dataclasses.dataclass(frozen=True)
    class DCfg(DefenseConfig):
        level: float = field(0.0, "unused")

    @register_defense("{prefix}_defense")
    class BrokenDefense(Defense):
        Config = DCfg
        knob = "level"
        card = CARD
        def fit(self, data, trainer):
            raise RuntimeError("fit exploded")

    @register_defense("{prefix}_unsupported")
    class UnsupportedDefense(Defense):
        Config = DCfg
        knob = "level"
        card = CARD
        def fit(self, data, trainer):
            from benchmark.core.errors import NotApplicable
            raise NotApplicable("needs an operation this backbone does not have")
''')


@pytest.fixture
def broken(tmp_path):
    prefix = f"broken{abs(hash(str(tmp_path))) % 10**6}"
    path = tmp_path / "broken.py"
    path.write_text(FAILING.format(prefix=prefix))
    load_plugin(path)
    yield prefix
    ATTACKS.unregister(f"{prefix}_attack")
    DEFENSES.unregister(f"{prefix}_defense")
    DEFENSES.unregister(f"{prefix}_unsupported")


def test_failures_are_recorded_and_the_run_goes_on(suite_file, tmp_path, broken):
    out = tmp_path / "out"
    summary = benchmark.run(str(suite_file), out=out, defenses=["no_pruning", f"{broken}_defense"],
                            attacks=["attribute_inference", f"{broken}_attack"], progress=False)
    assert summary.exit_code == 1
    assert (summary.ok, summary.failed) == (1, 3)
    recs = {(r["config"]["defense"]["name"], r["config"]["attack"]["name"]): r for _, r in iter_records(out)}
    assert recs[("no_pruning", "attribute_inference")]["status"] == "ok"
    attack_fail = recs[("no_pruning", f"{broken}_attack")]
    assert attack_fail["status"] == "failed" and "attack exploded" in attack_fail["reason"]
    assert "traceback" in attack_fail
    assert "utility" in attack_fail["metrics"]  # the defended model's numbers are kept
    fit_fail = recs[(f"{broken}_defense", "attribute_inference")]
    assert fit_fail["status"] == "failed" and "fit exploded" in fit_fail["reason"]
    # a rerun retries only the failed cells
    again = benchmark.run(str(suite_file), out=out, defenses=["no_pruning", f"{broken}_defense"],
                          attacks=["attribute_inference", f"{broken}_attack"], progress=False)
    assert (again.skipped, again.failed) == (1, 3)


def test_nan_metrics_fail_the_cell(suite_file, tmp_path, broken):
    out = tmp_path / "out"
    summary = benchmark.run(str(suite_file), out=out, defenses=["no_pruning"], attacks=[f"{broken}_attack"],
                            overrides={f"attack.{broken}_attack.mode": "nan"}, progress=False)
    (_, rec), = iter_records(out)
    assert summary.failed == 1 and rec["status"] == "failed" and "NaN" in rec["reason"]


def test_interrupted_run_keeps_finished_records_and_resumes(suite_file, tmp_path, broken):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        benchmark.run(str(suite_file), out=out, defenses=["no_pruning"],
                      attacks=["attribute_inference", f"{broken}_attack"],
                      overrides={f"attack.{broken}_attack.mode": "interrupt"}, progress=False)
    done = list(iter_records(out, partial=True))  # the manifest names the cell the interrupt cut short
    assert len(done) == 1 and done[0][1]["status"] == "ok"
    assert not list((out / "records").glob(".*.tmp"))
    resumed = benchmark.run(str(suite_file), out=out, defenses=["no_pruning"], attacks=["attribute_inference"],
                            progress=False)
    assert resumed.skipped == 1 and resumed.models_trained == 0


def test_attribute_attack_is_not_applicable_without_a_sensitive_attribute(suite_file, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(20):
            img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            img.save(tmp_path / "imgs" / cls / f"{i}.png")
    out = tmp_path / "out"
    summary = benchmark.run(str(suite_file), out=out, scenarios=["custom"], data_root=tmp_path / "imgs",
                            defenses=["no_pruning"], progress=False)
    statuses = {r["config"]["attack"]["name"]: r for _, r in iter_records(out)}
    assert statuses["attribute_inference"]["status"] == "not_applicable"
    assert "no sensitive attribute" in statuses["attribute_inference"]["reason"]
    assert statuses["inversion_decoder"]["status"] == "ok"
    assert summary.exit_code == 0


def test_manifest_names_the_suite(finished_run):
    root, _ = finished_run
    manifest = json.loads((root / "out" / "run.json").read_text())
    assert manifest["suite"] == "tiny" and len(manifest["cells"]) == 4


def test_paper_numbers_are_shown_beside_ours(suite_file, tmp_path):
    from leaderboard import render_run

    text = suite_file.read_text() + textwrap.dedent("""
        paper:
          citation: A paper, 2020
          numbers:
            - {defense: no_pruning, attack: attribute_inference, metric: attribute_accuracy, value: 0.40}
            - {defense: random_pruning, attack: attribute_inference, metric: utility, value: 0.9, knob: 0.9}
    """)
    suite_file.write_text(text)
    out = tmp_path / "out"
    benchmark.run(str(suite_file), out=out, attacks=["attribute_inference"], progress=False)
    md = render_run(out)
    assert "## Paper vs splitbench" in md and "Source: A paper, 2020" in md
    (_, rec), = [(p, r) for p, r in iter_records(out) if r["config"]["defense"]["name"] == "no_pruning"]
    ours = rec["metrics"]["attribute_accuracy"]
    assert f"| 0.400 | {ours:.3f} | {ours - 0.40:+.3f} |" in md
    assert "| not run | – |" in md  # random_pruning was not run at knob 0.9
    assert (out / "paper.csv").is_file()


def test_records_carry_per_sample_outcomes_with_a_checksum(finished_run):
    import numpy as np

    from benchmark.store.records import read_outcomes

    root, _ = finished_run
    for path, rec in iter_records(root / "out"):
        out = read_outcomes(path, rec)
        n_eval = rec["metrics"]["eval_samples"]
        assert out["model/utility"].shape == (n_eval,) and out["model/task"].shape == (n_eval,)
        assert np.isclose(out["model/utility"].mean(), rec["metrics"]["utility"])
        assert np.isclose(out["model/val_utility"].mean(), rec["metrics"]["val_utility"])
        if rec["config"]["attack"]["kind"] == "reconstruction":
            assert len(out["attack/sample"]) == rec["config"]["eval"]["count"] == 8 == rec["samples"]["eval"]
        if rec["config"]["defense"]["name"] == "random_pruning":  # stochastic: averaged over the suite's draws
            assert rec["metrics"]["release_draws"] == 2 and rec["samples"]["draws"] == 2
            assert set(np.unique(out["model/utility"])) <= {0.0, 0.5, 1.0}


def test_an_eval_count_larger_than_the_eval_split_is_one_line_naming_the_key(suite_file, tmp_path):
    with pytest.raises(SplitbenchError, match=r"eval_counts.reconstruction = 5000 exceeds the eval split"):
        benchmark.run(str(suite_file), out=tmp_path / "out", overrides={"eval_counts.reconstruction": 5000},
                      progress=False)
    assert not (tmp_path / "out" / "records").exists()  # nothing trained, nothing written


def test_a_new_budget_reruns_nothing_and_writes_a_new_manifest(finished_run):
    root, _ = finished_run
    again = benchmark.run(str(root / "tiny.yaml"), out=root / "out", overrides={"utility_budget": 0.1},
                          progress=False)
    assert again.skipped == again.total == 4 and again.models_trained == 0
    manifests = sorted((root / "out" / "manifests").glob("*.json"))
    assert len(manifests) >= 2
    budgets = {json.loads(p.read_text())["presentation"]["utility_budget"] for p in manifests}
    assert {0.02, 0.1} <= budgets


def test_the_model_cache_key_names_device_precision_and_versions(finished_run):
    import torch

    from benchmark.data.scenarios.digits import Digits, DigitsConfig
    from benchmark.engine.identity import model_cache_key
    from benchmark.suites.expand import expand
    from benchmark.suites.parse import load_suite

    root, _ = finished_run
    spec, _ = expand(load_suite(str(root / "tiny.yaml")))[0]
    data = Digits(DigitsConfig(max_samples=200)).load()
    key = model_cache_key(spec, data, torch.device("cpu"), amp=False)
    assert key["device_type"] == "cpu" and key["precision"] == "fp32"
    assert {"torch", "timm", "splitbench"} <= set(key)
    assert model_cache_key(spec, data, torch.device("cpu"), amp=True)["precision"] != key["precision"]


def test_reconstruction_cells_save_a_small_gallery_png(finished_run):
    from PIL import Image

    from benchmark.core.io import sha256_file

    root, _ = finished_run
    recs = [(p, r) for p, r in iter_records(root / "out") if r["config"]["attack"]["kind"] == "reconstruction"]
    assert recs
    for path, rec in recs:
        png = path.parent / rec["gallery"]["file"]
        assert sha256_file(png) == rec["gallery"]["sha256"]
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > img.height > 0  # 8 images in a row, truth above recon
    attr = [r for _, r in iter_records(root / "out") if r["config"]["attack"]["kind"] == "attribute"]
    assert attr and all("gallery" not in r for r in attr)


def test_only_named_cells_are_run(finished_run, tmp_path):
    root, _ = finished_run
    name = sorted(p.name for p in (root / "out" / "records").glob("*no_pruning*inversion_decoder*.json"))[0]
    summary = benchmark.run(str(root / "tiny.yaml"), out=tmp_path / "one", only=[name], progress=False)
    assert summary.total == 1 and summary.ok == 1
    assert [p.name for p in (tmp_path / "one" / "records").glob("*.json")] == [name]
    with pytest.raises(SplitbenchError, match="not a cell of suite tiny"):
        benchmark.run(str(root / "tiny.yaml"), out=tmp_path / "two", only=["nope.json"], progress=False)


def test_a_defense_that_cannot_run_on_the_backbone_is_not_applicable_not_failed(suite_file, tmp_path, broken):
    from leaderboard import render_run

    out = tmp_path / "out"
    summary = benchmark.run(str(suite_file), out=out, defenses=["no_pruning", f"{broken}_unsupported"],
                            attacks=["attribute_inference"], progress=False)
    assert summary.exit_code == 0 and summary.not_applicable == 1
    recs = {r["config"]["defense"]["name"]: r for _, r in iter_records(out)}
    assert recs[f"{broken}_unsupported"]["status"] == "not_applicable"
    assert "this backbone does not have" in recs[f"{broken}_unsupported"]["reason"]
    assert f"Not applicable on this track: `{broken}_unsupported` (needs an operation" in render_run(out, write=False)


def test_a_gallery_png_holds_the_images_pixel_for_pixel(tmp_path):
    import numpy as np
    from PIL import Image

    from benchmark.core.io import sha256_file
    from benchmark.store.records import write_gallery

    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)  # eval row above a reconstruction row
    ref = write_gallery(tmp_path / "g.png", grid)
    assert ref == {"file": "g.png", "sha256": sha256_file(tmp_path / "g.png")}
    png = np.asarray(Image.open(tmp_path / "g.png"))
    assert png.shape == (2 * 34 + 2, 3 * 34 + 2, 3)  # native size, 2-pixel gaps; the site scales it up in CSS
    for r in range(2):
        for i in range(3):
            assert np.array_equal(png[2 + r * 34:2 + r * 34 + 32, 2 + i * 34:2 + i * 34 + 32], grid[r, i])
    assert (png[:2] == 255).all() and (png[:, :2] == 255).all()


def test_a_model_loaded_from_the_cache_computes_exactly_like_the_fresh_fit(tmp_path):
    """PAODING prunes after its last training step, so its fit replaces layers; the fresh model must get the layout
    a cache hit gets, or the two compute with different kernels and their records differ in the last bits."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(tiny(defenses=[{"name": "no_pruning"}, {"name": "paoding", "knob": [0.5]}]))
    fresh = benchmark.run(str(suite), out=tmp_path / "fresh", defenses=["paoding"], attacks=["inversion_decoder"],
                          progress=False)
    hit = benchmark.run(str(suite), out=tmp_path / "hit", defenses=["paoding"], attacks=["inversion_decoder"],
                        cache_dir=tmp_path / "fresh" / "cache", progress=False)
    assert fresh.models_trained == 1 and hit.models_loaded == 1
    a, b = _numbers(tmp_path / "fresh"), _numbers(tmp_path / "hit")
    assert a and a == b


def test_the_reconstruction_floor_is_the_attackers_mean_aux_image_of_each_task_class(tiny_data):
    import numpy as np
    import torch

    from benchmark.api.contract import AttackKind
    from benchmark.engine.evaluation import ModelEvaluation
    from benchmark.engine.runner import Runner

    ev = ModelEvaluation(np.ones(len(tiny_data.eval), np.float32), np.ones(len(tiny_data.val), np.float32), [], 0.0)
    truth = Runner.truth(tiny_data, np.arange(4), ev, AttackKind.RECONSTRUCTION)
    aux = tiny_data.aux
    assert truth.baseline.shape == (2, *aux.images.shape[1:])  # parity: one guess per task class
    for k in range(2):
        assert torch.allclose(truth.baseline[k], (aux.images[aux.task == k].float() / 255.0).mean(0))


def test_every_attack_also_answers_the_attackers_hold_out_and_trains_without_it(finished_run):
    root, _ = finished_run
    for path, rec in iter_records(root / "out"):
        if rec["status"] != "ok":
            continue
        samples = rec["samples"]
        assert samples["holdout"] == 8 and samples["aux"] == 40 - 8  # 20% of the 40 aux images held out
        kind = rec["config"]["attack"]["kind"]
        assert rec["config"]["eval"]["holdout"] == {"fraction": 0.2, "reconstruction": 32}
        assert "holdout/leakage" in rec["metrics"] and "holdout/leakage_raw" in rec["metrics"]
        from benchmark.store.records import read_outcomes

        out = read_outcomes(path, rec)
        assert list(out["holdout/sample"]) == list(range(8))
        assert len(out["attack/sample"]) == (8 if kind == "reconstruction" else 40)  # eval rows stay what they were


def test_a_suite_without_a_hold_out_trains_attacks_on_all_of_aux(suite_file, tmp_path):
    summary = benchmark.run(str(suite_file), out=tmp_path / "run", attacks=["attribute_inference"],
                            defenses=["no_pruning"], overrides={"holdout": None}, progress=False, latency_repeats=1)
    assert summary.exit_code == 0
    (rec,) = [r for _, r in iter_records(tmp_path / "run")]
    assert rec["samples"]["aux"] == 40 and "holdout" not in rec["samples"]
    assert not any(k.startswith("holdout/") for k in rec["metrics"]) and "holdout" not in rec["config"]["eval"]


LAZY = textwrap.dedent("""
    import dataclasses

    import torch

    from benchmark import Access, Attack, AttackKind, AttackOutput, MethodCard, register_attack


    @dataclasses.dataclass(frozen=True)
    class LazyConfig:
        pass


    @register_attack("{name}")
    class Lazy(Attack):
        '''An "optimisation" attack that gives up at once: it answers the attacker's mean aux image.'''

        Config = LazyConfig
        kind = AttackKind.RECONSTRUCTION
        requires = frozenset({{Access.AUX_PAIRS}})
        card = MethodCard(paper="test", year=2026, url="https://example.org", threat_model="test", knob="none",
                          inferred=())

        def run(self, target, trainer):
            mean = target.aux().images.mean(0, keepdim=True)
            n = target.num_eval
            return AttackOutput(index=torch.arange(n), images=mean.expand(n, -1, -1, -1).clone(),
                                metrics={{"objective_last": 1.0}})
""")


def test_an_optimisation_attack_far_above_the_best_release_error_is_flagged_not_converged(suite_file, tmp_path):
    from benchmark.measure.scoring.convergence import flags, not_converged

    assert not_converged(0.5, 0.001) and not not_converged(0.005, 0.0001) and not not_converged(0.02, 0.01)
    assert flags({"a": {"release_error": 0.5, "attack.objective_last": 1.0}, "b": {"release_error": 0.01}}) == {
        "a": True}  # b is no optimisation attack: never flagged, but it sets the best
    name = f"lazy{abs(hash(str(tmp_path))) % 10**6}"
    (tmp_path / "lazy.py").write_text(LAZY.format(name=name))
    load_plugin(tmp_path / "lazy.py")
    try:
        out = tmp_path / "out"
        benchmark.run(str(suite_file), out=out, defenses=["no_pruning"],
                      attacks=["inversion_decoder", "optimization", name],
                      overrides={"attack.inversion_decoder.epochs": 1, "attack.optimization.steps": 100},
                      progress=False, latency_repeats=1)
        recs = {r["config"]["attack"]["name"]: r for _, r in iter_records(out)}
        lazy, rmle, decoder = recs[name], recs["optimization"], recs["inversion_decoder"]
        assert lazy["metrics"]["release_error"] > 10 * rmle["metrics"]["release_error"]
        assert lazy["metrics"]["not_converged"] == 1.0
        best = min(r["metrics"]["release_error"] for r in (lazy, rmle, decoder))
        assert lazy["budget"]["convergence"]["best_release_error"] == best  # judged against the model's best
        assert rmle["metrics"].get("not_converged", 0.0) == 0.0  # the best one is never flagged
        assert "not_converged" not in decoder["metrics"]  # a learned decoder optimises no objective of its own
        from leaderboard.render import render_run

        assert f"{name} on `no_pruning@0` (1/1 seeds)" in render_run(out, write=False)
    finally:
        ATTACKS.unregister(name)


def test_the_attacker_knowledge_axis_trains_on_a_share_of_aux_and_gets_its_own_view(suite_file, tmp_path):
    from leaderboard.render import build_tracks, render_run

    out = tmp_path / "out"
    text = suite_file.read_text() + "aux_fraction: {fractions: [1.0, 0.5], attacks: [attribute_inference]}\n"
    suite_file.write_text(text)
    summary = benchmark.run(str(suite_file), out=out, defenses=["no_pruning"], attacks=["attribute_inference"],
                            progress=False, latency_repeats=1)
    assert summary.exit_code == 0 and summary.total == 2
    recs = {r["config"]["eval"].get("aux_fraction", 1.0): r for _, r in iter_records(out)}
    assert recs[1.0]["samples"]["aux"] == 32 and recs[0.5]["samples"]["aux"] == 16  # half of the 32 not held out
    (t,), _ = build_tracks(out)
    assert [r.label for r in t.rows] == ["no_pruning@0"]  # the share's cells are no rows of their own
    assert set(t.knowledge) == {0.5} and t.knowledge_attacks[0.5] == ["attribute_inference"]
    assert "### Attacker knowledge" in render_run(out, write=False)


def test_a_cost_cached_under_an_older_measure_is_measured_again(suite_file, tmp_path, monkeypatch):
    """Each model's client cost is cached beside it under the version of the measure: a new cache reuses it, a change
    of what is measured (the version) measures it again instead of reading a stale figure."""
    from benchmark.engine import runner

    cache = tmp_path / "cache"

    def macs(out):
        benchmark.run(str(suite_file), out=tmp_path / out, defenses=["no_pruning"], attacks=["attribute_inference"],
                      cache_dir=cache, progress=False, latency_repeats=1)
        return {r["metrics"]["client_macs"] for _, r in iter_records(tmp_path / out)}

    (measured,) = macs("a")
    (cost_file,) = cache.rglob("*.cost.v*.json")
    stale = json.loads(cost_file.read_text())
    stale["client_macs"] = -1.0
    cost_file.write_text(json.dumps(stale))
    assert macs("b") == {-1.0}  # the same measure: the cached figure is what the records get
    monkeypatch.setattr(runner, "COST_VERSION", "next")
    assert macs("c") == {measured}


def test_a_suite_s_learning_rate_schedule_reaches_the_defense_fit_and_its_cell_identity(tmp_path, monkeypatch):
    from benchmark.models.trainer import Trainer
    seen = []
    fit = Trainer.fit

    def spy(self, *a, **kw):
        seen.append(self.lr_schedule)
        return fit(self, *a, **kw)

    monkeypatch.setattr(Trainer, "fit", spy)
    (tmp_path / "cos.yaml").write_text(tiny(train={"epochs": 1, "batch_size": 32, "schedule": "cosine"},
                                            defenses=[{"name": "no_pruning"}],
                                            attacks=[{"name": "attribute_inference", "config": {"epochs": 1}}]))
    benchmark.run(str(tmp_path / "cos.yaml"), out=tmp_path / "out", progress=False)
    assert seen[0] == "cosine" and seen[-1] == "constant"  # the defense's fit, then the attacker's own training
    ((_, rec),) = list(iter_records(tmp_path / "out"))
    assert rec["config"]["defense"]["config"]["train"]["schedule"] == "cosine"
    (tmp_path / "const.yaml").write_text(tiny(defenses=[{"name": "no_pruning"}]))
    seen.clear()
    benchmark.run(str(tmp_path / "const.yaml"), out=tmp_path / "out2", progress=False)
    assert set(seen) == {"constant"}
    assert all("schedule" not in r["config"]["defense"]["config"]["train"] for _, r in iter_records(tmp_path / "out2"))


def test_admission_seeds_train_and_validate_a_model_without_attacking_it(tmp_path, finished_run):
    """A seed only admission reads costs a fit and no attack: its model cell holds the model's utility, validation
    utility and cost and their outcomes, and the leaderboard pools it into Δutility but not into privacy."""
    from leaderboard.render import build_tracks

    root, _ = finished_run
    (tmp_path / "tiny.yaml").write_text(tiny(admission_seeds=[3, 4]))
    out = tmp_path / "out"
    summary = benchmark.run(str(tmp_path / "tiny.yaml"), out=out, progress=False, cache_dir=root / "out" / "cache")
    assert (summary.total, summary.ok, summary.failed) == (8, 8, 0)
    models = [(p, r) for p, r in iter_records(out) if "attack" not in r["config"]]
    assert len(models) == 4 and {r["config"]["seed"] for _, r in models} == {3, 4}
    assert {r["config"]["defense"]["name"] for _, r in models} == {"no_pruning", "random_pruning"}  # selection: all
    for p, r in models:
        assert "__model__" in p.name and r["status"] == "ok"
        assert {"utility", "val_utility", "client_macs"} <= set(r["metrics"])
        assert not any(k.startswith(("attack", "holdout")) for k in r["metrics"])
        assert "gallery" not in r
    frame = load_frame(out)
    assert set(frame.attack) == {"attribute_inference", "inversion_decoder", ""}
    (t,), _ = build_tracks(out)
    assert t.seeds == (0,) and t.admission_seeds == (3, 4) and set(t.attacks) == {"attribute_inference",
                                                                                  "inversion_decoder"}
    r = next(r for r in t.rows if r.defense == "random_pruning")
    assert r.seeds == (0, 3, 4) and len(r.val_delta_seeds) == 3
    val = {rec["config"]["seed"]: rec["metrics"]["val_utility"] for _, rec in iter_records(out)
           if rec["config"]["defense"]["name"] == "random_pruning"}
    assert r.val_utility.value == pytest.approx(sum(val.values()) / 3)  # validation pools all three seeds
    (alone,), _ = build_tracks(root / "out")  # the same attacked seed without the admission seeds
    r0 = next(r for r in alone.rows if r.defense == "random_pruning")
    assert r.privacy == r0.privacy and r.attacks["inversion_decoder"].leakage == \
        r0.attacks["inversion_decoder"].leakage  # privacy reads the attacked seed alone
    again = benchmark.run(str(tmp_path / "tiny.yaml"), out=out, progress=False)
    assert again.skipped == 8 and again.models_trained == again.models_loaded == 0
