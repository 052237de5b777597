"""One pre-process (square letterbox), one decode + NMS and one COCO-style mAP for every Runner.

Decode + NMS are Ultralytics' own, with its `val` settings (conf 0.001, IoU 0.7, up to 300 boxes,
multi-label), so detections equal those of `yolo val` at batch 1. An end-to-end head (YOLO26) outputs
its final boxes, (N, 300, 6): they are only filtered by confidence, as `val` does, without NMS. The
metric is faster-coco-eval on a COCO ground truth converted in memory from the YOLO labels (no crowds),
with maxDets 300 instead of COCO's 100 so the low-confidence tail Ultralytics counts is kept (it changes
mAP by < 0.0001 here).

Boxes are scored as the model drew them, not clipped to the image: Ultralytics `val` computes IoU on
unclipped boxes (only `predict` clips), and on a weak detector whose boxes reach past the border the clip
added 0.0047 to the synthetic YOLO11n reference's mAP50-95 at 160 px (0.3235 clipped, 0.3189 unclipped,
against `val`'s 0.3189 with a square letterbox and 0.3157 with its default rect batches).

The metric still differs from Ultralytics' in how it reads the precision-recall curve (COCO samples it
at 101 recall points, Ultralytics interpolates it): the same detections score 0.31887 (COCO) vs 0.31892
(Ultralytics) on that reference. On yolov8n this path gives 0.4356 on coco128-val2017 and 0.4697 on
coco128, where Ultralytics' rect-batched `val` gives 0.4334 and 0.4652 (Ultralytics 8.4.190): within
the 0.005 agreement required with Ultralytics `val`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import progress as progress_report
from core.dataset import label_path, load_dataset, read_labels
from core.errors import InputError
from core.letterbox import Letterbox, preprocess

if TYPE_CHECKING:
    from core.runner import Runner

# Ultralytics `val` settings, so that every backend is scored the way Ultralytics scores torch.
CONF_THRESHOLD = 0.001
IOU_THRESHOLD = 0.7
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class NmsThresholds:
    """What NMS keeps. mAP is measured with `EVALUATION`; the end-to-end loop with what a deployed detector
    uses (`bench`'s e2e_* keys; by default Ultralytics `predict`'s: conf 0.25, single label)."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False

    def describe(self) -> str:
        labels = "multi-label" if self.multi_label else "single-label"
        return f"conf {self.conf:g}, iou {self.iou:g}, max_det {self.max_det}, {labels}" + (
            ", class-agnostic" if self.agnostic else ""
        )


EVALUATION = NmsThresholds(conf=CONF_THRESHOLD, iou=IOU_THRESHOLD, max_det=MAX_DETECTIONS, multi_label=True)


@dataclass(frozen=True)
class Accuracy:
    map50_95: float
    map50: float
    images: int
    total_images: int  # of the split: more than `images` when only a subset measured mAP
    dataset: str
    letterbox: str  # e.g. "square 640x640": mAP is only comparable between like letterboxes


def square_letterbox_name(imgsz: int) -> str:
    return f"square {imgsz}x{imgsz}"


def ratio_pad(box: Letterbox) -> tuple[tuple[float, float], tuple[float, float]]:
    """The Letterbox record as Ultralytics' `ratio_pad`: per-axis gain of the rounded resize, then padding."""
    h, w = box.shape
    return (round(h * box.scale) / h, round(w * box.scale) / w), box.pad


def end_to_end(raw: np.ndarray) -> bool:
    """Whether `raw` is an end-to-end head's output (YOLO26): (N, max_det, 6), rows x1 y1 x2 y2 score
    class in input pixels, best first, already free of duplicates; Detect's is (N, 4 + nc, anchors)."""
    return raw.ndim == 3 and raw.shape[-1] == 6


def decode_end_to_end(raw: np.ndarray, conf: float = CONF_THRESHOLD) -> list[np.ndarray]:
    """Per image, the rows of an end-to-end output scoring above `conf`, as Ultralytics' `val` keeps
    them: no NMS (the one-to-one head assigns one box per object)."""
    rows = np.asarray(raw, dtype=np.float32)
    return [image[image[:, 4] > conf][:MAX_DETECTIONS] for image in rows]


