"""Load, check and save Ultralytics detector checkpoints (YOLOv8, YOLO11, YOLO26: `core.families`).

Pickled checkpoints run code when loaded: edgepipe loads only files the user named and records each
artifact's sha256 so a swapped file is noticed before it is used. torch and Ultralytics are imported
inside the functions, so that importing this module (and the CLI above it) stays cheap.
"""

from __future__ import annotations

import io
from copy import deepcopy
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import write_atomic
from core.errors import InputError
from core.families import check_detector, select_inference_branch

if TYPE_CHECKING:
    from ultralytics.nn.tasks import DetectionModel


def load_detection_model(path: Path | str) -> DetectionModel:
    """The float32 DetectionModel in eval mode, or an InputError that says what the file is instead."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    if path.suffix != ".pt":
        raise InputError("expected an Ultralytics .pt checkpoint", path=path)
    from ultralytics.nn.tasks import DetectionModel, torch_safe_load

    # Pruned checkpoints pickle `pipeline.modules.C2fSplit`: unpickling imports that module by its name.
    try:
        ckpt, _ = torch_safe_load(str(path))
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"cannot read checkpoint: {exc}", path=path) from exc
    if not isinstance(ckpt, dict):
        raise InputError("not an Ultralytics checkpoint (no model dictionary)", path=path)
    model = ckpt.get("ema") or ckpt.get("model")
    if model is None or not hasattr(model, "model"):
        kind = type(model).__name__ if model is not None else "nothing"
        raise InputError(f"not an Ultralytics model (holds {kind})", path=path)
    check_detector(model, path)
    if not isinstance(model, DetectionModel) or not hasattr(model.model[-1], "reg_max"):
        raise InputError(f"last layer is {type(model.model[-1]).__name__}, not a Detect head", path=path)
    select_inference_branch(model)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def checkpoint_metadata(path: Path | str) -> dict[str, Any]:
    """What edgepipe recorded in a checkpoint (`edgepipe` key): pruning report, kept channels, ..."""
    from ultralytics.nn.tasks import torch_safe_load

    ckpt, _ = torch_safe_load(str(path))
    return dict(ckpt.get("edgepipe") or {}) if isinstance(ckpt, dict) else {}


def class_names(model: DetectionModel) -> dict[int, str]:
    names = getattr(model, "names", None) or {i: str(i) for i in range(model.model[-1].nc)}
    return dict(enumerate(names)) if isinstance(names, list) else dict(names)


def count_params(model: DetectionModel) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: DetectionModel, imgsz: int = 640) -> float:
    """GFLOPs of one image at imgsz, counted as Ultralytics counts them (on a fused copy: 8.7 for yolov8n)."""
    from ultralytics.utils.torch_utils import get_flops

    return get_flops(deepcopy(model).fuse(verbose=False), imgsz)


def save_checkpoint(model: DetectionModel, path: Path, **metadata: Any) -> Path:
    """Write an Ultralytics-loadable checkpoint atomically; `metadata` lands under the `edgepipe` key."""
    import torch
    from ultralytics import __version__ as ultralytics_version

    snapshot = deepcopy(model).half().to(memory_format=torch.contiguous_format)
    if hasattr(snapshot, "criterion"):
        snapshot.criterion = None
    for p in snapshot.parameters():
        p.requires_grad_(False)
    buffer = io.BytesIO()
    torch.save(
        {
            "model": snapshot,
            "train_args": dict(getattr(model, "args", {}) or {}),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "version": ultralytics_version,
            "edgepipe": metadata,
        },
        buffer,
    )
    return write_atomic(Path(path), buffer.getvalue())
