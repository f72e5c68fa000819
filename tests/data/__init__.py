"""Tests of the data layer: the scenarios and their on-disk formats."""
