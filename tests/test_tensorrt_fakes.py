"""The TensorRT builder and runner, run against fakes of the TensorRT 10 and 11 APIs (tests/fake_tensorrt.py).

What a device alone can show (that TensorRT accepts these calls and the engine is fast and accurate) is in
test_tensorrt_parts.py, gated on `import tensorrt`; these tests show the code takes the right path on each
version, sizes its buffers right, checks what TensorRT returns and reads dtypes from the engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fake_tensorrt import FakeCuda, expected_output, make_tensorrt

from core.calibration import CalibrationSet
from core.errors import InputError
from targets.base import BuildInputs
from targets.tensorrt import cuda_memory, library, target
from targets.tensorrt.engine import compile_engine
from targets.tensorrt.library import TensorRtFailure
from targets.tensorrt.options import TensorRtOptions
from targets.tensorrt.runner import TensorRtRunner

IMGSZ = 64


@pytest.fixture(scope="module")
def onnx_static(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    from pipeline.stages.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "static.onnx", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def onnx_dynamic(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    from pipeline.stages.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "dynamic.onnx"
    return export_onnx(tiny_checkpoint, out, imgsz=IMGSZ, dynamic_batch=True)


@pytest.fixture(scope="module")
def onnx_fp16(tmp_path_factory) -> Path:
    """A one-Conv ONNX computing in fp16, as ModelOpt's AutoCast would leave a model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((7, 3, 1, 1), 0.1, np.float16), "w")
    shape = numpy_helper.from_array(np.array([1, 7, 64], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"]),
            helper.make_node("Reshape", ["c", "shape"], ["out"]),
        ],
        "fp16",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT16, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT16, [1, 7, 64])],
        [weight, shape],
    )
    path = tmp_path_factory.mktemp("onnx") / "fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def calibration(synth_dataset: Path) -> CalibrationSet:
    return CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8)


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def fake(request, monkeypatch):
    """TensorRT `major` and CUDA faked; returns (the fake tensorrt module, the fake CUDA)."""
    cuda = FakeCuda()
    trt = make_tensorrt(request.param, cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(library, "cuda_library", lambda: "cuda-python")
    monkeypatch.setattr(target, "cuda_library", lambda: "cuda-python")
    monkeypatch.setattr(target, "open_cuda", lambda: cuda)
    return trt, cuda


def major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def build(onnx: Path, precision: str, out: Path, calibration=None, **options):
    parsed = TensorRtOptions(**options)
    return target.TensorRtTarget().build(BuildInputs(onnx=onnx), precision, calibration, parsed, out)


def run(artifact, images: np.ndarray) -> np.ndarray:
    from targets.base import RunOptions

    with target.TensorRtTarget().load(artifact, RunOptions(device="cuda")) as runner:
        return runner.infer(images)


def test_fp32_builds_and_runs_on_both_versions(fake, onnx_static, calibration, tmp_path):
    trt, _ = fake
    artifact = build(onnx_static, "fp32", tmp_path / "e")
    meta = artifact.metadata
    assert meta["tensorrt"]["tensorrt_version"] == trt.__version__
    assert meta["tensorrt"]["strongly_typed"] is (major(trt) >= 11)
    assert meta["runtime_precision"] == "fp32" and meta["tensorrt"]["compute_capability"] == "8.7"
    images = next(calibration.batches(1))
    output = run(artifact, images)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, expected_output(images, output.shape), rtol=1e-6)


def test_fp16_is_a_flag_on_10_and_the_onnx_type_on_11(fake, onnx_static, tmp_path):
    trt, _ = fake
    if major(trt) == 10:
        artifact = build(onnx_static, "fp16", tmp_path / "e")
        assert artifact.metadata["runtime_precision"] == "fp16"
        assert not artifact.metadata["tensorrt"]["strongly_typed"]
    else:
        with pytest.raises(InputError, match=r"strongly typed.*fp16.*fp32(?s:.*)AutoCast"):
            build(onnx_static, "fp16", tmp_path / "e")
        assert not (tmp_path / "e" / target.MODEL_FILE).exists()


