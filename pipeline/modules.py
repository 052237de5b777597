"""Model surgery that saved checkpoints import by this stable path.

Torch-Pruning's dependency graph cannot prune through C2f's `cv1(x).chunk(2, 1)`: the two halves are one
tensor, so removing a channel of one half would shift the other. `C2fSplit` computes the halves with two
1x1 convolutions whose weights are exactly the halves of `cv1`, so each half is its own prunable group.
YOLO11's and YOLO26's C3k2 is a C2f with other inner blocks (C3k, or a bottleneck plus attention) and is
split the same way; C2PSA's `cv1(x).split((c, c))` becomes `C2PSASplit`.
Pruned checkpoints pickle `pipeline.modules.C2fSplit` / `C2PSASplit`; they load with
`ultralytics.YOLO(path)` wherever edgepipe is installed.
"""

from __future__ import annotations

from copy import deepcopy

import torch
from torch import nn

# Attributes Ultralytics' BaseModel._predict_once and model.info() read on every layer.
_LAYER_ATTRS = ("i", "f", "type", "np")


class _FirstConvSplit(nn.Module):
    """A CSP block whose first conv is split in two (cv0, cv1), then its blocks `m` and last conv cv2."""

    def __init__(self, cv0: nn.Module, cv1: nn.Module, cv2: nn.Module, m: nn.Module):
        super().__init__()
        self.cv0 = cv0
        self.cv1 = cv1
        self.cv2 = cv2
        self.m = m

    @classmethod
    def _split(cls, block: nn.Module, half: int):
        """The block with `block.cv1`'s first `half` output channels in cv0 and the next `half` in cv1,
        keeping the attributes Ultralytics reads on every layer."""
        split = cls(
            _conv_slice(block.cv1, slice(0, half)),
            _conv_slice(block.cv1, slice(half, 2 * half)),
            block.cv2,
            block.m,
        )
        for name in _LAYER_ATTRS:
            if hasattr(block, name):
                setattr(split, name, getattr(block, name))
        return split


class C2fSplit(_FirstConvSplit):
    """C2f (CSP bottleneck, two convolutions) with its first conv split in two: cv0 -> y0, cv1 -> y1.

    A block removed by pruning stays in `m` as `nn.Identity` (so the other blocks keep their names) and
    is skipped: it adds no copy of its input to cv2's concatenation.
    """

    m: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(block(y[-1]) for block in self.m if not isinstance(block, nn.Identity))
        return self.cv2(torch.cat(y, 1))

    @classmethod
    def from_c2f(cls, c2f: nn.Module) -> C2fSplit:
        """An equivalent module: cv0/cv1 hold the first/second half of `c2f.cv1`'s output channels."""
        return cls._split(c2f, c2f.cv1.conv.out_channels // 2)


class C2PSASplit(_FirstConvSplit):
    """C2PSA (attention block) with its first conv split in two: cv0 -> a (passed through), cv1 -> b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(torch.cat((self.cv0(x), self.m(self.cv1(x))), 1))

    @classmethod
    def from_c2psa(cls, c2psa: nn.Module) -> C2PSASplit:
        """An equivalent module: cv0/cv1 hold the first/second half of `c2psa.cv1`'s output channels."""
        return cls._split(c2psa, c2psa.c)


def _conv_slice(conv: nn.Module, channels: slice) -> nn.Module:
    """A copy of an Ultralytics Conv (conv, optional bn, act) keeping only the given output channels."""
    part = deepcopy(conv)
    layer = part.conv
    layer.weight = nn.Parameter(conv.conv.weight.data[channels].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(conv.conv.bias.data[channels].clone())
    layer.out_channels = layer.weight.shape[0]
    bn = getattr(part, "bn", None)
    if bn is not None:
        bn.weight = nn.Parameter(conv.bn.weight.data[channels].clone())
        bn.bias = nn.Parameter(conv.bn.bias.data[channels].clone())
        bn.running_mean = conv.bn.running_mean[channels].clone()
        bn.running_var = conv.bn.running_var[channels].clone()
        bn.num_features = layer.out_channels
    return part


def split_c2f(model: nn.Module) -> nn.Module:
    """Replace every C2f and C3k2 by an equivalent C2fSplit and every C2PSA by a C2PSASplit, in place;
    returns `model`."""
    from ultralytics.nn.modules.block import C2PSA, C2f, C3k2

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in (C2f, C3k2):
                setattr(parent, name, C2fSplit.from_c2f(child))
            elif type(child) is C2PSA:
                setattr(parent, name, C2PSASplit.from_c2psa(child))
    return model
