"""Tests of the splitbench command and the README's examples."""
