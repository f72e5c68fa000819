"""The bottom layer: what every other layer stands on, importing nothing of the project but itself.

- :mod:`~benchmark.core.errors` — the one error type a user sees as one line, and ``did_you_mean``;
- :mod:`~benchmark.core.io` — atomic writes, checksums, the JSON codec for NaN and +-inf;
- :mod:`~benchmark.core.progress` — whether long work draws progress bars;
- :mod:`~benchmark.core.fields` — typed, documented config fields (``field``), their building and hashing;
- :mod:`~benchmark.core.registry` — the registries of defenses, attacks, scenarios and suites, filled by name;
- :mod:`~benchmark.core.discovery` — "adding a method is adding one file".
"""
