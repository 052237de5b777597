"""`edgepipe gate`: exit codes, the JUnit file (parsed by junitparser) and the Markdown summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
from factories import cpu_results, source_results
from junitparser import Failure, JUnitXml
from typer.testing import CliRunner

from benchmarks.results import load_results, save_results
from core.artifacts import Artifact
from core.errors import EdgepipeError
from pipeline.cli import gate as gate_cli
from pipeline.stages import gate
from pipeline.stages.base import RunSettings, StageContext

app = typer.Typer()
app.command("gate")(gate_cli.command)
app.command("version")(lambda: None)  # a second command keeps `gate` a subcommand, as in edgepipe's CLI


def invoke(*args: str) -> tuple[int, str]:
    """Run `gate` and map EdgepipeError to its exit code, as edgepipe's CLI does."""
    outcome = CliRunner().invoke(app, ["gate", *args])
    if isinstance(outcome.exception, EdgepipeError):
        return outcome.exception.exit_code, outcome.output + str(outcome.exception)
    if outcome.exception and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return outcome.exit_code, outcome.output


@pytest.fixture
def results_file(tmp_path) -> Path:
    return save_results(tmp_path / "results.json", cpu_results())


def budgets_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return path


def p90(key: str, path: Path) -> float:
    return next(r.latency_ms.p90 for r in load_results(path) if r.key == key)


PASSING = """
budgets:
  - device: "*xeon*"
    target: openvino/int8
    max_latency_ms: {{p90: {limit}}}
    max_size_mb: 2
    min_map50_95: 0.39
    max_map_drop: 0.01
    baseline: torch/fp32
  - target: "*/fp32"
    min_throughput_ips: 20
    max_e2e_latency_ms: {{p99: 60}}
"""


def test_all_budgets_hold(tmp_path, results_file):
    budgets = budgets_file(tmp_path, PASSING.format(limit=p90("openvino/int8", results_file) * 1.05))
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    code, output = invoke(str(results_file), "--budgets", str(budgets), "--junit", str(junit),
                          "--markdown", str(markdown))  # fmt: skip
    assert code == 0, output
    assert "gate passed" in output and "all 10 checks hold, in 4 (budget, result) pairs" in output
    suites = JUnitXml.fromfile(str(junit))
    cases = [case for suite in suites for case in suite]
    assert len(cases) == 1 + 3  # one per (budget, result): openvino/int8, then the three fp32 results
    assert all(case.is_passed for case in cases)
    families = [p.get("value") for p in ET.parse(junit).iter("property") if p.get("name") == "family"]
    assert families == ["YOLOv8"] * len(cases)
    assert markdown.read_text().startswith("✅")
    assert "openvino/int8 b1, YOLOv8" in output  # each result is named with its family


def test_latency_budget_broken_by_one_percent(tmp_path, results_file):
    measured = p90("openvino/int8", results_file)
    limit = measured / 1.01
    budgets = budgets_file(tmp_path, PASSING.format(limit=limit))
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    code, output = invoke(
        str(results_file), "-b", str(budgets), "--junit", str(junit), "--markdown", str(markdown)
    )
    assert code == 1, output
    # the checks the table shows: 4 criteria of openvino/int8, 2 of each fp32 result
    assert "1 of 10 checks broken, in 1 of 4 (budget, result) pairs" in output
    failed = [case for suite in JUnitXml.fromfile(str(junit)) for case in suite if not case.is_passed]
    assert len(failed) == 1
    (failure,) = failed[0].result
    assert isinstance(failure, Failure)
    assert "latency p90" in failure.message
    assert f"measured {measured:.2f} ms" in failure.message
    assert f"limit <= {limit:.2f} ms" in failure.message
    assert f"margin {limit - measured:+.2f} ms (-1.0%)" in failure.message
    summary = markdown.read_text().splitlines()
    assert summary[0].startswith("❌") and "1 of 10 checks" in summary[0]
    assert summary[2].startswith("| ") and "margin" in summary[2]
    assert "❌" in summary[4] and "latency p90" in summary[4]  # broken checks come first
    header, row = ([c.strip() for c in line.strip("|").split("|")] for line in (summary[2], summary[4]))
    assert dict(zip(header, row, strict=True))["family"] == "YOLOv8"


def test_the_gates_exit_policy_is_the_librarys(tmp_path, results_file):
    """A broken budget is the failed check the library returns (the CLI raises it); held ones are None,
    unless `strict` and a checked result is flagged as noisy (one of these is)."""
    measured = p90("openvino/int8", results_file)
    results = load_results(results_file)
    broken = gate.check_budgets(results, budgets_file(tmp_path, PASSING.format(limit=measured / 1.01)))
    failure = gate.gate_failure(broken)
    assert failure is not None and failure.exit_code == 1 and "1 of 10 checks broken" in str(failure)
    held = gate.check_budgets(results, budgets_file(tmp_path, PASSING.format(limit=measured * 1.05)))
    assert gate.gate_failure(held) is None
    noisy = gate.gate_failure(held, strict=True)
    assert noisy is not None and "1 checked result(s) flagged as noisy (--strict)" in str(noisy)


def test_map_drop_budget_broken(tmp_path, results_file):
    budgets = budgets_file(
        tmp_path, "budgets:\n  - target: '*/int8'\n    max_map_drop: 0.01\n    baseline: torch/fp32\n"
    )
    junit = tmp_path / "gate.xml"
    code, output = invoke(str(results_file), "--budgets", str(budgets), "--junit", str(junit))
    assert code == 1, output
    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    broken = [name for name, case in cases.items() if not case.is_passed]
    assert len(broken) == 1 and "onnxruntime/int8" in broken[0]
    message = cases[broken[0]].result[0].message
    assert (
        "mAP50-95 drop vs torch/fp32" in message
        and "measured 0.0160" in message
        and "limit <= 0.0100" in message
    )


