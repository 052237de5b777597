"""Importance criteria: Torch-Pruning's by name for magnitude pruning (and the gradients the Taylor
criterion reads), and the swappable per-channel cost of the data-aware method (`ChannelImportance`).

Both follow Torch-Pruning's `Importance`: one call per group returning a score per channel; the lowest
scores go first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import torch

from pipeline.pruning.guards import Guards

if TYPE_CHECKING:
    from pipeline.pruning.groups import ChannelGroup
    from pipeline.pruning.selection import ChannelStats

IMPORTANCES = ("l1", "l2", "taylor", "bn-scale")


def make_importance(name: str):
    """Torch-Pruning's group importance for `name`: l1/l2 weight norms, first-order Taylor, or BN scale."""
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "bn-scale":
        return tp.importance.BNScaleImportance()
    raise ValueError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCES)}")


def accumulate_gradients(model: torch.nn.Module, batches: Iterable[dict]) -> int:
    """Sum the detection loss gradients of `batches` into the parameters' `.grad`; returns the batch count.

    The model stays in eval mode so BatchNorm statistics are left untouched. Torch-Pruning prunes `.grad`
    together with the weights, so one accumulation serves every pruning step that follows.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    from pipeline.pruning.data import to_device

    device = next(model.parameters()).device
    saved_args, saved_criterion = getattr(model, "args", None), getattr(model, "criterion", None)
    model.args, model.criterion = get_cfg(DEFAULT_CFG), None  # the loss reads box/cls/dfl gains from args
    model.eval()
    model.zero_grad(set_to_none=True)
    count = 0
    try:
        for batch in batches:
            loss, _ = model.loss(to_device(batch, device))
            loss.sum().backward()
            count += 1
    finally:
        model.args, model.criterion = saved_args, saved_criterion
    return count


class LayerCap:
    """Wrap a Torch-Pruning importance so that no layer goes below the floor of `guards`.

    Torch-Pruning checks `max_pruning_ratio` only before a step, so one global step may still empty a
    layer. Here the channels a group must keep score `PROTECTED + importance`: a global threshold reaches
    them only once every other channel is gone, and the least important of them still go first.
    """

    PROTECTED = 1e6

    def __init__(self, importance, initial_channels: dict, guards: Guards):
        self.importance = importance
        self.initial_channels = initial_channels
        self.guards = guards

    def __call__(self, group, **kwargs):
        imp = self.importance(group, **kwargs)
        initial = self.initial_channels.get(group[0].dep.target.module)
        if imp is None or initial is None:
            return imp
        keep = imp.argsort(descending=True)[: len(imp) - self.guards.removable(len(imp), initial)]
        imp = imp.clone()
        imp[keep] += self.PROTECTED
        return imp


class ChannelImportance(Protocol):
    """The data-aware method's ranking inside a group: what removing each channel costs (cheapest go
    first). The default is `VarianceShare`; another criterion is passed to `pipeline.pruning.data_aware`."""

    def __call__(self, group: ChannelGroup, stats: ChannelStats) -> torch.Tensor:
        """One score per channel of `group` (its size), from activation statistics on calibration images."""
        ...


class VarianceShare:
    """Per channel: the share of its consumers' output variance it carries, summed over the consumers:
    sum of ||W[:, c]||^2 * Var(x_c), relative to that consumer's total (`pipeline.pruning.selection`)."""

    def __call__(self, group: ChannelGroup, stats: ChannelStats) -> torch.Tensor:
        cost = torch.zeros(group.size)
        for conv, (inputs, channels) in group.consumers.items():
            energy = conv.weight.detach().float().square().sum((0, 2, 3)) * stats.var[conv]
            cost.index_add_(0, channels, energy[inputs] / energy.sum().clamp(min=1e-12))
        return cost
