"""Prune a YOLOv8 DetectionModel to a fraction of its MACs (or parameters) with Torch-Pruning's DepGraph.

Torch-Pruning's pruner removes channels in small scheduled steps; we measure after each one and stop at
the first that meets the target, so the target is reached without a closed-form guess of how channel
ratios map to MACs. What keeps a pretrained detector usable is mostly which channels may go at all:

- Detect's final box and class convolutions and the DFL are never pruned (their widths are the output);
- nor, by default, the convs feeding them: those final convs have no BatchNorm, so a removed input
  channel shifts the raw logits and BatchNorm re-estimation cannot absorb it;
- the stem (layers 0 and 1 by default) is protected: it is narrow, sees every pixel and feeds everything;
- layers of at most `min_channels` (32) channels keep them all and wider ones never fall below it: one
  step of rounding would otherwise halve a 16-channel layer (Torch-Pruning rounds the kept count down);
- no layer loses more than `max_layer_ratio` of its channels, so no layer is hollowed out;
- channel counts are rounded to `round_to` (8 suits GPU tensor cores and CPU SIMD).

After pruning, BatchNorm statistics can be re-estimated on a few training batches ("adaptive BN",
Li et al., EagleEye, ECCV 2020): removing channels shifts the mean and variance every next layer sees,
and re-estimating them recovers much of the accuracy lost before any fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.checkpoints import count_params, gflops
from core.defaults import DEFAULT_IMGSZ
from core.errors import CheckFailed
from pipeline.modules import split_c2f
from pipeline.pruning.families import (
    attention_blocks,
    branch_internals,
    customized_pruners,
    end_to_end,
    head_branches,
    training_outputs,
)
from pipeline.pruning.importance import LayerCap, accumulate_gradients, make_importance

SCHEDULE_STEPS = 400  # schedule granularity: one step prunes at most 1/400 of max_layer_ratio more


@dataclass(frozen=True)
class PruneOptions:
    importance: str = "l2"
    global_pruning: bool = True
    round_to: int | None = 8
    max_layer_ratio: float = 0.5
    min_channels: int = 32
    protected_layers: tuple[int, ...] = (0, 1)
    protect_head: bool = True
    isomorphic: bool = False
    imgsz: int = DEFAULT_IMGSZ


@dataclass
class PruneReport:
    """What pruning did, in Ultralytics' units (GFLOPs of the fused model at imgsz)."""

    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    steps: int = 0
    bn_batches: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before

    @property
    def gflops_ratio(self) -> float:
        return self.gflops_after / self.gflops_before

    def as_metadata(self) -> dict:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_ratio": round(self.params_ratio, 4),
            "gflops_before": round(self.gflops_before, 3),
            "gflops_after": round(self.gflops_after, 3),
            "gflops_ratio": round(self.gflops_ratio, 4),
            **self.extra,
        }


def measure(model: nn.Module, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs) of the model."""
    return count_params(model), gflops(model, imgsz)


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


def magnitude_ignored(
    model: nn.Module, protected: Iterable[int], protect_head: bool = True
) -> list[nn.Module]:
    """`ignored_layers`, plus every conv inside YOLO26's head branches: Torch-Pruning's scheduler cannot
    keep the one-to-one and one-to-many branches alike, so their inner widths stay as they are."""
    layers = ignored_layers(model, protected, protect_head)
    return layers + branch_internals(model.model[-1]) if end_to_end(model.model[-1]) else layers


def prune_model(
    model: nn.Module,
    options: PruneOptions,
    *,
    macs: float | None = None,
    params: float | None = None,
    gradient_batches: Callable[[], Iterable[dict]] | None = None,
    bn_batches: Callable[[], Iterable[dict]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> PruneReport:
    """Prune `model` in place until its GFLOPs (or params) are at most `macs` (or `params`) times today's.

    `gradient_batches` feeds the Taylor importance; `bn_batches`, when given, re-estimates BatchNorm
    statistics afterwards. `progress` receives the fraction of the way to the target after each step.
    """
    import torch_pruning as tp

    if (macs is None) == (params is None):
        raise ValueError("give exactly one of macs or params")
    keep = macs if macs is not None else params
    split_c2f(model)
    model.eval()
    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(True)  # DepGraph traces the autograd graph
    params_before, gflops_before = measure(model, options.imgsz)

    def current() -> float:
        return (
            gflops(model, options.imgsz) / gflops_before
            if macs is not None
            else (count_params(model) / params_before)
        )

    if options.importance == "taylor":
        if gradient_batches is None:
            raise ValueError("the taylor importance needs data batches for its gradients")
        accumulate_gradients(model, gradient_batches())
    pruner = tp.pruner.BasePruner(
        model,
        torch.zeros(1, 3, options.imgsz, options.imgsz, device=device),
        importance=LayerCap(
            make_importance(options.importance),
            {m: m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)},
            options.max_layer_ratio,
            options.round_to,
            options.min_channels,
        ),
        global_pruning=options.global_pruning,
        isomorphic=options.isomorphic,
        pruning_ratio=options.max_layer_ratio,
        max_pruning_ratio=options.max_layer_ratio,
        iterative_steps=SCHEDULE_STEPS,
        ignored_layers=magnitude_ignored(model, options.protected_layers, options.protect_head),
        round_to=options.round_to,
        customized_pruners=customized_pruners(model),
        output_transform=training_outputs if end_to_end(model.model[-1]) else None,
    )
    ratio, steps = 1.0, 0
    while ratio > keep and pruner.current_step < SCHEDULE_STEPS:
        # Jump ahead on the schedule by part of the estimated distance (secant through the origin), so the
        # target is approached in a dozen importance rankings instead of hundreds, then one step at a time.
        done = pruner.current_step
        slope = (1 - ratio) / done if done and ratio < 1 else None
        jump = max(1, int(0.8 * (ratio - keep) / slope)) if slope else SCHEDULE_STEPS // 20
        pruner.current_step = min(done + jump, SCHEDULE_STEPS) - 1
        pruner.step()
        steps += 1
        ratio = current()
        if progress:
            progress(min(1.0, (1 - ratio) / (1 - keep)))
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)
    if ratio > keep:
        raise CheckFailed(
            f"pruning stopped at {ratio:.3f} of the {'MACs' if macs is not None else 'params'}, "
            f"above the {keep} target",
            hint="raise max_layer_ratio, protect fewer layers or lower round_to",
        )
    n_bn = recalibrate_batchnorm(model, bn_batches()) if bn_batches else 0
    params_after, gflops_after = measure(model, options.imgsz)
    return PruneReport(params_before, params_after, gflops_before, gflops_after, steps=steps, bn_batches=n_bn)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[dict]) -> int:
    """Re-estimate every BatchNorm's running mean/var as the plain average over `batches`."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    device = next(model.parameters()).device
    model.train()
    count = 0
    for batch in batches:
        model(batch["img"].to(device))
        count += 1
    model.eval()
    for m, (momentum, mean, var) in zip(norms, saved, strict=True):
        m.momentum = momentum
        if count == 0:  # nothing seen: keep the old statistics
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
    return count
