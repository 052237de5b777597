"""`precision: auto`: each precision of the target built and measured here; the fastest within bound kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine_record import read_artifact_dir
from core.errors import InputError
from pipeline.stages.auto_precision import PrecisionCandidate, choose
from pipeline.stages.build import BuildEntry, build_engine
from targets.accuracy_bound import AccuracyBound

IMGSZ = 64


def test_the_fastest_outside_the_bound_loses_to_the_fastest_within_it():
    candidates = [
        PrecisionCandidate("fp32", latency_ms=30.0, map50_95=0.40, drop=0.0, within_bound=True),
        PrecisionCandidate("bf16", latency_ms=25.0, map50_95=0.399, drop=0.001, within_bound=True),
        PrecisionCandidate("fp16", skipped="this device cannot run fp16"),
        PrecisionCandidate("int8", latency_ms=20.0, map50_95=0.38, drop=0.02, within_bound=False),
    ]
    chosen, reason = choose(candidates, AccuracyBound(), fp32_map=0.40)
    assert chosen.precision == "bf16"
    assert reason.startswith("bf16 is the fastest within the bound") and "int8 20.00 ms" in reason
    assert "outside" in reason and "fp16" not in reason


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    from pipeline.stages.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx", imgsz=IMGSZ)


def test_openvino_auto_builds_every_precision_and_records_why(tiny_onnx, synth_dataset, tmp_path):
    out = tmp_path / "engine"
    engine = build_engine(
        BuildEntry(target="openvino", precision="auto", calib_images=8), out, onnx=tiny_onnx,
        checkpoint=None, calib_data=synth_dataset, val_data=synth_dataset,
    )  # fmt: skip
    meta = read_artifact_dir(out)
    assert meta == engine.metadata
    record = meta["auto_precision"]
    by_precision = {c["precision"]: c for c in record["candidates"]}
    assert set(by_precision) == {"fp32", "bf16", "fp16", "int8"}
    measured = [c for c in record["candidates"] if c["skipped"] is None]
    assert {"fp32", "int8"} <= {c["precision"] for c in measured}  # real OpenVINO engines, built here
    assert all(c["latency_ms"] > 0 and c["map50_95"] is not None for c in measured)
    within = [c for c in measured if c["within_bound"]]
    fastest = min(within, key=lambda c: c["latency_ms"])
    assert record["chosen"] == fastest["precision"] == meta["precision"]
    assert record["reason"].startswith(f"{fastest['precision']} is the fastest within the bound")
    for skipped in (c for c in record["candidates"] if c["skipped"]):
        assert "cannot run" in skipped["skipped"]
    assert not (tmp_path / "engine" / "fp32").exists()  # only the chosen engine is kept


def test_auto_needs_a_val_set(tiny_onnx, synth_dataset, tmp_path):
    with pytest.raises(InputError, match="--val"):
        build_engine(
            BuildEntry(target="openvino", precision="auto"), tmp_path / "engine", onnx=tiny_onnx,
            checkpoint=None, calib_data=synth_dataset, val_data=None,
        )  # fmt: skip
