"""A measured latency model of the engine a pruned detector will run as, so that cuts go where time goes.

MACs do not predict milliseconds on a CPU that runs bf16 or INT8 arithmetic fast: there the time sits in
high-resolution layers, in channel counts that do not fill the vector unit's blocks, and in per-layer
overhead. So the model is fitted on the engine itself (OpenVINO, at the precision, input size and thread
count it will run with):

1. Random width variants of the detector are built (each prunable group keeps a random share of its
   channels, within the pruning's guards), exported as the deployment exports them (BatchNorm fused,
   ONNX), compiled and timed: p50 of the whole model, and OpenVINO's per-layer counters.
2. Each convolution's time (with its activation, where the runtime runs that apart) is fitted as
   `a + b * blocks(cin) * blocks(cout) + c * blocks(cout)`: arithmetic, plus the output it writes, where
   `blocks` rounds a channel count up to the CPU kernel's channel block (the block size that explains
   the times best is the one the hardware prefers: `round_to: auto`).
3. The whole model's p50 is fitted as `c + s * sum(conv times)`: reorders, concats and the executor's
   overhead scale with it.

Held-apart variants are predicted before the final fit on all of them, and the error is reported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.pruning.engine_timing import CompiledEngine, deployment_onnx
from pipeline.pruning.groups import GroupPruner
from pipeline.pruning.guards import Guards

BLOCKS = (8, 16, 32, 64)  # candidate channel blocks of the CPU's convolution kernels
WIDTH_STEP = 8  # variants' channel counts are multiples of this, so that every block size is tested
SPREAD = 0.6  # a variant of depth d cuts each group by d * U(1 - SPREAD, 1) of what it may lose
HELD_APART = 0.25  # share of the variants predicted before the final fit
PROFILED_RUNS = 8  # profiled inferences per variant for the per-convolution times


@dataclass
class EngineTiming:
    """One compiled variant: its p50 and each convolution's time (ms), by torch module name."""

    p50_ms: float
    conv_ms: dict[str, float]
    widths: dict[str, tuple[int, int]]  # module name -> (in channels, out channels)


@dataclass
class LatencyModel:
    """Per-convolution time in ms as a function of its widths, and the whole model's p50."""

    engine: str
    imgsz: int
    threads: int | None
    block: int
    conv: dict[str, tuple[float, float, float]]  # module name -> (a, b, c)
    scale: float = 1.0
    intercept: float = 0.0
    held_apart_error: float | None = None  # mean |predicted - measured| / measured on held-apart variants
    held_apart: list[tuple[float, float]] = field(default_factory=list)  # (predicted, measured) ms

    def conv_ms(self, name: str, cin: int, cout: int) -> float:
        """One convolution's share of the p50 (ms) at these widths; 0 for one the model never timed."""
        a, b, c = self.conv.get(name, (0.0, 0.0, 0.0))
        out = _blocks(cout, self.block)
        return self.scale * (a + b * _blocks(cin, self.block) * out + c * out)

    def predict(self, widths: dict[str, tuple[int, int]]) -> float:
        """The whole model's p50 (ms) with these (in, out) widths per convolution."""
        return self.intercept + sum(self.conv_ms(name, *w) for name, w in widths.items())

    def record(self) -> dict:
        """What the checkpoint and the report keep of the model (not its coefficients)."""
        return {
            "engine": self.engine,
            "imgsz": self.imgsz,
            "threads": self.threads,
            "block": self.block,
            "held_apart_error": self.held_apart_error,
            "held_apart": [[round(p, 3), round(m, 3)] for p, m in self.held_apart],
        }


