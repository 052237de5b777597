"""Data-aware pruning: measure, cut, reconstruct, in a few small steps to the MACs target.

Each step (1) measures every channel group's cost on calibration images (`selection`), (2) removes the
cheapest channels globally until the step's MACs target, with Torch-Pruning's DepGraph doing the surgery
(`groups`), and (3) re-fits every downstream convolution to the unpruned teacher (`reconstruct`). The
steps are geometric in MACs, so each one starts from a repaired model and its measurements stay local.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.pruning.depth import measure_blocks, remove_block
from pipeline.pruning.goals import Goal, step_goal
from pipeline.pruning.groups import GroupPruner
from pipeline.pruning.guards import Guards
from pipeline.pruning.importance import ChannelImportance, VarianceShare
from pipeline.pruning.reconstruct import ConvFit, reconstruct
from pipeline.pruning.selection import OutputDistortion, allocate, channel_stats, measure_groups

SENSITIVITY_SCALE = 0.5  # group costs are measured at half the input size: 4x cheaper...
# ...unless that is below this size, where they are measured at full size: yolov8n pruned to 0.7 of the
# MACs for 384 px lost 13.9 points measured at 192 px, 11.9 at 320 and 10.2 at 384 (docs/pruning.md)
MIN_SENSITIVITY_SIZE = 320
STATS_IMAGES = 8  # images for the activation statistics and the MACs per layer
# Share of the calibration batches the steps before the last one reconstruct on. The last step re-fits
# every convolution downstream of a change on all of them; the earlier fits only steer the next step's
# measurements. Measured on COCO yolov8n (docs/pruning.md): better at 0.7 of the MACs, worse at 0.5, and
# it keeps a 7-step prune of yolov8n at 640 px within 10 minutes on 2 cores.
INTERIM_SHARE = 0.5


@dataclass
class Outcome:
    """The last reconstruction's fits, and which of the teacher's output channels each Conv2d kept."""

    fits: list[ConvFit]
    kept: dict[str, torch.Tensor]
    blocks: list[str]  # inner blocks removed whole

    def kept_features(self, model: nn.Module) -> list[list[int]]:
        """For each layer the Detect head reads (P3/P4/P5), the teacher channels its output kept."""
        kept = []
        for index in model.model[-1].f:
            layer = model.model[index]
            name = f"model.{index}.cv2.conv" if hasattr(layer, "cv2") else f"model.{index}.conv"
            kept.append(self.kept[name].tolist())
        return kept


def prune_and_reconstruct(
    model: nn.Module,
    ignored: list[nn.Module],
    batches: Sequence[torch.Tensor],
    keep: float,
    guards: Guards,
    *,
    goal: Goal,
    steps: int,
    sensitivity_images: int,
    remove_blocks: bool = False,
    importance: ChannelImportance | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Outcome:
    """Prune `model` in place to `keep` of what `goal` counts (MACs, parameters, latency) in `steps` steps.

    With `remove_blocks`, whole inner blocks of the CSP layers compete with the channel cuts (`depth`).

    `batches` are letterboxed calibration images (N, 3, imgsz, imgsz) in 0..1; the group costs are
    measured on the first `sensitivity_images` of them, and the steps before the last reconstruct on the
    first INTERIM_SHARE of them. `importance` ranks the channels inside each group (default
    `VarianceShare`).
    """
    importance = importance or VarianceShare()
    model.eval()
    teacher = deepcopy(model)
    example = batches[0][:1]
    pruner = GroupPruner(model, example, ignored)
    uncounted = set(pruner.twins.values())  # YOLO26's one-to-many branch: not in the inference MACs

    start = goal.total(model)
    sensitivity = [
        F.interpolate(b, size=sensitivity_size(b.shape[-1], int(model.stride.max())), mode="area")
        for b in _images(batches, sensitivity_images)
    ]
    statistics = _images(batches, STATS_IMAGES)
    fits: list[ConvFit] = []
    removed: list[str] = []
    for step in range(1, steps + 1):
        stats = channel_stats(model, statistics)
        to_remove = goal.to_remove(stats, goal.total(model), step_goal(start, keep, step, steps), uncounted)
        distortion = OutputDistortion(model, teacher, sensitivity)
        plans = measure_groups(
            pruner.groups(),
            stats,
            distortion,
            pruner.names,
            pruner.initial,
            guards,
            importance=importance,
            progress=(lambda f, s=step: progress(f"step {s}/{steps}: measuring", f)) if progress else None,
        )
        blocks = measure_blocks(model, ignored, distortion, sensitivity[0][:1]) if remove_blocks else []
        cuts = allocate(
            plans,
            stats,
            to_remove,
            guards.round_to,
            lambda c, i, o, s=stats: goal.conv_cost(s, c, i, o),
            blocks,
        )
        for plan in plans:
            pruner.remove(plan.group, cuts.channels[id(plan)])
        for block in cuts.blocks:
            remove_block(block.owner, block.index)
            removed.append(block.name)
        if cuts.blocks:
            pruner.trace()
        last = step == steps
        fits = reconstruct(
            model,
            teacher,
            batches if last else batches[: max(1, round(len(batches) * INTERIM_SHARE))],
            pruner.kept,
            progress=(lambda f, s=step: progress(f"step {s}/{steps}: reconstructing", f))
            if progress
            else None,
        )
    return Outcome(fits, pruner.kept, removed)


def sensitivity_size(imgsz: int, stride: int) -> int:
    """SENSITIVITY_SCALE of `imgsz` where that is at least MIN_SENSITIVITY_SIZE, else `imgsz` itself,
    rounded to a multiple of the model's largest stride so that every level lines up."""
    scaled = imgsz * SENSITIVITY_SCALE
    size = scaled if scaled >= MIN_SENSITIVITY_SIZE else imgsz
    return max(stride, round(size / stride) * stride)


def _images(batches: Sequence[torch.Tensor], count: int) -> list[torch.Tensor]:
    """The first `count` images of `batches`, as batches of at most 4."""
    images = torch.cat(list(batches))[:count]
    return list(images.split(4))
