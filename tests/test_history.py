"""The local SQLite history: every result appended, queried by device and target globs."""

from __future__ import annotations

import pytest
from factories import CPU, JETSON, make_result

from benchmarks.history import HISTORY_ENV, append_results, history_path, query_results
from pipeline.cli.history import history_command


@pytest.fixture
def history(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv(HISTORY_ENV, str(path))
    return path


def test_env_var_overrides_location(history):
    assert history_path() == history


def test_append_and_query(history, capsys):
    assert query_results() == []
    append_results([make_result("torch", "fp32", 30.0, 0.43), make_result("openvino", "int8", 9.0, 0.42)])
    append_results([make_result("tensorrt", "int8", 3.0, 0.42, device=JETSON)])
    everything = query_results()
    assert [r.target for r in everything] == ["tensorrt", "openvino", "torch"]  # newest first
    assert everything[1].samples_ms == make_result("openvino", "int8", 9.0, 0.42).samples_ms
    assert [r.target for r in query_results(device="*Jetson*")] == ["tensorrt"]
    assert [r.target for r in query_results(device=CPU["name"], target="openvino/*")] == ["openvino"]
    assert [r.target for r in query_results(target="*/int8")] == ["tensorrt", "openvino"]
    assert len(query_results(last=2)) == 2
    history_command(device="*", target="torch", last=5)
    out = capsys.readouterr().out
    assert "torch/fp32" in out and "openvino" not in out


def test_empty_query_says_so(history, capsys):
    history_command(device="nothing*", target="*", last=5)
    assert "No results" in capsys.readouterr().out
