"""Families and tasks: YOLOv8, YOLO11 and YOLO26 detection models are told apart and recorded; other tasks
and unknown families exit 2 with the reason; YOLO26 runs end to end (N, 300, 6) in every engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

IMGSZ = 128  # 336 anchors: enough for YOLO26's 300 end-to-end rows


def _from_yaml(family: str, tmp_path: Path) -> Path:
    from ultralytics.nn.tasks import DetectionModel

    from core.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel(f"{family}.yaml", nc=6, verbose=False)
    model.names = {i: f"shape{i}" for i in range(6)}
    return save_checkpoint(model.eval(), tmp_path / f"{family}.pt")


@pytest.mark.parametrize(
    ("yaml", "task"), [("yolo11n-seg.yaml", "segment"), ("yolo11n-cls.yaml", "classify")]
)
def test_other_tasks_exit_2_naming_the_task_and_the_supported_ones(yaml, task, tmp_path):
    from typer.testing import CliRunner
    from ultralytics import YOLO

    from pipeline.cli import app

    checkpoint = tmp_path / f"{task}.pt"
    YOLO(yaml).save(checkpoint)
    result = CliRunner().invoke(
        app, ["prune", "--model", str(checkpoint), "--macs", "0.7", "-o", str(tmp_path / "p.pt")]
    )
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"a {task} model" in message and "detect models of YOLOv8, YOLO11, YOLO26" in message
    assert checkpoint.name in message
    assert not (tmp_path / "p.pt").exists()


def test_an_unknown_family_exits_2_naming_its_blocks(tmp_path):
    from ultralytics import YOLO

    from core.checkpoints import load_detection_model
    from core.errors import InputError

    checkpoint = tmp_path / "v10.pt"
    YOLO("yolov10n.yaml").save(checkpoint)
    with pytest.raises(
        InputError, match=r"blocks .*PSA, SCDown.* are not those of YOLOv8, YOLO11, YOLO26"
    ) as error:
        load_detection_model(checkpoint)
    assert error.value.exit_code == 2


def test_family_is_told_apart_before_and_after_pruning(tmp_path, tiny_checkpoint):
    from core.checkpoints import load_detection_model
    from core.families import family_of
    from pipeline.modules import split_c2f

    for family in ("yolo11n", "yolo26n"):
        model = load_detection_model(_from_yaml(family, tmp_path))
        assert family_of(model) == family[:-1] == family_of(split_c2f(model))
    v8 = load_detection_model(tiny_checkpoint)
    assert family_of(v8) == "yolov8" == family_of(split_c2f(v8))


def test_yolo26_exports_and_runs_end_to_end_with_its_family_recorded(tmp_path, synth_dataset):
    from benchmarks.accuracy import evaluate
    from core.artifacts import Artifact, sha256_path
    from core.engine_record import read_artifact_dir
    from pipeline.stages.build import BuildEntry, build_engine
    from pipeline.stages.export import ExportConfig, export_checked
    from targets.base import RunOptions, get_target
    from targets.engine_dir import onnx_facts

    checkpoint = _from_yaml("yolo26n", tmp_path)
    onnx_path, parity = export_checked(checkpoint, tmp_path / "m.onnx", IMGSZ, ExportConfig(), synth_dataset)
    assert parity.passed and onnx_facts(onnx_path).family == "yolo26"
    images = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    for target in ("torch", "onnxruntime"):
        out = tmp_path / target
        build_engine(
            BuildEntry(target=target, precision="fp32"),
            out,
            onnx=onnx_path if target != "torch" else None,
            checkpoint=checkpoint,
            calib_data=synth_dataset,
            val_data=synth_dataset,
            imgsz=IMGSZ,
        )
        record = read_artifact_dir(out)
        assert record["family"] == "yolo26"
        assert json.loads((out / "artifact.json").read_text())["family"] == "yolo26"
        artifact = Artifact(kind="engine", path=out, sha256=sha256_path(out), metadata=record)
        with get_target(target).load(artifact, RunOptions()) as runner:
            assert runner.infer(images).shape == (1, 300, 6)
            scores = evaluate(runner, synth_dataset, IMGSZ, progress=False)  # decoded without NMS
            assert 0 <= scores.map50_95 <= scores.map50 <= 1


def test_device_lists_the_supported_families():
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["device"])
    assert result.exit_code == 0
    assert "models: detect models of YOLOv8, YOLO11, YOLO26" in " ".join(result.output.split())


def test_yolo26_int8_keeps_its_one_to_one_head_and_score_path_in_float(tmp_path, synth_dataset):
    """Quantizing YOLO26's head compresses its confidences (Ultralytics keeps them out of INT8): every INT8
    path leaves the one-to-one head in float, its Sigmoid and the TopK / GatherElements that rank the
    scores included, and nothing outside the head."""
    import onnx

    from pipeline.stages.export import ExportConfig, export_checked
    from targets.head import onnx_head_postprocess_nodes

    checkpoint = _from_yaml("yolo26n", tmp_path)
    onnx_path, _ = export_checked(checkpoint, tmp_path / "m.onnx", IMGSZ, ExportConfig(), synth_dataset)
    nodes = {node.name: node.op_type for node in onnx.load(str(onnx_path)).graph.node}
    floats = set(onnx_head_postprocess_nodes(onnx_path))
    score_path = {  # the head's own ops on the class logits (the convs' SiLU is a Sigmoid too)
        name
        for name, op in nodes.items()
        if op in ("Sigmoid", "TopK", "GatherElements")
        and name.startswith("/model.23/")
        and "/one2one_cv" not in name
    }
    assert score_path and score_path <= floats  # the confidences and their ranking stay float
    assert {nodes[name] for name in floats} >= {"Sigmoid", "TopK", "GatherElements", "Conv"}
    head_convs = {n for n in floats if nodes[n] == "Conv"}
    assert head_convs and all("/one2one_cv" in n for n in head_convs)  # its one-to-one branch's convs
    assert all(n.startswith("/model.23/") for n in floats)  # nothing outside the head