def test_budget_matching_nothing_is_exit_2(tmp_path, results_file):
    budgets = budgets_file(
        tmp_path, "budgets:\n  - device: '*orin*'\n    target: tensorrt/int8\n    max_size_mb: 5\n"
    )
    junit = tmp_path / "gate.xml"
    code, output = invoke(str(results_file), "--budgets", str(budgets), "--junit", str(junit))
    assert code == 2
    assert "budgets[0]" in output and "matches no result" in output
    assert not junit.exists()  # nothing half-written on unusable input


@pytest.mark.parametrize(
    "text", ["budgets:\n  - target: [unclosed\n", "budgets:\n  - target: a/b\n    max_p90: 3\n"]
)
def test_malformed_budgets_is_exit_2(tmp_path, results_file, text):
    code, output = invoke(str(results_file), "--budgets", str(budgets_file(tmp_path, text)))
    assert code == 2
    assert "budgets.yaml" in output


def test_missing_results_file_is_exit_2(tmp_path):
    budgets = budgets_file(tmp_path, "budgets:\n  - target: a/b\n    max_size_mb: 5\n")
    code, output = invoke(str(tmp_path / "nope.json"), "--budgets", str(budgets))
    assert code == 2 and "not found" in output


def test_gate_stage_reads_every_results_input(tmp_path):
    results = cpu_results()
    inputs = {}
    for i, result in enumerate(results):
        path = save_results(tmp_path / f"r{i}.json", [result])
        inputs[f"results:{result.key}"] = Artifact.from_path("results", path)
    inputs["model:source"] = Artifact.from_path("checkpoint", inputs["results:torch/fp32"].path)  # ignored
    budgets = budgets_file(tmp_path, "budgets:\n  - target: '*'\n    max_size_mb: 6\n")
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(out, RunSettings(imgsz=64, device="cpu", data=None, val=None), inputs)
    artifact = gate.run(gate.GateConfig(budgets=budgets), ctx)["gate"]
    assert artifact.kind == "gate"
    assert artifact.metadata["passed"] is False and artifact.metadata["failures"] == 1  # torch/fp32 is 6.1 MB
    assert artifact.metadata["checks"] == len(results)
    assert (out / "gate.xml").is_file() and (out / "gate.md").is_file()
    (broken,) = artifact.metadata["broken"]  # what `run` prints as the table of broken budgets
    assert (
        broken["criterion"] == "size"
        and broken["limit"] == "<= 6.00 MB"
        and broken["margin"].startswith("-0.10")
    )


def test_gate_stage_strict_fails_on_noise(tmp_path):
    noisy = [r.model_copy(update={"flags": ["high-cv: model latency varies by 18%"]}) for r in cpu_results()]
    path = save_results(tmp_path / "r.json", noisy)
    budgets = budgets_file(tmp_path, "budgets:\n  - target: '*'\n    max_size_mb: 100\n")
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(out, RunSettings(imgsz=64, device="cpu", data=None, val=None),
                       {"results": Artifact.from_path("results", path)})  # fmt: skip
    lenient = gate.run(gate.GateConfig(budgets=budgets), ctx)["gate"].metadata
    assert lenient["passed"] is True and len(lenient["noise"]) == len(noisy)
    assert "noisy result" in (out / "gate.md").read_text()
    strict = gate.run(gate.GateConfig(budgets=budgets, strict=True), ctx)["gate"].metadata
    assert strict["passed"] is False and strict["failures"] == 0


def test_noisy_result_warns_and_fails_with_strict(tmp_path):
    flag = "cpu-load: other processes used 51% of the CPUs during the run (limit 10%)"
    results = [
        r.model_copy(update={"flags": [flag]}) if r.key == "onnxruntime/int8" else r for r in cpu_results()
    ]
    path = save_results(tmp_path / "noisy.json", [r for r in results if r.key != "openvino/fp32"])
    budgets = budgets_file(tmp_path, "budgets:\n  - target: onnxruntime/int8\n    max_size_mb: 100\n")
    code, output = invoke(str(path), "-b", str(budgets))
    assert code == 0 and "warning" in output and "noisy result" in output and "cpu-load" in output
    code, output = invoke(str(path), "-b", str(budgets), "--strict")
    assert code == 1 and "flagged as noisy (--strict)" in output
    quiet = budgets_file(tmp_path, "budgets:\n  - target: openvino/int8\n    max_size_mb: 100\n")
    assert invoke(str(path), "-b", str(quiet), "--strict")[0] == 0  # only checked results count


def test_the_unpruned_source_results_are_never_gated(tmp_path):
    """A run benches its unpruned model too; a budget on openvino/int8 checks the run's model only,
    and the mAP-drop baseline is the run's own torch/fp32, not the source's."""
    results = cpu_results() + source_results()
    source_int8 = next(r for r in source_results() if r.key == "openvino/int8")
    limit = source_int8.latency_ms.p50 / 2
    budgets = budgets_file(
        tmp_path,
        f"budgets:\n  - target: openvino/int8\n    max_latency_ms: {{p50: {limit}}}\n"
        "    max_map_drop: 0.01\n    baseline: torch/fp32\n",
    )
    (verdict,) = gate.check_budgets(results, budgets)
    assert not verdict.result.is_source and verdict.result.model == "yolov8n-pruned"
    assert verdict.passed  # 9.5 ms; the source's 21.9 ms would break it
    drop = next(c for c in verdict.checks if "drop" in c.criterion)
    assert drop.measured == pytest.approx(0.401 - 0.392)  # against the pruned torch/fp32 (0.401), not 0.433
