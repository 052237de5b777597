"""Real OpenVINO and ONNX Runtime engines of a tiny model at 64 px, through `edgepipe bench`, `gate`,
`compare` and `history`: one name per engine, what the backend ran with, per-layer profiles, memory,
partial mAP, and outputs that are never silently replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.history import HISTORY_ENV
from benchmarks.results import load_results
from core.artifacts import sha256_path
from pipeline.cli import app

IMGSZ = 64
QUICK = ["--warmup", "1", "--iters", "5", "--min-seconds", "0", "--throughput-seconds", "0.2"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, terminal_width=200)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("history") / "history.sqlite"


@pytest.fixture(autouse=True)
def module_history(history, monkeypatch):
    monkeypatch.setenv(HISTORY_ENV, str(history))


@pytest.fixture(scope="module")
def engines(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    from pipeline.stages.export import export_onnx
    from targets.base import BuildInputs, get_target

    root = tmp_path_factory.mktemp("engines")
    onnx = export_onnx(tiny_checkpoint, root / "tiny.onnx", imgsz=IMGSZ)
    built = {"onnx": onnx}
    for target in ("openvino", "onnxruntime"):
        backend = get_target(target)
        built[target] = backend.build(
            BuildInputs(onnx=onnx), "fp32", None, backend.options_model(), root / target
        ).path
    return built


@pytest.fixture(scope="module")
def ov_bench(engines, tmp_path_factory, history, synth_dataset) -> tuple[Path, str]:
    """One OpenVINO bench with a partial mAP, the per-layer profile, memory and the OpenVINO options."""
    os.environ[HISTORY_ENV] = str(history)  # the autouse fixture is function-scoped
    out = tmp_path_factory.mktemp("ov") / "ov.json"
    result = invoke(
        "bench", "-a", engines["openvino"], "-o", out, "--val", synth_dataset, "--max-images", "4",
        "--profile", "--device", "CPU", "--performance-hint", "LATENCY", "--streams", "2",
        "--infer-requests", "3", "--threads", "2", *QUICK,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_openvino_records_what_ran(ov_bench):
    (result,) = load_results(ov_bench[0])
    settings = result.backend_settings
    assert (settings["device"], settings["performance_hint"], settings["streams"]) == ("CPU", "LATENCY", 1)
    threads = min(2, len(os.sched_getaffinity(0)))  # the 2 asked for, fitted to the cores this process has
    assert settings["threads"] == result.threads == threads
    # OpenVINO gives each stream a thread at least: 2 threads run 2 streams (1 thread would run 1)
    assert settings["throughput"]["streams"] == threads and settings["throughput"]["infer_requests"] == 3
    assert settings["throughput"]["device"] == "CPU"


def test_profile_prints_top_layers_and_keeps_all(ov_bench):
    (result,) = load_results(ov_bench[0])
    layers = result.profile["layers"]
    assert len(layers) > 10 and result.profile["runs"] > 1
    assert [layer["ms"] for layer in layers] == sorted((layer["ms"] for layer in layers), reverse=True)
    assert result.profile["total_ms"] == pytest.approx(sum(layer["ms"] for layer in layers))
    assert any(layer["type"] == "Convolution" for layer in layers)
    assert "slowest 10 of" in ov_bench[1] and layers[0]["name"][:20] in ov_bench[1]


def test_memory_is_recorded_and_budgeted(ov_bench, tmp_path):
    (result,) = load_results(ov_bench[0])
    assert result.memory_mb > 0 and "fresh process" in result.memory_method
    budgets = tmp_path / "memory.yaml"
    for limit, code in ((result.memory_mb * 10, 0), (result.memory_mb / 2, 1)):
        budgets.write_text(yaml.safe_dump({"budgets": [{"target": "openvino/*", "max_memory_mb": limit}]}))
        outcome = invoke("gate", ov_bench[0], "-b", budgets)
        assert outcome.exit_code == code, outcome.output
    assert "broken budgets" in outcome.output and "memory" in outcome.output


def test_partial_map_is_labelled_and_refused_by_a_map_budget(ov_bench, tmp_path, synth_dataset):
    (result,) = load_results(ov_bench[0])
    assert result.map_partial and result.map_images == 4 and result.map50_95 is not None
    assert "(4 img, partial)" in ov_bench[1]
    budgets = tmp_path / "map.yaml"
    budget = {"target": "openvino/fp32", "min_map50_95": 0.0}
    budgets.write_text(yaml.safe_dump({"budgets": [budget]}))
    refused = invoke("gate", ov_bench[0], "-b", budgets)
    assert refused.exit_code == 2 and "partial mAP" in refused.output
    budgets.write_text(yaml.safe_dump({"budgets": [{**budget, "allow_partial_map": True}]}))
    assert invoke("gate", ov_bench[0], "-b", budgets).exit_code == 0


def test_budget_and_history_take_the_name_bench_prints(ov_bench, tmp_path, history):
    (result,) = load_results(ov_bench[0])
    printed = "openvino/fp32"  # the target column of bench's table
    assert printed in ov_bench[1] and result.key == printed
    for name in (printed, f"openvino/{result.ran_as}"):
        budgets = tmp_path / "budgets.yaml"
        budgets.write_text(yaml.safe_dump({"budgets": [{"target": name, "max_size_mb": 100}]}))
        assert invoke("gate", ov_bench[0], "-b", budgets).exit_code == 0
        found = invoke("history", "--target", name)
        assert found.exit_code == 0 and printed in found.output and "No results" not in found.output


def test_compare_refuses_files_without_a_common_pair(ov_bench, engines, tmp_path):
    ort = tmp_path / "ort.json"
    assert invoke("bench", "-a", engines["onnxruntime"], "-o", ort, "--no-accuracy", "--no-memory",
                  *QUICK).exit_code == 0  # fmt: skip
    (result,) = load_results(ort)
    assert result.threads is not None and result.threads >= 1  # the backend's own choice, read back
    outcome = invoke("compare", ort, ov_bench[0])
    assert outcome.exit_code == 2 and "nothing can be compared" in outcome.output


def test_compare_refuses_accuracy_in_one_file_only(engines, ov_bench, tmp_path):
    speed_only = tmp_path / "speed.json"
    assert invoke("bench", "-a", engines["openvino"], "-o", speed_only, "--no-accuracy", "--no-memory",
                  *QUICK).exit_code == 0  # fmt: skip
    outcome = invoke("compare", ov_bench[0], speed_only)
    assert outcome.exit_code == 2
    output = " ".join(outcome.output.split())
    assert "mAP in one file only (the base)" in output
    assert "timing images: shapes/val in base, synthetic 480x640 in new" in output
    # the base ran 2 streams, the new one the default: named with its option
    assert "streams: 2 in base, 1 in new" in output and "--streams" in output


@pytest.mark.parametrize("command", ["build", "bench", "export"])
def test_existing_output_is_refused_and_kept_byte_identical(command, engines, tiny_checkpoint, tmp_path):
    output = tmp_path / ("engine" if command == "build" else "out.json" if command == "bench" else "m.onnx")
    if command == "build":
        output.mkdir()
        (output / "model.xml").write_text("an engine built before")
    else:
        output.write_text("written before")
    before = sha256_path(output)
    args = {
        "build": ["build", "--onnx", engines["onnx"], "--target", "onnxruntime"],
        "bench": ["bench", "-a", engines["onnxruntime"], "--no-accuracy", "--no-memory", *QUICK],
        "export": ["export", "--model", tiny_checkpoint, "--imgsz", IMGSZ],
    }[command]
    refused = invoke(*args, "-o", output)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert sha256_path(output) == before
    if command == "build":
        forced = invoke(*args, "-o", output, "--force")
        assert forced.exit_code == 0, forced.output
        assert (output / "artifact.json").is_file() and not (output / "model.xml").exists()
