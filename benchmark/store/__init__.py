"""Storing: result records and their per-sample outcomes (:mod:`~benchmark.store.records`), the manifests that
say which cells one run expanded to (:mod:`~benchmark.store.manifest`), and the trained-model cache
(:mod:`~benchmark.store.cache`)."""
