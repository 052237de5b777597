"""Backends behind one Target protocol; see `targets.base`."""

import core  # noqa: F401  (sets the offline environment before any backend imports Ultralytics)
from targets.base import Runner, RunOptions, Target, get_target, target_names

__all__ = ["RunOptions", "Runner", "Target", "get_target", "target_names"]
