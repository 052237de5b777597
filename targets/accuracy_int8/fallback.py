"""Return the most sensitive layers to float, in growing chunks, until the mAP50-95 drop is within bound.

Full INT8 is measured first (the head's post-processing is float, as in every INT8 build). If its drop
against FP32 exceeds the bound (`targets.accuracy_bound`), the layer groups are ranked by sensitivity
and the top 1, 2, 4, 8, ... go back to float, with mAP measured only at those checkpoints, on the val
set, with ONNX Runtime.
The loop stops at the first checkpoint within the bound. When none is (every group float, or
`max_steps` reached) the best model measured is kept and labelled `met: false`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from benchmarks.accuracy import evaluate
from core.errors import InputError
from targets.accuracy_bound import AccuracyBound
from targets.accuracy_int8.layers import quantizable_groups
from targets.accuracy_int8.quantizer import CachedQuantizer
from targets.accuracy_int8.sensitivity import SCORE_NAME, LayerScore, probe_images, rank_layers
from targets.base import RunOptions
from targets.onnxruntime_runner import OnnxRuntimeRunner

if TYPE_CHECKING:
    from rich.table import Table

    from core.calibration import CalibrationSet
    from targets.options import AccuracyLoopOptions
    from targets.qdq import QdqScheme

log = logging.getLogger(__name__)

SENSITIVITY_IMAGES = 8
# Writes a Q/DQ model with the given nodes in float, returns every node left in float.
Writer = Callable[[Path, list[str]], list[str]]


@dataclass(frozen=True)
class Step:
    step: int
    float_layers: int  # how many of the most sensitive groups are float
    map50_95: float
    map50: float


def float_layer_schedule(n_layers: int, max_steps: int | None = None) -> list[int]:
    """Float-group counts at each checkpoint: 0, 1, 2, 4, ... and finally all `n_layers`.

    `max_steps` caps the checkpoints after step 0.
    """
    counts = [0]
    while counts[-1] < n_layers:
        counts.append(min(max(1, 2 * counts[-1]), n_layers))
    return counts if max_steps is None else counts[: max_steps + 1]


def within_bound(fp32_map: float, map50_95: float, max_drop: float) -> bool:
    return AccuracyBound(max_drop).met(fp32_map, map50_95)


def run_steps(
    schedule: list[int],
    measure: Callable[[int], tuple[float, float]],
    fp32_map: float,
    max_drop: float,
) -> list[Step]:
    """Measure (mAP50-95, mAP50) at each checkpoint; stop at the first one within the bound."""
    steps: list[Step] = []
    for index, float_layers in enumerate(schedule):
        map50_95, map50 = measure(float_layers)
        steps.append(Step(index, float_layers, map50_95, map50))
        if within_bound(fp32_map, map50_95, max_drop):
            break
    return steps


def chosen_step(steps: list[Step], fp32_map: float, max_drop: float) -> Step:
    """The first step within the bound, else the best measured (fewest float layers among equals)."""
    if within_bound(fp32_map, steps[-1].map50_95, max_drop):
        return steps[-1]
    return max(steps, key=lambda s: (s.map50_95, -s.float_layers))


@dataclass(frozen=True)
class AccuracyControl:
    float_nodes: list[str]  # every node left in float in the kept model, head post-processing included
    record: dict[str, Any]  # stored as `accuracy_control` in artifact.json

    @property
    def met(self) -> bool:
        return bool(self.record["met"])


def control_options(options: AccuracyLoopOptions) -> dict[str, Any]:
    """The loop's keyword arguments from a target's build options (`val_data`, `max_map_drop`, ...)."""
    if not options.val_data:
        raise InputError("--max-drop-vs-fp32 needs a validation set", hint="pass --val data.yaml")
    return {
        "val_data": Path(options.val_data),
        "bound": AccuracyBound.from_options(options),
        "max_steps": options.max_steps,
        "sensitivity_images": options.sensitivity_images or SENSITIVITY_IMAGES,
    }


def quantize_within_map_drop(
    onnx_in: Path,
    onnx_out: Path,
    calibration: CalibrationSet,
    scheme: QdqScheme,
    *,
    val_data: Path,
    bound: AccuracyBound,
    max_steps: int | None = None,
    sensitivity_images: int = SENSITIVITY_IMAGES,
    write: Writer | None = None,
    quantizer: str = "onnxruntime.quantization",
) -> AccuracyControl:
    """Write to `onnx_out` the Q/DQ model with the fewest float groups whose mAP50-95 drop against the
    FP32 ONNX is within `bound` (or the best one measured), and return its record.

    Layers are ranked with onnxruntime.quantization in `scheme` (its calibration cached); `write` makes
    the candidates (default: the same quantizer), so another tool's Q/DQ file goes through the loop.
    """
    import onnxruntime

    if max_steps is not None and max_steps < 0:
        raise InputError(f"max_steps must be 0 or more, got {max_steps}")
    imgsz = calibration.imgsz
    groups = quantizable_groups(onnx_in, scheme)
    by_name = {group.name: group for group in groups}
    ranking: list[LayerScore] = []
    float_nodes: dict[int, list[str]] = {}

    with tempfile.TemporaryDirectory(prefix="edgepipe-accuracy-int8-") as tmp:
        ranker = CachedQuantizer(Path(onnx_in), calibration, scheme, Path(tmp) / "ranges.json")
        writer = write or ranker.write
        fp32_map50_95, fp32_map50 = val_map(Path(onnx_in), val_data, imgsz)
        max_map_drop = bound.limit(fp32_map50_95)
        log.info(
            f"FP32: mAP50-95 {fp32_map50_95:.4f}, mAP50 {fp32_map50:.4f}; {len(groups)} layer groups; "
            f"INT8 may drop {max_map_drop:.4f} ({bound.rule})"
        )

        def candidate(count: int) -> Path:
            return Path(tmp) / f"float_{count}.onnx"

        def measure(count: int) -> tuple[float, float]:
            if count and not ranking:
                probes = probe_images(calibration, sensitivity_images)
                log.info(f"INT8 is outside the bound: falling back, ranking {len(groups)} layer groups")
                ranking.extend(rank_layers(ranker, groups, probes))
            keep = [node for score in ranking[:count] for node in by_name[score.layer].nodes]
            float_nodes[count] = writer(candidate(count), keep)
            map50_95, map50 = val_map(candidate(count), val_data, imgsz)
            log.info(
                f"{count} layer groups in float: mAP50-95 {map50_95:.4f} "
                f"(drop {fp32_map50_95 - map50_95:+.4f}, bound {max_map_drop:.4f}), mAP50 {map50:.4f}"
            )
            return map50_95, map50

        steps = run_steps(float_layer_schedule(len(groups), max_steps), measure, fp32_map50_95, max_map_drop)
        chosen = chosen_step(steps, fp32_map50_95, max_map_drop)
        shutil.copyfile(candidate(chosen.float_layers), onnx_out)

    met = within_bound(fp32_map50_95, chosen.map50_95, max_map_drop)
    record = {
        "max_map_drop": max_map_drop,
        "bound": bound.rule,
        "met": met,
        "fell_back": chosen.float_layers > 0,
        "metric": "mAP50-95",
        "val_data": str(val_data),
        "measured_with": f"onnxruntime {onnxruntime.__version__} (CPU)",
        "quantized_with": quantizer,
        "fp32": {"map50_95": fp32_map50_95, "map50": fp32_map50},
        "final": {**asdict(chosen), "drop": fp32_map50_95 - chosen.map50_95},
        "float_layers": [score.layer for score in ranking[: chosen.float_layers]],
        "layer_groups": len(groups),
        "steps": [asdict(step) for step in steps],
        "max_steps": max_steps,
        "sensitivity": {"score": SCORE_NAME, "images": sensitivity_images if ranking else 0},
        "ranking": [asdict(score) for score in ranking],
    }
    return AccuracyControl(float_nodes=float_nodes[chosen.float_layers], record=record)


def val_map(onnx_path: Path, val_data: Path, imgsz: int) -> tuple[float, float]:
    """(mAP50-95, mAP50) of an ONNX model run by ONNX Runtime: the path `edgepipe bench` measures."""
    accuracy = evaluate(OnnxRuntimeRunner(onnx_path, "int8", RunOptions()), val_data, imgsz)
    return accuracy.map50_95, accuracy.map50


def steps_table(record: dict[str, Any]) -> Table:
    """The loop's checkpoints as a rich table, FP32 first and the kept step marked."""
    fp32 = record["fp32"]["map50_95"]
    final = record["final"]
    verdict = "[green]within bound[/green]" if record["met"] else "[red]bound NOT met[/red]"
    title = f"accuracy-checked INT8: max mAP50-95 drop {record['max_map_drop']:.4f} ({verdict})"
    table = Table(title=title)
    for column in ("step", "layer groups in float", "mAP50-95", "mAP50", "drop vs FP32", ""):
        table.add_column(column, justify="right" if column not in ("", "step") else "left")
    fp32_map50 = record["fp32"]["map50"]
    table.add_row("fp32", str(record["layer_groups"]), f"{fp32:.4f}", f"{fp32_map50:.4f}", "", "")
    for step in record["steps"]:
        kept = "kept" if step["step"] == final["step"] else ""
        drop = fp32 - step["map50_95"]
        style = "green" if within_bound(fp32, step["map50_95"], record["max_map_drop"]) else "red"
        table.add_row(
            str(step["step"]),
            str(step["float_layers"]),
            f"{step['map50_95']:.4f}",
            f"{step['map50']:.4f}",
            f"[{style}]{drop:+.4f}[/{style}]",
            kept,
        )
    layers = record["float_layers"]
    shown = ", ".join(layers[:12]) + (f" ... ({len(layers)} in all)" if len(layers) > 12 else "")
    table.caption = f"in float: {shown or 'none (full INT8)'}; head post-processing always float"
    return table
