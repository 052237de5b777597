"""Structured pruning of YOLOv8 detectors with Torch-Pruning's dependency graph, to a MACs target."""

from pipeline.pruning.core import PruneOptions, PruneReport, measure, prune_model

__all__ = ["PruneOptions", "PruneReport", "measure", "prune_model"]
