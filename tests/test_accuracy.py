"""One evaluation path for every Runner: letterbox, Ultralytics NMS, rescale, COCO mAP from YOLO labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import (
    coco_detections,
    coco_ground_truth,
    coco_map,
    evaluate,
    labelled_images,
    postprocess,
)
from core.dataset import load_dataset, read_labels
from core.errors import InputError
from core.letterbox import letterbox, load_image
from core.runner import Runner

README_MAP = {"coco128-val2017": 0.433, "coco128": 0.465}  # Ultralytics 8.4.190 val, ../shared/README.md


def detect_output(boxes_xywh: np.ndarray, classes: np.ndarray, nc: int, anchors: int = 32) -> np.ndarray:
    """A Detect-shaped output (1, 4 + nc, anchors) holding the given boxes with score 0.9, the rest empty."""
    out = np.zeros((1, 4 + nc, anchors), dtype=np.float32)
    for i, (box, cls) in enumerate(zip(boxes_xywh, classes, strict=True)):
        out[0, :4, i] = box
        out[0, 4 + int(cls), i] = 0.9
    return out


def test_postprocess_rescales_to_the_original_image():
    image = np.zeros((100, 200, 3), np.uint8)  # h=100, w=200 -> scale 0.32, 64x32 resized, 16 px pad on top
    _, box = letterbox(image, 64)
    assert box.pad == (0, 16)
    raw = detect_output(np.array([[32.0, 32.0, 32.0, 16.0]]), np.array([2]), nc=3)
    (det,) = postprocess(raw, [box], 64)
    assert det.shape == (1, 6)
    np.testing.assert_allclose(det[0, :4], [50.0, 25.0, 150.0, 75.0], atol=1e-4)
    assert det[0, 4] == pytest.approx(0.9) and det[0, 5] == 2


def test_map_scores_a_box_past_the_border_unclipped_as_ultralytics_val_does():
    """`predict` clips boxes to the image, `val` scores them as the model drew them: a box 20 px past the
    left border keeps that width for mAP, and is clipped for deployment."""
    image = np.zeros((100, 200, 3), np.uint8)
    _, box = letterbox(image, 64)  # scale 0.32, 16 px of padding on top
    raw = detect_output(np.array([[0.0, 32.0, 12.8, 16.0]]), np.array([1]), nc=3)  # x from -6.4 to 6.4
    (unclipped,) = postprocess(raw, [box], 64, clip=False)
    np.testing.assert_allclose(unclipped[0, :4], [-20.0, 25.0, 20.0, 75.0], atol=1e-4)
    (clipped,) = postprocess(raw, [box], 64)
    np.testing.assert_allclose(clipped[0, :4], [0.0, 25.0, 20.0, 75.0], atol=1e-4)


def test_coco_map_of_ground_truth_itself_is_one(synth_dataset):
    images, names, _ = labelled_images(synth_dataset, "val")
    shapes = [load_image(p).shape[:2] for p in images]
    gt = coco_ground_truth(images, shapes, names)
    assert len(gt["annotations"]) == sum(len(read_labels(p)) for p in images) > 0
    perfect = [
        np.array([[x, y, x + w, y + h, 0.9, a["category_id"]] for a in gt["annotations"] if a["image_id"] == i
                  for x, y, w, h in [a["bbox"]]]).reshape(-1, 6)
        for i in range(len(images))
    ]  # fmt: skip
    assert coco_map(gt, coco_detections(perfect)) == pytest.approx((1.0, 1.0))
    shifted = [d + np.array([8.0, 8.0, 8.0, 8.0, 0, 0]) for d in perfect]
    map50_95, map50 = coco_map(gt, coco_detections(shifted))
    assert map50_95 < 0.9 and map50_95 <= map50
    assert coco_map(gt, []) == (0.0, 0.0)


class OracleRunner(Runner):
    """Answers each batch with its images' ground truth, in letterbox pixels: mAP must come out 1."""

    precision = "fp32"

    def __init__(self, data_yaml: Path, imgsz: int, batch: int):
        dataset = load_dataset(data_yaml)
        self.nc = dataset.nc
        self.outputs = []
        images = dataset.images("val")
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            outs = [self.truth(p, imgsz) for p in chunk]
            outs += [outs[-1]] * (batch - len(chunk))
            self.outputs.append(np.concatenate(outs))

    def truth(self, image: Path, imgsz: int) -> np.ndarray:
        _, box = letterbox(load_image(image), imgsz)
        h, w = box.shape
        rows = np.array(read_labels(image)).reshape(-1, 5)
        xywh = rows[:, 1:] * np.array([w, h, w, h]) * box.scale + np.array([*box.pad, 0, 0])
        return detect_output(xywh, rows[:, 0], self.nc, anchors=64)

    def infer(self, images: np.ndarray) -> np.ndarray:
        out = self.outputs.pop(0)
        assert out.shape[0] == images.shape[0]
        return out


@pytest.mark.parametrize("batch", [1, 5])
def test_evaluate_scores_a_perfect_runner_one(synth_dataset, batch):
    scores = evaluate(OracleRunner(synth_dataset, 96, batch), synth_dataset, 96, batch=batch, progress=False)
    assert scores.map50_95 > 0.95 and scores.map50 == pytest.approx(1.0)
    assert scores.images == len(load_dataset(synth_dataset).images("val"))
    assert scores.letterbox == "square 96x96"


def test_dataset_without_labels_is_rejected(synth_dataset, tmp_path):
    root = tmp_path / "nolabels"
    (root / "images").mkdir(parents=True)
    for image in load_dataset(synth_dataset).images("val")[:2]:
        (root / "images" / image.name).write_bytes(image.read_bytes())
    data = root / "data.yaml"
    data.write_text("val: images\nnames: {0: a}\n")
    with pytest.raises(InputError, match="no YOLO label files") as raised:
        labelled_images(data, "val")
    assert str(data) in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["coco128-val2017", "coco128"])
def test_torch_target_matches_ultralytics_val(shared_dir, dataset, tmp_path):
    """Our square-letterbox COCO mAP of yolov8n vs Ultralytics' own `val` (rect batching, its metric)."""
    from ultralytics import YOLO

    from targets.base import BuildInputs, RunOptions, get_target

    model = shared_dir / "models" / "yolov8n.pt"
    data = shared_dir / "datasets" / dataset / "data.yaml"
    target = get_target("torch")
    inputs = BuildInputs(onnx=None, checkpoint=model, imgsz=640)
    artifact = target.build(inputs, "fp32", None, target.options_model(), tmp_path)
    ours = evaluate(target.load(artifact, RunOptions(batch=8)), data, 640, batch=8, progress=False)
    metrics = YOLO(str(model)).val(
        data=str(data), imgsz=640, batch=16, device="cpu", plots=False, verbose=False, project=str(tmp_path)
    )
    theirs = float(metrics.box.map)
    assert abs(ours.map50_95 - theirs) < 0.005, (ours, theirs)
    assert abs(ours.map50_95 - README_MAP[dataset]) < 0.005, ours
    assert abs(ours.map50 - float(metrics.box.map50)) < 0.01, (ours, metrics.box.map50)
