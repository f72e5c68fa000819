"""Executors: who runs a suite's trained models. The unit of work is one trained model — a defense fit (or its
cache hit) and every attack on it — so the data and the defended model are loaded once per unit.

- ``auto`` (default): on the CPU, one single-threaded worker process per core (at most one per model to run), or
  this process with one thread when one model is left; on CUDA, one worker per visible GPU when the run asks for
  ``cuda`` without an index and has several models, else this process.
- ``local``: one after the other, in this process.
- ``gpus``: one worker process per visible CUDA GPU, each taking whole models from a shared queue.
- ``processes``: the same pool on the CPU (``--workers N`` processes, torch threads split between them).
- ``ray``: one Ray task per model (``num_gpus=1`` when the run is on CUDA, else CPUs), on an existing cluster
  (``--ray-address``) or a local one it starts.

Every executor writes the same records: each model's computation is seeded from its own spec, never from what ran
before it in the process, and the trained-model cache is shared and lock-safe (two workers never train the same
model twice, see :meth:`benchmark.store.cache.ModelCache.lock`). Workers re-create the runner from the resolved suite
and the run options, and load the run's plugins themselves. Worker processes are forked from a fork server that has
imported torch and timm once (spawned where the platform has none: :func:`worker_context`); ``splitbench run`` starts
that server before it imports anything heavy itself (:func:`start_worker_server`).
"""

from __future__ import annotations

import logging
import os
import queue
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.engine.summary import RunSummary

log = logging.getLogger("splitbench")

EXECUTORS = ("auto", "local", "gpus", "processes", "ray")

#: how long a finished run waits for a worker process to exit on its own before stopping it
EXIT_GRACE_SECONDS = 60.0


class LocalExecutor:
    """Models one after the other in this process (with ``threads`` torch threads when given)."""

    name = "local"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, runner: Any, indices: list[int]) -> Iterator[Any]:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            plan = runner.plan()
            for i in indices:
                yield runner.run_model(i, plan)
        finally:
            torch.set_num_threads(before)


def _exit_with_parent() -> None:
    """End this worker process as soon as the process that started it is gone (killed, even with SIGKILL), so
    that no orphaned worker goes on training and writing records into a run directory nobody is running."""
    import multiprocessing as mp
    import threading

    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="splitbench-parent-watch", daemon=True).start()


#: What every worker process imports before its first model: about 5 s of one core on a 2-core laptop CPU (torch,
#: then timm, which imports torchvision and with it torch's compiler). Where the platform has a fork server the workers
#: are forked from one that imported these once (:func:`worker_context`), started by :func:`start_worker_server`
#: while the main process is still importing and checking the run; elsewhere each worker is spawned and imports them.
WORKER_PRELOAD = ("torch", "timm", "benchmark.engine.runner")


