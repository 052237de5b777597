"""Data-aware channel selection: what removing channels costs the detector's outputs, and where to cut.

Two measurements on calibration images, no labels:

- **Within a group**, channels are ranked by a swappable `importance.ChannelImportance`; the default,
  `VarianceShare`, is the share of its consumers' output variance a channel carries:
  sum over consumers of ||W[:, c]||^2 * Var(x_c), relative to that consumer's total. Only the variance
  counts because the constant part of a removed channel is folded into the consumer's bias by the
  reconstruction (a channel with a large constant activation is cheap to remove, not expensive).
- **Across groups**, the cost of removing a fraction of a group is measured, not assumed: its cheapest
  channels are replaced by their mean (what removal plus the folded intercept does) and the change of the
  head's outputs against the unpruned teacher is scored (`head_distortion`: class and DFL box KL where
  the teacher sees objects). Layers differ by orders of magnitude in this sensitivity, which weight norms
  and per-layer reconstruction errors do not show.

Channels are then allocated greedily: the next cut is always the one with the least measured cost per
unit of the goal saved (a MAC, a parameter, or a millisecond the latency model predicts on the target),
within the caps (`max_layer_ratio`, `min_channels`, `round_to`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.pruning.families import inference_outputs
from pipeline.pruning.groups import ChannelGroup
from pipeline.pruning.guards import Guards
from pipeline.pruning.importance import ChannelImportance
from pipeline.pruning.reconstruct import layer_inputs

if TYPE_CHECKING:
    from pipeline.pruning.depth import BlockPlan

FRACTIONS = (0.5,)  # fractions of a group's removable channels whose cost is measured


@dataclass
class ConvShape:
    """What a Conv2d costs per (input channel x output channel): MACs at its output resolution, weights."""

    per_pair: int
    cin: int
    cout: int
    params_per_pair: int = 1

    @property
    def macs(self) -> int:
        return self.per_pair * self.cin * self.cout


@dataclass
class ChannelStats:
    """Per Conv2d: its input channels' mean and variance over the calibration images, and its cost."""

    mean: dict[nn.Conv2d, torch.Tensor] = field(default_factory=dict)
    var: dict[nn.Conv2d, torch.Tensor] = field(default_factory=dict)
    shapes: dict[nn.Conv2d, ConvShape] = field(default_factory=dict)


@torch.no_grad()
def channel_stats(model: nn.Module, batches: Sequence[torch.Tensor]) -> ChannelStats:
    """Input-channel statistics and MAC costs of every Conv2d in `model`."""
    sums: dict[nn.Conv2d, list] = {}
    stats = ChannelStats()

    def hook(conv, args, out):
        x = args[0].double()
        count = x.shape[0] * x.shape[2] * x.shape[3]
        total = sums.setdefault(conv, [0, 0.0, 0.0])
        total[0] += count
        total[1] = total[1] + x.sum((0, 2, 3))
        total[2] = total[2] + x.square().sum((0, 2, 3))
        kh, kw = conv.kernel_size
        stats.shapes[conv] = ConvShape(
            kh * kw * out.shape[2] * out.shape[3] // conv.groups,
            conv.in_channels,
            conv.out_channels,
            kh * kw // conv.groups,
        )

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [c.register_forward_hook(hook) for c in convs]
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    for conv, (count, s, sq) in sums.items():
        mean = s / count
        stats.mean[conv] = mean.float()
        stats.var[conv] = (sq / count - mean.square()).clamp(min=0).float()
    return stats


def layer_index(name: str) -> int:
    """Index in model.model of a module named 'model.<i>.…'."""
    match = re.match(r"model\.(\d+)", name)
    if not match:
        raise ValueError(f"not a layer of a DetectionModel: {name}")
    return int(match.group(1))


