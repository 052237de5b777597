"""What `edgepipe run` leaves at stable paths for CI: the report, the gate (Markdown and JUnit) and one
results file of the whole run, whatever the hashed stage folders are called."""

from __future__ import annotations

from factories import cpu_results, source_results

from benchmarks.results import load_results, save_results
from core.artifacts import Artifact
from pipeline.run import publish_latest


def test_run_publishes_gate_xml_and_results_at_stable_paths(tmp_path):
    stage = tmp_path / "stages" / "gate-3f9a"
    stage.mkdir(parents=True)
    (stage / "gate.md").write_text("✅ passed")
    (stage / "junit.xml").write_text("<testsuites/>")
    gate = Artifact.from_path("gate", stage / "gate.md", junit="junit.xml", passed=True)
    own = save_results(tmp_path / "stages" / "bench-1" / "results.json", cpu_results())
    source = save_results(tmp_path / "stages" / "bench-2" / "results.json", source_results())
    available = {
        "gate": gate,
        "results:openvino/int8": Artifact.from_path("results", own),
        "results:source:openvino/int8": Artifact.from_path("results", source),
        "results:openvino/int8:again": Artifact.from_path("results", own),  # one file under two names
    }
    root = tmp_path / "work"
    root.mkdir()
    published = publish_latest(root, available)
    assert published["junit"] == root / "gate.xml" and (root / "gate.xml").read_text() == "<testsuites/>"
    assert (root / "gate.md").read_text() == "✅ passed"
    merged = load_results(root / "results.json")
    assert published["results"] == root / "results.json"
    assert len(merged) == len(cpu_results()) + len(source_results())
    assert sum(r.is_source for r in merged) == len(source_results())


def test_a_run_without_gate_or_results_publishes_nothing_of_them(tmp_path):
    assert publish_latest(tmp_path, {}) == {}
    assert not (tmp_path / "gate.xml").exists() and not (tmp_path / "results.json").exists()
