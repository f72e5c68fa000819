"""Measuring: the metric primitives (:mod:`~benchmark.measure.metrics`), the scorers that turn an attack's answers
into leakage on one scale per attack kind (:mod:`~benchmark.measure.scoring`), and the crossed bootstrap that puts
an interval on every figure (:mod:`~benchmark.measure.intervals`)."""
