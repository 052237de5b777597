"""ONNX export: Ultralytics' exporter, onnxslim, the checker, edgepipe metadata and the parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.artifacts import Artifact
from core.errors import CheckFailed, InputError
from pipeline.stages import export
from pipeline.stages.base import RunSettings, StageContext
from pipeline.stages.export import ExportConfig, export_checked, export_onnx, parity_images


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, synth_dataset: Path, tmp_path_factory) -> Artifact:
    """The export stage as the runner calls it: parity on the val images of the run's data."""
    settings = RunSettings(imgsz=64, device="cpu", data=synth_dataset, val=synth_dataset)
    out_dir = tmp_path_factory.mktemp("export")
    inputs = {"model": Artifact.from_path("checkpoint", tiny_checkpoint)}
    return export.run(ExportConfig(parity_images=3), StageContext(out_dir, settings, inputs))["onnx"]


def test_export_writes_a_checked_onnx_with_metadata(exported: Artifact):
    import onnx

    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["imgsz"] == "[64, 64]"
    assert "class0" in meta["names"]
    assert int(meta["edgepipe_params"]) > 0
    assert len(meta["edgepipe_checkpoint_sha256"]) == 64
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]


def test_parity_on_real_images_passes(exported: Artifact):
    parity = exported.metadata["parity"]
    assert parity["passed"]
    assert parity["images"] == 3
    assert parity["source"].endswith("/val")
    assert parity["max_box_diff"] < 1e-2 and parity["max_score_diff"] < 1e-4


def test_parity_failure_leaves_no_onnx(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "model.onnx"
    strict = ExportConfig(parity_images=1, parity_tolerance=1e-30, parity_box_tolerance=1e-30)
    with pytest.raises(CheckFailed, match="differs from PyTorch") as error:
        export_checked(tiny_checkpoint, out, 64, strict, None)
    assert error.value.exit_code == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_dynamic_batch_keeps_image_size_fixed(tiny_checkpoint: Path, tmp_path: Path):
    import onnx
    import onnxruntime as ort

    path = export_onnx(tiny_checkpoint, tmp_path / "dyn.onnx", imgsz=64, dynamic_batch=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": np.zeros((2, 3, 64, 64), np.float32)})[0]
    assert out.shape == (2, 4 + 6, 84)


def test_synthetic_parity_images_say_so():
    images, source = parity_images(None, 2, 32)
    assert images.shape == (2, 3, 32, 32)
    assert "synthetic" in source


def test_not_a_checkpoint_is_an_input_error(tmp_path: Path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"model\.pt"):
        export_onnx(bogus, tmp_path / "out.onnx", imgsz=64)
    assert not (tmp_path / "out.onnx").exists()


def test_stage_returns_an_onnx_artifact_in_its_dir(exported: Artifact):
    assert exported.kind == "onnx"
    assert exported.path.name == "model.onnx"
    assert exported.metadata["names"] == {str(i): f"class{i}" for i in range(6)}
    assert exported.metadata["imgsz"] == 64 and exported.metadata["batch"] == 1
    exported.verify()


def test_config_rejects_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ExportConfig(opset=17, simplfy=False)
