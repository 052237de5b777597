"""mAP50-95 on a list of validation images, in the shapes NNCF's accuracy-control loop asks for.

NNCF ranks layers by re-validating on subsets of the validation items, so the metric is computed over
whatever images it is handed, with the same letterbox, NMS and COCO metric as `benchmarks.accuracy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from benchmarks.accuracy import coco_detections, coco_ground_truth, coco_map, labelled_images, postprocess
from core.letterbox import preprocess


def map_on_images(
    infer: Callable[[np.ndarray], np.ndarray], images: list[Path], names: dict[int, str], imgsz: int
) -> float:
    detections, shapes = [], []
    for image in images:
        tensor, boxes = preprocess([image], imgsz)
        detections.extend(postprocess(infer(tensor), boxes, imgsz, clip=False))
        shapes.append(boxes[0].shape)
    return coco_map(coco_ground_truth(images, shapes, names), coco_detections(detections))[0]


def validation_dataset(val_yaml: str | Path, imgsz: int):
    """The val split's image paths as an nncf.Dataset; NNCF's own inference gets letterboxed tensors."""
    import nncf

    images, _, _ = labelled_images(Path(val_yaml), "val")
    return nncf.Dataset(images, lambda path: preprocess([path], imgsz)[0])


def validation_fn(val_yaml: str | Path, imgsz: int) -> Callable[[object, Iterable[Path]], float]:
    """`fn(compiled_model, image_paths) -> mAP50-95` for nncf.quantize_with_accuracy_control."""
    _, names, _ = labelled_images(Path(val_yaml), "val")

    def validate(compiled_model, images: Iterable[Path]) -> float:
        return map_on_images(lambda x: compiled_model([x])[0], list(images), names, imgsz)

    return validate
