"""Importance criteria (Torch-Pruning's) by name, and the gradients the Taylor criterion reads."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

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
    """Wrap an importance so no layer loses more than `max_ratio` of its initial output channels, nor
    falls below `min_channels` (a layer that narrow to begin with keeps all of them).

    Torch-Pruning checks `max_pruning_ratio` only before a step, so one global step may still empty a
    layer. Here the channels a group must keep score `PROTECTED + importance`: a global threshold reaches
    them only once every other channel is gone, and the least important of them still go first.
    """

    PROTECTED = 1e6

    def __init__(
        self,
        importance,
        initial_channels: dict,
        max_ratio: float,
        round_to: int | None,
        min_channels: int = 0,
    ):
        self.importance = importance
        self.initial_channels = initial_channels
        self.max_ratio = max_ratio
        self.round_to = round_to or 1
        self.min_channels = min_channels

    def __call__(self, group, **kwargs):
        imp = self.importance(group, **kwargs)
        initial = self.initial_channels.get(group[0].dep.target.module)
        if imp is None or initial is None:
            return imp
        floor = max(self.floor(initial), min(initial, self.min_channels))
        removable = len(imp) - floor
        keep = imp.argsort(descending=True)[: len(imp) - max(removable, 0)]
        imp = imp.clone()
        imp[keep] += self.PROTECTED
        return imp

    def floor(self, initial: int) -> int:
        """The fewest channels `max_ratio` lets a layer of `initial` keep, rounded up to `round_to`."""
        return -(-math.ceil(initial * (1 - self.max_ratio)) // self.round_to) * self.round_to
