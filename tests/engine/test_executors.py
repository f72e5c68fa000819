"""Executors: a CPU process pool and a local Ray cluster write the same records as the in-process run; the shared
model cache is lock-safe; bad executor choices are one-line errors."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import benchmark
from benchmark.core.errors import SplitbenchError
from benchmark.store.cache import ModelCache
from benchmark.store.records import iter_records
from tests.support.suites import tiny

SUITE = tiny(name="pool", description=None, reference=None, release_draws=None, eval_counts={"reconstruction": 4},
             scenarios=[{"name": "digits", "config": {"max_samples": 160}}])

TIMING = ("_seconds", "client_ms", "server_ms")


def numbers(out):
    return {rec["cell_id"]: {k: v for k, v in rec["metrics"].items() if not any(t in k for t in TIMING)}
            for _, rec in iter_records(out)}


WORKER_THREADS = max(1, (os.cpu_count() or 1) // 2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The in-process run, with as many torch threads as each of two workers gets (``threads``)."""
    root = tmp_path_factory.mktemp("exec")
    (root / "pool.yaml").write_text(SUITE)
    before = torch.get_num_threads()
    benchmark.run(str(root / "pool.yaml"), out=root / "local", progress=False, threads=WORKER_THREADS)
    assert torch.get_num_threads() == before  # the local executor gives this process its thread count back
    return root


def test_records_say_how_many_threads_made_them(reference):
    envs = [rec["env"] for _, rec in iter_records(reference / "local")]
    assert envs and all(e["threads"] == WORKER_THREADS for e in envs)


def test_a_process_pool_writes_the_same_records(reference):
    root = reference
    summary = benchmark.run(str(root / "pool.yaml"), out=root / "pool", executor="processes", workers=2,
                            progress=False)
    assert (summary.total, summary.ok, summary.failed, summary.models_trained) == (4, 4, 0, 2)
    assert numbers(root / "pool") == numbers(root / "local")
    again = benchmark.run(str(root / "pool.yaml"), out=root / "pool", executor="processes", workers=2,
                          progress=False)
    assert again.skipped == 4 and again.models_trained == 0  # resume works across executors


