"""The local SQLite history: every result appended, queried by device and target globs."""

from __future__ import annotations

import pytest
from factories import CPU, JETSON, make_result

from benchmarks.history import HISTORY_ENV, append_results, history_path, parse_since, query_results
from core.errors import InputError
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


def test_history_shows_input_size_threads_streams_and_partial_map(history, capsys):
    one = make_result("openvino", "int8", 9.0, 0.42, threads=1, imgsz=320, map_images=32, map_partial=True)
    two = make_result("openvino", "int8", 12.0, 0.42, seed=1, threads=2, imgsz=640, streams=4)
    append_results([one, two])
    history_command(device="*", target="*", last=5)
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in next(line for line in lines if "imgsz" in line).split("┃")]
    rows = [dict(zip(header, (c.strip() for c in line.split("│")), strict=True)) for line in lines
            if "openvino/int8" in line]  # fmt: skip
    shown = [(row["imgsz"], row["threads"], row["img/s"], row["mAP50-95"]) for row in rows]
    assert shown[1][:2] == ("320", "1") and shown[1][3].startswith("0.4200 (32")  # "img, partial)" folds
    assert shown[0][:2] == ("640", "2") and shown[0][2].endswith("(4 str)")


def test_history_shows_each_results_family(history, capsys):
    yolo26 = make_result("openvino", "int8", 9.0, 0.42, model="synth-yolo26n", family="yolo26")
    unknown = make_result("openvino", "int8", 9.0, 0.42, seed=1, model="older", family=None)
    append_results([yolo26, unknown])
    assert [r.family for r in query_results()] == [None, "yolo26"]
    history_command(device="*", target="*", last=5)
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in next(line for line in lines if "family" in line).split("┃")]
    rows = [dict(zip(header, (c.strip() for c in line.split("│")), strict=True)) for line in lines
            if "openvino/int8" in line]  # fmt: skip
    assert [(row["model"], row["family"]) for row in rows] == [("older", "-"), ("synth-yolo26n", "YOLO26")]


def test_empty_query_says_so(history, capsys):
    history_command(device="nothing*", target="*", last=5)
    assert "No results" in capsys.readouterr().out


def test_a_result_is_recorded_once(history):
    result = make_result("torch", "fp32", 30.0, 0.43)
    append_results([result])
    append_results([result, result])
    assert len(query_results()) == 1
    append_results([result.model_copy(update={"created_at": "2025-01-02T00:00:00+00:00"})])
    assert len(query_results()) == 2  # another measurement of the same engine


def test_filters_by_model_dataset_since_and_either_engine_name(history, capsys):
    old = make_result("openvino", "int8", 9.0, 0.42, ran_as="int8+fp32")
    new = make_result("openvino", "int8", 9.0, 0.42, ran_as="int8+fp32", seed=1).model_copy(
        update={"model": "other", "dataset": "coco128", "created_at": "2026-12-02T10:00:00+00:00"}
    )
    append_results([old, new])
    assert [r.model for r in query_results(model="yolov8n*")] == ["yolov8n-pruned"]
    assert [r.model for r in query_results(dataset="coco128")] == ["other"]
    assert [r.model for r in query_results(since=parse_since("2026-12-01"))] == ["other"]
    assert len(query_results(target="openvino/int8")) == len(query_results(target="openvino/int8+fp32")) == 2
    history_command(target="openvino/int8+fp32", model="other", since="2026-12-02", last=5)
    out = capsys.readouterr().out
    assert "openvino/int8" in out and "int8+fp32" in out and "yolov8n-pruned" not in out
    with pytest.raises(InputError, match="--since"):
        parse_since("yesterday")


def test_project_and_work_dir_histories(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(HISTORY_ENV)
    monkeypatch.chdir(tmp_path)
    assert history_path() == tmp_path / ".edgepipe" / "history.sqlite"
    work = tmp_path / "work"
    assert history_path(work) == work / "history.sqlite"
    append_results([make_result("torch", "fp32", 30.0, 0.43)], history_path(work))
    assert query_results(path=history_path()) == []  # the project's history is another file
    history_command(workdir=tmp_path / "fresh", last=5)
    assert "No results" in capsys.readouterr().out  # a new work dir starts empty
    history_command(workdir=work, last=5)
    assert "torch/fp32" in capsys.readouterr().out
