"""Method `reconstruct`: data-aware selection and layer-wise reconstruction (`schedule`) to a MACs,
parameter or latency goal, on a calibration sample of the data; with a latency model (a latency goal or
round_to: auto), the result is timed against the unpruned model on the engine the model was fitted on."""

from __future__ import annotations

import math
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

from pipeline.modules import split_c2f
from pipeline.pruning.config import ReconstructConfig
from pipeline.pruning.data import calibration_set
from pipeline.pruning.engine_timing import check_latency
from pipeline.pruning.goals import CountGoal, Goal, LatencyGoal
from pipeline.pruning.guards import Guards, ignored_layers
from pipeline.pruning.importance import ChannelImportance
from pipeline.pruning.latency import LatencyModel, conv_widths, fit, measure_variants
from pipeline.pruning.pruner import Progress
from pipeline.pruning.schedule import prune_and_reconstruct

TIMING_IMAGES = 8  # calibration images the latency model and the final timing run on


class ReconstructPruner:
    """The `reconstruct` method; `importance` ranks channels inside each group (default: variance share)."""

    def __init__(self, config: ReconstructConfig, importance: ChannelImportance | None = None):
        self.config, self.importance = config, importance

    def prune(
        self, model: nn.Module, *, imgsz: int, data: Path | None, device: str, progress: Progress
    ) -> tuple[nn.Module, dict]:
        config = self.config
        if data is None:
            raise ValueError("the reconstruct method needs calibration data (config.resolve checks it)")
        calibration = calibration_set(data, imgsz, config.calib_images)
        on = next(model.parameters()).device
        batches = [torch.from_numpy(b).to(on) for b in calibration.batches(8)]
        unit, keep = config.goal
        steps = config.default_steps()
        split_c2f(model)
        ignored = ignored_layers(model, config.protected_layers, config.resolved_protect_head())
        timing_images = list(calibration.batches(1))[:TIMING_IMAGES]
        latency_model = _latency_model(model, ignored, timing_images, config, imgsz, progress)
        goal: Goal = (
            LatencyGoal(latency_model, {m: n for n, m in model.named_modules()})
            if unit == "latency" and latency_model is not None
            else CountGoal(unit, imgsz)
        )
        round_to = round_to_of(config.round_to, latency_model.block if latency_model else None, unit)
        unpruned = deepcopy(model) if latency_model is not None else None
        outcome = prune_and_reconstruct(
            model,
            ignored,
            batches,
            keep,
            Guards(config.max_layer_ratio, config.min_channels, round_to),
            goal=goal,
            steps=steps,
            sensitivity_images=config.sensitivity_images,
            remove_blocks=config.remove_blocks,
            importance=self.importance,
            progress=progress,
        )
        record = {
            "steps": steps,
            "calibration": calibration.record(),
            "kept_features": outcome.kept_features(model),
        }
        record["round_to"] = round_to
        if config.remove_blocks:
            record["removed_blocks"] = outcome.blocks
        if unpruned is not None and latency_model is not None:
            record["latency"] = _timed(unpruned, model, latency_model, timing_images, config, imgsz, progress)
        return model, record


def round_to_of(configured: int | str | None, block: int | None, unit: str) -> int:
    """The channel step of the cuts: auto is the latency model's block. A latency goal steps by whole
    blocks: a cut inside a block saves no time, so a greedy cut by time per accuracy would never take it
    (round_to 8 on a kernel with 16-channel blocks stalled a 0.8 goal at 0.96)."""
    if configured == "auto":
        return block or 8
    count = int(configured or 1)
    return math.lcm(count, block) if unit == "latency" and block else count


def _latency_model(
    model: nn.Module, ignored, images, config: ReconstructConfig, imgsz: int, progress: Progress
) -> LatencyModel | None:
    """The latency model of `model` on `config.latency_engine`, fitted on timed width variants; None
    when the config measures no latency."""
    if not config.measures_latency:
        return None
    timings = measure_variants(
        model,
        ignored,
        images,
        engine=config.latency_engine,
        imgsz=imgsz,
        threads=config.latency_threads,
        variants=config.latency_variants,
        guards=(config.max_layer_ratio, config.min_channels),
        progress=lambda done: progress(f"timing width variants on {config.latency_engine}", done),
    )
    return fit(timings, config.latency_engine, imgsz, config.latency_threads)


def _timed(
    unpruned: nn.Module,
    model: nn.Module,
    latency_model: LatencyModel,
    images,
    config: ReconstructConfig,
    imgsz: int,
    progress: Progress,
) -> dict:
    """The latency model's record, its prediction and the measured latency of the pruned model against
    the unpruned one."""
    progress(f"timing the pruned model against the unpruned one on {config.latency_engine}", 0.0)
    check = check_latency(
        unpruned, model, images, engine=config.latency_engine, imgsz=imgsz, threads=config.latency_threads
    )
    predicted = latency_model.predict(conv_widths(model)) / latency_model.predict(conv_widths(unpruned))
    return {
        "model": latency_model.record(),
        "goal": config.latency,
        "predicted": round(predicted, 4),
        **check.record(),
    }
