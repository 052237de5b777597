"""What every target's build options share (`build[].options` in a config), as typed models.

Each target declares its own options model next to its code (`Target.options_model`), derived from
`TargetOptions`. Unknown keys are errors (`extra="forbid"`), so a misspelt option fails when the config
is read instead of being ignored by the build. The build stage validates the entry's options into that
model and hands the object to `Target.build`; `max_map_drop` and `val_data` are set by the build stage
from the entry's `max_drop_vs_fp32` and the run's val set. `artifact.json` records the keys that were set
(`TargetOptions.record`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TargetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def needs_backend(self) -> bool:
        """Whether the build needs the target's library (TensorRT's host half, `qdq_only`, does not)."""
        return True

    @property
    def needs_calibration(self) -> bool:
        """Whether an INT8 build draws the calibration set (not when it compiles a given Q/DQ ONNX)."""
        return True

    def record(self) -> dict[str, Any]:
        """The options as set (none of the defaults): what `artifact.json` records."""
        return self.model_dump(mode="json", exclude_unset=True)


class AccuracyDrivenOptions(TargetOptions):
    """An INT8 build checked against FP32 on a val set; every target with int8 takes these."""

    max_map_drop: float | None = Field(
        None, ge=0, description="set from the build entry's `max_drop_vs_fp32`"
    )
    val_data: str | None = Field(None, description="set from the pipeline's `val` when the build is checked")


class AccuracyLoopOptions(AccuracyDrivenOptions):
    """edgepipe's own fallback loop (`targets.accuracy_int8`): ONNX Runtime's and TensorRT's Q/DQ INT8."""

    max_steps: int | None = Field(None, ge=0, description="accuracy loop: most checkpoints after full INT8")
    sensitivity_images: int | None = Field(None, ge=1, description="accuracy loop: images that rank layers")
