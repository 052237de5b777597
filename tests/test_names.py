"""One name per meaning: the names that once meant two things are defined once in package code."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

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
