"""Data: the data model every layer shares (:mod:`~benchmark.data.types`: splits, scenario info, the
``Scenario`` contract) and the built-in scenarios (:mod:`~benchmark.data.scenarios`, registered on import).

The names of :mod:`benchmark.data.types` are available here too (``from benchmark.data import Split``).
"""

from .types import (  # noqa: F401  (the data model, re-exported for plugins)
    DataOptions,
    Scenario,
    ScenarioConfig,
    ScenarioData,
    ScenarioInfo,
    Split,
    TensorSplit,
    resize_uint8,
)
