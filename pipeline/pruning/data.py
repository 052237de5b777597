"""The images pruning reads: a few letterboxed batches of a dataset's train split (Taylor gradients,
BatchNorm re-estimation, fine-tuning steps) and the calibration sample of the data-aware method."""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch

from core.calibration import CalibrationSet
from core.dataset import check_fits_model, load_dataset


def check_classes(data: Path, nc: int) -> None:
    """Fail when the dataset's class list or a label's class id does not fit the detection head's."""
    check_fits_model(data, nc)


def labelled_dataset(data: Path | None) -> Path | None:
    """`data` when it is a data.yaml (labels available), None for an image folder or no data."""
    return data if data is not None and data.suffix in {".yaml", ".yml"} else None


def calibration_set(data: Path, imgsz: int, size: int):
    """The seeded calibration sample of a data.yaml's train split or of an image folder."""
    from pipeline.pruning.trainset import unlabelled_images

    if data.is_dir():
        images = unlabelled_images(data)
        return CalibrationSet.from_files(sample(images, size), imgsz, str(data))
    return CalibrationSet.from_dataset(data, imgsz, size=size)


def sample(images: list[Path], size: int, seed: int = 0) -> list[Path]:
    return images if len(images) <= size else sorted(random.Random(seed).sample(images, size))


def train_batches(data: Path, imgsz: int, batch: int, count: int) -> Iterator[dict]:
    """Yield up to `count` preprocessed batches (img float 0..1, cls, bboxes, batch_idx) of the train split.

    Images are letterboxed as at inference (Ultralytics' val transforms), in a fixed order, so the result
    does not depend on a random seed.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG

    dataset = load_dataset(data)
    split = "train" if dataset.splits.get("train") else "val"
    info = check_det_dataset(str(data), autodownload=False)
    cfg = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "batch": batch, "workers": 0, "cache": False})
    images = build_yolo_dataset(cfg, info[split], batch, info, mode="val", rect=False)
    loader = build_dataloader(images, batch=batch, workers=0, shuffle=False)
    for item in islice(loader, count):
        item["img"] = item["img"].float() / 255
        yield item


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