def auto_cpu_workers(workers: int | None, threads: int | None) -> int:
    """How many CPU worker processes ``auto`` runs when it has models for them: ``workers`` when given, else as many
    as the machine's cores hold at ``threads`` torch threads each (one by default)."""
    return workers or max(1, (os.cpu_count() or 1) // (threads or 1))


def worker_context() -> Any:
    """The multiprocessing context of worker processes: a fork server that preloads :data:`WORKER_PRELOAD` where the
    platform has one (Linux, macOS), else spawn. Both start a worker from a process that has never run torch, so no
    thread pool or CUDA context is inherited; records do not depend on which."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_PRELOAD))
        return ctx
    return mp.get_context("spawn")


def start_worker_server(executor: str, workers: int | None, threads: int | None, device: str) -> bool:
    """Start the fork server of the worker processes now, when the run will most likely use CPU workers (the
    ``auto`` executor on a machine with cores for two or more, or ``processes``): its imports then run on another
    core while this process imports and checks the run, and the workers start about as soon as the run is checked
    (on a 2-core machine about 3 s earlier than spawned ones). Returns whether a fork server now runs for the run's
    workers (started by this call or an earlier one). A run left with one model to train runs it in this process, and
    the server, idle, exits with it."""
    if device != "cpu" or executor not in ("auto", "processes"):
        return False
    if executor == "auto" and auto_cpu_workers(workers, threads) < 2:
        return False
    if executor == "processes" and workers is not None and workers < 1:
        return False  # the executor's own check says why
    ctx = worker_context()
    if ctx.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return True


def _worker(build: Callable[..., Any], spec: dict[str, Any], device: str, threads: int | None, tasks: Any,
            results: Any, env: dict[str, str] | None = None) -> None:
    _exit_with_parent()
    if env is not None:  # a forked worker holds the fork server's environment, which may be older than the run's
        os.environ.clear()
        os.environ.update(env)
    logging.basicConfig(level=logging.INFO, format=f"[{device}] %(message)s")
    try:
        runner = build(spec, device, threads)
        plan = runner.plan()
    except BaseException as exc:  # report why the worker cannot start, then drain nothing
        results.put(("error", f"worker on {device} could not start: {type(exc).__name__}: {exc}"))
        return
    while True:
        i = tasks.get()
        if i is None:
            return
        try:
            results.put(("ok", runner.run_model(i, plan).payload()))
        except SplitbenchError as exc:
            results.put(("error", str(exc)))
        except BaseException as exc:
            results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


class ProcessExecutor:
    """One worker process per device; each takes whole models from a shared queue."""

    name = "processes"

    def __init__(self, devices: list[str], threads: int | None = None):
        if not devices:
            raise SplitbenchError("the process executor needs at least one worker")
        self.devices = devices
        self.threads = threads

    def run(self, runner: Any, indices: list[int]) -> Iterator[Any]:
        if not indices:
            return
        ctx = worker_context()
        tasks, results = ctx.Queue(), ctx.Queue()
        for i in indices:
            tasks.put(i)
        workers = self.devices[: len(indices)]
        for _ in workers:
            tasks.put(None)
        spec = runner.to_spec()
        env = dict(os.environ)
        procs = [ctx.Process(target=_worker, args=(type(runner).from_spec, spec, d, self.threads, tasks, results,
                                                   env), daemon=True)
                 for d in workers]
        for p in procs:
            p.start()
        done = 0
        try:
            while done < len(indices):
                try:
                    status, payload = results.get(timeout=5)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs):
                        raise SplitbenchError("every worker process exited before the run finished (see the log "
                                              "above); finished records are kept, rerun to resume") from None
                    continue
                if status == "error":
                    raise SplitbenchError(payload.splitlines()[0])
                done += 1
                yield RunSummary(runner.out, **payload)
        finally:
            # After the last model every worker has its end-of-queue marker and is shutting down: let it finish
            # (a worker killed while it exits leaves what it holds, e.g. a named semaphore, for the resource
            # tracker to warn about). On an error or an interrupted run, stop the workers at once.
            grace = EXIT_GRACE_SECONDS if done == len(indices) else 0.0
            for p in procs:
                p.join(timeout=grace)
                if p.is_alive():
                    p.terminate()
                p.join(timeout=10)
            for q in (tasks, results):  # release the queues' semaphores and feeder threads now
                q.close()
                q.join_thread()


def gpu_executor() -> ProcessExecutor:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise SplitbenchError("--executor gpus needs at least one CUDA GPU and none is visible (use --executor "
                              "local, or processes for CPU workers)")
    ex = ProcessExecutor([f"cuda:{k}" for k in range(n)])
    ex.name = "gpus"
    return ex


def cpu_executor(workers: int, threads: int | None = None) -> ProcessExecutor:
    if workers < 1:
        raise SplitbenchError(f"--workers must be at least 1, got {workers}")
    return ProcessExecutor(["cpu"] * workers, threads or max(1, (os.cpu_count() or 1) // workers))


class AutoExecutor:
    """The default: keep every CPU core busy with whole models, at one torch thread per worker.

    The small models and batches of CPU suites leave a second thread of one process half idle, while a second
    process keeps a second core busy. Fixing the threads per worker (not the cores of the machine) also makes the
    records of a CPU run the same on every machine, whatever its number of cores (CPU training rounds
    differently with another thread count). On CUDA: one worker process per visible GPU (as ``gpus``) when the
    run asks for ``cuda`` without an index and more than one GPU and model are there, else this process."""

    name = "auto"

    def __init__(self, threads: int | None = None, workers: int | None = None):
        if workers is not None and workers < 1:
            raise SplitbenchError(f"--workers must be at least 1, got {workers}")
        self.threads = threads
        self.workers = workers

    def choose(self, runner: Any, models: int) -> LocalExecutor | ProcessExecutor:
        if runner.device.type == "cuda":
            import torch

            gpus = torch.cuda.device_count() if runner.device.index is None else 1
            workers = min(self.workers or gpus, gpus, models)
            if workers <= 1:
                return LocalExecutor(self.threads)
            return ProcessExecutor([f"cuda:{k}" for k in range(workers)], self.threads)
        threads = self.threads or 1
        workers = min(auto_cpu_workers(self.workers, threads), models)
        if workers <= 1:
            return LocalExecutor(threads)
        return ProcessExecutor(["cpu"] * workers, threads)

    def run(self, runner: Any, indices: list[int]) -> Iterator[Any]:
        chosen = self.choose(runner, len(indices))
        if isinstance(chosen, ProcessExecutor):
            if chosen.devices[0] == "cpu":
                log.info("running %d models in %d worker processes, %d torch thread(s) each", len(indices),
                         len(chosen.devices), chosen.threads)
            else:
                log.info("running %d models in %d worker processes, one per GPU (%s)", len(indices),
                         len(chosen.devices), ", ".join(chosen.devices))
        yield from chosen.run(runner, indices)


def _ray_model(build: Callable[..., Any], spec: dict[str, Any], index: int, threads: int | None) -> dict[str, Any]:
    runner = build(spec, None, threads)
    return runner.run_model(index, runner.plan()).payload()


class RayExecutor:
    """One Ray task per model on an existing cluster (``address``) or a local one."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise SplitbenchError("--executor ray needs Ray, which is not installed: pip install "
                                  "'splitbench[ray]' (or pip install 'ray[default]')") from None
        self.ray = ray
        self.address = address
        self.workers = workers
        self.threads = threads

    def _connect(self) -> bool:
        """Connect (or start a local cluster); True when this call initialised Ray (and must shut it down)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        if self.address and self.address != "auto":
            _check_reachable(self.address)
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.workers or os.cpu_count() or 1, **kw)
        except Exception as exc:  # ConnectionError and Ray's own errors alike
            where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray cluster"
            raise SplitbenchError(f"could not connect to {where} ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'no reason given'}); start one "
                                  "with `ray start --head` or leave out --ray-address to start a local one") from None
        return True

    def run(self, runner: Any, indices: list[int]) -> Iterator[Any]:
        import builtins

        if not indices:
            return
        original_print = builtins.print  # Ray's shutdown leaves its own print in builtins: put ours back
        started = self._connect()
        try:
            yield from self._run(runner, indices)
        finally:
            if started:
                self.ray.shutdown()
            builtins.print = original_print

    def _run(self, runner: Any, indices: list[int]) -> Iterator[Any]:
        ray = self.ray
        cuda = runner.device.type == "cuda"
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        threads = None if cuda else self.threads or max(1, cpus // max(1, min(len(indices), self.workers or cpus)))
        task = ray.remote(num_gpus=1 if cuda else 0, num_cpus=0 if cuda else threads)(_ray_model)
        spec = runner.to_spec()
        pending = [task.remote(type(runner).from_spec, spec, i, threads) for i in indices]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                payload = ray.get(ready[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref, force=True)
                msg = str(getattr(exc, "cause", None) or exc).strip().splitlines()
                raise SplitbenchError(f"a Ray task failed: {msg[-1] if msg else type(exc).__name__}") from None
            yield RunSummary(runner.out, **payload)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of Ray's long retries) when a ``host:port`` cluster address does not answer."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SplitbenchError(f"--ray-address {address!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SplitbenchError(f"could not connect to the Ray cluster at {address!r} ({exc.strerror or exc}); start "
                              "one with `ray start --head` or leave out --ray-address to start a local one") from None


def make_executor(name: str, workers: int | None = None, ray_address: str | None = None,
                  threads: int | None = None) -> Any:
    """The executor a user asked for by name (``--executor``), with one clear error for bad choices.

    ``threads`` is the number of torch threads of each worker (of this process for ``local``); the default is
    one for ``auto``, every core for ``local`` and the cores divided among the workers otherwise. Training on CPU rounds
    differently with another thread count, so records of two executors are identical when their workers have
    the same number of threads (e.g. ``local --threads 1`` and ``processes --workers 2`` on 2 cores)."""
    if threads is not None and threads < 1:
        raise SplitbenchError(f"--threads must be at least 1, got {threads}")
    if name == "auto":
        return AutoExecutor(threads, workers)
    if name == "local":
        return LocalExecutor(threads)
    if name == "gpus":
        return gpu_executor()
    if name == "processes":
        return cpu_executor(2 if workers is None else workers, threads)
    if name == "ray":
        return RayExecutor(ray_address, workers, threads)
    from benchmark.core.errors import did_you_mean

    raise SplitbenchError(f"unknown executor {name!r}{did_you_mean(name, EXECUTORS)} (expected one of: "
                          f"{', '.join(EXECUTORS)})")
