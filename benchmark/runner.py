"""The runner: expand a suite, train each defended model once (cached), attack it, write one record per cell.

Resume is free: a cell whose record exists with status ok or not_applicable is skipped (failed cells are
retried). A model whose cells are all done is not even loaded. A failing model or attack is recorded as
``failed`` with its reason and the run goes on; :class:`RunSummary` counts what happened.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from .cache import ModelCache
from .config import config_hash
from .data import DataOptions, ScenarioData
from .errors import SplitbenchError
from .interfaces import AttackKind, AttackOutput, Defense, NotApplicable, Target
from .metrics import (
    accuracy,
    chance_rate,
    count_macs,
    count_params_used,
    latency_ms,
    reconstruction_scores,
    suppression_ratio,
)
from .records import atomic_write_text, environment, read_record, write_record
from .registry import ATTACKS, DEFENSES, SCENARIOS
from .suite import Cell, ModelSpec, Suite, expand, load_suite
from .trainer import Trainer

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


@dataclasses.dataclass
class RunSummary:
    out: Path
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    not_applicable: int = 0
    models_trained: int = 0
    models_loaded: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        return (f"{self.total} cells: {self.ok} ok, {self.not_applicable} not applicable, {self.failed} failed, "
                f"{self.skipped} already done; {self.models_trained} models trained, {self.models_loaded} loaded "
                f"from cache; {self.seconds:.1f} s")


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def _stable_seed(*parts: Any) -> int:
    return int(config_hash(list(parts), 8), 16) % (2 ** 31)


class Runner:
    """Runs one suite into one output directory."""

    def __init__(self, suite: Suite, options: RunOptions):
        self.suite = suite
        self.opt = options
        self.out = Path(options.out)
        self.cache = ModelCache(options.cache_dir or self.out / "cache")
        self.device = torch.device(options.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SplitbenchError("--device cuda was asked for but no CUDA GPU is available")
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
            log.info("loaded scenario %s: %d train / %d aux / %d eval in %.1f s", spec.scenario.name,
                     len(data.train), len(data.aux), len(data.eval), time.perf_counter() - t0)
            self._data[key] = data.to(self.device)
        return self._data[key]

    def trainer(self, seed: int) -> Trainer:
        return Trainer(self.device, seed=seed, progress=self.opt.progress)

    # -- the defended model ------------------------------------------------------------------------------------
    def defense_for(self, spec: ModelSpec, data: ScenarioData, summary: RunSummary) -> tuple[Defense, dict]:
        cls = DEFENSES.get(spec.defense.name)
        key_spec = {**spec.as_dict(), "data": data_fingerprint(data)}
        key = self.cache.key(key_spec)
        _seed_all(spec.seed)
        defense = cls(spec.defense.config, spec.backbone, data.info, spec.seed)
        if self.cache.exists("models", key):
            meta = self.cache.load_meta("models", key)
            defense.restore_structure(meta.get("structure", {}))
            self.cache.load_into("models", key, defense)
            defense.to(self.device)
            summary.models_loaded += 1
            fit_seconds = meta.get("fit_seconds", float("nan"))
        else:
            defense.to(self.device)
            t0 = time.perf_counter()
            _seed_all(spec.seed)
            defense.fit(data, self.trainer(spec.seed))
            fit_seconds = time.perf_counter() - t0
            self.cache.save("models", key, defense, {"structure": defense.structure(), "spec": key_spec,
                                                     "fit_seconds": fit_seconds})
            summary.models_trained += 1
        defense.freeze()
        metrics_name = f"{key}.{self.device.type}.metrics.json"
        metrics = self.cache.read_json("models", metrics_name)
        if metrics is None:
            metrics = self.evaluate_defense(defense, data, spec.seed)
            metrics["fit_seconds"] = fit_seconds
            self.cache.write_json("models", metrics_name, metrics)
        return defense, {"model_hash": key, "metrics": metrics}

    @torch.no_grad()
    def evaluate_defense(self, defense: Defense, data: ScenarioData, seed: int) -> dict[str, float]:
        """Utility on eval and the client's cost."""
        _seed_all(_stable_seed(seed, "utility"))
        trainer = self.trainer(seed)
        preds, payload = [], []
        for batch in data.eval.batches(trainer.eval_batch_size):
            with trainer.autocast():
                z = defense.release(batch.x)
                preds.append(defense.predict(z).float().argmax(1))
            payload.append(defense.payload_bytes(z.float()).float().cpu())
        utility = accuracy(torch.cat(preds), data.eval.task)
        x_all = data.info.normalize(data.eval.images[: self.opt.latency_batch])
        x1 = x_all[:1]
        z1 = defense.release(x1)

        def release(x: torch.Tensor) -> torch.Tensor:
            with trainer.autocast():
                return defense.release(x)

        def predict(z: torch.Tensor) -> torch.Tensor:
            with trainer.autocast():
                return defense.predict(z)

        reps = self.opt.latency_repeats
        c1 = latency_ms(release, x1, repeats=reps)
        cb = latency_ms(release, x_all, repeats=max(1, reps // 2))
        s1 = latency_ms(predict, z1, repeats=reps)
        n = len(x_all)
        return {
            "utility": utility,
            "eval_samples": len(data.eval),
            "payload_bytes": float(torch.cat(payload).mean()),
            "client_params": count_params_used(defense.release, x1, defense),
            "client_macs": count_macs(defense.release, x1),
            "client_ms_b1_p50": c1[0], "client_ms_b1_p90": c1[1],
            "client_ms_bB_p50": cb[0] / n, "client_ms_bB_p90": cb[1] / n,
            "server_ms_b1_p50": s1[0], "server_ms_b1_p90": s1[1],
            "latency_batch": n,
        }

    # -- attacks -------------------------------------------------------------------------------------------------
    def run_attack(self, cell: Cell, defense: Defense, data: ScenarioData, model_metrics: dict[str, float]
                   ) -> tuple[str, str | None, dict[str, float], dict[str, Any], dict[str, Any]]:
        cls = ATTACKS.get(cell.attack.name)
        seed = cell.model.seed
        attack = cls(cell.attack.config, seed)
        trainer = self.trainer(seed)
        target = Target(defense, data, cls.requires, trainer, model_metrics["utility"], cell.model.backbone,
                        cache=self.cache, seed=seed)
        reason = attack.applicable(target)
        if reason:
            return "not_applicable", reason, {}, {}, {}
        _seed_all(_stable_seed(seed, cell.attack.name, "attack"))
        t0 = time.perf_counter()
        try:
            output = attack.run(target, trainer)
        except NotApplicable as exc:
            return "not_applicable", str(exc), {}, {}, {}
        metrics = score_attack(cls.kind, output, data, model_metrics["utility"])
        metrics["attack_seconds"] = time.perf_counter() - t0
        metrics.update({f"attack.{k}": v for k, v in output.metrics.items()})
        samples = {"eval": int(len(output.index)), "aux": len(data.aux), "train": len(data.train)}
        return "ok", None, metrics, dict(output.budget), samples

    # -- the loop --------------------------------------------------------------------------------------------------
    def check(self, plan: list[tuple[ModelSpec, list[Cell]]]) -> None:
        """Fail fast, before any training, on split points the backbones do not have."""
        from .backbones import create_model, split_points
        from .errors import did_you_mean

        for b in {spec.backbone for spec, _ in plan}:
            points = split_points(create_model(b.name, 2, 32))
            if b.split not in points:
                raise SplitbenchError(f"backbone {b.name!r} has no split point {b.split!r}"
                                      f"{did_you_mean(b.split, points)} (expected one of: {', '.join(points)})")

    def run(self) -> RunSummary:
        t_start = time.perf_counter()
        summary = RunSummary(self.out)
        plan = expand(self.suite)
        self.check(plan)
        self._write_manifest(plan)
        n_models = len(plan)
        for i, (spec, cells) in enumerate(plan, 1):
            summary.total += len(cells)
            todo = [c for c in cells if not self._done(c)]
            summary.skipped += len(cells) - len(todo)
            label = f"[{i}/{n_models}] {spec.scenario.name} {spec.backbone.label} {spec.defense.label} seed {spec.seed}"
            if not todo:
                log.info("%s: all %d cells done, skipped", label, len(cells))
                continue
            data = self.data_for(spec)  # missing or corrupt data stops the run with a clear error
            try:
                t0 = time.perf_counter()
                defense, model = self.defense_for(spec, data, summary)
                log.info("%s: utility %.3f (%.1f s)", label, model["metrics"]["utility"], time.perf_counter() - t0)
            except Exception as exc:  # one failing model must not stop the run
                reason = f"defense failed: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", label, reason)
                for cell in todo:
                    self._write(cell, "failed", reason, {}, {}, {}, None, traceback.format_exc())
                    summary.failed += 1
                    summary.failures.append(f"{cell.file_name}: {reason}")
                continue
            for cell in todo:
                tb = None
                try:
                    status, reason, metrics, budget, samples = self.run_attack(cell, defense, data, model["metrics"])
                    bad = [k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v)]
                    if bad:
                        status, reason = "failed", f"metric(s) {bad} are NaN"
                except SplitbenchError as exc:
                    status, reason, metrics, budget, samples = "failed", str(exc), {}, {}, {}
                except Exception as exc:
                    status, reason, metrics, budget, samples = ("failed", f"{type(exc).__name__}: {exc}", {}, {}, {})
                    tb = traceback.format_exc()
                all_metrics = {**model["metrics"], **metrics}
                self._write(cell, status, reason, all_metrics, budget, samples, model["model_hash"], tb)
                setattr(summary, status, getattr(summary, status) + 1)
                if status == "failed":
                    summary.failures.append(f"{cell.file_name}: {reason}")
                    log.warning("%s %s: failed: %s", label, cell.attack.label, reason)
                else:
                    log.info("%s %s: %s", label, cell.attack.label, _brief(status, reason, metrics))
        summary.seconds = time.perf_counter() - t_start
        return summary

    def _write(self, cell: Cell, status: str, reason: str | None, metrics: dict, budget: dict, samples: dict,
               model_hash: str | None, tb: str | None) -> None:
        cfg = cell.config()
        rec = {
            "status": status,
            "reason": reason,
            "cell_id": cell.file_name[:-5],
            "config": cfg,
            "config_hash": cell.hash(),
            "model_hash": model_hash,
            "metrics": metrics,
            "budget": budget,
            "samples": samples,
            "env": self._env,
        }
        if tb:
            rec["traceback"] = tb
        write_record(self.record_path(cell), rec)

    def _write_manifest(self, plan: list) -> None:
        manifest = {
            "suite": self.suite.name,
            "source": self.suite.source,
            "reference": self.suite.reference,
            "utility_budget": self.suite.utility_budget,
            "paper": self.suite.paper,
            "cells": sum(len(c) for _, c in plan),
            "env": self._env,
        }
        atomic_write_text(self.out / "run.json", json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def _brief(status: str, reason: str | None, m: dict[str, float]) -> str:
    if status != "ok":
        return f"{status} ({reason})"
    parts = [f"leakage {m.get('leakage', float('nan')):.3f} (chance {m.get('leakage_chance', float('nan')):.3f})"]
    if "psnr" in m:
        parts.append(f"PSNR {m['psnr']:.2f} dB")
    if "suppression_ratio_max" in m:
        parts.append(f"SR {m['suppression_ratio_max']:.2f}")
    return ", ".join(parts)


def data_fingerprint(data: ScenarioData) -> str:
    """A hash of every image and label, so a cached model is never reused on different data."""
    import hashlib

    h = hashlib.sha256()
    for sp in (data.train, data.aux, data.eval):
        for t in (sp.images, sp.task, sp.sensitive):
            if t is not None:
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def score_attack(kind: AttackKind, out: AttackOutput, data: ScenarioData, utility: float) -> dict[str, float]:
    """Score an attack's predictions against eval ground truth it never saw (metrics defined in metrics.py)."""
    idx = out.index.to(data.eval.images.device).long()
    if len(idx) == 0:
        raise RuntimeError("attack returned no predictions")
    m: dict[str, float] = {}
    if kind == AttackKind.ATTRIBUTE:
        if out.attributes is None:
            raise RuntimeError("attribute attack returned no attributes")
        truth = data.eval.sensitive[idx]
        acc = accuracy(out.attributes, truth)
        chance = chance_rate(truth, data.info.num_sensitive_classes)
        m.update(attribute_accuracy=acc, attribute_chance=chance, leakage=acc, leakage_chance=chance)
    elif kind == AttackKind.RECONSTRUCTION:
        if out.images is None:
            raise RuntimeError("reconstruction attack returned no images")
        truth = data.eval.images[idx].float() / 255.0
        if tuple(out.images.shape) != tuple(truth.shape):
            raise RuntimeError(f"reconstructions have shape {tuple(out.images.shape)}, expected {tuple(truth.shape)}")
        baseline = (data.aux.images.float() / 255.0).mean(0, keepdim=True)
        m.update(reconstruction_scores(out.images.to(truth.device), truth, baseline))
        m.update(leakage=m["ssim"], leakage_chance=m["ssim_baseline"])
    elif kind == AttackKind.TRANSFER:
        if not out.task_predictions:
            raise RuntimeError("transfer attack returned no predictions")
        truth = data.eval.task[idx]
        chance = chance_rate(truth, data.info.num_task_classes)
        for prefix, preds in (("", out.task_predictions), ("adaptive_", out.extra_task_predictions)):
            if not preds:
                continue
            accs = {name: accuracy(p, truth) for name, p in preds.items()}
            for name, a in accs.items():
                m[f"{prefix}unintended_acc/{name}"] = a
            mx, mean = max(accs.values()), sum(accs.values()) / len(accs)
            m[f"{prefix}unintended_acc_max"] = mx
            m[f"{prefix}unintended_acc_mean"] = mean
            m[f"{prefix}suppression_ratio_max"] = suppression_ratio(utility, mx)
            m[f"{prefix}suppression_ratio_mean"] = suppression_ratio(utility, mean)
        m.update(unintended_chance=chance, leakage=m["unintended_acc_max"], leakage_chance=chance)
    else:  # pragma: no cover
        raise RuntimeError(f"unknown attack kind {kind}")
    return m


def run(suite: str | Suite = "quick", out: str | Path = "runs/quick", device: str = "cpu",
        scenarios=None, backbones=None, defenses=None, attacks=None, seeds=None, scenario_args=None, overrides=None,
        data_root: str | Path | None = None, download: bool = False, cache_dir: str | Path | None = None,
        progress: bool | None = None, retry_failed: bool = True, latency_repeats: int = 20) -> RunSummary:
    """Run a suite and return its summary (the Python API behind ``splitbench run``).

    Example:
        >>> summary = run("quick", out="runs/quick", defenses=["no_pruning"], attacks=["attribute_inference"])
        ... # doctest: +SKIP
    """
    from .suite import restrict

    s = suite if isinstance(suite, Suite) else load_suite(suite)
    if latency_repeats < 1:
        raise SplitbenchError(f"latency_repeats must be at least 1, got {latency_repeats}")
    s = restrict(s, scenarios, backbones, defenses, attacks, seeds, scenario_args, overrides)
    opts = RunOptions(out=Path(out), device=device,
                      data=DataOptions(Path(data_root) if data_root else None, download),
                      cache_dir=Path(cache_dir) if cache_dir else None, progress=progress,
                      retry_failed=retry_failed, latency_repeats=latency_repeats)
    return Runner(s, opts).run()
