"""Whole-block removal: drop a CSP block's inner bottleneck where that costs less accuracy per unit of
the goal (a MAC, a parameter, a predicted millisecond) than thinning channels does.

C2f (and C3k2) concatenates its two halves and every inner block's output before its last conv, cv2.
Replacing inner block i by the identity makes its chunk of that concatenation a copy of the chunk before
it, so cv2's weights for chunk i can be added onto that chunk's and chunk i dropped: the model computes
exactly what it computed with the block replaced by the identity, which is the perturbation whose cost
`OutputDistortion` measures. The removed block stays in `m` as `nn.Identity` (`C2fSplit` skips it), so
every other module keeps its name and its pairing with the unpruned teacher in reconstruction.

Only blocks whose output is as wide as their input can become the identity (residual bottlenecks, and the
neck's plain ones while pruning keeps them square); attention blocks are kept whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.modules import C2fSplit
from pipeline.pruning.selection import OutputDistortion, layer_index


@dataclass(eq=False)
class BlockPlan:
    """An inner block of a C2fSplit that may go, and the head distortion its removal was measured at."""

    name: str  # e.g. "model.4.m.1"
    owner: C2fSplit
    index: int
    distortion: float

    @property
    def block(self) -> nn.Module:
        return self.owner.m[self.index]

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.block.modules() if isinstance(m, nn.Conv2d)]

    @property
    def reader(self) -> nn.Conv2d:
        """The owner's last convolution, which reads the block's output in its concatenation."""
        conv = self.owner.cv2.conv
        assert isinstance(conv, nn.Conv2d)
        return conv


def candidate_blocks(model: nn.Module, ignored: Iterable[nn.Module]) -> list[tuple[str, C2fSplit, int]]:
    """(name, owner, index) of every inner block still present, outside the ignored layers."""
    # convolutions, not every module: Ultralytics' Conv blocks share one SiLU instance
    kept_whole = {m for layer in ignored for m in layer.modules() if isinstance(m, nn.Conv2d)}
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, C2fSplit):
            continue
        for i, block in enumerate(module.m):
            if isinstance(block, nn.Identity) or any(m in kept_whole for m in block.modules()):
                continue
            found.append((f"{name}.m.{i}", module, i))
    return found


@torch.no_grad()
def measure_blocks(
    model: nn.Module,
    ignored: Iterable[nn.Module],
    distortion: OutputDistortion,
    example: torch.Tensor,
) -> list[BlockPlan]:
    """The head distortion of replacing each candidate block by the identity, one at a time.

    `example` is one input the shapes are read from: a block whose output is not as wide as its input
    cannot become the identity and is left out.
    """
    candidates = candidate_blocks(model, ignored)
    square: dict[nn.Module, bool] = {}

    def record(module, args, out):
        square[module] = isinstance(out, torch.Tensor) and args[0].shape == out.shape

    handles = [owner.m[i].register_forward_hook(record) for _, owner, i in candidates]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    plans = []
    for name, owner, i in candidates:
        if not square.get(owner.m[i]):
            continue
        handle = owner.m[i].register_forward_hook(lambda module, args, out: args[0])
        try:
            cost = max(distortion.from_layer(layer_index(name)), 0.0)
        finally:
            handle.remove()
        plans.append(BlockPlan(name, owner, i, cost))
    return plans


@torch.no_grad()
def remove_block(owner: C2fSplit, index: int) -> None:
    """Replace `owner.m[index]` by the identity and fold its chunk of cv2's input into the chunk before.

    The chunks of cv2's input are cv0's and cv1's outputs, then each remaining block's output; the block
    reads the last chunk before its own.
    """
    widths = [owner.cv0.conv.out_channels, owner.cv1.conv.out_channels]
    position = None
    for i, block in enumerate(owner.m):
        if isinstance(block, nn.Identity):
            continue
        if i == index:
            position = len(widths)
        widths.append(_output_width(block))
    if position is None:
        raise ValueError(f"block {index} of this C2fSplit is already removed")
    starts = [sum(widths[:k]) for k in range(len(widths))]
    ours = slice(starts[position], starts[position] + widths[position])
    before = slice(starts[position - 1], starts[position - 1] + widths[position - 1])
    conv = owner.cv2.conv
    weight = conv.weight.data.clone()
    weight[:, before] += weight[:, ours]
    keep = torch.cat([torch.arange(0, ours.start), torch.arange(ours.stop, weight.shape[1])])
    conv.weight = nn.Parameter(weight[:, keep].contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = conv.weight.shape[1]
    owner.m[index] = nn.Identity()


def _output_width(block: nn.Module) -> int:
    """An inner block's output width: its last convolution's (cv3 in C3k, cv2 in a bottleneck); a
    sequence's last block's; a residual attention block's input width."""
    if isinstance(block, nn.Sequential):
        return _output_width(block[-1])
    for last in ("cv3", "cv2"):
        if hasattr(block, last):
            return getattr(block, last).conv.out_channels
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels
