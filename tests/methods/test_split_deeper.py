"""split_deeper: no_pruning cut deeper. At depth 0 it is no_pruning; deeper, it releases the next stage."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import NotApplicable
from benchmark.core.registry import DEFENSES
from benchmark.models.backbones import BackboneSpec
from tests.support.helpers import assert_trains_no_pruning, fitted_frozen, smoke_defense

SPEC = BackboneSpec("test_resnet", "layer1")


def test_depth_zero_trains_exactly_no_pruning(tiny_data):
    models = assert_trains_no_pruning("split_deeper", SPEC, tiny_data, seed=3, extra_depth=0)
    assert models["split_deeper"].state_dict().keys() == models["no_pruning"].state_dict().keys()


def test_a_deeper_cut_releases_the_next_stage_and_its_tail_reads_it(tiny_data):
    d = fitted_frozen("split_deeper", SPEC, tiny_data)
    assert d.tail_spec() == BackboneSpec("test_resnet", "layer2")
    x = tiny_data.info.normalize(tiny_data.eval.images[:4])
    with torch.no_grad():
        z = d.release(x)
        shallow = DEFENSES.get("no_pruning")(DEFENSES.get("no_pruning").Config(), SPEC, tiny_data.info).client(x)
        tail = d.fresh_tail(tiny_data.info.num_task_classes, seed=1)
        assert tail(z).shape == (4, tiny_data.info.num_task_classes)
    assert z.shape[-1] < shallow.shape[-1]  # layer2 halves the map of layer1


def test_past_the_last_stage_is_not_applicable(tiny_data):
    with pytest.raises(NotApplicable, match="split_deeper: backbone 'test_resnet' has no stage 9 past 'layer1'"):
        smoke_defense(DEFENSES.get("split_deeper"), SPEC, tiny_data.info, extra_depth=9)


def test_negative_depth_is_refused():
    with pytest.raises(ValueError, match="extra_depth must be >= 0"):
        DEFENSES.get("split_deeper").Config(extra_depth=-1).validate()
