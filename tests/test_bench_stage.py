"""`edgepipe bench` and the bench stage on a tiny checkpoint at 64 px, and their bad-input errors."""

from __future__ import annotations

import pytest

from benchmarks.history import HISTORY_ENV, query_results
from benchmarks.results import load_results, save_results
from core.artifacts import Artifact, sha256_file
from core.errors import InputError
from pipeline.cli.bench import command, parse_batches
from pipeline.stages.base import RunSettings, StageContext
from pipeline.stages.benchmark import BenchConfig, bench_artifact, run

QUICK = {
    "warmup": 1,
    "iters": 5,
    "min_seconds": 0.0,
    "throughput_seconds": 0.2,
    "threads": 1,
    "memory": False,
}


@pytest.fixture(autouse=True)
def history(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv(HISTORY_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_engine(tiny_checkpoint, tmp_path_factory):
    from targets.base import BuildInputs, get_target

    out = tmp_path_factory.mktemp("engine") / "torch-fp32"
    inputs = BuildInputs(onnx=None, checkpoint=tiny_checkpoint, imgsz=64)
    target = get_target("torch")
    return target.build(inputs, "fp32", None, target.options_model(), out)


def test_bench_plain_checkpoint_speed_only(tiny_checkpoint):
    config = BenchConfig(batch=[1, 2], accuracy=False, streams=2, **QUICK)
    results = bench_artifact(tiny_checkpoint, None, config, imgsz=64)
    assert [(r.batch, r.target, r.requested_precision) for r in results] == [
        (1, "torch", "fp32"),
        (2, "torch", "fp32"),
    ]
    for r in results:
        assert r.model == "tiny" and r.precision == "fp32" and r.streams == 2 and r.threads == 1
        assert r.family == "yolov8" and r.model_label == "tiny (YOLOv8)"  # from the engine record
        assert r.imgsz == 64 and r.letterbox is None  # the input size is known without a mAP
        assert r.latency_ms.n == len(r.samples_ms) >= 5 and r.e2e_latency_ms.n == len(r.e2e_samples_ms) >= 5
        assert r.latency_ms.min <= r.latency_ms.p50 <= r.latency_ms.p99 <= r.latency_ms.max
        assert r.throughput_ips > 0 and r.throughput == [
            {"batch": r.batch, "streams": 2, "ips": r.throughput_ips}
        ]
        assert r.size_mb > 0 and r.params > 0 and r.map50_95 is None
        assert r.device["name"] and r.versions["torch"]
        assert r.artifact_sha256 == sha256_file(tiny_checkpoint)  # what the user named, not our temp build


def test_e2e_is_timed_with_the_deployment_thresholds_it_records(tiny_checkpoint, tmp_path):
    config = BenchConfig(accuracy=False, e2e_conf=0.4, e2e_max_det=50, e2e_agnostic=True, **QUICK)
    (result,) = bench_artifact(tiny_checkpoint, None, config, imgsz=64)
    thresholds = {"conf": 0.4, "iou": 0.7, "max_det": 50, "multi_label": False, "agnostic": True}
    assert result.e2e_thresholds == thresholds
    assert result.e2e_nms == "conf 0.4, iou 0.7, max_det 50, single-label, class-agnostic"
    assert BenchConfig().e2e_thresholds().describe() == "conf 0.25, iou 0.7, max_det 300, single-label"
    path = tmp_path / "r.json"
    save_results(path, [result])
    assert load_results(path)[0].e2e_thresholds == thresholds


@pytest.fixture(scope="module")
def speed_only_result(tiny_checkpoint):
    (result,) = bench_artifact(tiny_checkpoint, None, BenchConfig(accuracy=False, **QUICK), imgsz=64)
    return result


def _read_as_written_before(result, schema: int, missing: str, folder):
    """The result as an older release wrote it: its schema number, without a field added since."""
    import json

    record = result.model_dump(mode="json")
    del record[missing]
    path = folder / "old.json"
    path.write_text(json.dumps({"schema": schema, "results": [record]}))
    (old,) = load_results(path)
    return old


def test_schema_2_results_read_with_e2e_at_evaluation_thresholds(speed_only_result, tmp_path):
    old = _read_as_written_before(speed_only_result, 2, "e2e_thresholds", tmp_path)
    assert (
        old.e2e_thresholds["evaluation"] and old.e2e_nms == "evaluation thresholds (conf 0.001, multi-label)"
    )


def test_results_written_before_the_family_was_recorded_read_without_one(speed_only_result, tmp_path):
    old = _read_as_written_before(speed_only_result, 3, "family", tmp_path)
    assert old.family is None and old.family_name == "" and old.model_label == "tiny"


def test_bench_plain_onnx_runs_on_onnxruntime(tiny_checkpoint, tmp_path):
    from pipeline.stages.export import export_onnx

    onnx = export_onnx(tiny_checkpoint, tmp_path / "tiny.onnx", imgsz=64)
    (result,) = bench_artifact(onnx, None, BenchConfig(accuracy=False, **QUICK))
    assert (result.target, result.precision, result.model) == ("onnxruntime", "fp32", "tiny")
    assert result.family == "yolov8"  # edgepipe's export records the family in the ONNX
    assert result.latency_ms.n >= 5 and result.size_mb == pytest.approx(onnx.stat().st_size / 1e6)


def test_stage_writes_results_with_map(tiny_engine, synth_dataset, tmp_path, history):
    settings = RunSettings(
        imgsz=64, device="cpu", data=synth_dataset, val=synth_dataset, model_name="tiny-run"
    )
    ctx = StageContext(out_dir=tmp_path / "out", settings=settings, inputs={"engine": tiny_engine})
    outputs = run(BenchConfig(**QUICK), ctx)
    artifact = outputs["results"]
    assert artifact.kind == "results" and artifact.path == (tmp_path / "out" / "results.json").resolve()
    (result,) = load_results(artifact.path)
    assert result.model == "tiny-run" and result.dataset == synth_dataset.parent.name
    assert 0.0 <= result.map50_95 <= result.map50 <= 1.0 and result.letterbox == "square 64x64"
    assert [r.model for r in query_results(path=history)] == ["tiny-run"]


def test_command_writes_results_and_table(tiny_engine, synth_dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    command(artifact=tiny_engine.path, output=out, data=synth_dataset, batch="1", warmup=1, iters=3,
            min_seconds=0.0, throughput_seconds=0.2, threads=1)  # fmt: skip
    (result,) = load_results(out)
    assert result.map50_95 is not None
    assert "torch/fp32" in capsys.readouterr().out


def test_busy_machine_is_said_before_timing_and_recorded(tiny_engine, tmp_path, busy_cpu):
    """Said by the library's log, shown by the command (its output and log lines in one stream here)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "busy.json"
    args = ["bench", "-a", tiny_engine.path, "-o", out, "--no-accuracy", "--no-memory", "--warmup", "1",
            "--iters", "3", "--min-seconds", "0", "--throughput-seconds", "0.2"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, terminal_width=200)
    printed = " ".join(result.output.split())
    assert "busy before timing" in printed and "running with --threads 1" in printed
    assert printed.index("busy before timing") < printed.index("edgepipe bench")  # before the table
    (result,) = load_results(out)
    assert result.threads == 1
    assert any(flag.startswith("cpu-load-before: other processes use") for flag in result.flags)


def test_missing_artifact(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="artifact not found") as raised:
        bench_artifact(missing, None, BenchConfig(accuracy=False, **QUICK))
    assert str(missing) in str(raised.value)


def test_directory_without_artifact_json(tmp_path):
    with pytest.raises(InputError, match=r"no artifact\.json"):
        bench_artifact(tmp_path, None, BenchConfig(accuracy=False, **QUICK))


def test_dataset_without_labels(tiny_engine, synth_dataset, tmp_path):
    root = tmp_path / "bare"
    (root / "images").mkdir(parents=True)
    image = next((synth_dataset.parent / "images").rglob("*.jpg"))
    (root / "images" / image.name).write_bytes(image.read_bytes())
    data = root / "data.yaml"
    data.write_text("val: images\nnames: {0: a}\n")
    with pytest.raises(InputError, match="no YOLO label files") as raised:
        bench_artifact(tiny_engine.path, data, BenchConfig(**QUICK))
    assert str(data) in str(raised.value)


def test_unreadable_data_yaml(tiny_engine, tmp_path):
    data = tmp_path / "broken.yaml"
    data.write_text("names: [a\n")
    with pytest.raises(InputError, match="invalid YAML") as raised:
        bench_artifact(tiny_engine.path, data, BenchConfig(**QUICK))
    assert str(data) in str(raised.value)
    with pytest.raises(InputError, match="needs a dataset"):
        bench_artifact(tiny_engine.path, None, BenchConfig(**QUICK))


def test_fixed_batch_engine_runs_its_batch_only(tiny_engine, tmp_path):
    fixed = Artifact(**{**tiny_engine.model_dump(), "metadata": {**tiny_engine.metadata, "batch": 1}})
    from pipeline.stages.benchmark import batch_sizes

    assert batch_sizes(fixed, [1]) == [1]
    assert batch_sizes(fixed, [1, 8]) == [1]  # the pipeline's one bench section serves every engine
    assert batch_sizes(tiny_engine, [1, 8]) == [1, 8]
    with pytest.raises(InputError, match="fixed batch of 1"):
        batch_sizes(fixed, [8])


def test_parse_batches():
    assert parse_batches("1, 8,32") == [1, 8, 32]
    for bad in ("", "0", "a,b"):
        with pytest.raises(InputError):
            parse_batches(bad)
