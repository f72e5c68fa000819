"""Tests of suite files, their expansion and narrowing, and attack tuning."""
