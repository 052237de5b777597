"""Which Ultralytics detector family a model belongs to, and the tasks and families edgepipe takes.

edgepipe prunes, exports and measures detection models of three families, told apart by their blocks:

- YOLO26: an end-to-end Detect head (a one-to-one branch beside the one-to-many one, no DFL, no NMS);
- YOLO11: C3k2 blocks and C2PSA attention with a Detect head that needs NMS;
- YOLOv8: C2f blocks.

Pruned checkpoints hold edgepipe's split blocks (`pipeline.modules`) in place of C2f/C3k2 and C2PSA and
keep their family. Any other task (segmentation, pose, OBB, classification) or family is refused with
the reason, before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InputError

SUPPORTED_TASKS = ("detect",)
FAMILIES = ("yolov8", "yolo11", "yolo26")
FAMILY_NAMES = {"yolov8": "YOLOv8", "yolo11": "YOLO11", "yolo26": "YOLO26"}

# Model classes and heads by task, as Ultralytics names them.
_TASK_OF_MODEL = {
    "DetectionModel": "detect",
    "SegmentationModel": "segment",
    "PoseModel": "pose",
    "OBBModel": "obb",
    "ClassificationModel": "classify",
}
_TASK_OF_HEAD = {
    "Segment": "segment",
    "Segment26": "segment",
    "Pose": "pose",
    "Pose26": "pose",
    "OBB": "obb",
    "OBB26": "obb",
    "Classify": "classify",
}
_COMMON = {"Conv", "SPPF", "Upsample", "Concat", "Detect"}
_V8 = {"C2f", "C2fSplit"}
_V11 = {"C3k2", "C2PSA", "C2PSASplit", "C2fSplit"}


def task_of(model: Any) -> str:
    """'detect', 'segment', 'pose', 'obb', 'classify', or the model's class name when it is none of them."""
    name = type(model).__name__
    layers = getattr(model, "model", None)
    head = type(layers[-1]).__name__ if layers is not None and len(layers) else ""
    return _TASK_OF_HEAD.get(head) or _TASK_OF_MODEL.get(name, name)


def family_of(model: Any) -> str:
    """'yolov8', 'yolo11' or 'yolo26' for a detection model; ValueError naming the blocks it does not know."""
    blocks = {type(layer).__name__ for layer in model.model}
    unknown = sorted(blocks - _COMMON - _V8 - _V11)
    if unknown:
        raise ValueError(", ".join(unknown))
    head = model.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        return "yolo26"
    return "yolo11" if blocks & (_V11 - {"C2fSplit"}) else "yolov8"


def check_detector(model: Any, path: Path) -> str:
    """The family of `model`, read from `path`; an InputError naming its task or its unknown blocks."""
    task = task_of(model)
    if task not in SUPPORTED_TASKS:
        raise InputError(
            f"a {task} model ({type(model).__name__}); edgepipe takes {supported()}",
            path=path,
        )
    try:
        return family_of(model)
    except ValueError as exc:
        raise InputError(
            f"unknown detector family: blocks {exc} are not those of {families_list()}",
            path=path,
            hint=f"edgepipe takes {supported()}",
        ) from None


def supported() -> str:
    return f"{' / '.join(SUPPORTED_TASKS)} models of {families_list()}"


def families_list() -> str:
    return ", ".join(FAMILY_NAMES[f] for f in FAMILIES)


def select_inference_branch(model: Any) -> None:
    """Make an end-to-end head (YOLO26) infer with its one-to-one branch, (N, 300, 6) without NMS, as
    Ultralytics' `val` and exporter do by default; a model built from YAML starts on the other branch."""
    head = model.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        head.end2end = True
