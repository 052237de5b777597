"""The synthetic shapes dataset: deterministic, valid YOLO labels, both splits, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from core.artifacts import content_sha256
from core.dataset import label_path, load_dataset, read_labels
from core.errors import InputError
from pipeline.cli.data import command
from pipeline.data.synth import CLASS_NAMES, generate_dataset, visible_boxes


def test_same_seed_writes_identical_files(synth_dataset: Path, tmp_path: Path):
    # The shared fixture may hold label caches an earlier training test wrote: a dataset's hash skips them.
    again = generate_dataset(tmp_path / "again", images=24, seed=0, imgsz=128)
    assert content_sha256("dataset", again.parent) == content_sha256("dataset", synth_dataset.parent)
    other = generate_dataset(tmp_path / "other", images=24, seed=1, imgsz=128)
    assert content_sha256("dataset", other.parent) != content_sha256("dataset", synth_dataset.parent)


def test_layout_and_yaml(synth_dataset: Path):
    spec = yaml.safe_load(synth_dataset.read_text())
    assert "path" not in spec  # Ultralytics then resolves train/val next to the YAML
    assert spec["names"] == dict(enumerate(CLASS_NAMES))
    dataset = load_dataset(synth_dataset)
    assert len(dataset.images("train")) == 19 and len(dataset.images("val")) == 5
    for image in dataset.images("train") + dataset.images("val"):
        assert cv2.imread(str(image)).shape == (128, 128, 3)
        assert label_path(image).is_file()


def test_labels_are_valid_boxes_inside_the_image(synth_dataset: Path):
    dataset = load_dataset(synth_dataset)
    rows = [row for split in ("train", "val") for img in dataset.images(split) for row in read_labels(img)]
    assert len(rows) >= 24
    classes = np.array([r[0] for r in rows])
    boxes = np.array([r[1:] for r in rows])
    assert classes.min() >= 0 and classes.max() < len(CLASS_NAMES)
    assert len(set(classes.tolist())) >= 4  # several classes even in a tiny set
    cx, cy, w, h = boxes.T
    assert (w * 128 >= 3).all() and (h * 128 >= 3).all()
    eps = 1e-6  # labels carry six decimals
    assert (cx - w / 2 >= -eps).all() and (cx + w / 2 <= 1 + eps).all()
    assert (cy - h / 2 >= -eps).all() and (cy + h / 2 <= 1 + eps).all()


def test_boxes_cover_exactly_the_visible_pixels():
    owner = np.zeros((100, 200), np.uint8)
    owner[10:50, 20:80] = 1  # a 40x60 square...
    owner[30:50, 60:90] = 2  # ...partly hidden by a second shape drawn over it
    owner[60:70, 100:110] = 3  # a third shape, three quarters hidden
    placed = [(1, 2400.0), (4, 600.0), (0, 400.0)]
    rows = visible_boxes(owner, placed)
    assert [r[0] for r in rows] == [1, 4]  # the mostly hidden one gets no label
    assert rows[0][1:] == pytest.approx((50 / 200, 30 / 100, 60 / 200, 40 / 100))
    assert rows[1][1:] == pytest.approx((75 / 200, 40 / 100, 30 / 200, 20 / 100))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": 1}, "at least 2"),
        ({"images": 10, "val_fraction": 1.0}, "val_fraction"),
        ({"images": 10, "imgsz": 16}, "imgsz"),
    ],
)
def test_bad_arguments_are_input_errors(tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(InputError, match=message):
        generate_dataset(tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        generate_dataset(tmp_path, images=4, imgsz=64)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_regenerates_over_an_earlier_dataset(tmp_path: Path):
    first = generate_dataset(tmp_path / "d", images=4, seed=0, imgsz=64)
    second = generate_dataset(tmp_path / "d", images=6, seed=0, imgsz=64)
    assert first == second
    assert len(load_dataset(second).images("train")) + len(load_dataset(second).images("val")) == 6


def test_command_prints_a_summary(tmp_path: Path):
    import typer

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, ["-o", str(tmp_path / "cli"), "--images", "6", "--imgsz", "64"])
    assert result.exit_code == 0, result.output
    assert "circle" in result.output and "train" in result.output
    assert (tmp_path / "cli" / "data.yaml").is_file()