def test_the_default_executor_runs_one_single_threaded_worker_per_core(monkeypatch):
    from benchmark.engine.executors import AutoExecutor, LocalExecutor, ProcessExecutor

    class Cpu:
        device = torch.device("cpu")

    class Cuda:
        device = torch.device("cuda")

    for cores, models, workers in ((2, 12, 2), (16, 12, 12), (16, 3, 3), (1, 12, 1), (8, 1, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        chosen = AutoExecutor().choose(Cpu(), models)
        if workers == 1:  # one model left, or one core: in this process, still at one thread
            assert isinstance(chosen, LocalExecutor) and chosen.threads == 1
        else:
            assert isinstance(chosen, ProcessExecutor) and chosen.devices == ["cpu"] * workers
            assert chosen.threads == 1
    assert AutoExecutor(threads=2, workers=1).choose(Cpu(), 5).threads == 2
    for gpus, device, models, expected in ((1, "cuda", 5, None), (4, "cuda", 5, 4), (4, "cuda", 2, 2),
                                           (4, "cuda:1", 5, None), (4, "cuda", 1, None)):
        monkeypatch.setattr(torch.cuda, "device_count", lambda gpus=gpus: gpus)
        Cuda.device = torch.device(device)
        chosen = AutoExecutor().choose(Cuda(), models)
        if expected is None:  # one GPU, a named GPU, or one model: this process
            assert isinstance(chosen, LocalExecutor)
        else:
            assert isinstance(chosen, ProcessExecutor)
            assert chosen.devices == [f"cuda:{k}" for k in range(expected)]
    with pytest.raises(SplitbenchError, match="--workers must be at least 1"):
        AutoExecutor(workers=0)


def test_the_default_executor_writes_the_records_of_one_thread_per_worker(reference):
    root = reference
    one_thread = root / "local" if WORKER_THREADS == 1 else root / "local1"
    if WORKER_THREADS != 1:
        benchmark.run(str(root / "pool.yaml"), out=one_thread, progress=False, threads=1)
    summary = benchmark.run(str(root / "pool.yaml"), out=root / "auto", executor="auto", progress=False)
    assert summary.ok == 4 and summary.failed == 0
    assert all(rec["env"]["threads"] == 1 for _, rec in iter_records(root / "auto"))
    assert numbers(root / "auto") == numbers(one_thread)


def test_a_local_ray_cluster_writes_the_same_records(reference):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'splitbench[ray]'")
    import builtins

    import ray

    root = reference
    printer = builtins.print
    summary = benchmark.run(str(root / "pool.yaml"), out=root / "ray", executor="ray", workers=2, progress=False)
    assert not ray.is_initialized() and builtins.print is printer  # the local cluster it started is gone
    assert summary.ok == 4 and summary.failed == 0
    assert numbers(root / "ray") == numbers(root / "local")


def test_two_workers_never_train_one_model_twice(tmp_path):
    cache = ModelCache(tmp_path)
    trained = []
    module = torch.nn.Linear(2, 2)

    def fit(m):
        trained.append(threading.get_ident())
        torch.nn.init.constant_(m.weight, 1.0)

    def worker():
        cache.get_or_fit("models", {"k": 1}, torch.nn.Linear(2, 2), fit, torch.device("cpu"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trained) == 1
    cache.get_or_fit("models", {"k": 1}, module, fit, torch.device("cpu"))
    assert torch.equal(module.weight, torch.ones(2, 2)) and len(trained) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_cached_fit_results_come_back_on_a_hit_and_an_entry_without_them_is_refitted(tmp_path):
    cache = ModelCache(tmp_path)
    calls = []

    def fit(m):
        calls.append(1)
        torch.nn.init.constant_(m.weight, 2.0)
        return {"final_train_loss": 0.25}

    assert cache.get_or_fit_results("m", {"k": 1}, torch.nn.Linear(2, 2), fit, torch.device("cpu")) == {
        "final_train_loss": 0.25}
    loaded = torch.nn.Linear(2, 2)
    assert cache.get_or_fit_results("m", {"k": 1}, loaded, fit, torch.device("cpu")) == {"final_train_loss": 0.25}
    assert len(calls) == 1 and torch.equal(loaded.weight, torch.full((2, 2), 2.0))
    # an entry saved by get_or_fit holds weights only: asked for its figures, it is fitted again (once)
    cache.get_or_fit("m", {"k": 2}, torch.nn.Linear(2, 2), lambda m: None, torch.device("cpu"))
    for _ in range(2):
        assert cache.get_or_fit_results("m", {"k": 2}, torch.nn.Linear(2, 2), fit, torch.device("cpu")) == {
            "final_train_loss": 0.25}
    assert len(calls) == 2


@pytest.mark.parametrize("kw, message", [
    ({"executor": "gpus"}, "needs at least one CUDA GPU"),
    ({"executor": "processes", "workers": 0}, "--workers must be at least 1"),
    ({"executor": "threads"}, "unknown executor 'threads'"),
    ({"threads": 0}, "--threads must be at least 1"),
    ({"device": "cuda:x"}, "is not a device"),
    ({"device": "tpu"}, "is not a device|only cpu and cuda"),
])
def test_bad_executor_and_device_choices(reference, tmp_path, kw, message):
    if kw.get("executor") == "gpus" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error is for machines without one")
    with pytest.raises(SplitbenchError, match=message):
        benchmark.run(str(reference / "pool.yaml"), out=tmp_path / "o", progress=False, **kw)


def test_an_out_that_is_a_file_is_one_line(reference, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SplitbenchError, match="exists and is not a directory"):
        benchmark.run(str(reference / "pool.yaml"), out=tmp_path / "file", progress=False)


def test_ray_without_ray_installed_says_how_to_install(monkeypatch, reference, tmp_path):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SplitbenchError, match=r"pip install 'splitbench\[ray\]'"):
        benchmark.run(str(reference / "pool.yaml"), out=tmp_path / "o", executor="ray", progress=False)


def test_an_unreachable_ray_address_is_one_line(reference, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'splitbench[ray]'")
    with pytest.raises(SplitbenchError, match="could not connect to the Ray cluster at '127.0.0.1:1'"):
        benchmark.run(str(reference / "pool.yaml"), out=tmp_path / "o", executor="ray", ray_address="127.0.0.1:1",
                      progress=False)


def _sleeping_worker(path: str) -> None:
    from benchmark.engine.executors import _exit_with_parent

    _exit_with_parent()
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def _parent_of_a_worker(path: str, method: str) -> None:
    import multiprocessing as mp

    from benchmark.engine.executors import worker_context

    ctx = worker_context() if method == "executor's" else mp.get_context(method)
    p = ctx.Process(target=_sleeping_worker, args=(path,))
    p.start()
    p.join()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state  # exited, waiting to be reaped


@pytest.mark.parametrize("method", ["spawn", "executor's"])
def test_a_worker_ends_when_the_run_that_started_it_is_killed(tmp_path, method):
    import multiprocessing as mp
    import signal

    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to see whether the worker process is gone")
    marker = tmp_path / "pid"
    parent = mp.get_context("spawn").Process(target=_parent_of_a_worker, args=(str(marker), method))
    parent.start()
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the worker never started"
    worker = int(marker.read_text())
    os.kill(parent.pid, signal.SIGKILL)  # no finally, no atexit: only the worker's own watch can end it
    parent.join()
    deadline = time.monotonic() + 20
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(worker), "the worker outlived the run that started it"


TWO_BACKBONES = textwrap.dedent("""
    name: narrow
    seeds: [0]
    scenarios: [{name: digits, config: {max_samples: 160}}]
    backbones: [{name: test_resnet, split: layer1}, {name: test_resnet, split: layer2}]
    deployment:
      test_resnet@layer1: {name: test_resnet, split: layer1, image_size: 16, batch: 2}
      test_resnet@layer2: {name: test_resnet, split: layer2, image_size: 16, batch: 2}
    train: {epochs: 1, batch_size: 32}
    defenses: [no_pruning]
    attacks: [{name: attribute_inference, config: {epochs: 1}}]
""")


@pytest.mark.parametrize("executor", ["processes", "local"])
def test_a_suite_narrowed_to_one_backbone_runs_under_every_executor(executor, tmp_path):
    """Workers re-read the narrowed suite: its deployment must not name the backbone --backbone left out."""
    (tmp_path / "narrow.yaml").write_text(TWO_BACKBONES)
    summary = benchmark.run(str(tmp_path / "narrow.yaml"), out=tmp_path / "out", backbones=["test_resnet@layer1"],
                            executor=executor, workers=1 if executor == "processes" else None, progress=False)
    assert (summary.total, summary.ok, summary.failed, summary.models_trained) == (1, 1, 0, 1)
    (rec,) = [rec for _, rec in iter_records(tmp_path / "out")]
    assert rec["status"] == "ok" and rec["config"]["backbone"]["split"] == "layer1"
    assert rec["metrics"]["deployed/test_resnet@layer1/client_macs"] > 0


def test_a_runner_re_created_from_its_spec_plans_the_same_cells(reference, tmp_path):
    """What a worker process receives (``Runner.to_spec``) is plain data that re-creates the same plan, options
    and plugins (``Runner.from_spec``), so the executors need not know the runner's module."""
    import json

    from benchmark.data.types import DataOptions
    from benchmark.engine.runner import Runner, RunOptions
    from benchmark.suites.parse import load_suite

    suite = load_suite(reference / "pool.yaml")
    one = next(c.file_name for _, cs in Runner(suite, RunOptions(out=tmp_path / "o")).plan() for c in cs)
    runner = Runner(suite, RunOptions(out=tmp_path / "o", data=DataOptions(None, False), latency_repeats=3,
                                      only=frozenset({one}), progress=False))
    spec = json.loads(json.dumps(runner.to_spec()))  # survives any transport
    again = Runner.from_spec(spec, device="cpu")
    assert [c.file_name for _, cs in again.plan() for c in cs] == [c.file_name for _, cs in runner.plan() for c in cs]
    assert (again.opt.out, again.opt.latency_repeats, again.opt.only) == (tmp_path / "o", 3, frozenset({one}))
    assert again.to_spec() == spec


def test_models_with_more_release_draws_are_handed_out_first(tmp_path):
    """A stochastic release is attacked once per draw, so its model takes about that many times longer: executors get
    those models first (longest first), and the plan's order among equals; which cells run is unchanged."""
    from benchmark.engine.runner import Runner, RunOptions
    from benchmark.suites.parse import load_suite

    (tmp_path / "s.yaml").write_text(tiny(seeds=[0, 1]))  # plan: no_pruning 0, random_pruning 0, ... seed 1
    runner = Runner(load_suite(tmp_path / "s.yaml"), RunOptions(out=tmp_path / "o", progress=False))
    plan = runner.plan()
    stochastic = [i for i, (spec, _) in enumerate(plan) if spec.defense.name == "random_pruning"]
    assert len(plan) == 4 and stochastic == [1, 3]

    class Recording:
        handed: list[int] = []

        def run(self, runner, indices):
            self.handed.extend(indices)
            return iter(())

    ex = Recording()
    runner.run(ex)
    assert ex.handed == [1, 3, 0, 2]


class _SlowToExit:
    """A stand-in for the runner whose worker process takes a moment to shut down after its last model (as a worker
    does while torch and its libraries tear down), and leaves a file once its exit handlers have run: multiprocessing's
    finalizers, which release a worker's named semaphores and run at the end of every worker, spawned or forked (a
    worker forked from the fork server ends with ``os._exit`` and so runs no ``atexit`` handler)."""

    def __init__(self, out: Path):
        self.out = out

    def to_spec(self) -> dict:
        return {"out": str(self.out)}

    @classmethod
    def from_spec(cls, spec: dict, device: str, threads: int | None) -> _SlowToExit:
        from multiprocessing import util

        runner = cls(Path(spec["out"]))

        def exit_slowly() -> None:
            time.sleep(1.0)
            (runner.out / f"exited-{os.getpid()}").write_text("clean")

        util.Finalize(None, exit_slowly, exitpriority=0)
        return runner

    def plan(self) -> None:
        return None

    def run_model(self, i: int, plan: None) -> _SlowToExit:
        return self

    def payload(self) -> dict:
        return {"ok": 1}


def test_a_finished_run_lets_its_workers_exit_on_their_own(tmp_path):
    """Workers that are shutting down after the last model are waited for, not killed: a worker killed while it
    exits skips its exit handlers and leaves what it holds (a named semaphore: the resource tracker's "leaked
    semaphore objects" warning at the end of a run)."""
    from benchmark.engine.executors import ProcessExecutor

    parts = list(ProcessExecutor(["cpu", "cpu"], threads=1).run(_SlowToExit(tmp_path), [0, 1, 2]))
    assert sum(p.ok for p in parts) == 3
    assert len(list(tmp_path.glob("exited-*"))) == 2  # both workers ran their exit handlers


class _EnvReader(_SlowToExit):
    """A stand-in runner whose worker writes down the value of one environment variable it sees."""

    @classmethod
    def from_spec(cls, spec: dict, device: str, threads: int | None) -> _EnvReader:
        runner = cls(Path(spec["out"]))
        (runner.out / f"env-{os.getpid()}").write_text(os.environ.get("SPLITBENCH_TEST_MARK", "<unset>"))
        return runner


def test_workers_see_the_environment_of_the_run_not_that_of_their_fork_server(tmp_path, monkeypatch):
    import multiprocessing as mp

    from benchmark.engine.executors import ProcessExecutor, start_worker_server

    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("this platform has no fork server: workers are spawned with the run's environment")
    monkeypatch.delenv("SPLITBENCH_TEST_MARK", raising=False)
    assert start_worker_server("processes", 2, 1, "cpu")  # started (or already running) without the variable
    monkeypatch.setenv("SPLITBENCH_TEST_MARK", "set by the run")
    parts = list(ProcessExecutor(["cpu", "cpu"], threads=1).run(_EnvReader(tmp_path), [0, 1]))
    assert sum(p.ok for p in parts) == 2
    seen = {p.read_text() for p in tmp_path.glob("env-*")}
    assert seen == {"set by the run"}


@pytest.mark.parametrize("executor, workers, threads, device, starts", [
    ("processes", 2, 1, "cpu", True),
    ("auto", 2, 1, "cpu", True),
    ("auto", 1, None, "cpu", False),      # one worker: the run stays in this process
    ("auto", None, 64, "cpu", False),     # threads for more cores than any test machine has: one worker
    ("local", None, None, "cpu", False),
    ("ray", None, None, "cpu", False),
    ("auto", None, None, "cuda", False),  # GPU workers are counted by torch, in the executor itself
])
def test_the_fork_server_is_started_early_only_for_cpu_worker_processes(executor, workers, threads, device, starts):
    import multiprocessing as mp

    from benchmark.engine.executors import start_worker_server

    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("this platform has no fork server")
    assert start_worker_server(executor, workers, threads, device) is starts
