"""TensorRT: everything that needs no TensorRT runs here; the engine build itself is gated on `tensorrt`."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from core.calibration import CalibrationSet
from core.errors import InputError
from targets import tensorrt as trt_target

IMGSZ = 64


@pytest.fixture(scope="module")
def calibration(synth_dataset: Path) -> CalibrationSet:
    return CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    from pipeline.stages.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def qdq(tiny_onnx: Path, calibration: CalibrationSet, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("qdq") / "model.qdq.onnx"
    return out, trt_target.make_host_qdq(tiny_onnx, calibration, {}, out).record


def test_availability_names_the_install():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        ok, reason = trt_target.TensorRtTarget().available()
        assert not ok
        assert "pip install tensorrt" in reason and "JetPack" in reason
    else:
        assert trt_target.TensorRtTarget().available()[1].startswith("tensorrt")


def test_calibration_stream_batches(calibration: CalibrationSet, tmp_path: Path):
    stream = trt_target.CalibrationStream(calibration, batch_size=4, cache_path=tmp_path / "c.cache")
    batches = []
    while (batch := stream.next_batch()) is not None:
        batches.append(batch)
    assert len(batches) == 2
    assert all(b.shape == (4, 3, IMGSZ, IMGSZ) and b.dtype == np.float32 for b in batches)
    assert stream.nbytes == batches[0].nbytes
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(list(calibration.batches(1))))


def test_calibration_cache_round_trip_and_invalidation(calibration: CalibrationSet, synth_dataset, tmp_path):
    cache = tmp_path / "calibration.cache"
    stream = trt_target.CalibrationStream(calibration, 1, cache)
    assert stream.read_cache() is None
    stream.write_cache(b"TRT-1000-EntropyCalibration2\nimages: 3c010a14\n")
    assert trt_target.CalibrationStream(calibration, 1, cache).read_cache() == cache.read_bytes()
    other = CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8, seed=1)
    assert other.sha256 != calibration.sha256
    assert (
        trt_target.CalibrationStream(other, 1, cache).read_cache() is None
    )  # never reuse another set's cache


def test_engine_metadata_and_compatibility():
    meta = trt_target.engine_metadata(
        trt_version="10.3.0",
        device_name="Orin",
        compute_capability="8.7",
        precision="int8",
        int8_mode="qdq",
        calibration_sha256="a" * 64,
        qdq_onnx_sha256="b" * 64,
    )
    assert meta["qdq_onnx_sha256"] == "b" * 64 and meta["calibration_sha256"] == "a" * 64
    trt_target.check_engine_compatible(meta, "10.3.0", "8.7")
    with pytest.raises(InputError, match=r"TensorRT 10\.3\.0"):
        trt_target.check_engine_compatible(meta, "10.7.0", "8.7")
    with pytest.raises(InputError, match=r"compute capability 8\.7"):
        trt_target.check_engine_compatible(meta, "10.3.0", "9.0")


def test_qdq_onnx_is_modelopt_symmetric_int8_with_float_head(qdq):
    import onnx
    from onnx import numpy_helper

    path, record = qdq
    assert record["sha256"] == trt_target.sha256_file(path)
    assert record["quantizer"] == f"nvidia-modelopt {version('nvidia-modelopt')}"
    assert record["calibration_method"] == "entropy"
    graph = onnx.load(str(path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert quantizers
    for node in quantizers:
        zero_point = initializers[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()  # signed, zero point 0: TensorRT's rule
    assert "/model.22/dfl/Softmax" in record["float_nodes"]


def test_qdq_onnx_runs_close_to_fp32_in_onnxruntime(qdq, tiny_onnx, calibration):
    import onnxruntime as ort

    path, _ = qdq
    images = next(calibration.batches(1))
    fp32 = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(
        None, {"images": images}
    )[0]
    int8 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": images})[
        0
    ]
    assert int8.shape == fp32.shape
    box_range = float(np.ptp(fp32[:, :4]))
    assert float(np.abs(int8[:, :4] - fp32[:, :4]).max()) < 0.1 * box_range + 1.0
    assert float(np.abs(int8[:, 4:] - fp32[:, 4:]).max()) < 0.1


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_engine_builds_and_runs(precision, tiny_onnx, tiny_checkpoint, synth_dataset, tmp_path):
    pytest.importorskip("tensorrt")
    import torch

    from core.checkpoints import load_detection_model
    from core.engine_record import read_artifact_dir
    from pipeline.stages.build import BuildEntry, build_engine
    from targets.base import RunOptions

    out = tmp_path / "engine"
    entry = BuildEntry(target="tensorrt", precision=precision, calib_size=8)
    artifact = build_engine(
        entry, out, onnx=tiny_onnx, checkpoint=tiny_checkpoint, calib_data=synth_dataset, val_data=None
    )
    meta = read_artifact_dir(out)
    assert meta["tensorrt"]["compute_capability"] and meta["tensorrt"]["tensorrt_version"]
    if precision == "int8":
        assert meta["tensorrt"]["qdq_onnx_sha256"] == meta["files_sha256"][trt_target.QDQ_FILE]
        assert meta["tensorrt"]["calibration_sha256"] == meta["calibration"]["sha256"]
    images = next(CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8).batches(1))
    output = trt_target.TensorRtTarget().load(artifact, RunOptions(device="cuda")).infer(images)
    with torch.inference_mode():
        expected = load_detection_model(tiny_checkpoint)(torch.from_numpy(images))[0].numpy()
    assert output.shape == expected.shape
    assert float(np.abs(output[:, 4:] - expected[:, 4:]).max()) < 0.05
