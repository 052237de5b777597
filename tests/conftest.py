"""Shared fixtures: a tiny YOLOv8 checkpoint and a tiny synthetic dataset made on the spot, and ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def tiny_detection_model(nc: int = 3, width: float = 0.125):
    """A randomly initialised YOLOv8 with the real C2f/SPPF/Detect layout, a few thousand parameters."""
    import torch
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    cfg = yaml_model_load("yolov8n.yaml")
    cfg["scales"] = {"n": [0.33, width, 1024]}
    cfg["scale"] = "n"
    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    model.names = {i: f"class{i}" for i in range(nc)}
    model.args = {"imgsz": 64}
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from core.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    return save_checkpoint(tiny_detection_model(nc=6), path)  # the classes of `synth_dataset`


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> Path:
    """data.yaml of a tiny synthetic shapes dataset: 24 images at 128 px, 6 classes, train and val."""
    from pipeline.data.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synth") / "shapes", images=24, seed=0, imgsz=128)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "models" / "yolov8n.pt").is_file():
        pytest.skip("../shared is absent: the real-model tests need ../shared/models/yolov8n.pt")
    return SHARED


@pytest.fixture(autouse=True)
def private_history(tmp_path_factory, monkeypatch):
    """Keep tests out of the user's benchmark history (~/.cache/edgepipe/history.sqlite)."""
    monkeypatch.setenv("EDGEPIPE_HISTORY", str(tmp_path_factory.mktemp("history") / "history.sqlite"))


@pytest.fixture
def busy_cpu() -> Iterator[int]:
    """A CPU-bound child process on this process's first CPU, to which this process is pinned too: the
    machine a benchmark must not trust. Yields the CPU; both are undone afterwards."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs CPU affinity (Linux)")
    original = os.sched_getaffinity(0)
    cpu = min(original)
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, original)
        child.kill()
        child.wait()
