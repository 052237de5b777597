"""What a pruning goal counts: MACs, parameters, or the measured latency of the engine that will run.

A goal gives the whole model's size in its unit, each convolution's share at given widths (what the
greedy cut saves by narrowing it), and how much of that the next step must remove.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol

from torch import nn

from core.checkpoints import count_params, gflops

if TYPE_CHECKING:
    from pipeline.pruning.latency import LatencyModel
    from pipeline.pruning.selection import ChannelStats


def step_goal(start: float, keep: float, step: int, steps: int) -> float:
    """The size in the goal's unit after `step` of `steps` geometric steps from `start` to `keep` of it:
    each step removes the same fraction of what the one before left."""
    return keep ** (step / steps) * start


class Goal(Protocol):
    unit: str

    def total(self, model: nn.Module) -> float:
        """The whole model's size in the goal's unit."""

    def conv_cost(self, stats: ChannelStats, conv: nn.Conv2d, cin: int, cout: int) -> float:
        """One convolution's share of the size at these widths."""

    def to_remove(
        self, stats: ChannelStats, now: float, goal: float, uncounted: AbstractSet[nn.Module]
    ) -> float:
        """Convolution cost the step must remove to bring the model's total from `now` to `goal` (both in
        the goal's unit); `uncounted` convolutions do not run at inference (YOLO26's one-to-many branch)."""


class CountGoal:
    """MACs (`macs`) at the pruning's input size, or parameters (`params`)."""

    def __init__(self, unit: str, imgsz: int):
        self.unit, self.imgsz = unit, imgsz

    def total(self, model: nn.Module) -> float:
        return gflops(model, self.imgsz) if self.unit == "macs" else float(count_params(model))

    def conv_cost(self, stats: ChannelStats, conv: nn.Conv2d, cin: int, cout: int) -> float:
        shape = stats.shapes[conv]
        return (shape.per_pair if self.unit == "macs" else shape.params_per_pair) * cin * cout

    def to_remove(
        self, stats: ChannelStats, now: float, goal: float, uncounted: AbstractSet[nn.Module]
    ) -> float:
        # Convolutions are nearly all of the GFLOPs and weights; scale the step's cut to theirs.
        conv_total = sum(
            self.conv_cost(stats, c, s.cin, s.cout) for c, s in stats.shapes.items() if c not in uncounted
        )
        return conv_total * (1 - goal / now)


class LatencyGoal:
    """The p50 (ms) a fitted `LatencyModel` predicts on its engine, precision, input size and threads."""

    unit = "latency"

    def __init__(self, model: LatencyModel, names: dict[nn.Module, str]):
        self.model, self.names = model, names

    def total(self, model: nn.Module) -> float:
        from pipeline.pruning.latency import conv_widths

        return self.model.predict(conv_widths(model))

    def conv_cost(self, stats: ChannelStats, conv: nn.Conv2d, cin: int, cout: int) -> float:
        return self.model.conv_ms(self.names[conv], cin, cout)

    def to_remove(
        self, stats: ChannelStats, now: float, goal: float, uncounted: AbstractSet[nn.Module]
    ) -> float:
        # The exported graph holds no uncounted convolution, so the latency model never timed them. The
        # intercept cannot be cut, so the whole gap comes out of the convolutions' predicted times.
        return now - goal
