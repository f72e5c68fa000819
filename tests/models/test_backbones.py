"""Cutting timm models into client and server: server(client(x)) must equal the unsplit model."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.models.backbones import BackboneSpec, build_split, create_model, split_points

# (model, split) pairs; the first five are the backbones the harness promises to support.
CASES = [
    ("resnet18", "layer1"), ("resnet18", "layer3"),
    ("mobilenetv3_small_100", "blocks.1"),
    ("efficientnet_b0", "blocks.2"),
    ("convnext_atto", "stages.1"),
    ("vit_tiny_patch16_224", "blocks.3"),
    ("test_resnet", "act1"), ("test_resnet", "layer1"), ("test_efficientnet", "blocks.1"),
    ("test_vit", "blocks.2"), ("test_convnext", "stages.0"),
    ("unsplit_lenet", "relu1"), ("unsplit_lenet", "conv2"), ("unsplit_lenet", "fc1"),
]


@pytest.mark.parametrize("name, split", CASES, ids=[f"{n}@{s}" for n, s in CASES])
def test_split_reproduces_the_model(name, split):
    torch.manual_seed(0)
    sm = build_split(BackboneSpec(name, split), num_classes=5, image_size=32, seed=3).eval()
    full = create_model(name, num_classes=5, image_size=32, seed=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = sm.client(x)
        assert torch.equal(sm.server(z), full(x))
    assert z.shape[0] == 2


def test_client_and_server_share_no_parameters():
    sm = build_split(BackboneSpec("test_resnet", "layer1"), 2, 32)
    client = {id(p) for p in sm.client.parameters()}
    server = {id(p) for p in sm.server.parameters()}
    assert client and server and not client & server


def test_split_points_come_from_feature_info():
    assert split_points("resnet18") == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_unknown_split_point_is_a_clear_error():
    with pytest.raises(SplitbenchError, match=r"backbone 'resnet18' has no split point 'layer9'.*layer1"):
        build_split(BackboneSpec("resnet18", "layer9"), 2, 32)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(SplitbenchError, match=r"unknown backbone 'resnet1800'; did you mean"):
        build_split(BackboneSpec("resnet1800", "layer1"), 2, 32)


def test_seeded_creation_is_deterministic():
    a = build_split(BackboneSpec("test_vit", "blocks.0"), 2, 32, seed=7)
    b = build_split(BackboneSpec("test_vit", "blocks.0"), 2, 32, seed=7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_unsplit_lenet_splits_at_the_papers_depths():
    """UnSplit's depth k is the client's last layer (counted from 0): conv1, ReLU (depth 1) ... fc1 (depth 6)."""
    from benchmark.models.paper_nets import UNSPLIT_DEPTHS

    assert split_points("unsplit_lenet") == [UNSPLIT_DEPTHS[k] for k in range(1, 7)]
    shapes = {}
    for depth, point in UNSPLIT_DEPTHS.items():
        split = build_split(BackboneSpec("unsplit_lenet", point), num_classes=10, image_size=28)
        shapes[depth] = tuple(split.client(torch.zeros(1, 3, 28, 28)).shape[1:])
    assert shapes == {1: (8, 24, 24), 2: (8, 12, 12), 3: (16, 8, 8), 4: (16, 8, 8), 5: (16, 4, 4), 6: (120,)}
    model = create_model("unsplit_lenet", num_classes=10, image_size=28)
    assert sum(p.numel() for p in model.parameters()) == (3 * 25 * 8 + 8) + (8 * 25 * 16 + 16) + (256 * 120 + 120) \
        + (120 * 84 + 84) + (84 * 10 + 10)
    with pytest.raises(SplitbenchError, match="no pretrained weights"):
        create_model("unsplit_lenet", num_classes=10, image_size=28, pretrained=True)
