"""The INT8 calibration set every target shares: a seeded sample of the user's training images.

Images are letterboxed exactly as at inference (`benchmarks.accuracy`), so the activation ranges an INT8
engine is calibrated on are the ranges it will see. The hash covers the chosen files' contents, the image
size and the sample size, and is recorded in every engine built from it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import sha256_file
from core.dataset import load_dataset
from core.errors import InputError
from core.letterbox import decodable, preprocess

MIN_IMAGES = 8


@dataclass(frozen=True)
class CalibrationSet:
    files: tuple[Path, ...]
    imgsz: int
    dataset: str  # the data.yaml the images came from, for the record
    sha256: str

    @classmethod
    def from_files(cls, paths: list[Path], imgsz: int, dataset: str) -> CalibrationSet:
        files = tuple(decodable(Path(f) for f in paths))
        if len(files) < MIN_IMAGES:
            raise InputError(
                f"calibration needs at least {MIN_IMAGES} images that decode, found {len(files)}",
                path=dataset,
                hint="point --data at a data.yaml whose train split holds more images",
            )
        digest = hashlib.sha256(f"imgsz={imgsz};size={len(files)}".encode())
        for file in files:
            digest.update(sha256_file(file).encode())
        return cls(files=files, imgsz=imgsz, dataset=dataset, sha256=digest.hexdigest())

    @classmethod
    def from_dataset(
        cls, data_yaml: Path | str, imgsz: int, size: int = 300, seed: int = 0, split: str = "train"
    ) -> CalibrationSet:
        """`size` images drawn with `seed` from the sorted split (all of them when the split is smaller)."""
        dataset = load_dataset(data_yaml)
        images = sorted(dataset.images(split))
        chosen = images if len(images) <= size else sorted(random.Random(seed).sample(images, size))
        return cls.from_files(chosen, imgsz, str(dataset.yaml_path))

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        """NCHW float32 RGB 0..1 batches, letterboxed to imgsz; a short last batch is dropped."""
        for start in range(0, len(self.files) - batch_size + 1, batch_size):
            yield preprocess(list(self.files[start : start + batch_size]), self.imgsz)[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches(1)

    def record(self) -> dict[str, Any]:
        """What an engine's artifact.json stores about its calibration."""
        return {"sha256": self.sha256, "images": len(self.files), "dataset": self.dataset}
