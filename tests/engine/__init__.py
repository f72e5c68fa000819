"""Tests of the runner, the executors, evaluation and the hardware measurements."""
