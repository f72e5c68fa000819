"""Hand-made run directories for leaderboard tests: records and per-sample outcomes written by the real writers,
with figures chosen exactly (a fraction ``a`` of ``n`` samples correct, a constant SSIM, ...)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from benchmark.store.manifest import write_manifest
from benchmark.store.records import write_outcomes, write_record

N = 200
KINDS = {"attr": "attribute", "recon": "reconstruction", "xfer": "transfer", "wb_recon": "reconstruction",
         "free_recon": "reconstruction", "model": "model"}  # model: a model cell (admission only, no attack)
WHITE_BOX = {"wb_recon"}
DATA_FREE = {"free_recon"}  # declares no access at all (releases and architecture only)


def hits(rate: float, n: int = N, offset: int = 0) -> np.ndarray:
    """0/1 outcomes with exactly round(rate * n) ones, spread over the samples."""
    k = int(round(rate * n))
    out = np.zeros(n, dtype=np.float32)
    out[(np.arange(k) * n // max(k, 1) + offset) % n] = 1.0
    if k and out.sum() != k:  # collisions from the offset: fill in order
        out[:] = 0
        out[:k] = 1
    return out


@dataclasses.dataclass
class FakeCell:
    defense: str
    knob: float
    attack: str
    value: float = 0.5          # attr: accuracy; recon: SSIM; xfer: adaptive unintended accuracy
    utility: float = 0.9
    val_utility: float | None = None
    seed: int = 0
    status: str = "ok"
    white_box_client: bool = True
    more_private: str = "higher"
    scenario: str = "s"
    baseline_ssim: float = 0.3
    n: int = N
    holdout: float | None = None  # the same kind of figure on the attacker's hold-out (None: no hold-out outcomes)
    aux_fraction: float = 1.0  # the attacker-knowledge axis: the share of aux the attack trained with
    macs: float = 50.0  # the client's MACs on the track
    deployed_macs: float | None = None  # the client's MACs as deployed on "real@l1" (None: no deployment)
    config: dict = dataclasses.field(default_factory=dict)  # the defense's config as records store it
    fit_seconds: float | None = None  # the model's training time, as every cell of it records it
    attack_seconds: float | None = None
    tuning_seconds: float | None = None  # when the suite tuned the attack on aux
    fit_cpu_seconds: float | None = None  # the same three on the worker's CPU clock
    attack_cpu_seconds: float | None = None
    tuning_cpu_seconds: float | None = None

    @property
    def kind(self) -> str:
        return KINDS[self.attack]


def task_labels(n: int) -> np.ndarray:
    return (np.arange(n) % 2).astype(np.int64)


def sensitive_labels(n: int) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.int64)  # floor from the task label: 0.2; majority rate 0.1


def attack_outcomes(c: FakeCell, value: float, n: int) -> dict[str, np.ndarray]:
    """Per-sample outcomes of ``c``'s attack kind whose headline figure is exactly ``value``."""
    ids = np.arange(n)
    if c.kind == "attribute":
        return {"sample": ids, "correct": hits(value, n), "task": task_labels(n), "sensitive": sensitive_labels(n)}
    if c.kind == "reconstruction":
        spread = np.where(ids % 2 == 0, 0.2, -0.2) * min(1.0, value, 1 - value) / 0.5  # mean exactly value
        return {"sample": ids, "ssim": (value + spread).astype(np.float32), "psnr": np.full(n, 20.0, np.float32),
                "ssim_baseline": np.full(n, c.baseline_ssim, np.float32),
                "psnr_baseline": np.full(n, 12.0, np.float32)}
    return {"sample": ids, "task": task_labels(n), "utility": hits(c.utility, n),
            "correct/m": hits(min(1.0, value + 0.05), n), "adaptive_correct/m": hits(value, n)}


def _requires(attack: str) -> list[str]:
    return ["white_box_client"] if attack in WHITE_BOX else [] if attack in DATA_FREE else ["aux_pairs"]


def write_cell(out: Path, c: FakeCell) -> str:
    aux = "" if c.aux_fraction == 1.0 else f"__aux{c.aux_fraction:g}"
    variant = "".join(f"_{k}-{v}" for k, v in sorted(c.config.items()))
    name = f"{c.scenario}__{c.defense}{variant}@{c.knob:g}__{c.attack}{aux}__s{c.seed}.json"
    cfg = {"scenario": {"name": c.scenario, "config": {}}, "backbone": {"name": "b", "split": "l1"},
           "defense": {"name": c.defense, "knob": "k", "knob_value": c.knob, "more_private": c.more_private,
                       "white_box_client": c.white_box_client, "stochastic": False, "config": dict(c.config)},
           "attack": {"name": c.attack, "label": c.attack, "kind": c.kind,
                      "requires": _requires(c.attack), "config": {}},
           "eval": {"count": None, "draws": 1, **({"aux_fraction": c.aux_fraction} if c.aux_fraction != 1.0 else {})},
           "seed": c.seed, "suite": "fake"}
    if c.attack == "model":
        del cfg["attack"]
    n = c.n
    outcomes = {"model/utility": hits(c.utility, n), "model/val_utility": hits(c.val_utility if c.val_utility
                                                                                is not None else c.utility, n),
                "model/task": task_labels(n)}
    if c.status == "ok" and c.attack != "model":
        outcomes.update({f"attack/{k}": v for k, v in attack_outcomes(c, c.value, n).items()})
        if c.holdout is not None:
            outcomes.update({f"holdout/{k}": v for k, v in attack_outcomes(c, c.holdout, 50).items()})
    metrics = {"utility": float(outcomes["model/utility"].mean()), "client_ms_b1_p50": 1.0, "payload_bytes": 10.0,
               "client_params": 5.0, "client_macs": c.macs, "client_ms_bB_p50": 0.1}
    times = (("fit_seconds", c.fit_seconds), ("attack_seconds", c.attack_seconds), ("tuning_seconds", c.tuning_seconds),
             ("fit_cpu_seconds", c.fit_cpu_seconds), ("attack_cpu_seconds", c.attack_cpu_seconds),
             ("tuning_cpu_seconds", c.tuning_cpu_seconds))
    metrics.update({k: v for k, v in times if v is not None and (k.startswith("fit_") or c.attack != "model")})
    if c.deployed_macs is not None:
        metrics.update({"deployed/real@l1/client_macs": c.deployed_macs, "deployed/real@l1/client_params": 7.0,
                        "deployed/real@l1/client_ms_b1_p50": 2.0})
    rec = {"status": c.status, "reason": None if c.status == "ok" else f"{c.status} on purpose",
           "cell_id": name[:-5], "config": cfg, "config_hash": name,
           "model_hash": f"m-{c.scenario}-{c.defense}-{c.knob:g}-{c.seed}", "metrics": metrics, "budget": {},
           "samples": {}, "env": {"device": "cpu"}}
    rec["outcomes"] = write_outcomes(out / "records" / (name[:-5] + ".npz"), outcomes)
    write_record(out / "records" / name, rec)
    return name


def write_run(out: Path, cells: list[FakeCell], reference: str = "ref", budget: float = 0.02,
              bootstrap: int = 300, **presentation) -> str:
    """Write the cells and a manifest; ``presentation`` adds e.g. ``admission`` and ``preregistered``."""
    names = [write_cell(out, c) for c in cells]
    return write_manifest(out, "fake", "fake.yaml", names,
                          {"reference": reference, "utility_budget": budget, "bootstrap": bootstrap,
                           **presentation}, {}, {})
