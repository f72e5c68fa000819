"""The runner: expand a suite, train each defended model once (cached), attack it, write one record per cell.

It only orchestrates: data (``benchmark.data.types``) -> fit or load (``benchmark.store.cache``) -> utility and
the shared eval releases (``benchmark.engine.evaluation``) -> every attack on a
:class:`~benchmark.api.contract.Target` -> one scorer per attack kind (``benchmark.measure.scoring``) -> a record
and its per-sample outcomes (``benchmark.store.records``).

Resume is free: a cell whose record exists with status ok or not_applicable is skipped (failed cells are
retried). A model whose cells are all done is not even loaded. A failing model or attack is recorded as
``failed`` with its reason and the run goes on; :class:`RunSummary` counts what happened.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.api.contract import AttackKind, Defense, NotApplicable
from benchmark.core.clock import Stopwatch
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import config_hash
from benchmark.core.registry import ATTACKS, DEFENSES, SCENARIOS, load_plugin
from benchmark.data.types import DataOptions, ScenarioData
from benchmark.engine.attacking import (
    HeldOut,
    aux_share,
    execute_attack,
    make_truth,
    release_error,
    seed_all,
    split_aux,
    stable_seed,
    take_rows,
    tune,
)
from benchmark.engine.checks import check_device, check_writable
from benchmark.engine.evaluation import (
    COST_VERSION,
    ModelEvaluation,
    client_cost,
    deployed_cost,
    evaluate,
    release_and_score,
)
from benchmark.engine.identity import model_cache_key
from benchmark.engine.summary import RunSummary
from benchmark.measure.scoring import Truth, convergence, scorer_for
from benchmark.models.trainer import Trainer, place
from benchmark.store.cache import ModelCache
from benchmark.store.manifest import write_manifest
from benchmark.store.records import (
    environment,
    git_provenance,
    read_record,
    write_gallery,
    write_outcomes,
    write_record,
)
from benchmark.suites.expand import expand
from benchmark.suites.model import Cell, ModelSpec, Suite
from benchmark.suites.parse import load_suite, parse_suite, suite_to_raw

log = logging.getLogger("splitbench")


@dataclasses.dataclass
class RunOptions:
    """How to run a suite (none of this changes results, so none of it is hashed)."""

    out: Path = Path("runs/quick")
    device: str = "cpu"
    data: DataOptions = DataOptions()
    cache_dir: Path | None = None
    progress: bool | None = None
    retry_failed: bool = True
    latency_batch: int = 64
    latency_repeats: int = 20
    only: frozenset[str] | None = None  # run only the cells with these record file names (e.g. to verify some)
    plugins: tuple[str, ...] = ()  # plugin files worker processes must load too


@dataclasses.dataclass
class CellResult:
    status: str
    reason: str | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)
    samples: dict[str, Any] = dataclasses.field(default_factory=dict)
    outcomes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    traceback: str | None = None
    gallery: np.ndarray | None = None  # uint8 [2, K, H, W, C]: eval images above their reconstructions


class Runner:
    """Runs one suite into one output directory."""

    def __init__(self, suite: Suite, options: RunOptions):
        self.suite = suite
        self.opt = options
        self.out = Path(options.out)
        check_writable(self.out, "--out")
        self.cache = ModelCache(options.cache_dir or self.out / "cache")
        self.device = check_device(options.device)
        self._data: dict[str, ScenarioData] = {}
        self._env = environment(str(self.device))

    # -- helpers ---------------------------------------------------------------------------------------------
    def record_path(self, cell: Cell) -> Path:
        return self.out / "records" / cell.file_name

    def _done(self, cell: Cell) -> bool:
        p = self.record_path(cell)
        if not p.is_file():
            return False
        try:
            status = read_record(p)["status"]
        except SplitbenchError:
            return False  # unreadable: recompute and overwrite
        return status != "failed" or not self.opt.retry_failed

    def data_for(self, spec: ModelSpec) -> ScenarioData:
        key = config_hash(spec.scenario.spec)
        if key not in self._data:
            scenario = SCENARIOS.get(spec.scenario.name)(spec.scenario.config)
            t0 = time.perf_counter()
            data = scenario.load(self.opt.data)
            log.info("loaded scenario %s: %d train / %d val / %d aux / %d eval in %.1f s", spec.scenario.name,
                     len(data.train), len(data.val), len(data.aux), len(data.eval), time.perf_counter() - t0)
            self._data[key] = data.to(self.device)
        return self._data[key]

    def trainer(self, seed: int) -> Trainer:
        return Trainer(self.device, seed=seed, progress=self.opt.progress)

    # -- the defended model ------------------------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """What a worker process needs to re-create this runner (:meth:`from_spec`): the resolved suite, the run
        options and the plugin files, as plain data."""
        opt = self.opt
        return {"suite": suite_to_raw(self.suite), "source": self.suite.source,
                "options": {"out": str(opt.out), "device": opt.device,
                            "data_root": str(opt.data.data_root) if opt.data.data_root else None,
                            "download": opt.data.download,
                            "cache_dir": str(opt.cache_dir) if opt.cache_dir else None,
                            "retry_failed": opt.retry_failed, "latency_batch": opt.latency_batch,
                            "latency_repeats": opt.latency_repeats,
                            "only": sorted(opt.only) if opt.only is not None else None},
                "plugins": list(opt.plugins)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], device: str | None = None, threads: int | None = None) -> Runner:
        """A runner re-created from :meth:`to_spec` in a worker process (on ``device``, with ``threads`` torch
        threads when given), its plugins loaded first."""
        if threads:
            torch.set_num_threads(threads)
        for p in spec["plugins"]:
            load_plugin(p)  # a no-op when the file is already loaded in this process
        o = spec["options"]
        opts = RunOptions(out=Path(o["out"]), device=device or o["device"],
                          data=DataOptions(Path(o["data_root"]) if o["data_root"] else None, o["download"]),
                          cache_dir=Path(o["cache_dir"]) if o["cache_dir"] else None, progress=False,
                          retry_failed=o["retry_failed"], latency_batch=o["latency_batch"],
                          latency_repeats=o["latency_repeats"],
                          only=frozenset(o["only"]) if o["only"] is not None else None,
                          plugins=tuple(spec["plugins"]))
        return cls(parse_suite(spec["suite"], spec["source"]), opts)

    def defense_for(self, spec: ModelSpec, data: ScenarioData, summary: RunSummary
                    ) -> tuple[Defense, str, dict[str, float]]:
        """The trained, frozen defense (fitted now or loaded from the cache), its cache key and its cost."""
        cls = DEFENSES.get(spec.defense.name)
        trainer = self.trainer(spec.seed)
        key_spec = model_cache_key(spec, data, self.device, trainer.amp)
        key = self.cache.key(key_spec)
        seed_all(spec.seed)
        defense = cls(spec.defense.config, spec.backbone, data.info, spec.seed)
        with self.cache.lock("models", key):  # another worker may be training this very model
            if self.cache.exists("models", key):
                meta = self.cache.load_meta("models", key)
                defense.restore_structure(meta.get("structure", {}))
                self.cache.load_into("models", key, defense)
                place(defense, self.device)
                summary.models_loaded += 1
                fit_times = {k: meta[k] for k in ("fit_seconds", "fit_cpu_seconds") if k in meta}
            else:
                place(defense, self.device)
                watch = Stopwatch()
                seed_all(spec.seed)
                with trainer.schedule(defense.train_config().schedule):
                    defense.fit(data, trainer)
                spent = watch.read()
                fit_times = {"fit_seconds": spent.wall, "fit_cpu_seconds": spent.cpu}
                place(defense, self.device)  # layers a fit replaced (pruning) get the layout a cache hit gets
                self.cache.save("models", key, defense, {"structure": defense.structure(), "spec": key_spec,
                                                         **fit_times})
                summary.models_trained += 1
        defense.freeze()
        cost_name = f"{key}.cost.v{COST_VERSION}.json"
        cost = self.cache.read_json("models", cost_name)
        if cost is None:
            cost = client_cost(defense, data, trainer, self.opt.latency_batch, self.opt.latency_repeats)
            cost = {**cost, "fit_seconds": float("nan"), **fit_times}
            self.cache.write_json("models", cost_name, cost)
        target = self.suite.deployment.get(spec.backbone.label)
        if target is not None:
            cost = {**cost, **self._deployed(defense, key, target, trainer)}
        return defense, key, cost

    def _deployed(self, defense: Defense, key: str, target: Any, trainer: Trainer) -> dict[str, float]:
        """The model's client deployed on the suite's real backbone for its track (cached beside its own cost);
        nothing when the defense cannot be carried onto that backbone, said in the log: a cost-only figure never
        fails the model's cells."""
        name = f"{key}.deployed.v{COST_VERSION}.{config_hash(dataclasses.asdict(target), 10)}.json"
        cost = self.cache.read_json("models", name)
        if cost is None:
            try:
                cost = deployed_cost(defense, target, trainer, self.opt.latency_repeats)
            except NotApplicable as exc:
                log.info("  not timed on %s: %s", target.label, exc)
                return {}
            except Exception as exc:  # noqa: BLE001 - e.g. a plugin's carry_structure that breaks on that backbone
                log.warning("  could not time the client deployed on %s: %s: %s", target.label,
                            type(exc).__name__, exc)
                return {}
            self.cache.write_json("models", name, cost)
        return cost

    # -- attacks -------------------------------------------------------------------------------------------------
    def held_out(self, spec: ModelSpec, defense: Defense, data: ScenarioData, trainer: Trainer, draws: int
                 ) -> HeldOut | None:
        """The model's hold-out of the attacker's aux split (the suite's ``holdout``; the same images for every
        attack of the model), released as the eval split is, and the designated model's correctness on it."""
        if self.suite.holdout is None:
            return None
        fit, hold = split_aux(data.aux, self.suite.holdout.fraction, stable_seed(spec.seed, "holdout"))
        correct, releases, _ = release_and_score(defense, hold, trainer, spec.seed, "holdout", draws, keep=True)
        return HeldOut(fit, hold, releases, correct.astype(np.float32))

    def run_attack(self, cell: Cell, defense: Defense, data: ScenarioData, ev: ModelEvaluation,
                   held: HeldOut | None = None) -> CellResult:
        """One attack on the model's eval releases (and, with a hold-out, on the held-out aux releases too: the
        attack trains without them and answers both; it cannot tell which rows are which)."""
        entry = cell.attack
        if entry is None:
            raise ValueError(f"{cell.file_name} is a model cell: it has no attack to run")
        cls = ATTACKS.get(entry.name)
        seed = cell.model.seed
        releases, sample_ids = ev.attack_releases(cell.eval_count, cell.draws)
        n_eval_rows = len(releases)
        attack_data, hold_ids = data, np.zeros(0, dtype=np.int64)
        if held is not None and cell.holdout is not None:
            hold_rows, hold_ids = held.rows(cls.kind, cell.holdout, cell.draws)
            releases = torch.cat([releases, hold_rows])
            attack_data = dataclasses.replace(data, aux=held.fit)
        if cell.aux_fraction != 1.0:
            attack_data = dataclasses.replace(attack_data, aux=aux_share(attack_data.aux, cell.aux_fraction, seed))
        trainer = self.trainer(seed)
        config, report = entry.config, None
        if cell.tuning is not None:
            config, report = tune(cls, config, cell.tuning, stable_seed(seed, entry.label, "tune"), defense,
                                  attack_data, cell.model.backbone, trainer, self.cache, cell.eval_count)
            log.info("  tuned %s on aux (%d configurations): chose %s", entry.label, len(report["tried"]),
                     {k: report["chosen"][k] for k in cell.tuning.space})
        output, reason, spent = execute_attack(cls, config, seed, defense, attack_data, releases,
                                               cell.model.backbone, trainer, self.cache)
        if output is None:
            return CellResult("not_applicable", reason)
        rows = output.index.detach().cpu().long().numpy()
        if len(rows) != len(releases) or not np.array_equal(np.sort(rows), np.arange(len(releases))):
            raise RuntimeError(f"attack answered {len(np.unique(rows))} of the {len(releases)} releases it was "
                               "given; every attack of a kind is scored on the same samples, so it must answer all")
        scorer = scorer_for(cls.kind)
        on_eval = take_rows(output, rows < n_eval_rows, 0)
        eval_rows = rows[rows < n_eval_rows]
        metrics, samples = scorer.score(on_eval, self.truth(data, sample_ids[eval_rows], ev, cls.kind))
        if on_eval.images is not None:
            metrics["release_error"] = release_error(defense, on_eval.images, releases[eval_rows], trainer)
        outcomes = {f"attack/{k}": v for k, v in samples.items()}
        if held is not None and len(hold_ids):
            on_hold = take_rows(output, rows >= n_eval_rows, n_eval_rows)
            truth = make_truth(held.hold, held.fit, hold_ids[rows[rows >= n_eval_rows] - n_eval_rows],
                               held.utility_correct, cls.kind, data.info)
            h_metrics, h_samples = scorer.score(on_hold, truth)
            if on_hold.images is not None:
                h_metrics["release_error"] = release_error(defense, on_hold.images,
                                                           releases[rows[rows >= n_eval_rows]], trainer)
            metrics.update({f"holdout/{k}": v for k, v in h_metrics.items()})
            outcomes.update({f"holdout/{k}": v for k, v in h_samples.items()})
        metrics["attack_seconds"] = spent.wall
        metrics["attack_cpu_seconds"] = spent.cpu
        metrics.update({f"attack.{k}": v for k, v in output.metrics.items()})
        counts = {"eval": int(len(np.unique(sample_ids))), "draws": cell.draws, "aux": len(attack_data.aux),
                  "train": len(data.train), "val": len(data.val)}
        if len(hold_ids):
            counts["holdout"] = int(len(np.unique(hold_ids)))
        if on_eval.images is not None:
            gallery = self.gallery(data, sample_ids[eval_rows], on_eval.images)
        else:
            gallery = None
        budget = dict(output.budget)
        if report is not None:
            budget["tuning"] = report
            metrics["tuning_seconds"] = report["seconds"]
            metrics["tuning_cpu_seconds"] = report["cpu_seconds"]
        return CellResult("ok", None, metrics, budget, counts, outcomes, gallery=gallery)

    GALLERY = 8

    @classmethod
    def gallery(cls, data: ScenarioData, sample: np.ndarray, images: torch.Tensor) -> np.ndarray:
        """The first eval samples beside their reconstructions (first draw), as uint8 ``[2, K, H, W, C]``."""
        first = {}
        for row, sid in enumerate(sample.tolist()):
            first.setdefault(sid, row)
        ids = sorted(first)[: cls.GALLERY]
        truth = data.eval.images[torch.as_tensor(ids, device=data.eval.images.device)].cpu()
        rec = images[torch.as_tensor([first[i] for i in ids], device=images.device)].detach().float().cpu()
        rec = (rec.clamp(0, 1) * 255).round().to(torch.uint8)
        return torch.stack([truth, rec]).permute(0, 1, 3, 4, 2).numpy()

    @staticmethod
    def truth(data: ScenarioData, sample: np.ndarray, ev: ModelEvaluation, kind: AttackKind) -> Truth:
        """Eval ground truth of the answered rows, for the scorer (never for the attack)."""
        return make_truth(data.eval, data.aux, sample, ev.utility_correct, kind, data.info)

    # -- the loop --------------------------------------------------------------------------------------------------
    def check(self, plan: list[tuple[ModelSpec, list[Cell]]]) -> None:
        """Fail fast, before any training, on split points the backbones do not have and on eval counts larger
        than the eval split."""
        from benchmark.core.errors import did_you_mean
        from benchmark.models.backbones import create_model, split_points

        tracks = {spec.backbone for spec, _ in plan}
        labels = {t.label for t in tracks}
        deployed = {d.backbone for b, d in self.suite.deployment.items() if b in labels}
        for b in sorted(tracks | deployed, key=lambda b: b.label):
            points = split_points(create_model(b.name, 2, 32))
            if b.split not in points:
                where = "deployment backbone" if b not in tracks else "backbone"
                raise SplitbenchError(f"{where} {b.name!r} has no split point {b.split!r}"
                                      f"{did_you_mean(b.split, points)} (expected one of: {', '.join(points)})")
        for spec, cells in plan:
            n_eval = len(self.data_for(spec).eval)
            for c in cells:
                if c.attack is not None and c.eval_count is not None and c.eval_count > n_eval:
                    kind = ATTACKS.get(c.attack.name).kind.value
                    raise SplitbenchError(f"suite {self.suite.name}: eval_counts.{kind} = {c.eval_count} exceeds "
                                          f"the eval split of scenario {spec.scenario.name!r} ({n_eval} samples)")

    def plan(self) -> list[tuple[ModelSpec, list[Cell]]]:
        """The suite's models with their cells (only the named ones when ``only`` is set), in a stable order."""
        plan = expand(self.suite)
        if self.opt.only is not None:
            known = {c.file_name for _, cells in plan for c in cells}
            unknown = sorted(set(self.opt.only) - known)
            if unknown:
                raise SplitbenchError(f"cell {unknown[0]} is not a cell of suite {self.suite.name} "
                                      f"({len(unknown)} unknown in all)")
            plan = [(spec, [c for c in cells if c.file_name in self.opt.only]) for spec, cells in plan]
            plan = [(spec, cells) for spec, cells in plan if cells]
        return plan

    def run(self, executor: Any = None) -> RunSummary:
        """Run every unfinished cell; ``executor`` (default: in this process) runs the trained models."""
        from benchmark.engine.executors import LocalExecutor

        t_start = time.perf_counter()
        summary = RunSummary(self.out)
        plan = self.plan()
        self.check(plan)
        summary.manifest = write_manifest(self.out, self.suite.name, self.suite.source,
                                          [c.file_name for _, cells in plan for c in cells],
                                          self.suite.presentation(), self.suite.paper, self._env,
                                          suite_to_raw(self.suite))
        todo, draws = [], {}
        for i, (spec, cells) in enumerate(plan):
            summary.total += len(cells)
            left = [c for c in cells if not self._done(c)]
            summary.skipped += len(cells) - len(left)
            if left:
                todo.append(i)
                draws[i] = sum(c.draws for c in left)
            else:
                log.info("%s: all %d cells done, skipped", self.label(i, spec, len(plan)), len(cells))
        # the longest models first (a stochastic release is attacked once per draw), so that the last model a
        # worker picks up is a short one and no worker idles long while another finishes; records do not depend
        # on the order
        todo.sort(key=lambda i: -draws[i])
        for part in (executor or LocalExecutor()).run(self, todo):
            summary.add(part)
        summary.seconds = time.perf_counter() - t_start
        return summary

    @staticmethod
    def label(i: int, spec: ModelSpec, n: int) -> str:
        return f"[{i + 1}/{n}] {spec.scenario.name} {spec.backbone.label} {spec.defense.label} seed {spec.seed}"

    def run_model(self, index: int, plan: list[tuple[ModelSpec, list[Cell]]] | None = None) -> RunSummary:
        """Train (or load) model ``index`` of the plan and run its unfinished cells: the unit executors schedule."""
        plan = plan if plan is not None else self.plan()
        spec, cells = plan[index]
        summary = RunSummary(self.out)
        todo = [c for c in cells if not self._done(c)]
        label = self.label(index, spec, len(plan))
        data = self.data_for(spec)  # missing or corrupt data stops the run with a clear error
        try:
            t0 = time.perf_counter()
            defense, model_hash, cost = self.defense_for(spec, data, summary)
            ev = evaluate(defense, data, self.trainer(spec.seed), spec.seed, max(c.draws for c in cells))
            model_metrics = {**ev.metrics(), **cost}
            log.info("%s: utility %.3f, validation %.3f (%.1f s)", label, model_metrics["utility"],
                     model_metrics["val_utility"], time.perf_counter() - t0)
        except NotApplicable as exc:  # e.g. an operation the defense's analysis does not support on this backbone
            reason = f"defense not applicable: {exc}"
            log.info("%s: %s", label, reason)
            for cell in todo:
                self._write(cell, CellResult("not_applicable", reason), None, None)
                summary.not_applicable += 1
            return summary
        except Exception as exc:  # one failing model must not stop the run
            reason = f"defense failed: {type(exc).__name__}: {exc}"
            log.warning("%s: %s", label, reason)
            for cell in todo:
                self._write(cell, CellResult("failed", reason, traceback=traceback.format_exc()), None, None)
                summary.failed += 1
                summary.failures.append(f"{cell.file_name}: {reason}")
            return summary
        model_outcomes = {"model/utility": ev.utility_correct, "model/val_utility": ev.val_correct,
                          "model/task": data.eval.task.cpu().numpy()}
        attacked = any(c.attack is not None for c in cells)
        held = self.held_out(spec, defense, data, self.trainer(spec.seed), max(c.draws for c in cells)) \
            if attacked else None
        for cell in todo:
            try:
                # a model cell: the model's own figures, for a seed admission reads and no attack does
                result = CellResult("ok") if cell.attack is None else self.run_attack(cell, defense, data, ev, held)
                finite = scorer_for(ATTACKS.get(cell.attack.name).kind).finite if cell.attack is not None else ()
                bad = sorted(k for k in finite if k in result.metrics and math.isnan(result.metrics[k]))
                if bad:
                    result = CellResult("failed", f"metric(s) {bad} are NaN")
            except SplitbenchError as exc:
                result = CellResult("failed", str(exc))
            except Exception as exc:
                result = CellResult("failed", f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            result.metrics = {**model_metrics, **result.metrics}
            result.outcomes = {**model_outcomes, **result.outcomes}
            self._write(cell, result, model_hash, ev)
            setattr(summary, result.status, getattr(summary, result.status) + 1)
            if result.status == "failed":
                summary.failures.append(f"{cell.file_name}: {result.reason}")
                log.warning("%s %s: failed: %s", label, cell.label, result.reason)
            else:
                log.info("%s %s: %s", label, cell.label, _brief(cell, result))
        self.flag_convergence(label, cells)
        return summary

    def flag_convergence(self, label: str, cells: list[Cell]) -> None:
        """Write into each optimisation attack's record whether it converged, against the lowest release error
        any reconstruction attack of the model reached (:mod:`benchmark.measure.scoring.convergence`); cells finished
        in an earlier run take part, so a resumed run flags the same cells."""
        records = {}
        for cell in cells:
            path = self.record_path(cell)
            if cell.attack is not None and ATTACKS.get(cell.attack.name).kind == AttackKind.RECONSTRUCTION \
                    and path.is_file():
                rec = read_record(path)
                if rec["status"] == "ok":
                    records[path] = rec
        cells = {p: r["metrics"] for p, r in records.items()}
        verdicts = convergence.flags(cells)
        for path, flagged in verdicts.items():
            rec = records[path]
            if rec["metrics"].get("not_converged") == float(flagged):
                continue
            rec["metrics"]["not_converged"] = float(flagged)
            rec["budget"]["convergence"] = convergence.budget(cells)
            write_record(path, rec)
            if flagged:
                log.warning("%s %s: not converged (release error %.4f; %s)", label, rec["config"]["attack"]["label"],
                            rec["metrics"]["release_error"], convergence.rule_text())

    def _write(self, cell: Cell, result: CellResult, model_hash: str | None, ev: ModelEvaluation | None) -> None:
        path = self.record_path(cell)
        rec: dict[str, Any] = {
            "status": result.status,
            "reason": result.reason,
            "cell_id": cell.file_name[:-5],
            "config": cell.config(),
            "config_hash": cell.hash(),
            "model_hash": model_hash,
            "metrics": result.metrics,
            "budget": result.budget,
            "samples": result.samples,
            # threads: the executor may have set them since; the code's commit: read now, per record, so a record
            # written after a commit or an edit says so (submit refuses a run whose records disagree)
            "env": {**self._env, "threads": torch.get_num_threads(), **git_provenance()},
        }
        if result.outcomes:
            rec["outcomes"] = write_outcomes(path.with_suffix(".npz"), result.outcomes)
        if result.gallery is not None:
            rec["gallery"] = write_gallery(path.with_suffix(".png"), result.gallery)
        if result.traceback:
            rec["traceback"] = result.traceback
        write_record(path, rec)


def _brief(cell: Cell, result: CellResult) -> str:
    """The log's line for a finished cell: its status, or its attack kind's scorer's summary of the metrics."""
    if result.status != "ok":
        return f"{result.status} ({result.reason})"
    if cell.attack is None:
        return "trained and validated (admission only: not attacked)"
    return scorer_for(ATTACKS.get(cell.attack.name).kind).brief(result.metrics)


def run(suite: str | Suite = "quick", out: str | Path = "runs/quick", device: str = "cpu",
        scenarios=None, backbones=None, defenses=None, attacks=None, seeds=None, scenario_args=None, overrides=None,
        data_root: str | Path | None = None, download: bool = False, cache_dir: str | Path | None = None,
        progress: bool | None = None, retry_failed: bool = True, latency_repeats: int = 20,
        only: Iterable[str] | None = None, executor: str = "local", workers: int | None = None,
        ray_address: str | None = None, plugins: Iterable[str] = (), threads: int | None = None) -> RunSummary:
    """Run a suite and return its summary (the Python API behind ``splitbench run``).

    ``only`` restricts the run to the cells with these record file names (as a manifest lists them).
    ``executor`` is ``local`` (default: in this process, so a caller can step into it), ``auto`` (the CLI's
    default: single-threaded CPU worker processes, one per core), ``gpus``, ``processes`` (``workers`` CPU
    processes) or ``ray``
    (``ray_address`` of an existing cluster, or a local one); ``plugins`` are plugin files workers load;
    ``threads`` is the torch thread count of each worker (see :func:`benchmark.engine.executors.make_executor`).

    Example:
        >>> summary = run("quick", out="runs/quick", defenses=["no_pruning"], attacks=["attribute_inference"])
        ... # doctest: +SKIP
    """
    from benchmark.suites.narrow import restrict

    s = suite if isinstance(suite, Suite) else load_suite(suite)
    if latency_repeats < 1:
        raise SplitbenchError(f"latency_repeats must be at least 1, got {latency_repeats}")
    s = restrict(s, scenarios, backbones, defenses, attacks, seeds, scenario_args, overrides)
    opts = RunOptions(out=Path(out), device=device,
                      data=DataOptions(Path(data_root) if data_root else None, download),
                      cache_dir=Path(cache_dir) if cache_dir else None, progress=progress,
                      retry_failed=retry_failed, latency_repeats=latency_repeats,
                      only=None if only is None else frozenset(only), plugins=tuple(str(p) for p in plugins))
    from benchmark.engine.executors import make_executor

    ex = make_executor(executor, workers, ray_address, threads)  # bad choices fail here, before anything is written
    return Runner(s, opts).run(ex)
