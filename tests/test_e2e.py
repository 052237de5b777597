"""`edgepipe run` end to end on a tiny config: every stage, then a second run that re-runs nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.history import query_results
from benchmarks.results import load_results
from core.checkpoints import count_params, load_detection_model
from core.dataset import load_dataset
from pipeline.cli import app
from pipeline.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory, synth_dataset) -> Path:
    from conftest import tiny_detection_model

    from core.checkpoints import save_checkpoint

    root = tmp_path_factory.mktemp("e2e")
    names = load_dataset(synth_dataset).names
    model = tiny_detection_model(nc=len(names))
    model.names = names
    save_checkpoint(model, root / "tiny.pt")
    budgets = {
        "budgets": [
            {"device": "*", "target": "onnxruntime/*", "max_size_mb": 100, "max_latency_ms": {"p90": 10_000}}
        ]
    }
    (root / "budgets.yaml").write_text(yaml.safe_dump(budgets))
    config = {
        "name": "tiny",
        "model": "tiny.pt",
        "data": str(synth_dataset),
        "imgsz": 64,
        "prune": {"macs": 0.7, "round_to": 4},
        "finetune": {"epochs": 1, "batch": 8, "teacher": True},
        "export": {"opset": 17},
        "build": [
            {"target": "torch", "precision": "fp32"},
            {"target": "onnxruntime", "precision": "int8", "calib_images": 8},
        ],
        "bench": {"warmup": 1, "iters": 5, "min_seconds": 0.1, "memory": False},
        "report": {},
        "gate": {"budgets": "budgets.yaml"},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_end_to_end_then_fully_cached(tiny_pipeline):
    workdir = tiny_pipeline.parent / "work"
    first = invoke("run", str(tiny_pipeline), "--workdir", str(workdir))
    assert first.exit_code == 0, first.output
    manifest = json.loads((workdir / "manifest.json").read_text())
    labels = [s["label"] for s in manifest["stages"]]
    assert labels == [
        "prune",
        "finetune",
        "export",
        "build:torch/fp32",
        "build:onnxruntime/int8",
        "bench:torch/fp32",
        "bench:onnxruntime/int8",
        "export:source",  # the unpruned model on the same targets: the report's reference
        "build:source:torch/fp32",
        "build:source:onnxruntime/int8",
        "bench:source:torch/fp32",
        "bench:source:onnxruntime/int8",
        "report",
        "gate",
    ]
    assert all(s["status"] == "ran" for s in manifest["stages"])
    results = load_results(
        *(
            Path(a["path"])
            for s in manifest["stages"]
            for a in s["artifacts"].values()
            if a["kind"] == "results"
        )
    )
    own, sources = [r for r in results if not r.is_source], [r for r in results if r.is_source]
    assert {r.key for r in own} == {r.key for r in sources} == {"torch/fp32", "onnxruntime/int8"}
    assert all(r.latency_ms.n >= 5 and r.map50_95 is not None for r in results)
    pruned = next(s for s in manifest["stages"] if s["label"] == "prune")["artifacts"]["model"]
    source = load_detection_model(load_config(tiny_pipeline).model)
    assert count_params(load_detection_model(Path(pruned["path"]))) < count_params(source)
    assert "gate: PASS" in first.output and "report:" in first.output
    # the latest report and gate at stable paths, printed; the results in the work dir's own history
    assert f"report: {workdir / 'report.html'}" in first.output.replace("\n", "")
    assert f"gate: PASS  {workdir / 'gate.md'}" in first.output.replace("\n", "")
    assert (workdir / "report.html").read_text().lstrip().startswith("<!")
    assert_unpruned_baseline_shown(workdir / "report.html", own, sources)
    assert (workdir / "gate.md").read_text().startswith("✅")
    assert "<testsuite" in (workdir / "gate.xml").read_text()  # CI's stable paths
    assert "build:onnxruntime/int8: INT8 checked on" in " ".join(first.output.split())  # as `build` says
    assert {r.key for r in load_results(workdir / "results.json") if not r.is_source} == {r.key for r in own}
    assert {r.key for r in query_results(path=workdir / "history.sqlite")} == {
        "torch/fp32",
        "onnxruntime/int8",
    }

    second = invoke("run", str(tiny_pipeline), "--workdir", str(workdir))
    assert second.exit_code == 0, second.output
    assert "every stage is cached" in second.output
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert all(s["status"] == "cached" for s in manifest["stages"])


def test_changing_bench_reruns_only_bench_report_and_gate(tiny_pipeline):
    workdir = tiny_pipeline.parent / "work"
    config = yaml.safe_load(tiny_pipeline.read_text())
    config["bench"]["iters"] = 6
    edited = tiny_pipeline.with_name("tiny-bench.yaml")
    edited.write_text(yaml.safe_dump(config))
    result = invoke("run", str(edited), "--workdir", str(workdir))
    assert result.exit_code == 0, result.output
    manifest = json.loads((workdir / "manifest.json").read_text())
    ran = {s["label"] for s in manifest["stages"] if s["status"] == "ran"}
    benches = {"bench:torch/fp32", "bench:onnxruntime/int8"}
    assert ran == benches | {b.replace("bench:", "bench:source:") for b in benches} | {"report", "gate"}


def test_broken_budget_fails_the_run_with_exit_1(tiny_pipeline):
    workdir = tiny_pipeline.parent / "work"
    budgets = tiny_pipeline.parent / "strict.yaml"
    budgets.write_text(
        yaml.safe_dump({"budgets": [{"device": "*", "target": "onnxruntime/*", "max_size_mb": 0.0001}]})
    )
    config = yaml.safe_load(tiny_pipeline.read_text())
    config["gate"]["budgets"] = "strict.yaml"
    edited = tiny_pipeline.with_name("tiny-strict.yaml")
    edited.write_text(yaml.safe_dump(config))
    result = invoke("run", str(edited), "--workdir", str(workdir))
    assert result.exit_code == 1, result.output
    assert "gate: FAIL" in result.output
    assert "broken budgets" in result.output and "size" in result.output
    assert (workdir / "gate.md").read_text().startswith("❌")


def assert_unpruned_baseline_shown(report: Path, own: list, sources: list) -> None:
    """The report's "Against the unpruned model" table, as a browser renders it (headless Chromium where
    installed, else the HTML's text): per target, the speed-up and the mAP change this run measured."""
    from test_report import CHROMIUM

    html = report.read_text()
    if CHROMIUM is not None:
        html = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={report.parent / 'chromium-profile'}", "--dump-dom", report.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Against the unpruned model" in text
    table = text[text.index("Against the unpruned model") :]
    for result in own:
        source = next(s for s in sources if s.key == result.key)
        speedup = source.latency_ms.p50 / result.latency_ms.p50
        points = 100 * (result.map50_95 - source.map50_95)
        assert f"{speedup:.2f}×" in table, (result.key, speedup)
        assert f"{points:+.2f}" in table or f"{points:.2f}" in table, (result.key, points)
        assert f"{source.map50_95:.4f}" in table, (result.key, source.map50_95)  # the baseline itself