def postprocess(
    raw: np.ndarray,
    boxes: list[Letterbox],
    imgsz: int,
    thresholds: NmsThresholds = EVALUATION,
    clip: bool = True,
) -> list[np.ndarray]:
    """Detect output (N, 4+nc, anchors), or an end-to-end one (N, max_det, 6) -> per image (K, 6):
    x1 y1 x2 y2 conf class, original pixels. NMS (not for end-to-end outputs) at `thresholds`.

    `clip` clips the boxes to the image, as Ultralytics `predict` does; its `val` scores them unclipped
    (a box reaching past the border keeps its IoU with a label that does too), so mAP passes False."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    if end_to_end(raw):
        kept = decode_end_to_end(raw, thresholds.conf)
        tensors = [torch.from_numpy(det[: thresholds.max_det]) for det in kept]
        return _to_original(tensors, boxes, imgsz, clip)
    detections = non_max_suppression(
        torch.from_numpy(np.asarray(raw, dtype=np.float32)),
        thresholds.conf,
        thresholds.iou,
        agnostic=thresholds.agnostic,
        multi_label=thresholds.multi_label,
        max_det=thresholds.max_det,
        max_time_img=60.0,  # the default 0.05 s/image truncates NMS on a busy CPU: mAP would depend on load
    )
    return _to_original(detections, boxes, imgsz, clip)


def _to_original(detections: list, boxes: list[Letterbox], imgsz: int, clip: bool) -> list[np.ndarray]:
    """Boxes of (K, 6) tensors from letterboxed input pixels back to each original image's pixels."""
    from ultralytics.utils import ops

    out = []
    for det, box in zip(detections, boxes, strict=True):
        if clip:
            det[:, :4] = ops.scale_boxes((imgsz, imgsz), det[:, :4], box.shape, ratio_pad=ratio_pad(box))
        else:  # scale_boxes' arithmetic without its clip
            (gain_y, gain_x), (pad_x, pad_y) = ratio_pad(box)
            det[:, [0, 2]] = (det[:, [0, 2]] - pad_x) / gain_x
            det[:, [1, 3]] = (det[:, [1, 3]] - pad_y) / gain_y
        out.append(det[:, :6].numpy())
    return out


def coco_ground_truth(images: list[Path], shapes: list[tuple[int, int]], names: dict[int, str]) -> dict:
    """YOLO labels -> a COCO ground-truth dict (boxes in pixels, no crowds), image ids = list positions."""
    annotations: list[dict[str, Any]] = []
    for image_id, (image, (h, w)) in enumerate(zip(images, shapes, strict=True)):
        for cls, cx, cy, bw, bh in read_labels(image):
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": i, "width": w, "height": h} for i, (h, w) in enumerate(shapes)],
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in names.items()],
    }


def coco_detections(per_image: list[np.ndarray]) -> list[dict]:
    return [
        {
            "image_id": image_id,
            "category_id": int(cls),
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "score": float(conf),
        }
        for image_id, det in enumerate(per_image)
        for x1, y1, x2, y2, conf, cls in det
    ]


def coco_map(ground_truth: dict, detections: list[dict]) -> tuple[float, float]:
    """(mAP50-95, mAP50) by faster-coco-eval, keeping up to MAX_DETECTIONS per image as Ultralytics does.

    COCO's default maxDets=100 would drop the low-confidence tail that Ultralytics' matching counts.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if not detections:
        return 0.0, 0.0
    gt = COCO(ground_truth)
    evaluator = COCOeval_faster(gt, gt.loadRes(detections), iouType="bbox", print_function=lambda *_: None)
    evaluator.params.maxDets = [1, 10, MAX_DETECTIONS]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    map50_95, map50 = (max(float(v), 0.0) for v in evaluator.stats[:2])
    return map50_95, map50


def labelled_images(data_yaml: Path, split: str) -> tuple[list[Path], dict[int, str], str]:
    """The split's images and class names; an InputError when no image has a label file."""
    dataset = load_dataset(data_yaml)
    images = dataset.images(split)
    if not any(label_path(image).is_file() for image in images):
        raise InputError(
            f"split {split!r} has no YOLO label files (expected e.g. {label_path(images[0])})",
            path=data_yaml,
            hint="mAP needs labels; pass --no-accuracy to measure speed only",
        )
    return images, dataset.names, dataset.name


def evaluate(
    runner: Runner,
    data_yaml: Path,
    imgsz: int,
    split: str = "val",
    batch: int = 1,
    progress: bool = True,
    max_images: int | None = None,
) -> Accuracy:
    """mAP50-95 and mAP50 of `runner` on a dataset split: square letterbox, Ultralytics NMS, COCO metric.

    `max_images`: only the split's first images (a quick, partial mAP).
    A last partial batch is padded by repeating its final image, so fixed-batch engines work too.
    `progress`: report the batches done to the installed `core.progress` reporter.
    """
    images, names, dataset_name = labelled_images(Path(data_yaml), split)
    total = len(images)
    images = images[:max_images] if max_images is not None else images
    batches: Iterable[list[Path]] = [images[i : i + batch] for i in range(0, len(images), batch)]
    if progress:
        count = -(-len(images) // batch)
        batches = progress_report.track(batches, f"mAP on {dataset_name}/{split}", count)
    detections: list[np.ndarray] = []
    shapes: list[tuple[int, int]] = []
    for paths in batches:
        tensor, boxes = preprocess(paths, imgsz)
        if len(paths) < batch:
            tensor = np.concatenate([tensor, np.repeat(tensor[-1:], batch - len(paths), axis=0)])
        raw = runner.infer(tensor)[: len(paths)]
        detections.extend(postprocess(raw, boxes, imgsz, clip=False))
        shapes.extend(box.shape for box in boxes)
    map50_95, map50 = coco_map(coco_ground_truth(images, shapes, names), coco_detections(detections))
    return Accuracy(map50_95, map50, len(images), total, dataset_name, square_letterbox_name(imgsz))
