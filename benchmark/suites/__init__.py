"""Suites: the built-in suite files (``*.yaml`` here) and what reads them: the data model a suite file resolves to
and the cells it expands into (:mod:`~benchmark.suites.model`), parsing and checking a suite file and writing it
back (:mod:`~benchmark.suites.parse`, whose docstring is the schema), expansion into cells
(:mod:`~benchmark.suites.expand`), narrowing and overriding from the command line (:mod:`~benchmark.suites.narrow`),
and the configuration of attack tuning (:mod:`~benchmark.suites.tuning`)."""

from benchmark.suites.expand import expand
from benchmark.suites.model import (
    ADMISSION_RULES,
    AttackEntry,
    Cell,
    DefenseEntry,
    DeploymentSpec,
    Holdout,
    ModelSpec,
    ScenarioEntry,
    Suite,
)
from benchmark.suites.narrow import apply_overrides, restrict
from benchmark.suites.parse import (
    AUX_FRACTION_KEYS,
    ENTRY_KEYS,
    EVAL_KINDS,
    PAPER_KEYS,
    PAPER_NUMBER_KEYS,
    SUITE_KEYS,
    check_admission,
    defense_entries,
    load_suite,
    parse_aux_fraction,
    parse_deployment,
    parse_eval_counts,
    parse_holdout,
    parse_preregistered,
    parse_suite,
    suite_to_raw,
)

__all__ = ["ADMISSION_RULES", "AUX_FRACTION_KEYS", "ENTRY_KEYS", "EVAL_KINDS", "PAPER_KEYS", "PAPER_NUMBER_KEYS",
           "SUITE_KEYS", "AttackEntry", "Cell", "DefenseEntry", "DeploymentSpec", "Holdout", "ModelSpec",
           "ScenarioEntry", "Suite", "apply_overrides", "check_admission", "defense_entries", "expand", "load_suite",
           "parse_aux_fraction", "parse_deployment", "parse_eval_counts", "parse_holdout", "parse_preregistered",
           "parse_suite", "restrict", "suite_to_raw"]
