"""Suites: the built-in suite files (``*.yaml`` here), their data model, parsing, expansion into cells and narrowing
from the command line (:mod:`~benchmark.suites.suite`), and the configuration of attack tuning
(:mod:`~benchmark.suites.tuning`)."""