def test_fp16_onnx_runs_with_the_engine_dtypes(fake, onnx_fp16, tmp_path):
    """An fp16 ONNX has fp16 inputs and outputs: the runner casts to and from them."""
    trt, cuda = fake
    record = compile_engine(onnx_fp16, tmp_path / "m.engine", precision="fp16", int8_mode=None,
                          calibration=None, batch=1, options=TensorRtOptions(), cuda=cuda)  # fmt: skip
    assert record["runtime_precision"] == "fp16"
    assert record["strongly_typed"] is (major(trt) >= 11)
    metadata = {
        "tensorrt": {**record, "tensorrt_version": record["trt_version"]},
        "runtime_precision": "fp16",
    }
    runner = TensorRtRunner(tmp_path / "m.engine", metadata, cuda)
    assert runner.input_dtype == np.float16 and runner.output_dtype == np.float16
    images = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    output = runner.infer(images)
    assert output.dtype == np.float32 and output.shape == (1, 7, 64)
    np.testing.assert_allclose(output, expected_output(images.astype(np.float16), output.shape), rtol=2e-3)
    assert cuda.copies[0] == images.size * 2  # fp16 input: two bytes per value


def test_cuda_graph_replays_the_engine_and_the_copy_compute_split_is_recorded(fake, onnx_fp16, tmp_path):
    """With CUDA graphs the engine is captured once per shape and replayed, with fresh inputs each time."""
    _, cuda = fake
    record = compile_engine(onnx_fp16, tmp_path / "m.engine", precision="fp16", int8_mode=None,
                          calibration=None, batch=1, options=TensorRtOptions(), cuda=cuda)  # fmt: skip
    metadata = {
        "tensorrt": {**record, "tensorrt_version": record["trt_version"]},
        "runtime_precision": "fp16",
    }
    runner = TensorRtRunner(tmp_path / "m.engine", metadata, cuda, cuda_graphs=True)
    rng = np.random.default_rng(1)
    for _ in range(3):
        images = rng.random((1, 3, 8, 8), dtype=np.float32)
        output = runner.infer(images)
        expected = expected_output(images.astype(np.float16), output.shape)
        np.testing.assert_allclose(output, expected, rtol=2e-3)
    assert cuda.launches == 2  # the first inference captures, the next two replay
    settings = runner.settings()
    assert settings["cuda_graphs"] is True
    split = settings["gpu_split_ms"]  # the fake's clock: a copy takes 0.25 ms, the engine over 1 ms
    assert split["h2d"] == 0.25 and split["compute"] > 1.0 and split["d2h"] == 0.0
    assert settings["device_memory_mb"] > 1.0


def test_int8_qdq_is_strongly_typed_on_11_and_flagged_on_10(fake, onnx_static, calibration, tmp_path):
    trt, _ = fake
    artifact = build(onnx_static, "int8", tmp_path / "e", calibration)
    meta = artifact.metadata
    assert meta["tensorrt"]["int8_mode"] == "qdq" and meta["quantization"]["quantizer"].startswith(
        "nvidia-modelopt"
    )
    assert meta["tensorrt"]["qdq_onnx_sha256"] == meta["files_sha256"][target.QDQ_FILE]
    engine = (tmp_path / "e" / target.MODEL_FILE).read_text()
    if major(trt) == 10:
        assert meta["runtime_precision"] == "int8+fp16" and '"flags": ["fp16", "int8"]' in engine
    else:
        assert meta["runtime_precision"] == "int8+fp32" and '"flags": []' in engine
        assert '"strongly_typed": true' in engine


def test_calibrator_on_10_uses_the_profile_batch_and_its_cache(fake, onnx_dynamic, calibration, tmp_path):
    trt, cuda = fake
    if major(trt) >= 11:
        with pytest.raises(InputError, match="no implicit INT8 calibration"):
            build(onnx_dynamic, "int8", tmp_path / "e", calibration, int8_mode="calibrator", opt_batch=4)
        return
    artifact = build(onnx_dynamic, "int8", tmp_path / "e", calibration, int8_mode="calibrator", opt_batch=4)
    engine = (tmp_path / "e" / target.MODEL_FILE).read_text()
    assert '"calibrated_batches": 2' in engine  # 8 images at the profile's opt batch of 4
    assert cuda.copies[:2] == [4 * 3 * IMGSZ * IMGSZ * 4] * 2
    assert artifact.metadata["tensorrt"]["calibration_sha256"] == calibration.sha256
    assert (tmp_path / "e" / "calibration.cache").is_file()
    # Same calibration set, same cache: the second build reads it instead of calibrating.
    (tmp_path / "again").mkdir()
    for name in ("calibration.cache", "calibration.cache.json"):
        (tmp_path / "again" / name).write_bytes((tmp_path / "e" / name).read_bytes())
    build(onnx_dynamic, "int8", tmp_path / "again", calibration, int8_mode="calibrator", opt_batch=4)
    assert '"calibrated_batches": 0' in (tmp_path / "again" / target.MODEL_FILE).read_text()


