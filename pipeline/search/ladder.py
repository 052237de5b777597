"""The candidate ladder: MACs ratios from 1.0 (the model as given) down to the most pruned candidate."""

from __future__ import annotations

import numpy as np

from core.errors import InputError


def ladder(candidates: int, min_ratio: float) -> list[float]:
    """`candidates` evenly spaced ratios from 1.0 down to `min_ratio`, e.g. (8, 0.3) -> 1.0, 0.9, ..., 0.3."""
    if candidates < 2:
        raise InputError(f"a ladder needs at least 2 candidates, got {candidates}")
    if not 0 < min_ratio < 1:
        raise InputError(f"the smallest ratio must be between 0 and 1, got {min_ratio}")
    return [round(float(r), 4) for r in np.linspace(1.0, min_ratio, candidates)]


def check_ladder(ratios: list[float]) -> list[float]:
    """Explicit ratios, sorted from least to most pruned, with 1.0 (the unpruned model) always first."""
    if any(not 0 < r <= 1 for r in ratios):
        raise InputError(f"ladder ratios must be in (0, 1], got {ratios}")
    unique = sorted({round(float(r), 4) for r in ratios} | {1.0}, reverse=True)
    if len(unique) < 2:
        raise InputError("the ladder needs at least one ratio below 1.0")
    return unique