class OutputDistortion:
    """The head's distillation loss against the teacher when part of the model is perturbed.

    All layer outputs of the unperturbed student are cached once, so a perturbation at layer i only
    re-runs layers i and later.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, batches: Sequence[torch.Tensor]):
        self.student = student
        with torch.no_grad():
            self.targets = [teacher(b)[1] for b in batches]
            self.outputs = [self._all_outputs(b) for b in batches]
        self.baseline = self._loss(lambda b: self.outputs[b][-1][1])

    def _all_outputs(self, batch: torch.Tensor) -> list:
        outputs: list = []
        x = batch
        for layer in self.student.model:
            x = layer(layer_inputs(layer, outputs, x))
            outputs.append(x)
        return outputs

    def _loss(self, head_output: Callable[[int], dict]) -> float:
        total = 0.0
        for b, target in enumerate(self.targets):
            total += float(head_distortion(head_output(b), target))
        return total / len(self.targets)

    @torch.no_grad()
    def from_layer(self, start: int) -> float:
        """The loss when layers `start` and later are re-run (perturbed by hooks the caller set)."""

        def rerun(b: int) -> dict:
            outputs = list(self.outputs[b][:start])
            x = outputs[-1] if outputs else None
            for layer in self.student.model[start:]:
                x = layer(layer_inputs(layer, outputs, x))
                outputs.append(x)
            return x[1]

        return self._loss(rerun) - self.baseline


def head_distortion(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
    """How far the student's head outputs are from the teacher's where the teacher sees objects.

    Per anchor: KL of the class probabilities (per-class Bernoulli) plus the box distortion, averaged with the
    teacher's top class probability as the weight, the anchors that make up the mAP. The unweighted
    distillation loss is dominated by the thousands of background anchors. An end-to-end head is judged
    on its one-to-one outputs, the ones inference runs.
    """
    student, teacher = inference_outputs(student), inference_outputs(teacher)
    t_prob = teacher["scores"].float().sigmoid().clamp(1e-6, 1 - 1e-6)
    s_prob = student["scores"].float().sigmoid().clamp(1e-6, 1 - 1e-6)
    cls = (t_prob * (t_prob / s_prob).log() + (1 - t_prob) * ((1 - t_prob) / (1 - s_prob)).log()).sum(1)
    box = box_distortion(student["boxes"].float(), teacher["boxes"].float())
    weight = t_prob.amax(1)
    return ((cls + box) * weight).sum() / weight.sum().clamp(min=1e-6)


def box_distortion(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per anchor: the DFL box KL (mean of the 4 sides), or without a DFL (YOLO26, one bin per side) the
    mean squared difference of the 4 distances, in strides."""
    b, channels, anchors = student.shape
    if channels == 4:
        return (student - teacher).square().mean(1)
    s_bins = student.view(b, 4, -1, anchors).log_softmax(2)
    t_bins = teacher.view(b, 4, -1, anchors).log_softmax(2)
    return (t_bins.exp() * (t_bins - s_bins)).sum(2).mean(1)


def mean_replaced(group: ChannelGroup, channels: list[int], stats: ChannelStats):
    """Forward pre-hooks that feed each consumer the mean of `channels` instead of their activations."""

    def make(conv: nn.Conv2d, idx: torch.Tensor):
        mean = stats.mean[conv][idx].view(1, -1, 1, 1)

        def hook(_mod, args):
            x = args[0].clone()
            x[:, idx] = mean
            return (x,)

        return hook

    handles = []
    chosen = torch.tensor(channels)
    for conv, (inputs, roots) in group.consumers.items():
        idx = inputs[torch.isin(roots, chosen)]
        handles.append(conv.register_forward_pre_hook(make(conv, idx)))
    return handles


@dataclass
class GroupPlan:
    """A group, its channels cheapest first, how many it may lose, and the measured cost curve."""

    group: ChannelGroup
    order: list[int]
    removable: int
    curve: list[tuple[int, float]]  # (channels removed, distortion), starting at (0, 0)

    def cost(self, removed: int) -> float:
        """Piecewise-linear in the measured points, extrapolated with the last slope."""
        points = self.curve
        for (n0, d0), (n1, d1) in itertools.pairwise(points):
            if removed <= n1:
                return d0 + (d1 - d0) * (removed - n0) / max(n1 - n0, 1)
        (n0, d0), (n1, d1) = points[-2], points[-1]
        return d1 + (d1 - d0) * (removed - n1) / max(n1 - n0, 1)


