"""TensorRT: everything that needs no TensorRT runs here; the engine build itself is gated on `tensorrt`."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import sha256_file
from core.calibration import CalibrationSet
from core.errors import InputError
from targets.tensorrt import calibration as trt_calibration
from targets.tensorrt import metadata, qdq_source, target
from targets.tensorrt.options import TensorRtOptions
from targets.tensorrt.qdq_rules import check_qdq, require_valid_qdq

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
    return out, qdq_source.make_host_qdq(tiny_onnx, calibration, TensorRtOptions(), out).record


@pytest.fixture(scope="module")
def hand_built(tiny_onnx: Path, calibration: CalibrationSet, tmp_path_factory) -> tuple[Path, dict]:
    """edgepipe's own TensorRT scheme (what the accuracy loop ranks layers with), made with ORT."""
    from targets.qdq import quantize_qdq

    out = tmp_path_factory.mktemp("hand") / "model.qdq.onnx"
    quantize_qdq(tiny_onnx, out, calibration, qdq_source.TENSORRT_QDQ)
    return out, qdq_source.TENSORRT_QDQ.record()


def test_availability_names_the_install():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        ok, reason = target.TensorRtTarget().available()
        assert not ok
        assert "tensorrt is not installed" in reason and ("JetPack" in reason or "tensorrt-cu12" in reason)
    else:
        assert target.TensorRtTarget().available()[1].startswith("tensorrt")


def test_calibration_stream_batches(calibration: CalibrationSet, tmp_path: Path):
    stream = trt_calibration.CalibrationStream(calibration, batch_size=4, cache_path=tmp_path / "c.cache")
    batches = []
    while (batch := stream.next_batch()) is not None:
        batches.append(batch)
    assert len(batches) == 2
    assert all(b.shape == (4, 3, IMGSZ, IMGSZ) and b.dtype == np.float32 for b in batches)
    assert stream.nbytes == batches[0].nbytes
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(list(calibration.batches(1))))


def test_calibration_cache_round_trip_and_invalidation(calibration: CalibrationSet, synth_dataset, tmp_path):
    cache = tmp_path / "calibration.cache"
    stream = trt_calibration.CalibrationStream(calibration, 1, cache)
    assert stream.read_cache() is None
    stream.write_cache(b"TRT-1000-EntropyCalibration2\nimages: 3c010a14\n")
    assert trt_calibration.CalibrationStream(calibration, 1, cache).read_cache() == cache.read_bytes()
    other = CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8, seed=1)
    assert other.sha256 != calibration.sha256
    assert (
        trt_calibration.CalibrationStream(other, 1, cache).read_cache() is None
    )  # never reuse another set's cache


def test_engine_metadata_and_compatibility():
    meta = metadata.engine_metadata(
        trt_version="10.3.0",
        device_name="Orin",
        compute_capability="8.7",
        precision="int8",
        int8_mode="qdq",
        calibration_sha256="a" * 64,
        qdq_onnx_sha256="b" * 64,
        strongly_typed=False,
    )
    assert meta["qdq_onnx_sha256"] == "b" * 64 and meta["calibration_sha256"] == "a" * 64
    metadata.check_engine_compatible(meta, "10.3.0", "8.7")
    with pytest.raises(InputError, match=r"TensorRT 10\.3\.0"):
        metadata.check_engine_compatible(meta, "10.7.0", "8.7")
    with pytest.raises(InputError, match=r"compute capability 8\.7"):
        metadata.check_engine_compatible(meta, "10.3.0", "9.0")


def test_qdq_onnx_is_modelopt_symmetric_int8_with_float_head(qdq):
    import onnx
    from onnx import numpy_helper

    path, record = qdq
    assert record["sha256"] == sha256_file(path)
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


