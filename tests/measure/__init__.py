"""Tests of the metrics, the scorers and the bootstrap intervals."""