@pytest.mark.usefixtures("fake")
def test_dynamic_engine_takes_batches_within_its_profile_only(onnx_dynamic, calibration, tmp_path):
    artifact = build(onnx_dynamic, "fp32", tmp_path / "e", max_batch=2)
    images = np.concatenate(list(calibration.batches(1))[:2])
    output = run(artifact, images)
    np.testing.assert_allclose(output, expected_output(images, output.shape), rtol=1e-6)
    with pytest.raises(InputError, match=r"does not take input shape \(3, 3, 64, 64\)"):
        run(artifact, np.concatenate(list(calibration.batches(1))[:3]))


@pytest.mark.usefixtures("fake")
def test_runner_checks_what_tensorrt_returns(onnx_static, calibration, tmp_path):
    artifact = build(onnx_static, "fp32", tmp_path / "e")
    images = next(calibration.batches(1))
    with pytest.raises(TensorRtFailure, match="execute_async_v3"):
        run(artifact, np.full_like(images, np.nan))
    (tmp_path / "e" / target.MODEL_FILE).write_bytes(b"not an engine")
    with pytest.raises(InputError, match="cannot deserialize"):
        TensorRtRunner(tmp_path / "e" / target.MODEL_FILE, artifact.metadata, FakeCuda())
    with pytest.raises(InputError, match=r"compute capability 8\.7"):
        TensorRtRunner(tmp_path / "e" / target.MODEL_FILE, artifact.metadata, FakeCuda(capability="9.0"))


def test_parser_errors_name_the_file(fake, onnx_static, calibration, tmp_path):
    """TensorRT's parser refuses an INT32 bias (the validator refuses it earlier: test_tensorrt_parts)."""
    import dataclasses

    from targets.qdq import quantize_qdq
    from targets.tensorrt.qdq_source import TENSORRT_QDQ

    _, cuda = fake
    int32_bias = tmp_path / "bias.onnx"
    quantize_qdq(onnx_static, int32_bias, calibration, dataclasses.replace(TENSORRT_QDQ, quantize_bias=True))
    with pytest.raises(InputError, match=r"bias\.onnx: TensorRT cannot parse the ONNX: .*INT32"):
        compile_engine(int32_bias, tmp_path / "m.engine", precision="int8", int8_mode="qdq", calibration=None,
                     batch=1, options=TensorRtOptions(), cuda=cuda)  # fmt: skip


def test_cuda_library_needs_the_runtime_bindings_not_a_cuda_namespace(tmp_path, monkeypatch):
    """`cuda` alone proves nothing: here it holds only what cuda-pathfinder installs."""
    import importlib

    (tmp_path / "cuda" / "pathfinder").mkdir(parents=True)
    (tmp_path / "cuda" / "pathfinder" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "cuda" or m.startswith("cuda.")]:
        monkeypatch.delitem(sys.modules, name)
    cuda = importlib.import_module("cuda")
    monkeypatch.setattr(cuda, "__path__", [str(tmp_path / "cuda")])  # hide an installed cuda-python
    assert importlib.util.find_spec("cuda.pathfinder") is not None
    has_pycuda = cuda_memory._has_module("pycuda.driver")
    assert cuda_memory.cuda_library() == ("pycuda" if has_pycuda else None)
    (tmp_path / "cuda" / "bindings").mkdir()
    (tmp_path / "cuda" / "bindings" / "__init__.py").write_text("")
    (tmp_path / "cuda" / "bindings" / "runtime.py").write_text("")
    importlib.invalidate_caches()
    assert cuda_memory.cuda_library() == "cuda-python"


def test_install_hint_per_platform():
    assert "JetPack's own TensorRT" in library.install_hint(jetson=True)
    assert "never `pip install tensorrt`" in library.install_hint(jetson=True)
    x86 = library.install_hint(jetson=False)
    assert "tensorrt-cu12<11" in x86 and "tensorrt-cu12>=11" in x86
