"""Load, check and save Ultralytics detector checkpoints (YOLOv8, YOLO11, YOLO26: `core.families`).

Pickled checkpoints can run code when loaded: every checkpoint is opened by `core.safe_load` (weights
only, against an allow-list of model classes), and each artifact's sha256 is recorded so a swapped file is
noticed before it is used. torch and Ultralytics are imported inside the functions, so that importing this
module (and the CLI above it) stays cheap.
"""

from __future__ import annotations

import io
from copy import deepcopy
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import sha256_file, write_atomic
from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.families import check_detector, select_inference_branch
from core.safe_load import read_checkpoint

if TYPE_CHECKING:
    from ultralytics.nn.tasks import DetectionModel


def check_sha256(path: Path | str, expected: str) -> None:
    """A pinned checkpoint (`model_sha256`): compare its bytes before anything unpickles it."""
    actual = sha256_file(Path(path))
    if actual != expected.lower():
        raise InputError(
            f"sha256 is {actual}, not the pinned {expected} (model_sha256)",
            path=path,
            hint="the file changed: check where it came from, then update the pin",
        )


def open_checkpoint(path: Path | str) -> Any:
    """The unpickled checkpoint (`core.safe_load`); an InputError for a missing, foreign or refused file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    if path.suffix != ".pt":
        raise InputError("expected an Ultralytics .pt checkpoint", path=path)
    try:
        return read_checkpoint(path)
    except InputError:
        raise
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"cannot read checkpoint: {exc}", path=path) from exc


def load_detection_model(path: Path | str) -> DetectionModel:
    """The float32 DetectionModel in eval mode, or an InputError that says what the file is instead."""
    path = Path(path)
    ckpt = open_checkpoint(path)
    from ultralytics.nn.tasks import DetectionModel

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
    ckpt = open_checkpoint(path)
    return dict(ckpt.get("edgepipe") or {}) if isinstance(ckpt, dict) else {}


def ultralytics_copy(path: Path | str, out_path: Path) -> Path:
    """A copy of a checkpoint for Ultralytics' own loaders (exporter, trainer), which unpickle fully:
    re-saved from the objects the restricted load built, so it holds nothing the original could smuggle."""
    import torch

    buffer = io.BytesIO()
    torch.save(open_checkpoint(path), buffer)
    return write_atomic(Path(out_path), buffer.getvalue())


def class_names(model: DetectionModel) -> dict[int, str]:
    names = getattr(model, "names", None) or {i: str(i) for i in range(model.model[-1].nc)}
    return dict(enumerate(names)) if isinstance(names, list) else dict(names)


def count_params(model: DetectionModel) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: DetectionModel, imgsz: int = DEFAULT_IMGSZ) -> float:
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
