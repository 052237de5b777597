"""Method `magnitude`: prune a detector to a fraction of its MACs (or parameters) with Torch-Pruning's
scheduler and a weight-norm, Taylor or BN-scale ranking, in `steps` geometric steps.

Torch-Pruning's pruner removes channels in small scheduled steps; we measure after each one and stop at
the first that meets the target, so the target is reached without a closed-form guess of how channel
ratios map to MACs. What keeps a pretrained detector usable is mostly which channels may go at all
(`guards`):

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

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from core.checkpoints import load_detection_model, save_checkpoint
from core.errors import CheckFailed
from pipeline.modules import split_c2f
from pipeline.pruning.config import MagnitudeConfig
from pipeline.pruning.data import labelled_dataset, train_batches
from pipeline.pruning.families import branch_internals, customized_pruners, end_to_end, training_outputs
from pipeline.pruning.goals import CountGoal, step_goal
from pipeline.pruning.guards import Guards, ignored_layers
from pipeline.pruning.importance import LayerCap, accumulate_gradients, make_importance
from pipeline.pruning.pruner import Progress, PruneReport, measure

SCHEDULE_STEPS = 400  # schedule granularity: one step prunes at most 1/400 of max_layer_ratio more


def magnitude_ignored(
    model: nn.Module, protected: Iterable[int], protect_head: bool = True
) -> list[nn.Module]:
    """`ignored_layers`, plus every conv inside YOLO26's head branches: Torch-Pruning's scheduler cannot
    keep the one-to-one and one-to-many branches alike, so their inner widths stay as they are."""
    layers = ignored_layers(model, protected, protect_head)
    return layers + branch_internals(model.model[-1]) if end_to_end(model.model[-1]) else layers


def prune_model(
    model: nn.Module,
    config: MagnitudeConfig,
    *,
    imgsz: int,
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
    goal = CountGoal("macs" if macs is not None else "params", imgsz)
    split_c2f(model)
    model.eval()
    device = next(model.parameters()).device
    for p in model.parameters():
        p.requires_grad_(True)  # DepGraph traces the autograd graph
    params_before, gflops_before = measure(model, imgsz)
    start = goal.total(model)
    if config.importance == "taylor":
        if gradient_batches is None:
            raise ValueError("the taylor importance needs data batches for its gradients")
        accumulate_gradients(model, gradient_batches())
    pruner = tp.pruner.BasePruner(
        model,
        torch.zeros(1, 3, imgsz, imgsz, device=device),
        importance=LayerCap(
            make_importance(config.importance),
            {m: m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)},
            Guards(config.max_layer_ratio, config.min_channels, config.round_to or 1),
        ),
        global_pruning=config.global_pruning,
        isomorphic=config.isomorphic,
        pruning_ratio=config.max_layer_ratio,
        max_pruning_ratio=config.max_layer_ratio,
        iterative_steps=SCHEDULE_STEPS,
        ignored_layers=magnitude_ignored(model, config.protected_layers, config.resolved_protect_head()),
        round_to=config.round_to,
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
        ratio = goal.total(model) / start
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
    params_after, gflops_after = measure(model, imgsz)
    return PruneReport(params_before, params_after, gflops_before, gflops_after, steps=steps, bn_batches=n_bn)


class MagnitudePruner:
    """The `magnitude` method: `steps` geometric steps of `prune_model`, each followed by BatchNorm
    re-estimation and, with `finetune_epochs_per_step`, fine-tuning on the labelled data."""

    def __init__(self, config: MagnitudeConfig):
        self.config = config

    def prune(
        self, model: nn.Module, *, imgsz: int, data: Path | None, device: str, progress: Progress
    ) -> tuple[nn.Module, dict]:
        config = self.config
        labels = labelled_dataset(data)

        def batches(count: int):
            if labels is None or not count:
                return None
            return lambda: train_batches(labels, imgsz, config.batch, count)

        unit, keep = config.goal
        goal = CountGoal(unit, imgsz)
        steps = config.steps or 1
        before = goal.total(model)
        for step in range(1, steps + 1):
            what = f"pruning step {step}/{steps}"
            report = prune_model(
                model,
                config,
                imgsz=imgsz,
                **{unit: step_goal(before, keep, step, steps) / goal.total(model)},
                gradient_batches=batches(4),
                bn_batches=batches(config.bn_batches),
                progress=lambda done, what=what: progress(what, done),
            )
            if config.finetune_epochs_per_step and labels is not None:
                progress(f"fine-tuning step {step}/{steps}", 1.0)
                model = _finetune_step(model, labels, config, imgsz, device, step)
        return model, {"importance": config.importance, "steps": steps, "bn_batches": report.bn_batches}


def _finetune_step(model: nn.Module, data: Path, config: MagnitudeConfig, imgsz: int, device: str, step: int):
    from pipeline.pruning.trainer import train

    with tempfile.TemporaryDirectory(prefix="edgepipe-prune-ft-") as tmp:
        step_ckpt = save_checkpoint(model, Path(tmp) / f"step{step}.pt")
        best = train(
            step_ckpt,
            data,
            Path(tmp) / "best.pt",
            run_dir=Path(tmp) / "run",
            epochs=config.finetune_epochs_per_step,
            imgsz=imgsz,
            batch=config.batch,
            device=device,
        )
        return load_detection_model(best).to(next(model.parameters()).device)


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
