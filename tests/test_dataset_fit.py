"""Datasets are checked against the model before they score it; undecodable images are skipped, named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from core.calibration import MIN_IMAGES, CalibrationSet
from core.errors import InputError
from pipeline.cli import app

NAMES = "names: [a, b, c, d, e, f]\n"  # the six classes of `tiny_checkpoint`


def small_dataset(root: Path, images: int, labels: str, names: str = NAMES) -> Path:
    """A data.yaml whose train and val splits are the same `images` grey images, each labelled `labels`."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(images):
        cv2.imwrite(str(root / "images" / f"{index}.png"), np.full((64, 64, 3), 90 + index, np.uint8))
        (root / "labels" / f"{index}.txt").write_text(labels)
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"train: images\nval: images\n{names}")
    return data_yaml


def bench(checkpoint: Path, data_yaml: Path, out: Path):
    args = ["bench", "--artifact", str(checkpoint), "--val", str(data_yaml), "--imgsz", "64"]
    return CliRunner().invoke(app, [*args, "--no-memory", "-o", str(out)])


def test_bench_refuses_a_label_class_beyond_the_models_classes(tiny_checkpoint, tmp_path):
    data_yaml = small_dataset(tmp_path / "data", 2, "2 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data" / "labels" / "1.txt").write_text("1 0.5 0.5 0.2 0.2\n99 0.4 0.4 0.1 0.1\n")
    result = bench(tiny_checkpoint, data_yaml, tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    label = tmp_path / "data" / "labels" / "1.txt"
    assert f"{label}: line 2: class id 99 is outside the model's 6 classes (0..5)" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "r.json").exists()


def test_bench_refuses_a_data_yaml_whose_names_count_differs(tiny_checkpoint, tmp_path):
    data_yaml = small_dataset(tmp_path / "data", 2, "0 0.5 0.5 0.2 0.2\n", names="names: [a, b, c]\n")
    result = bench(tiny_checkpoint, data_yaml, tmp_path / "r.json")
    assert result.exit_code == 2, result.output
    assert f"{data_yaml}: names lists 3 classes but the model predicts 6" in " ".join(result.output.split())


def test_undecodable_calibration_image_is_skipped_and_named(tmp_path, caplog):
    data_yaml = small_dataset(tmp_path / "data", MIN_IMAGES, "")
    broken = tmp_path / "data" / "images" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    calibration = CalibrationSet.from_dataset(data_yaml, imgsz=64)
    assert len(calibration) == MIN_IMAGES and broken not in calibration.files
    assert f"{broken}: cannot decode this image; skipped" in caplog.messages
    (tmp_path / "data" / "images" / "0.png").write_bytes(b"not a png either")
    with pytest.raises(InputError, match=f"at least {MIN_IMAGES} images that decode, found {MIN_IMAGES - 1}"):
        CalibrationSet.from_dataset(data_yaml, imgsz=64)
