"""The one pre-process every measurement and the INT8 calibration share: Ultralytics' square letterbox.

Images are resized keeping their aspect ratio and padded to imgsz x imgsz with its grey, then turned into
the RGB float32 NCHW batch in 0..1 every Runner takes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import InputError

log = logging.getLogger(__name__)
PAD_VALUE = 114  # Ultralytics' letterbox grey


def check_imgsz(value: int) -> int:
    """An input size the model can take: a positive multiple of its largest stride, 32."""
    if value < 32 or value % 32:
        raise InputError(f"must be a multiple of 32 (the model's largest stride), got {value}")
    return value


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input: scale, then padding (left, top)."""

    scale: float
    pad: tuple[float, float]
    shape: tuple[int, int]  # original (h, w)


def load_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("cannot read image", path=path)
    return image


def decodable(paths: Iterable[Path]) -> list[Path]:
    """The images that decode; each one that does not is skipped with a warning naming it."""
    usable = []
    for path in paths:
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            log.warning("%s: cannot decode this image; skipped", path)
        else:
            usable.append(path)
    return usable


def letterbox(image_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio, pad to imgsz x imgsz centred: Ultralytics' LetterBox(auto=False)."""
    h, w = image_bgr.shape[:2]
    scale = min(imgsz / h, imgsz / w)
    new_w, new_h = round(w * scale), round(h * scale)
    if (new_w, new_h) != (w, h):
        image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(
        image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, Letterbox(scale=scale, pad=(left, top), shape=(h, w))


def to_tensor(images_bgr: list[np.ndarray]) -> np.ndarray:
    """Letterboxed BGR uint8 HWC images -> one RGB float32 NCHW batch in 0..1."""
    batch = np.stack(images_bgr)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0


def preprocess(paths: list[Path], imgsz: int) -> tuple[np.ndarray, list[Letterbox]]:
    boxed = [letterbox(load_image(p), imgsz) for p in paths]
    return to_tensor([b[0] for b in boxed]), [b[1] for b in boxed]