def test_calibration_cache_only_where_onnxruntime_has_it(tiny_onnx, calibration, tmp_path):
    """ONNX Runtime 1.23 (the newest for Python 3.10) has no calibration cache: calibrate, and say so."""
    from targets.qdq import quantize_qdq, supports_calibration_cache

    cache = tmp_path / "ranges.json"
    scheme = qdq_source.TENSORRT_QDQ
    if supports_calibration_cache():
        quantize_qdq(tiny_onnx, tmp_path / "a.onnx", calibration, scheme, calibration_cache=cache)
        assert cache.is_file()
    else:
        with pytest.warns(UserWarning, match="no calibration cache"):
            quantize_qdq(tiny_onnx, tmp_path / "a.onnx", calibration, scheme, calibration_cache=cache)
        assert not cache.exists()
    assert check_qdq(tmp_path / "a.onnx") == []


def test_hand_built_qdq_passes_the_validator(hand_built):
    import onnx

    path, record = hand_built
    assert check_qdq(path) == []
    assert record["quantize_bias"] is False and record["dedicated_pairs"] and record["unify_concat_scales"]
    graph = onnx.load(str(path)).graph
    dequantized = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    biases = {n.input[2] for n in graph.node if n.op_type == "Conv" and len(n.input) > 2}
    assert not dequantized & biases  # every bias stays float


def _edited(path: Path, out: Path, edit) -> Path:
    import onnx

    model = onnx.load(str(path))
    edit(model.graph)
    onnx.save(model, str(out))
    return out


def _initializer(graph, name: str):
    return next(i for i in graph.initializer if i.name == name)


def test_validator_rejects_int32_biases(tiny_onnx, calibration, tmp_path):
    """ONNX Runtime's default (QuantizeBias on) writes INT32 DequantizeLinear, which TensorRT cannot parse."""
    import dataclasses

    from targets.qdq import quantize_qdq

    out = tmp_path / "int32-bias.onnx"
    scheme = dataclasses.replace(qdq_source.TENSORRT_QDQ, quantize_bias=True)
    quantize_qdq(tiny_onnx, out, calibration, scheme)
    found = check_qdq(out)
    assert found and {v.rule for v in found} == {"dequantize-type"}
    assert all("INT32" in v.detail and "bias" in v.node for v in found)
    with pytest.raises(InputError, match=r"int32-bias\.onnx: .*bias.*DequantizeLinear of INT32"):
        require_valid_qdq(out)


def test_validator_rejects_a_concat_with_mismatched_scales(qdq, tmp_path):
    from onnx import numpy_helper

    from targets.qdq_concat import concat_scale_names

    path, _ = qdq

    def double_one_input_scale(graph) -> None:
        node, names = next(iter(concat_scale_names(graph).items()))
        double_one_input_scale.node = node
        scale = _initializer(graph, names[0])
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, scale.name))

    broken = _edited(path, tmp_path / "concat.onnx", double_one_input_scale)
    found = check_qdq(broken)
    assert [(v.rule, v.node) for v in found] == [("concat-scales", double_one_input_scale.node)]
    with pytest.raises(InputError, match=f"{double_one_input_scale.node}: inputs and output have 2 scales"):
        require_valid_qdq(broken)


def test_concat_unification_makes_one_scale_per_concat(tiny_onnx, calibration, tmp_path):
    import dataclasses

    from targets.qdq import quantize_qdq
    from targets.qdq_concat import unify_concat_scales

    out = tmp_path / "separate.onnx"
    scheme = dataclasses.replace(qdq_source.TENSORRT_QDQ, unify_concat_scales=False)
    quantize_qdq(tiny_onnx, out, calibration, scheme)
    mismatched = {v.node for v in check_qdq(out)}
    assert mismatched and {v.rule for v in check_qdq(out)} == {"concat-scales"}  # ONNX Runtime's own scales
    assert unify_concat_scales(out) >= len(mismatched)
    assert check_qdq(out) == []


