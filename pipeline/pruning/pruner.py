"""The Pruner protocol every pruning method implements, the report of what pruning did, and the choice of
pruner by the config's `method`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from torch import nn

from core.checkpoints import count_params, gflops
from pipeline.pruning.config import MagnitudeConfig, ReconstructConfig
from pipeline.pruning.importance import ChannelImportance

Progress = Callable[[str, float], None]  # (what is being done, fraction of it done)


class Pruner(Protocol):
    """One pruning method, built from its config: prunes a detector to the config's goal."""

    def prune(
        self, model: nn.Module, *, imgsz: int, data: Path | None, device: str, progress: Progress
    ) -> tuple[nn.Module, dict]:
        """Prune `model` at input size `imgsz`, with `data` (a data.yaml or an image folder) when given.

        Returns the pruned model (`model` itself, or a replacement when the method fine-tunes) and what
        the checkpoint records of the method's work.
        """
        ...


def pruner_for(
    config: ReconstructConfig | MagnitudeConfig, importance: ChannelImportance | None = None
) -> Pruner:
    """The pruner of `config`'s method (`config.resolve` turns `auto` into one of them); `importance`
    replaces the data-aware method's ranking of channels."""
    from pipeline.pruning.data_aware import ReconstructPruner
    from pipeline.pruning.magnitude import MagnitudePruner

    if isinstance(config, MagnitudeConfig):
        return MagnitudePruner(config)
    return ReconstructPruner(config, importance)


@dataclass
class PruneReport:
    """What pruning did, in Ultralytics' units (GFLOPs of the fused model at imgsz)."""

    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    steps: int = 0
    bn_batches: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before

    @property
    def gflops_ratio(self) -> float:
        return self.gflops_after / self.gflops_before

    def as_metadata(self) -> dict:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_ratio": round(self.params_ratio, 4),
            "gflops_before": round(self.gflops_before, 3),
            "gflops_after": round(self.gflops_after, 3),
            "gflops_ratio": round(self.gflops_ratio, 4),
            **self.extra,
        }


def measure(model: nn.Module, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs) of the model."""
    return count_params(model), gflops(model, imgsz)
