"""Tests of split backbones and the trainer."""
