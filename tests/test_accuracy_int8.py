"""Accuracy-driven INT8 (onnxruntime, tensorrt's Q/DQ ONNX): the stopping rule, a bound that cannot be
met, the sensitivity ranking and the hash chain from the Q/DQ ONNX to the engine metadata.

A random tiny model scores mAP 0 on real labels, which would make every bound trivially met. So the
model here gets its class biases at 0 (scores near 0.5 instead of 1e-4) and is validated on its own
FP32 detections as labels: FP32 then scores high, and INT8's rounding visibly costs mAP.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.artifacts import sha256_file
from core.calibration import CalibrationSet
from core.engine_record import read_artifact_dir
from core.errors import EXIT_CHECK_FAILED, InputError
from targets.accuracy_int8.fallback import Step, chosen_step, float_layer_schedule, run_steps
from targets.tensorrt.options import TensorRtOptions

IMGSZ = 64
LABELS_PER_IMAGE = 4


@pytest.fixture(scope="module")
def confident_onnx(tmp_path_factory) -> Path:
    import torch
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint
    from pipeline.stages.export import export_onnx

    model = tiny_detection_model()
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias.zero_()
        for branch in head.cv2:  # boxes of a few strides: a label (clipped to the image) and its box, which
            # mAP scores unclipped, overlap well even at the border
            branch[-1].bias.copy_(-0.7 * torch.arange(head.reg_max, dtype=torch.float32).repeat(4))
    directory = tmp_path_factory.mktemp("confident")
    checkpoint = save_checkpoint(model, directory / "confident.pt")
    return export_onnx(checkpoint, directory / "confident.onnx", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def self_labelled_val(confident_onnx: Path, synth_dataset: Path, tmp_path_factory) -> Path:
    """data.yaml over the synthetic images, labelled with the FP32 model's most confident detections
    (one confidence threshold for all images, so FP32 ranks every label above every other box)."""
    from benchmarks.accuracy import postprocess
    from core.dataset import load_dataset
    from core.letterbox import preprocess
    from targets.base import RunOptions
    from targets.onnxruntime_runner import OnnxRuntimeRunner

    root = tmp_path_factory.mktemp("self_labelled")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    runner = OnnxRuntimeRunner(confident_onnx, "fp32", RunOptions())
    dataset = load_dataset(synth_dataset)
    images = sorted(dataset.images("train") + dataset.images("val"))
    detections = {}
    for image in images:
        tensor, boxes = preprocess([image], IMGSZ)
        detections[image] = (postprocess(runner.infer(tensor), boxes, IMGSZ)[0], boxes[0].shape)
    confidences = np.sort(np.concatenate([det[:, 4] for det, _ in detections.values()]))
    threshold = confidences[-LABELS_PER_IMAGE * len(images)]
    for image, (det, (h, w)) in detections.items():
        lines = [
            f"{int(c)} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
            for x1, y1, x2, y2, conf, c in det
            if conf >= threshold
        ]
        shutil.copy(image, root / "images" / image.name)
        (root / "labels" / f"{image.stem}.txt").write_text("\n".join(lines) + "\n")
    data_yaml = root / "data.yaml"
    data_yaml.write_text("train: images\nval: images\nnames:\n  0: class0\n  1: class1\n  2: class2\n")
    return data_yaml


def cli(*args: str):
    from pipeline.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# The stopping rule, on a made-up mAP curve.


def test_schedule_doubles_until_every_layer_is_float():
    assert float_layer_schedule(89) == [0, 1, 2, 4, 8, 16, 32, 64, 89]
    assert float_layer_schedule(3) == [0, 1, 2, 3]
    assert float_layer_schedule(89, max_steps=2) == [0, 1, 2]
    assert float_layer_schedule(0) == [0]


def test_loop_stops_at_the_first_checkpoint_within_the_bound():
    curve = {0: 0.40, 1: 0.41, 2: 0.425, 4: 0.432, 8: 0.434, 16: 0.435}
    measured: list[int] = []

    def measure(count: int) -> tuple[float, float]:
        measured.append(count)
        return curve[count], 0.5

    steps = run_steps([0, 1, 2, 4, 8, 16], measure, fp32_map=0.435, max_drop=0.005)
    assert measured == [0, 1, 2, 4]
    assert steps[-1] == Step(step=3, float_layers=4, map50_95=0.432, map50=0.5)
    assert chosen_step(steps, 0.435, 0.005) == steps[-1]
    measured.clear()
    assert run_steps([0, 1, 2], measure, fp32_map=0.435, max_drop=1.0) == [Step(0, 0, 0.40, 0.5)]
    assert measured == [0]


def test_an_unmet_bound_is_a_failed_check_of_the_build_and_a_met_one_is_none(tmp_path):
    """The exit policy lives with the build: the library returns the failure, the CLI raises it (exit 1)."""
    from pipeline.stages.build import BuiltEngine

    final = {"drop": 0.02, "map50_95": 0.41, "step": 1, "float_layers": 1}
    control = {"met": False, "final": final, "max_map_drop": 0.005, "steps": [{}, {}]}
    failure = BuiltEngine(tmp_path, {"accuracy_control": control}, 1.0).unmet_bound()
    assert failure is not None and failure.exit_code == EXIT_CHECK_FAILED
    assert "drop 0.0200 is above the bound 0.0050 after 2 steps" in str(failure) and str(tmp_path) in str(
        failure
    )
    met = BuiltEngine(tmp_path, {"accuracy_control": {**control, "met": True}}, 1.0)
    assert met.unmet_bound() is None and BuiltEngine(tmp_path, {}, 1.0).unmet_bound() is None


def test_unmet_bound_keeps_the_best_step_measured():
    steps = [Step(0, 0, 0.30, 0.5), Step(1, 1, 0.33, 0.5), Step(2, 2, 0.32, 0.5), Step(3, 4, 0.33, 0.5)]
    assert chosen_step(steps, fp32_map=0.40, max_drop=0.01) == steps[1]  # equal mAP: fewer float layers


# The loop on a real model.


def test_onnxruntime_bound_of_one_stops_at_full_int8(
    confident_onnx, synth_dataset, self_labelled_val, tmp_path
):
    """Through the build stage as `edgepipe run` calls it, with the val data from the run settings."""
    from benchmarks.accuracy import evaluate
    from core.artifacts import Artifact
    from pipeline.stages import build
    from pipeline.stages.base import RunSettings, StageContext
    from targets.base import RunOptions, get_target

    entry = build.BuildEntry(target="onnxruntime", precision="int8", calib_images=16, max_drop_vs_fp32=1.0)
    ctx = StageContext(
        out_dir=tmp_path,
        settings=RunSettings(imgsz=IMGSZ, device="cpu", data=synth_dataset, val=self_labelled_val),
        inputs={"onnx": Artifact.from_path("onnx", confident_onnx)},
    )
    engine = build.run(entry, ctx)["engine"]
    record = engine.metadata["accuracy_control"]
    assert record["met"] and record["val_data"] == str(self_labelled_val)
    assert [s["float_layers"] for s in record["steps"]] == [0]
    assert record["float_layers"] == [] and record["ranking"] == []  # full INT8 met it: nothing ranked
    assert record["fp32"]["map50_95"] > 0.5  # the self-labelled set makes mAP meaningful
    assert "/model.22/dfl/Softmax" in engine.metadata["quantization"]["float_nodes"]
    measured = evaluate(get_target("onnxruntime").load(engine, RunOptions()), self_labelled_val, IMGSZ)
    assert measured.map50_95 == pytest.approx(record["final"]["map50_95"], abs=1e-6)


@pytest.fixture(scope="module")
def unmet_qdq_dir(confident_onnx, synth_dataset, self_labelled_val, tmp_path_factory):
    """`edgepipe build --target tensorrt --qdq-only` with a bound of 0 and a single step after full INT8."""
    out = tmp_path_factory.mktemp("unmet") / "qdq"
    result = cli(
        "build", "--onnx", str(confident_onnx), "--target", "tensorrt", "--precision", "int8",
        "--qdq-only", "--data", str(synth_dataset), "--calib-images", "16", "--val", str(self_labelled_val),
        "--max-drop-vs-fp32", "0", "--max-steps", "1", "-o", str(out),
    )  # fmt: skip
    return out, result


def test_unmet_bound_exits_1_and_keeps_the_labelled_best_model(unmet_qdq_dir):
    out, result = unmet_qdq_dir
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "above the bound 0.0000" in output and "met = false" in output
    assert "accuracy-checked INT8" in output  # the steps table
    meta = read_artifact_dir(out)
    record = meta["accuracy_control"]
    assert record["met"] is False
    assert [s["float_layers"] for s in record["steps"]] == [0, 1]
    fp32 = record["fp32"]["map50_95"]
    assert all(fp32 - s["map50_95"] > 0 for s in record["steps"]), "INT8 should cost mAP on this model"
    best = max(record["steps"], key=lambda s: (s["map50_95"], -s["float_layers"]))
    assert record["final"]["step"] == best["step"]
    assert len(record["float_layers"]) == best["float_layers"]
    assert len(record["ranking"]) == record["layer_groups"] > 60  # every yolov8 layer group was ranked
    assert meta["made_for"] == "tensorrt" and meta["target"] == "onnxruntime"  # what runs it (docs/int8.md)
    assert "onnxruntime (made for tensorrt)" in output  # the summary says both
    assert "--target tensorrt --precision int8 --qdq-onnx" in output  # and how to compile it on the device
    assert meta["quantization"]["quantizer"].startswith("nvidia-modelopt ")
    assert record["quantized_with"].startswith("nvidia-modelopt ")  # the fallback works on ModelOpt's file
    assert record["fell_back"] is (record["final"]["float_layers"] > 0)


def test_qdq_onnx_hash_chain_to_engine_metadata(unmet_qdq_dir, confident_onnx, tmp_path):
    from targets.tensorrt import metadata, qdq_source

    out, _ = unmet_qdq_dir
    meta = read_artifact_dir(out)
    qdq_sha = sha256_file(out / qdq_source.QDQ_FILE)
    assert meta["quantization"]["sha256"] == qdq_sha == meta["files_sha256"][qdq_source.QDQ_FILE]

    # What the device build does with --qdq-onnx, up to the TensorRT call.
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    options = TensorRtOptions(qdq_onnx=str(out))
    source = qdq_source.qdq_source(confident_onnx, None, options, engine_dir / qdq_source.QDQ_FILE)
    assert sha256_file(engine_dir / qdq_source.QDQ_FILE) == qdq_sha
    assert source.accuracy_control == meta["accuracy_control"]
    assert source.calibration == meta["calibration"]
    engine_meta = metadata.engine_metadata(
        trt_version="10.3.0",
        device_name="Orin",
        compute_capability="8.7",
        precision="int8",
        int8_mode="qdq",
        calibration_sha256=source.calibration["sha256"],
        qdq_onnx_sha256=source.record["sha256"],
        strongly_typed=False,
    )
    assert engine_meta["qdq_onnx_sha256"] == qdq_sha

    # A changed file, or another source ONNX, breaks the chain: refused.
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    with (tampered / qdq_source.QDQ_FILE).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="changed since"):
        qdq_source.qdq_source(
            confident_onnx, None, TensorRtOptions(qdq_onnx=str(tampered)), tmp_path / "a.onnx"
        )
    other = tmp_path / "other.onnx"
    other.write_bytes(confident_onnx.read_bytes() + b"\0")
    with pytest.raises(InputError, match="made from another ONNX"):
        qdq_source.qdq_source(other, None, options, tmp_path / "b.onnx")
    with pytest.raises(InputError, match="pass one of them"):
        given = options.model_copy(update={"max_map_drop": 0.01})
        qdq_source.qdq_source(confident_onnx, None, given, tmp_path / "c.onnx")


def test_sensitivity_ranking_is_deterministic(confident_onnx, synth_dataset, tmp_path):
    from targets.accuracy_int8.layers import quantizable_groups
    from targets.accuracy_int8.quantizer import CachedQuantizer
    from targets.accuracy_int8.sensitivity import probe_images, rank_layers
    from targets.onnxruntime import default_scheme

    calibration = CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8)
    scheme = default_scheme()
    groups = quantizable_groups(confident_onnx, scheme)
    assert groups[0].name == "/model.0"
    assert set(groups[0].nodes) == {"/model.0/conv/Conv", "/model.0/act/Sigmoid", "/model.0/act/Mul"}
    assert not any(node.startswith("/model.22/dfl") for group in groups for node in group.nodes)
    subset = groups[:3] + groups[-3:]  # the first layers and the head's last convs
    images = probe_images(calibration, 2)
    quantizer = CachedQuantizer(confident_onnx, calibration, scheme, tmp_path / "ranges.json")
    first = rank_layers(quantizer, subset, images)
    second = rank_layers(quantizer, subset, images)
    assert first == second
    assert sorted(s.layer for s in first) == sorted(g.name for g in subset)
    scores = [s.score for s in first]
    assert scores == sorted(scores, reverse=True) and scores[-1] >= 0 and len(set(scores)) > 1
    assert np.isfinite(scores).all()


# Self-checking INT8: every INT8 build with a val set is measured against FP32 and falls back past the bound.


def test_default_bound_is_one_percent_of_fp32_and_a_given_drop_replaces_it():
    from targets.accuracy_bound import AccuracyBound

    default = AccuracyBound()
    assert default.limit(0.4) == pytest.approx(0.004)
    assert default.met(0.4, 0.396) and not default.met(0.4, 0.3959)
    assert "99%" in default.rule
    given = AccuracyBound.from_options(TensorRtOptions(max_map_drop=0.02))
    assert given.limit(0.4) == 0.02 and given.met(0.4, 0.38) and "max_drop_vs_fp32 0.02" in given.rule


@pytest.fixture(scope="module")
def blank_calibration(tmp_path_factory) -> Path:
    """A data.yaml whose train split is 8 black images: ranges that clip every real activation."""
    import cv2

    root = tmp_path_factory.mktemp("blank")
    (root / "images").mkdir()
    for index in range(8):
        cv2.imwrite(str(root / "images" / f"blank{index}.png"), np.zeros((IMGSZ, IMGSZ, 3), np.uint8))
    data_yaml = root / "data.yaml"
    data_yaml.write_text("train: images\nval: images\nnames:\n  0: class0\n  1: class1\n  2: class2\n")
    return data_yaml


def test_bad_calibration_starts_the_fallback_and_labels_the_result(
    confident_onnx, blank_calibration, self_labelled_val, tmp_path
):
    out = tmp_path / "engine"
    result = cli(
        "build", "--onnx", str(confident_onnx), "--target", "onnxruntime", "--precision", "int8",
        "--data", str(blank_calibration), "--val", str(self_labelled_val), "--max-steps", "1", "-o", str(out),
    )  # fmt: skip
    record = read_artifact_dir(out)["accuracy_control"]
    fp32 = record["fp32"]["map50_95"]
    assert record["max_map_drop"] == pytest.approx(0.01 * fp32) and "99%" in record["bound"]
    assert fp32 - record["steps"][0]["map50_95"] > record["max_map_drop"], "blank calibration should hurt"
    assert [s["float_layers"] for s in record["steps"]] == [0, 1]  # the fallback started
    assert record["fell_back"] is (record["final"]["float_layers"] > 0)
    output = " ".join(result.output.split())
    assert "falling back" in output and "accuracy-checked INT8" in output
    assert result.exit_code == (0 if record["met"] else 1), result.output
    if not record["met"]:
        assert "met = false" in output


def test_int8_without_a_val_set_warns_that_it_is_unchecked(confident_onnx, blank_calibration, tmp_path):
    train_only = blank_calibration.with_name("train-only.yaml")  # no val split anywhere
    train_only.write_text("train: images\nnames:\n  0: class0\n  1: class1\n  2: class2\n")
    common = ["build", "--onnx", str(confident_onnx), "--target", "onnxruntime", "--precision", "int8",
              "--data", str(train_only), "--calib-images", "8"]  # fmt: skip
    unchecked = cli(*common, "-o", str(tmp_path / "a"))
    assert unchecked.exit_code == 0, unchecked.output
    assert "int8 mAP is unchecked" in " ".join(unchecked.output.split())
    assert "accuracy_control" not in read_artifact_dir(tmp_path / "a")
    opted_out = cli(*common, "--val", str(blank_calibration), "--no-verify", "-o", str(tmp_path / "b"))
    assert opted_out.exit_code == 0 and "unchecked" not in opted_out.output
    assert "accuracy_control" not in read_artifact_dir(tmp_path / "b")
    both = cli(*common, "--val", str(blank_calibration), "--no-verify", "--max-drop-vs-fp32", "0.01",
               "-o", str(tmp_path / "c"))  # fmt: skip
    assert both.exit_code == 2 and "--no-verify" in both.output


def test_int8_checks_itself_on_the_val_split_of_its_calibration_data(
    confident_onnx, self_labelled_val, tmp_path
):
    out = tmp_path / "engine"
    result = cli(
        "build", "--onnx", str(confident_onnx), "--target", "onnxruntime", "--precision", "int8",
        "--data", str(self_labelled_val), "--calib-images", "8", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unchecked" not in result.output
    meta = read_artifact_dir(out)
    record = meta["accuracy_control"]
    assert meta["options"]["val_data"] == str(self_labelled_val)
    assert (
        record["max_map_drop"] == pytest.approx(0.01 * record["fp32"]["map50_95"])
        and "99%" in record["bound"]
    )
    assert record["final"]["drop"] == pytest.approx(record["fp32"]["map50_95"] - record["final"]["map50_95"])


# How much the blank calibration costs OpenVINO INT8 depends on the CPU: over 1% of mAP50-95 on AVX-512 VNNI
# (AMD Zen 4), 0.2 points on an AMX Xeon. A bound below both makes the fallback start on either.
OPENVINO_TIGHT_BOUND = 0.0005


def test_openvino_bad_calibration_falls_back_through_nncf(
    confident_onnx, blank_calibration, self_labelled_val, tmp_path
):
    from pipeline.stages.build import BuildEntry, build_engine

    entry = BuildEntry(
        target="openvino", precision="int8", calib_images=8, max_drop_vs_fp32=OPENVINO_TIGHT_BOUND
    )
    engine = build_engine(
        entry, tmp_path / "engine", onnx=confident_onnx, checkpoint=None, calib_data=blank_calibration,
        val_data=self_labelled_val,
    )  # fmt: skip
    record = engine.metadata["accuracy_control"]
    fp32 = record["fp32"]["map50_95"]
    assert fp32 > 0.5 and record["max_map_drop"] == pytest.approx(OPENVINO_TIGHT_BOUND)
    assert fp32 - record["steps"][0]["map50_95"] > record["max_map_drop"]
    assert record["fell_back"] and record["steps"][1]["how"] == "nncf.quantize_with_accuracy_control"
    assert record["final"]["map50_95"] > record["steps"][0]["map50_95"]
    assert record["float_layers"], "the fallback keeps convolutions in float"
    assert record["met"] == (record["final"]["drop"] <= record["max_map_drop"] + 1e-9)
