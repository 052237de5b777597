"""Which channels may go at all: the layers never pruned and the floor each pruned layer keeps.

Both methods apply the same guards: magnitude pruning through `importance.LayerCap`, the data-aware
method through `selection.measure_groups`, and the latency model's width variants through `latency`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from pipeline.pruning.families import attention_blocks, head_branches


@dataclass(frozen=True)
class Guards:
    """No layer loses more than `max_layer_ratio` of its initial output channels nor falls below
    `min_channels` (a layer that narrow to begin with keeps all of them), and the count it keeps is a
    multiple of `round_to`."""

    max_layer_ratio: float
    min_channels: int
    round_to: int = 1

    def floor(self, initial: int) -> int:
        """The fewest channels a layer of `initial` channels may keep."""
        if initial <= self.min_channels:
            return initial
        floor = max(math.ceil(initial * (1 - self.max_layer_ratio)), self.min_channels)
        return -(-floor // self.round_to) * self.round_to

    def removable(self, size: int, initial: int) -> int:
        """How many of a layer's `size` channels (it had `initial`) may still go."""
        return max(size - self.floor(initial), 0)


def ignored_layers(model: nn.Module, protected: Iterable[int], protect_head: bool = True) -> list[nn.Module]:
    """Detect's final box/class convs and DFL, plus the protected layers (by index in model.model).

    With `protect_head`, also the conv before each final one: the final convs have no BatchNorm after
    them, so a channel removed from their input shifts the raw box and class logits and no BatchNorm
    re-estimation can absorb the shift.
    Attention blocks are kept whole (`families`).
    """
    head = model.model[-1]
    branches = head_branches(head)
    layers: list[nn.Module] = [head.dfl, *attention_blocks(model)]
    layers += [branch[-1] for branch in branches]
    if protect_head:
        layers += [branch[-2] for branch in branches]
    layers += [model.model[i] for i in protected]
    return layers