def measure_groups(
    groups: Sequence[ChannelGroup],
    stats: ChannelStats,
    distortion: OutputDistortion,
    names: dict[nn.Module, str],
    initial: dict[nn.Conv2d, int],
    guards: Guards,
    *,
    importance: ChannelImportance,
    progress: Callable[[float], None] | None = None,
) -> list[GroupPlan]:
    """Each group's channels ranked by `importance` (cheapest first), and its measured distortion at
    FRACTIONS removed."""
    round_to = guards.round_to
    plans = []
    for k, group in enumerate(groups):
        removable = guards.removable(group.size, initial[group.root])
        order = importance(group, stats).argsort().tolist()
        curve = [(0, 0.0)]
        if removable:
            start = min(layer_index(names[c]) for c in group.consumers)
            for fraction in FRACTIONS:
                n = max(round_to, round(removable * fraction / round_to) * round_to)
                n = min(n, removable)
                if n <= curve[-1][0]:
                    continue
                handles = mean_replaced(group, order[:n], stats)
                try:
                    curve.append((n, max(distortion.from_layer(start), 0.0)))
                finally:
                    for h in handles:
                        h.remove()
        plans.append(GroupPlan(group, order, removable, curve))
        if progress:
            progress((k + 1) / len(groups))
    return plans


@dataclass
class Allocation:
    """What a step cuts: channels per group (by `id` of its plan), and whole blocks."""

    channels: dict[int, list[int]]
    blocks: list[BlockPlan]


def allocate(
    plans: Sequence[GroupPlan],
    stats: ChannelStats,
    to_remove: float,
    round_to: int,
    conv_cost: Callable[[nn.Conv2d, int, int], float],
    blocks: Sequence[BlockPlan] = (),
) -> Allocation:
    """Channels to cut per group, and blocks to remove whole: greedy by measured distortion per unit of
    the goal saved (MACs, parameters or predicted milliseconds: `conv_cost(conv, in channels, out
    channels)`), until `to_remove` of it is gone.

    Costs are tracked per convolution at its current widths, so cutting both sides of a convolution is
    counted once, and a latency that steps with the kernel's channel blocks is followed step by step. A
    removed block saves all of its convolutions and its chunk of the concatenation its owner's last conv
    reads; its convolutions then count for nothing in later cuts.
    """
    cin = {conv: s.cin for conv, s in stats.shapes.items()}
    cout = {conv: s.cout for conv, s in stats.shapes.items()}
    removed = {id(p): 0 for p in plans}
    gone: set[nn.Conv2d] = set()
    chosen: list[BlockPlan] = []

    def saving(plan: GroupPlan) -> float:
        total = 0.0
        for conv in plan.group.producers:
            if conv not in gone:
                total += conv_cost(conv, cin[conv], cout[conv]) - conv_cost(
                    conv, cin[conv], cout[conv] - round_to
                )
        for conv, (inputs, _) in plan.group.consumers.items():
            if conv not in gone:
                narrower = cin[conv] - round_to * _fan(plan, inputs)
                total += conv_cost(conv, cin[conv], cout[conv]) - conv_cost(conv, narrower, cout[conv])
        return total

    def block_saving(block: BlockPlan) -> float:
        reader, width = block.reader, cin[block.convs[0]]
        total = sum(conv_cost(c, cin[c], cout[c]) for c in block.convs)
        return (
            total
            + conv_cost(reader, cin[reader], cout[reader])
            - conv_cost(reader, cin[reader] - width, cout[reader])
        )

    saved = 0.0
    while saved < to_remove:
        best: GroupPlan | BlockPlan | None = None
        best_score, best_gain = math.inf, 0.0
        for plan in plans:
            n = removed[id(plan)]
            if n + round_to > min(plan.removable, plan.curve[-1][0]):  # never beyond what was measured
                continue
            gain = saving(plan)
            if gain <= 0:
                continue
            score = (plan.cost(n + round_to) - plan.cost(n)) / gain
            if score < best_score:
                best, best_score, best_gain = plan, score, gain
        for block in blocks:
            gain = block_saving(block) if block not in chosen else 0.0
            # a block saves all at once: never more than the step has left to remove
            if 0 < gain <= to_remove - saved and block.distortion / gain < best_score:
                best, best_score, best_gain = block, block.distortion / gain, gain
        if best is None:
            break
        saved += best_gain
        if isinstance(best, GroupPlan):
            removed[id(best)] += round_to
            for conv in best.group.producers:
                cout[conv] -= round_to
            for conv, (inputs, _) in best.group.consumers.items():
                cin[conv] -= round_to * _fan(best, inputs)
        else:
            chosen.append(best)
            gone.update(best.convs)
            cin[best.reader] -= cin[best.convs[0]]
    return Allocation({id(p): p.order[: removed[id(p)]] for p in plans}, chosen)


def _fan(plan: GroupPlan, inputs: torch.Tensor) -> int:
    """How many inputs of one consumer each channel of the group reaches (4 in SPPF's last conv)."""
    return len(inputs) // plan.group.size
