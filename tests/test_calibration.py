"""The shared INT8 calibration sample: deterministic, letterboxed as at inference, hashed, checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.calibration import MIN_IMAGES, CalibrationSet
from core.errors import InputError


def test_same_seed_same_files_and_hash(synth_dataset: Path):
    a = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10, seed=3)
    b = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10, seed=3)
    assert a.files == b.files
    assert a.sha256 == b.sha256
    assert len(a) == 10
    assert list(a.files) == sorted(a.files)


def test_other_seed_other_files_and_hash(synth_dataset: Path):
    a = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10, seed=0)
    b = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10, seed=1)
    assert a.files != b.files
    assert a.sha256 != b.sha256


def test_hash_covers_image_size_and_contents(synth_dataset: Path, tmp_path: Path):
    a = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10)
    assert a.sha256 != CalibrationSet.from_dataset(synth_dataset, imgsz=96, size=10).sha256
    copies = []
    for i, file in enumerate(a.files):
        copies.append(tmp_path / f"{i}.jpg")
        shutil.copyfile(file, copies[-1])
    same = CalibrationSet.from_files(copies, 64, "copy")
    assert same.sha256 == a.sha256  # contents, not paths
    copies[0].write_bytes(a.files[1].read_bytes())
    assert CalibrationSet.from_files(copies, 64, "copy").sha256 != a.sha256


def test_takes_every_image_when_the_split_is_smaller(synth_dataset: Path):
    calibration = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=10_000)
    from core.dataset import load_dataset

    assert list(calibration.files) == load_dataset(synth_dataset).images("train")


def test_batches_are_letterboxed_nchw_float(synth_dataset: Path):
    from core.letterbox import preprocess

    calibration = CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=9)
    batches = list(calibration.batches(4))
    assert len(batches) == 2  # the short last batch is dropped
    assert batches[0].shape == (4, 3, 64, 64)
    assert batches[0].dtype == np.float32
    assert batches[0].min() >= 0.0 and batches[0].max() <= 1.0
    np.testing.assert_array_equal(batches[0], preprocess(list(calibration.files[:4]), 64)[0])
    assert len(list(calibration)) == 9


def test_too_small_set_names_the_dataset(tmp_path: Path, synth_dataset: Path):
    with pytest.raises(InputError, match=f"at least {MIN_IMAGES} images") as error:
        CalibrationSet.from_dataset(synth_dataset, imgsz=64, size=MIN_IMAGES - 1)
    assert str(synth_dataset.name) in str(error.value)


def test_empty_split_is_an_input_error(tmp_path: Path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir(parents=True)
    data = tmp_path / "data.yaml"
    data.write_text("train: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(InputError, match=r"data\.yaml"):
        CalibrationSet.from_dataset(data, imgsz=64)
