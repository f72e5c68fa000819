"""Shared fixtures: tiny data and backbones so that the whole suite runs on a laptop CPU."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("SPLITBENCH_PROGRESS", "0")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Never touch the user's data directory from tests."""
    monkeypatch.setenv("SPLITBENCH_DATA", str(tmp_path_factory.getbasetemp() / "data"))


@pytest.fixture(scope="session")
def tiny_data():
    """200 digits at 32 px: 120 train / 40 aux / 40 eval."""
    from benchmark.data.scenarios.digits import Digits, DigitsConfig

    return Digits(DigitsConfig(max_samples=200)).load()


@pytest.fixture(scope="session")
def tiny_backbone():
    from benchmark.models.backbones import BackboneSpec

    return BackboneSpec("test_resnet", "layer1")


@pytest.fixture
def trainer():
    from benchmark.models.trainer import Trainer

    return Trainer("cpu", seed=0, progress=False)