def conv_widths(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(in channels, out channels) of every Conv2d, by module name."""
    return {n: (m.in_channels, m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def random_variant(
    model: nn.Module,
    ignored: list[nn.Module],
    example: torch.Tensor,
    guards_of: Callable[[int, int], int],
    rng: random.Random,
    depth: float,
) -> nn.Module:
    """A copy of `model` whose prunable groups each lose a random share, up to `depth`, of the channels
    they may lose. Variants of evenly spread depths span the unpruned model to the most pruned one, so
    that the latency a pruning ends at lies inside what the model was fitted on."""
    variant = deepcopy(model)
    names = {m: n for n, m in model.named_modules()}
    by_name = dict(variant.named_modules())
    pruner = GroupPruner(variant, example, [by_name[names[m]] for m in ignored])
    for group in pruner.groups():
        removable = guards_of(group.size, pruner.initial[group.root])
        if removable < WIDTH_STEP:
            continue
        cut = round(removable * depth * rng.uniform(1 - SPREAD, 1) / WIDTH_STEP) * WIDTH_STEP
        pruner.remove(group, rng.sample(range(group.size), cut))
    return variant


def measure_variants(
    model: nn.Module,
    ignored: list[nn.Module],
    calibration: Sequence[np.ndarray],
    *,
    engine: str,
    imgsz: int,
    threads: int | None,
    variants: int,
    guards: tuple[float, int],
    seed: int = 0,
    rounds: int = 3,
    runs: int = 10,
    progress: Callable[[float], None] | None = None,
) -> list[EngineTiming]:
    """The unpruned model and `variants` random width variants of it, each exported and compiled, then
    timed in `rounds` interleaved rounds (a change of machine load hits them all alike) and profiled."""
    widths_guards = Guards(*guards, WIDTH_STEP)
    rng = random.Random(seed)
    example = torch.from_numpy(calibration[0]) if calibration else torch.zeros(1, 3, imgsz, imgsz)
    compiled, widths = [], []
    for k in range(variants + 1):
        variant = (
            model
            if k == 0
            else random_variant(
                model,
                ignored,
                example,
                widths_guards.removable,
                rng,
                depth=k / variants,
            )
        )
        compiled.append(CompiledEngine(deployment_onnx(variant, imgsz), engine, imgsz, threads, calibration))
        widths.append(conv_widths(variant))
        if progress:
            progress(0.8 * (k + 1) / (variants + 1))
    times: list[list[float]] = [[] for _ in compiled]
    for _ in range(rounds):
        for k, engine_k in enumerate(compiled):
            times[k] += engine_k.latencies(runs)
    timings = [
        EngineTiming(float(np.median(t)), engine_k.conv_times(PROFILED_RUNS), w)
        for t, engine_k, w in zip(times, compiled, widths, strict=True)
    ]
    if progress:
        progress(1.0)
    return timings


def fit(timings: Sequence[EngineTiming], engine: str, imgsz: int, threads: int | None) -> LatencyModel:
    """The latency model of these timings: the block size that explains the per-layer times best, each
    convolution's (a, b), and the p50's scale and intercept; the held-apart error from a fit on the rest."""
    step = round(1 / HELD_APART)  # every 4th variant, across the whole range of depths
    held = list(timings[step // 2 :: step]) if len(timings) >= step else []
    training = [t for t in timings if all(t is not h for h in held)]
    block = min(BLOCKS, key=lambda b: _layer_residual(training, b))
    model = _fit_with_block(training, engine, imgsz, threads, block)
    pairs = [(model.predict(t.widths), t.p50_ms) for t in held]
    final = _fit_with_block(timings, engine, imgsz, threads, block)
    if pairs:
        final.held_apart = pairs
        final.held_apart_error = float(np.mean([abs(p - m) / m for p, m in pairs]))
    return final


def _blocks(channels: int, block: int) -> int:
    return math.ceil(channels / block) * block


def _layer_fit(points: Sequence[tuple[int, int, float]]) -> tuple[tuple[float, float, float], float]:
    """Non-negative least squares t = a + b*cin*cout + c*cout over (cin, cout, t) points; returns the
    coefficients and the squared residual. Widths that never varied leave their terms at zero."""
    from scipy.optimize import nnls

    cin, cout, t = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    candidates = [np.ones_like(t), cin * cout, cout]
    used = [0] + [k for k in (1, 2) if np.ptp(candidates[k]) > 0]
    if len(used) == 3 and np.ptp(cin) == 0:  # cout alone varied: one slope is all the data can tell
        used = [0, 1]
    solution, residual = nnls(np.stack([candidates[k] for k in used], 1), t)
    coefficients = [0.0, 0.0, 0.0]
    for k, value in zip(used, solution, strict=True):
        coefficients[k] = float(value)
    return (float(coefficients[0]), float(coefficients[1]), float(coefficients[2])), float(residual**2)


def _conv_points(timings: Sequence[EngineTiming], block: int) -> dict[str, list[tuple[int, int, float]]]:
    points: dict[str, list[tuple[int, int, float]]] = {}
    for timing in timings:
        for name, ms in timing.conv_ms.items():
            if name in timing.widths:
                cin, cout = timing.widths[name]
                points.setdefault(name, []).append((_blocks(cin, block), _blocks(cout, block), ms))
    return points


def _layer_residual(timings: Sequence[EngineTiming], block: int) -> float:
    return sum(_layer_fit(p)[1] for p in _conv_points(timings, block).values())


def _fit_with_block(
    timings: Sequence[EngineTiming], engine: str, imgsz: int, threads: int | None, block: int
) -> LatencyModel:
    conv = {name: _layer_fit(p)[0] for name, p in _conv_points(timings, block).items()}
    model = LatencyModel(engine, imgsz, threads, block, conv)
    sums = np.array([model.predict(t.widths) for t in timings])
    p50 = np.array([t.p50_ms for t in timings])
    if len(timings) > 1 and np.ptp(sums) > 0:
        scale, intercept = np.polyfit(sums, p50, 1)
        if scale <= 0:
            scale, intercept = float(p50.mean() / sums.mean()), 0.0
    else:
        scale, intercept = float(p50.mean() / max(sums.mean(), 1e-9)), 0.0
    model.scale, model.intercept = float(scale), float(intercept)
    return model
