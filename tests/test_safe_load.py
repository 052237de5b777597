"""Checkpoints open without running code: a hostile pickle is refused by every command, real ones load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core.artifacts import sha256_file
from core.checkpoints import load_detection_model, open_checkpoint, save_checkpoint
from core.errors import InputError
from pipeline.cli import app
from tests.conftest import tiny_detection_model


class Payload:
    """Unpickling this calls os.system, which writes `marker`: the attack a checkpoint can carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint that looks like a real one and carries a payload, and the file the payload writes."""
    import torch

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": tiny_detection_model().half(), "train_args": {}, "payload": Payload(marker)}, path)
    return path, marker


def test_hostile_checkpoint_is_refused_before_it_runs(hostile):
    path, marker = hostile
    with pytest.raises(InputError, match=r"evil\.pt: refused: the checkpoint names posix\.system"):
        load_detection_model(path)
    assert not marker.exists()


def commands(evil: Path, data: Path, tmp: Path) -> dict[str, list[str]]:
    config = tmp / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"model": str(evil), "data": str(data), "export": {}}))
    return {
        "prune": [
            "prune",
            "--model",
            str(evil),
            "--macs",
            "0.5",
            "--data",
            str(data),
            "-o",
            str(tmp / "p.pt"),
        ],
        "finetune": ["finetune", "--model", str(evil), "--data", str(data), "--epochs", "1"],
        "export": ["export", "--model", str(evil), "-o", str(tmp / "m.onnx")],
        "bench": ["bench", "--artifact", str(evil), "--no-accuracy", "-o", str(tmp / "r.json")],
        "build": ["build", "--target", "torch", "--model", str(evil), "-o", str(tmp / "engine")],
        "run": ["run", str(config), "--workdir", str(tmp / "work")],
        "search": [
            "search",
            "--model",
            str(evil),
            "--data",
            str(data),
            "--val",
            str(data),
            "--budget",
            "p90<=9ms",
            "-w",
            str(tmp / "search"),
        ],
    }


def test_no_command_runs_the_payload_and_each_exits_2_naming_the_file(hostile, synth_dataset, tmp_path):
    evil, marker = hostile
    for name, args in commands(evil, synth_dataset, tmp_path).items():
        result = CliRunner().invoke(app, args)
        output = " ".join(result.output.split())
        assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output}"
        assert f"{evil}: refused: the checkpoint names posix.system" in output, f"{name}: {output}"
        assert not marker.exists(), f"{name} ran the payload"


def test_fleet_driver_refuses_the_hostile_checkpoint(hostile, tmp_path):
    from pipeline.fleet.driver import prepare_sources
    from pipeline.fleet.matrix import load_matrix

    evil, marker = hostile
    path = tmp_path / "matrix.yaml"
    matrix = {"models": [{"checkpoint": str(evil)}], "targets": ["onnxruntime/fp32"], "devices": ["a"]}
    path.write_text(yaml.safe_dump({**matrix, "bench": {"accuracy": False}}))
    with pytest.raises(InputError, match=r"refused: the checkpoint names posix\.system"):
        prepare_sources(load_matrix(path), tmp_path / "out")
    assert not marker.exists()


def test_trust_checkpoint_loads_the_hostile_file_with_a_warning(hostile, tmp_path, monkeypatch):
    import core.safe_load

    monkeypatch.setattr(core.safe_load, "_trusted", False)
    evil, marker = hostile
    result = CliRunner().invoke(
        app, ["export", "--trust-checkpoint", "--model", str(evil), "-o", str(tmp_path / "m.onnx")]
    )
    output = " ".join(result.output.split())
    assert f"warning: {evil}: loading with full unpickling (--trust-checkpoint)" in output
    assert marker.exists()  # trusted: the file's code ran, as the user asked


def test_pinned_sha256_is_checked_before_the_file_is_opened(hostile, synth_dataset, tmp_path):
    evil, marker = hostile
    config = tmp_path / "pinned.yaml"
    pin = "0" * 64
    config.write_text(yaml.safe_dump({"model": str(evil), "data": str(synth_dataset), "model_sha256": pin}))
    result = CliRunner().invoke(app, ["run", str(config), "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 2
    assert f"sha256 is {sha256_file(evil)}, not the pinned {pin}" in " ".join(result.output.split())
    assert not marker.exists()


def test_edgepipe_and_ultralytics_checkpoints_load_under_the_allow_list(tmp_path, tiny_checkpoint):
    """Ultralytics-saved detectors of every family, and edgepipe's pruned checkpoints (C2fSplit)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from pipeline.modules import C2fSplit
    from pipeline.pruning.config import MagnitudeConfig
    from pipeline.pruning.magnitude import prune_model

    for family in ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"):
        path = tmp_path / family.replace(".yaml", ".pt")
        model = DetectionModel(family, nc=3, verbose=False)
        torch.save({"model": model.half(), "train_args": {"imgsz": 64}, "date": "2026-12-07"}, path)
        assert isinstance(open_checkpoint(path)["model"], DetectionModel), family
    model = load_detection_model(tiny_checkpoint)
    prune_model(model, MagnitudeConfig(round_to=2, min_channels=0), imgsz=64, macs=0.7)
    path = save_checkpoint(model, tmp_path / "pruned.pt", pruning={"macs": 0.7})
    loaded = load_detection_model(path)
    assert any(isinstance(m, C2fSplit) for m in loaded.modules())
