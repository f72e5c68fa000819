"""Hardware rows: every defense's client and server measured at several batch sizes with a device fingerprint,
records of several machines merged into one table, and bad input as one line."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.engine.hardware import KEYS, fingerprint, hardware_table, load_rows, run_hardware
from benchmark.suites.parse import load_suite
from tests.support.suites import tiny

SUITE = tiny(name="hw", description=None, reference=None, eval_counts=None, release_draws=None, seeds=[0, 1],
             scenarios=[{"name": "digits", "config": {"max_samples": 120}}], attacks=["attribute_inference"])


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("hw")
    (root / "hw.yaml").write_text(SUITE)
    path = run_hardware(load_suite(str(root / "hw.yaml")), root / "run", "cpu", batches=(1, 4), min_seconds=0.0,
                        compile_too=False)
    return root, path


def test_every_defense_part_and_batch_is_measured_on_this_machine(measured):
    root, path = measured
    rows = json.loads(path.read_text())
    # 2 defenses (first seed only) x client/server x fp32 x eager x 2 batch sizes
    assert len(rows) == 8
    assert {(r["defense"], r["part"], r["batch"]) for r in rows} == {
        (d, p, b) for d in ("no_pruning", "random_pruning") for p in ("client", "server") for b in (1, 4)}
    for r in rows:
        assert all(k in r for k in KEYS)
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["runs"] >= 10
        assert r["throughput_per_s"] > 0 and r["peak_memory_mb"] >= 0
        assert r["cpu"] and r["cpu_cores"] and r["torch"] and r["device_type"] == "cpu"
    client = [r for r in rows if r["part"] == "client" and r["defense"] == "random_pruning"]
    assert all(0 < r["bytes_per_sample"] < 32 * 8 * 8 * 4 for r in client)  # pruned channels are not sent
    assert path.name.startswith(fingerprint(__import__("torch").device("cpu"))["machine"])


def test_records_of_several_machines_merge_into_one_table(measured, tmp_path):
    root, path = measured
    rows = json.loads(path.read_text())
    other = tmp_path / "elsewhere" / "hardware"
    other.mkdir(parents=True)
    (other / "gpu.json").write_text(json.dumps([{**r, "machine": "m2", "gpu": "Some GPU"} for r in rows[:2]]))
    merged = load_rows([root / "run", tmp_path / "elsewhere"])
    assert len(merged) == len(rows) + 2
    md = hardware_table(merged)
    assert "Some GPU" in md and md.count("\n") == len(merged) + 2
    assert hardware_table(merged, "csv").splitlines()[0].startswith("gpu,cpu")


def test_the_cli_prints_the_merged_table(measured, capsys):
    root, _ = measured
    assert main(["hardware", "--table", str(root / "run")]) == 0
    assert "| machine |" in capsys.readouterr().out


@pytest.mark.parametrize("kw, message", [({"device": "cuda:7"}, "CUDA GPU"), ({"device": "gpu0"}, "not a device"),
                                         ({"batches": (0,)}, "--batch sizes"), ({"min_seconds": -1}, "min-seconds")])
def test_bad_hardware_requests(measured, tmp_path, kw, message):
    import torch

    if "cuda" in str(kw.get("device")) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    root, _ = measured
    args = {"device": "cpu", "batches": (1,), "min_seconds": 0.0, **kw}
    with pytest.raises(SplitbenchError, match=message):
        run_hardware(load_suite(str(root / "hw.yaml")), tmp_path / "r", args["device"], args["batches"],
                     args["min_seconds"], False)


def test_a_folder_without_hardware_records_is_one_line(tmp_path):
    with pytest.raises(SplitbenchError, match="no hardware records"):
        load_rows([tmp_path / "nothing"])
    (tmp_path / "bad" / "hardware").mkdir(parents=True)
    (tmp_path / "bad" / "hardware" / "x.json").write_text('{"a": 1}')
    with pytest.raises(SplitbenchError, match="not a hardware record"):
        load_rows([tmp_path / "bad"])


def test_a_suite_deployment_adds_rows_of_the_client_deployed_on_the_real_backbone(tmp_path):
    suite = yaml.safe_load(SUITE)
    suite["deployment"] = {"test_resnet@layer1": {"name": "resnet18", "split": "layer1", "image_size": 40}}
    suite["defenses"] = ["no_pruning", {"name": "paoding", "knob": [0.5]}]
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    path = run_hardware(load_suite(str(tmp_path / "hw.yaml")), tmp_path / "run", "cpu", batches=(1, 2),
                        min_seconds=0.0, compile_too=False)
    rows = json.loads(path.read_text())
    deployed = [r for r in rows if r.get("deployed_from")]
    assert len(deployed) == len(rows) // 2 == 8  # 2 defenses x client/server x 2 batch sizes, on each backbone
    assert {(r["backbone"], r["split"], r["image_size"], r["deployed_from"]) for r in deployed} == {
        ("resnet18", "layer1", 40, "test_resnet@layer1")}
    by = {(r["defense"], r["batch"]): r for r in deployed if r["part"] == "client"}
    tiny = {(r["defense"], r["batch"]): r for r in rows if r["part"] == "client" and not r.get("deployed_from")}
    # the deployed undefended client sends resnet18's 64 layer1 channels at 10 x 10 px (40 px input), float32
    assert by[("no_pruning", 1)]["bytes_per_sample"] == 64 * 10 * 10 * 4
    assert tiny[("no_pruning", 1)]["bytes_per_sample"] != by[("no_pruning", 1)]["bytes_per_sample"]
    assert all(r["p50_ms"] > 0 for r in deployed)
    md = hardware_table(load_rows([tmp_path / "run"]))
    assert "resnet18@layer1 (deployed from test_resnet@layer1, 40 px)" in md
