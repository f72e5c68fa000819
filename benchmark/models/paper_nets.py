"""Small networks of papers that timm does not have, registered as timm models so that a suite names them like
any other backbone (``unsplit_lenet@relu1``) and :mod:`~benchmark.models.backbones` cuts them the same way.

Why a timm ``@register_model`` rather than a second model registry: every path that creates a network
(:func:`~benchmark.models.backbones.create_model`, the defenses' ``build``, attackers' fresh tails and substitute
clients, ``splitbench list backbones``) goes through timm's registry by name, so one registration makes the net
a backbone everywhere, with nothing in the harness naming it. The module is imported where timm is
(:func:`benchmark.models.backbones._timm`), not when :mod:`benchmark.models` is, so importing the package stays
as cheap as before.

``unsplit_lenet``: the LeNet-style network of UnSplit (Erdoğan, Küpçü, Çiçek, WPES'22) for MNIST and
Fashion-MNIST, as in the official code's model for those data sets: conv 5x5 to 8 channels (no padding), ReLU,
2x2 max pool, conv 5x5 to 16 channels, ReLU, 2x2 max pool, then fully connected 256 -> 120, ReLU, 120 -> 84,
ReLU, 84 -> classes (at 28 px; the first linear layer's width follows the image size). Every layer is its own
module, so every depth the paper splits at is a split point. The paper's "split depth" k (1 to 6) is the index,
counted from 0, of the last layer the client runs in that list of layers, so:

======  ===========  ===============================  =====================
depth   split point  client runs                      release (28 px)
======  ===========  ===============================  =====================
1       ``relu1``    conv1, ReLU                      8 x 24 x 24
2       ``pool1``    ... max pool                     8 x 12 x 12
3       ``conv2``    ... conv2 (before its ReLU)      16 x 8 x 8
4       ``relu2``    ... ReLU                         16 x 8 x 8
5       ``pool2``    ... max pool                     16 x 4 x 4
6       ``fc1``      ... flatten, fc1 (before ReLU)   120
======  ===========  ===============================  =====================

Where it differs from the code: the input has ``in_chans`` channels (3 in splitbench, whose grayscale scenarios
store three identical channels; the first convolution then sums three copies, the same family of functions as
one channel), and PyTorch's default initialisation is drawn from the harness's seed.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import Tensor, nn

#: split point of each of the paper's split depths (1-based, as UnSplit's tables and code count them)
UNSPLIT_DEPTHS = {1: "relu1", 2: "pool1", 3: "conv2", 4: "relu2", 5: "pool2", 6: "fc1"}


class UnSplitLeNet(nn.Module):
    """conv(5)-8, ReLU, maxpool 2, conv(5)-16, ReLU, maxpool 2, fc 120, ReLU, fc 84, ReLU, fc classes."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28):
        super().__init__()
        side = ((img_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"unsplit_lenet needs images of at least 16 px (two 5x5 convs, two 2x2 pools), "
                             f"got {img_size}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 8, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)
        reduction = img_size  # the last split releases a vector: one value per image side
        self.feature_info = [
            {"module": "relu1", "num_chs": 8, "reduction": 1},
            {"module": "pool1", "num_chs": 8, "reduction": 2},
            {"module": "conv2", "num_chs": 16, "reduction": 2},
            {"module": "relu2", "num_chs": 16, "reduction": 2},
            {"module": "pool2", "num_chs": 16, "reduction": 4},
            {"module": "fc1", "num_chs": 120, "reduction": reduction},
        ]

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.fc3(self.relu4(self.fc2(x)))


@register_model
def unsplit_lenet(pretrained: bool = False, **kwargs: Any) -> UnSplitLeNet:
    """UnSplit's LeNet-style MNIST / Fashion-MNIST network (no pretrained weights exist)."""
    if pretrained:
        raise ValueError("unsplit_lenet has no pretrained weights")
    for unused in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "drop_rate", "drop_path_rate"):
        kwargs.pop(unused, None)
    return UnSplitLeNet(**kwargs)
