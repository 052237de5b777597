"""The training set a fine-tune really uses: labelled images, pseudo-labelled extras, and a held-apart part.

- **Held apart.** A seeded fraction of the labelled training images is kept out of training and used
  only to select the best epoch, so checkpoint selection never sees the evaluation set (and never
  grades the model on images it trained on: coco128's val split *is* its train split).
- **Unlabelled images** (a folder, or a dataset whose labels are ignored) are labelled by the unpruned
  teacher: its detections above `PSEUDO_CONFIDENCE` become YOLO label files. Distillation then teaches
  the teacher's full outputs on them too, so they add information even where pseudo-boxes are missing.

Ultralytics reads it all from a data.yaml whose splits are text files of absolute image paths.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from benchmarks.accuracy import postprocess
from core.dataset import IMAGE_SUFFIXES, load_dataset
from core.errors import InputError
from core.letterbox import preprocess

PSEUDO_CONFIDENCE = 0.3  # teacher detections kept as pseudo-labels
MIN_HELD_APART = 4


def unlabelled_images(source: Path) -> list[Path]:
    """The images of a folder (recursively) or of a data.yaml's train split; labels are ignored."""
    if source.is_dir():
        images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.suffix in {".yaml", ".yml"}:
        images = sorted(load_dataset(source).images("train"))
    else:
        raise InputError("expected a folder of images or a data.yaml", path=source)
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"no images found (looked for {suffixes})", path=source)
    return images


def split_held_apart(images: Sequence[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, held apart): a seeded `fraction` of `images`, at least MIN_HELD_APART, held apart."""
    count = max(MIN_HELD_APART, round(len(images) * fraction)) if fraction > 0 else 0
    if count >= len(images):
        raise InputError(
            f"cannot hold {count} of {len(images)} training images apart for checkpoint selection",
            hint="add training images or lower finetune.holdout",
        )
    held = set(random.Random(seed).sample(range(len(images)), count))
    train = [p for i, p in enumerate(images) if i not in held]
    return train, [p for i, p in enumerate(images) if i in held]


def pseudo_label(teacher, images: Sequence[Path], out_dir: Path, imgsz: int) -> list[Path]:
    """Copy-free pseudo-labelled dataset under out_dir/images and out_dir/labels; returns the image paths."""
    import torch

    image_dir, label_dir = out_dir / "images", out_dir / "labels"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    linked = []
    teacher = teacher.eval()
    for k, source in enumerate(images):
        pixels, boxes = preprocess([source], imgsz)
        with torch.no_grad():
            raw = teacher(torch.from_numpy(pixels))[0].numpy()
        detections = postprocess(raw, boxes, imgsz)[0]
        height, width = boxes[0].shape
        rows = [_yolo_row(det, width, height) for det in detections if float(det[4]) >= PSEUDO_CONFIDENCE]
        target = image_dir / f"{k:06d}{source.suffix.lower()}"
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(source.resolve())
        (label_dir / f"{k:06d}.txt").write_text("".join(rows))
        linked.append(target)
    return linked


def _yolo_row(det: np.ndarray, width: int, height: int) -> str:
    x1, y1, x2, y2, _conf, cls = (float(v) for v in det[:6])
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    w, h = (x2 - x1) / width, (y2 - y1) / height
    return f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def write_data_yaml(
    out_dir: Path, names: dict[int, str], train: Sequence[Path], held_apart: Sequence[Path]
) -> Path:
    """A data.yaml (train/val as image lists) for Ultralytics' trainer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # absolute(), not resolve(): a pseudo-labelled image is a link whose labels sit beside the link
    (out_dir / "train.txt").write_text("".join(f"{p.absolute()}\n" for p in train))
    (out_dir / "val.txt").write_text("".join(f"{p.absolute()}\n" for p in held_apart))
    path = out_dir / "data.yaml"
    path.write_text(
        yaml.safe_dump(
            {"path": str(out_dir.resolve()), "train": "train.txt", "val": "val.txt", "names": names},
            sort_keys=False,
        )
    )
    return path
