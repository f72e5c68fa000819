"""Tests of the method author's kit: chain pruning and interval bounds."""