def test_validator_rejects_half_quantized_convs_zero_points_and_opsets(hand_built, tmp_path):
    import onnx
    from onnx import numpy_helper

    path, _ = hand_built
    graph = onnx.load(str(path)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    conv = next(
        n for n in graph.node if n.op_type == "Conv" and made_by[n.input[0]].op_type == "DequantizeLinear"
    )

    def float_input(g) -> None:
        node = next(n for n in g.node if n.name == conv.name)
        dq = made_by[node.input[0]]
        node.input[0] = made_by[dq.input[0]].input[0]  # the float tensor before the Q/DQ pair

    found = check_qdq(_edited(path, tmp_path / "conv.onnx", float_input))
    assert [(v.rule, v.node) for v in found] == [("conv-pairs", conv.name)]
    assert "weight has Q/DQ but the input has none" in found[0].detail

    def float_weight(g) -> None:
        """A layer the accuracy loop keeps in float: float weight, its input still dequantized."""
        node = next(n for n in g.node if n.name == conv.name)
        dq = made_by[node.input[1]]
        weight = numpy_helper.to_array(_initializer(g, dq.input[0])).astype(np.float32)
        scale = numpy_helper.to_array(_initializer(g, dq.input[1])).reshape(-1, 1, 1, 1)
        g.initializer.append(numpy_helper.from_array(weight * scale, f"{conv.name}/float_weight"))
        node.input[1] = f"{conv.name}/float_weight"

    assert check_qdq(_edited(path, tmp_path / "float-conv.onnx", float_weight)) == []

    q = next(n for n in graph.node if n.op_type == "QuantizeLinear")

    def shift_zero_point(g) -> None:
        zero_point = _initializer(g, q.input[2])
        zero_point.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(zero_point) + 3, zero_point.name))

    found = check_qdq(_edited(path, tmp_path / "zp.onnx", shift_zero_point))
    assert ("symmetric", q.name) in [(v.rule, v.node) for v in found]

    model = onnx.load(str(path))
    next(o for o in model.opset_import if o.domain == "").version = 21
    onnx.save(model, str(tmp_path / "opset.onnx"))
    assert [v.rule for v in check_qdq(tmp_path / "opset.onnx")] == ["opset"]


def test_validator_rejects_a_float_onnx(tiny_onnx):
    with pytest.raises(InputError, match="no DequantizeLinear node: not a Q/DQ ONNX"):
        require_valid_qdq(tiny_onnx)


def test_adopted_qdq_file_is_validated_before_a_build(tiny_onnx, calibration, tmp_path):
    """A foreign Q/DQ file (ModelOpt's, another tool's) must pass the same rules before it is compiled."""
    import dataclasses

    from targets.qdq import quantize_qdq

    foreign = tmp_path / "foreign.onnx"
    quantize_qdq(
        tiny_onnx, foreign, calibration, dataclasses.replace(qdq_source.TENSORRT_QDQ, quantize_bias=True)
    )
    with pytest.raises(InputError, match=r"foreign\.onnx: this Q/DQ ONNX breaks TensorRT's rules"):
        qdq_source.qdq_source(tiny_onnx, None, TensorRtOptions(qdq_onnx=str(foreign)), tmp_path / "copy.onnx")


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
    entry = BuildEntry(target="tensorrt", precision=precision, calib_images=8)
    artifact = build_engine(
        entry, out, onnx=tiny_onnx, checkpoint=tiny_checkpoint, calib_data=synth_dataset, val_data=None
    )
    meta = read_artifact_dir(out)
    assert meta["tensorrt"]["compute_capability"] and meta["tensorrt"]["tensorrt_version"]
    if precision == "int8":
        assert meta["tensorrt"]["qdq_onnx_sha256"] == meta["files_sha256"][qdq_source.QDQ_FILE]
        assert meta["tensorrt"]["calibration_sha256"] == meta["calibration"]["sha256"]
    images = next(CalibrationSet.from_dataset(synth_dataset, IMGSZ, size=8).batches(1))
    output = target.TensorRtTarget().load(artifact, RunOptions(device="cuda")).infer(images)
    with torch.inference_mode():
        expected = load_detection_model(tiny_checkpoint)(torch.from_numpy(images))[0].numpy()
    assert output.shape == expected.shape
    assert float(np.abs(output[:, 4:] - expected[:, 4:]).max()) < 0.05
