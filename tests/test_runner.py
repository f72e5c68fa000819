"""The runner end to end on a tiny suite: records, resume, caching, failures, determinism."""

from __future__ import annotations

import json
import textwrap

import pytest

import benchmark
from benchmark.records import SCHEMA_VERSION, iter_records, load_frame
from benchmark.registry import ATTACKS, DEFENSES, load_plugin

TINY = textwrap.dedent("""
    name: tiny
    description: a tiny suite for tests
    reference: no_pruning
    seeds: [0]
    scenarios:
      - {name: digits, config: {max_samples: 200}}
    backbones:
      - {name: test_resnet, split: layer1}
    train: {epochs: 1, batch_size: 32}
    defenses:
      - name: no_pruning
      - {name: random_pruning, knob: [0.5]}
    attacks:
      - {name: attribute_inference, config: {epochs: 1}}
      - {name: inversion_decoder, config: {epochs: 1}}
""")

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
    from benchmark.config import field
    from benchmark.interfaces import Access, Attack, AttackKind, AttackOutput, Defense, DefenseConfig

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
            n = 4
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
    done = list(iter_records(out))
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
    assert manifest["suite"] == "tiny" and manifest["cells"] == 4


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
