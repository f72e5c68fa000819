"""The method author's kit: building blocks defenses and attacks share, none of which the harness needs to run.

- :mod:`~benchmark.kit.channels` — channel masks and their bookkeeping;
- :mod:`~benchmark.kit.nets` — small decoders and heads;
- :mod:`~benchmark.kit.chains` — prunable channel chains of a traced client, cut physically;
- :mod:`~benchmark.kit.bounds` — interval bounds through a traced network (data-free pruning decisions);
- :mod:`~benchmark.kit.cost` — wall time, MACs and the parameters that run (the harness measures with it too).
"""
