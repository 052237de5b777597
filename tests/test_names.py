"""One name per meaning: the names that once meant two things are defined once in package code."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Each of these named two different things (issue 34); what the second became: budget_verdicts,
# stage_versions, device_option, measure_precisions, compile_engine, PrecisionCandidate, FINETUNED_FILE.
ONCE = ("evaluate", "library_versions", "torch_device", "measure", "build_engine", "Candidate", "BEST_FILE")


def module_level_names() -> dict[str, list[str]]:
    defined: dict[str, list[str]] = defaultdict(list)
    for package in ("core", "benchmarks", "targets", "pipeline"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defined[node.name].append(str(path.relative_to(REPO)))
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            defined[target.id].append(str(path.relative_to(REPO)))
    return defined


def test_each_name_is_defined_once():
    defined = module_level_names()
    twice = {name: defined[name] for name in ONCE if len(defined[name]) > 1}
    assert not twice, twice


def test_the_finetuned_checkpoint_is_not_called_best():
    """It is the last epoch unless `checkpoint: best` (pipeline/stages/finetune.py)."""
    assert "BEST_FILE" not in module_level_names()


def test_a_renamed_build_key_still_reads_with_a_warning(caplog):
    from pipeline.stages.build import BuildEntry

    entry = BuildEntry(target="openvino", precision="int8", calib_size=16, max_map_drop=0.01)
    assert (entry.calib_images, entry.max_drop_vs_fp32) == (16, 0.01)
    assert "the key 'calib_size' is deprecated: use 'calib_images'" in caplog.messages[0]
    assert "the key 'max_map_drop' is deprecated: use 'max_drop_vs_fp32'" in caplog.messages[1]


def test_a_renamed_key_beside_its_new_name_is_an_error():
    from pydantic import ValidationError

    from pipeline.stages.build import BuildEntry

    with pytest.raises(ValidationError, match="'calib_size' is the old name of 'calib_images'"):
        BuildEntry(target="openvino", calib_size=16, calib_images=32)
