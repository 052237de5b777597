"""Collect the results artifacts a report or gate stage was handed."""

from __future__ import annotations

from pathlib import Path

from benchmarks.results import Result, load_results
from core.artifacts import Artifact
from core.errors import InputError


def results_from_inputs(inputs: dict[str, Artifact]) -> list[Result]:
    """Every input of kind "results" (keys "results" or "results:<label>"), file or directory of JSONs."""
    paths: list[Path] = []
    for artifact in inputs.values():
        if artifact.kind != "results":
            continue
        path = Path(artifact.path)
        paths.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    paths = [p for p in paths if p.name not in {"artifact.json", "manifest.json"}]
    if not paths:
        raise InputError("this stage needs results, and no bench stage produced any")
    return load_results(*paths)
