"""The contracts of docs/architecture.md: the engine record, the Runner protocol, the stage signature."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pytest

from core.artifacts import ARTIFACT_FILE
from core.engine_record import EngineRecord, read_artifact_dir, read_engine_record
from core.errors import InputError
from core.runner import Runner
from pipeline.stages import base, benchmark, build, export, finetune, gate, prune, report
from tools.benchmark_app_check import parse_benchmark_app

RECORD = {
    "kind": "engine",
    "target": "onnxruntime",
    "precision": "int8",
    "runtime_precision": "int8",
    "model_file": "model.onnx",
    "imgsz": 640,
    "batch": 1,
    "names": {"0": "person"},
    "source": {"onnx": "m.onnx", "onnx_sha256": "ab", "checkpoint": None, "checkpoint_sha256": "cd"},
    "calibration": {"sha256": "ef", "images": 8, "dataset": "data.yaml"},
    "params": 3157200,
    "gflops": 8.7,
    "versions": {"edgepipe": "0.1.0"},
    "options": {},
    "files_sha256": {"model.onnx": "01"},
    "created_at": "2026-12-02T00:00:00+00:00",
    "quantization": {"float_nodes": ["/model.22/dfl"]},  # a target's own section is kept
}


def test_engine_record_reads_back_what_was_written(tmp_path):
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps(RECORD))
    record = read_engine_record(tmp_path)
    assert isinstance(record, EngineRecord) and record.source.checkpoint_sha256 == "cd"
    assert read_artifact_dir(tmp_path) == RECORD


def test_engine_record_without_a_required_key_names_the_file_and_the_key(tmp_path):
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({k: v for k, v in RECORD.items() if k != "imgsz"}))
    with pytest.raises(InputError, match=r"artifact.json: not an engine record:\n  key 'imgsz': required"):
        read_engine_record(tmp_path)


class Doubler(Runner):
    precision = "fp32"

    def __init__(self) -> None:
        self.closed = False

    def infer(self, images: np.ndarray) -> np.ndarray:
        return images * 2

    def close(self) -> None:
        self.closed = True


def test_runner_is_a_context_manager_with_no_throughput_of_its_own():
    with Doubler() as runner:
        assert runner.infer(np.ones(2)).tolist() == [2, 2]
        assert runner.throughput(np.ones((1, 3, 4, 4)), streams=2, seconds=0.1) is None
    assert runner.closed and isinstance(runner, Runner)


@pytest.mark.parametrize("module", [prune, finetune, export, build, benchmark, report, gate])
def test_each_stage_module_holds_a_section_and_its_work(module):
    """The Stage protocol (pipeline/stages/stage.py): run(section, ctx) -> named artifacts. The section is
    the stage module's own, but prune's: one per method, beside the methods in pipeline.pruning.config."""
    parameters = list(inspect.signature(module.run).parameters)
    assert parameters in (["config", "ctx"], ["entry", "ctx"])
    section = get_type_hints(module.run)[parameters[0]]
    sections = get_args(section) or (section,)
    assert all(issubclass(s, base.Section) for s in sections)
    home = "pipeline.pruning.config" if module is prune else module.__name__
    assert all(s.__module__ == home for s in sections)


def test_benchmark_app_report_is_parsed():
    text = Path(__file__).with_name("benchmark_app_sample.txt").read_text()
    run = parse_benchmark_app(text)
    assert (run.median_ms, run.fps) == (6.21, 318.45)
    assert run.settings["PERFORMANCE_HINT"] == "THROUGHPUT" and run.settings["NUM_STREAMS"] == "2"
