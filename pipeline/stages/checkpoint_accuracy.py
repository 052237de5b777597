"""mAP50-95 of a checkpoint, with PyTorch on the run's val split: what prune and fine-tune record about the
model they were given and the one they wrote, so the run and the report show what each stage cost.

The bench stage's decode, NMS and COCO metric (`benchmarks.accuracy`) on the torch target's Runner: the
figure equals what `bench` reports for torch/fp32 of the same checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.accuracy import evaluate
from core.artifacts import Artifact
from pipeline.stages.base import RunSettings
from targets.base import RunOptions
from targets.pytorch import TorchRunner

SPLIT = "val"
BATCH = 8  # mAP does not depend on it; a last partial batch is padded


def checkpoint_map(checkpoint: Path, settings: RunSettings) -> float | None:
    """The checkpoint's mAP50-95 on the val split, or None when the run names no val data."""
    if settings.val is None:
        return None
    options = RunOptions(batch=BATCH, device=settings.device)
    with TorchRunner(Path(checkpoint), "fp32", options) as runner:
        return evaluate(runner, settings.val, settings.imgsz, SPLIT, BATCH, progress=False).map50_95


def input_map(model: Artifact, settings: RunSettings) -> float | None:
    """A stage's input checkpoint's mAP50-95: recorded by the stage before it, else measured."""
    recorded = model.metadata.get("map50_95")
    return float(recorded) if recorded is not None else checkpoint_map(model.path, settings)


def map_metadata(before: float | None, after: float | None) -> dict[str, float]:
    """A stage's artifact metadata: `map50_95_before` (of its input) and `map50_95` (of its output)."""
    pairs = {"map50_95_before": before, "map50_95": after}
    return {key: round(value, 4) for key, value in pairs.items() if value is not None}
