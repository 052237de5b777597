"""One default input size: `core.defaults.DEFAULT_IMGSZ` is the only literal 640 in package code."""

from __future__ import annotations

import ast
from pathlib import Path

from typer.main import get_command

from core.defaults import DEFAULT_IMGSZ
from pipeline.cli import app
from pipeline.config import PipelineConfig
from pipeline.fleet.matrix import ModelSpec
from pipeline.search.grid import DEFAULT_SIZES

REPO = Path(__file__).resolve().parents[1]


def test_no_other_literal_640_in_package_code():
    found = []
    for package in ("core", "benchmarks", "targets", "pipeline"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and type(node.value) is int and node.value == 640:
                    found.append(str(path.relative_to(REPO)))
    assert found == ["core/defaults.py"]


def test_config_keys_and_command_options_default_to_it():
    assert PipelineConfig.model_fields["imgsz"].default == DEFAULT_IMGSZ
    assert ModelSpec.model_fields["imgsz"].default == DEFAULT_IMGSZ
    assert DEFAULT_SIZES[0] == DEFAULT_IMGSZ
    defaults = {
        name: param.default
        for name, command in get_command(app).commands.items()
        for param in getattr(command, "params", [])
        if param.name == "imgsz" and param.default is not None
    }
    assert set(defaults) >= {"prune", "finetune", "export", "build", "bench"}
    assert set(defaults.values()) == {DEFAULT_IMGSZ}, defaults
