"""A suite expanded into its trained models, each with its attack cells, in the order they run."""

from __future__ import annotations

from benchmark.core.registry import ATTACKS, DEFENSES
from benchmark.suites.model import Cell, ModelSpec, Suite


def expand(suite: Suite) -> list[tuple[ModelSpec, list[Cell]]]:
    """The suite's models, each with its attack cells, in a stable order (reference defense first; a setting only at
    the seeds :meth:`Suite.seeds_of` gives it); then the models of its admission seeds (and the settle rule's,
    :meth:`Suite.admission_plan`), each with one model cell (trained and validated, not attacked)."""
    plan = []
    defenses = sorted(suite.defenses, key=lambda d: d.name != suite.reference)
    runs_at = [set(suite.seeds_of(d)) for d in defenses]
    for scenario in suite.scenarios:
        for backbone in suite.backbones:
            for seed in suite.seeds:
                for d, at in zip(defenses, runs_at):
                    if seed not in at:
                        continue
                    m = ModelSpec(suite.name, scenario, backbone, d, seed)
                    draws = suite.release_draws if DEFENSES.get(d.name).stochastic_release else 1
                    plan.append((m, [Cell(m, a, suite.eval_count(ATTACKS.get(a.name).kind.value), draws,
                                          suite.tuning.get(a.label), suite.holdout, f)
                                     for a in suite.attacks if a.runs_on(backbone)
                                     for f in (1.0, *suite.aux_fractions.get(a.label, ()))]))
    settings = suite.admission_plan()
    every = sorted({s for _, seeds in settings for s in seeds})
    for scenario in suite.scenarios:
        for backbone in suite.backbones:
            for seed in every:
                for d, seeds in settings:
                    if seed in seeds:
                        m = ModelSpec(suite.name, scenario, backbone, d, seed)
                        plan.append((m, [Cell(m, None)]))
    return plan
