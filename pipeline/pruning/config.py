"""One config per pruning method, keyed on `method`: each holds only the keys its method reads.

`prune:` is a union of `AutoConfig`, `ReconstructConfig` and `MagnitudeConfig` chosen by `method`
(`auto` when absent). The keys every method reads live in `SharedKeys`; a key of another method is an
error naming the key and the method, instead of a setting that silently does nothing. `auto` takes
reconstruct's keys: it is data-aware pruning, which falls back to magnitude pruning (with magnitude's
defaults for the keys only magnitude reads) when no calibration data is given.

This module imports no torch: the CLI and the config loader read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.errors import InputError
from core.letterbox import check_imgsz
from core.section import Section
from core.validation import reported_by_pydantic

# The engines a latency goal is measured on (pipeline.pruning.engine_timing.ENGINES, which imports torch)
LatencyEngine = Literal["openvino/fp32", "openvino/bf16", "openvino/int8"]
SENSITIVITY_IMAGES = 32  # measured: 8 or 16 images make the allocation noisy (docs/pruning.md)
RECONSTRUCT_STEP = 0.9  # the default schedule removes at most a tenth of the MACs per step (measured best)
GOAL_KEYS = ("macs", "params", "latency")


class SharedKeys(Section):
    """The keys every pruning method reads."""

    method: str  # each method's config declares it as a literal, its tag in the union
    macs: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the MACs to keep, e.g. 0.5 (default 0.5 unless params is set)",
    )
    params: float | None = Field(None, gt=0, lt=1, description="fraction of the parameters to keep instead")
    round_to: int | None = Field(8, description="keep channel counts multiples of this")
    max_layer_ratio: float = Field(
        0.5, gt=0, lt=1, description="largest fraction of any one layer's channels that may be removed"
    )
    min_channels: int = Field(
        32, ge=0, description="layers this narrow keep every channel; wider ones never drop below it"
    )
    protected_layers: list[int] = Field(
        [0, 1], description="indices in model.model never pruned (default: the stem convolutions)"
    )
    protect_head: bool | None = Field(
        None,
        description="keep the width of the Detect convs that feed the final box/class convs (default: "
        "for magnitude pruning only; the reconstruction re-fits the final convs, and freeing the head "
        "measured better)",
    )
    steps: int | None = Field(
        None,
        ge=1,
        description="prune in this many geometric steps (default: 1 for magnitude; for reconstruct, "
        "enough steps that none removes more than a tenth of the MACs)",
    )
    imgsz: int | None = Field(
        None,
        description="input size of the data-aware steps (default: the run's); `edgepipe search` prunes "
        "at each of its sizes",
    )
    data: Path | None = Field(
        None,
        description="data.yaml (its train split) or a folder of images for the data-aware steps "
        "(default: the run's data); labels are used only by Taylor importance and fine-tuning",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_key_of_another_method(cls, values: Any) -> Any:
        """A key only other methods read is an error naming the key and the method, not a silent no-op."""
        if not isinstance(values, dict):
            return values
        method = values.get("method", cls.model_fields["method"].default)
        for key in values:
            owners = [name for name, config in METHODS.items() if key in config.model_fields]
            if key not in cls.model_fields and owners:
                raise PydanticCustomError(
                    "unused_key",
                    "not used by method '{method}' (a key of {owners})",
                    {"key": key, "method": method, "owners": _methods(owners)},
                )
        return values

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_stride(cls, value: int | None) -> int | None:
        with reported_by_pydantic():
            return None if value is None else check_imgsz(value)

    @field_validator("round_to")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("round_to is a positive channel count or 'auto'")
        return value

    @model_validator(mode="after")
    def _one_goal(self) -> SharedKeys:
        if sum(getattr(self, key, None) is not None for key in GOAL_KEYS) > 1:
            raise ValueError("set one of macs, params and latency")
        return self

    @property
    def goal(self) -> tuple[str, float]:
        """The pruning goal: what it counts (macs, params or latency) and the fraction of it to keep."""
        return ("params", self.params) if self.params is not None else ("macs", self.macs or 0.5)

    @property
    def measures_latency(self) -> bool:
        """Whether the pruning fits a latency model: a latency goal or round_to: auto."""
        return False

    @property
    def needs_labels(self) -> bool:
        """Whether the method reads labels (a data.yaml), not only images."""
        return False

    def resolved_protect_head(self) -> bool:
        """Whether the convs feeding Detect's final convs keep their width (default: magnitude only)."""
        return self.protect_head if self.protect_head is not None else self.method == "magnitude"


class ReconstructConfig(SharedKeys):
    """Data-aware selection and layer-wise reconstruction (`pipeline.pruning.data_aware`)."""

    method: Literal["reconstruct"] = Field(
        "reconstruct", description="data-aware selection + layer-wise reconstruction (needs data)"
    )
    latency: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the unpruned model's latency (p50) on `latency_engine` to keep instead, "
        "e.g. 0.6: cuts are chosen by accuracy cost per millisecond a latency model measured on this "
        "machine predicts (docs/pruning.md), and the result is timed against the unpruned model",
    )
    latency_engine: LatencyEngine = Field(
        "openvino/bf16",
        description="the engine (target/precision) whose latency the latency goal and round_to: auto "
        "are measured on, at the pruning's input size",
    )
    latency_threads: int | None = Field(
        None, ge=1, description="inference threads the latency is measured with (default: the runtime's)"
    )
    latency_variants: int = Field(
        12, ge=3, description="random width variants timed to fit the latency model (a quarter held apart)"
    )
    round_to: int | Literal["auto"] | None = Field(
        8,
        description="keep channel counts multiples of this; auto: the channel block the latency model "
        "finds the engine's kernels prefer (measured on latency_engine)",
    )
    remove_blocks: bool = Field(
        False,
        description="let whole inner blocks of the CSP layers (C2f, C3k2) go where that costs less accuracy "
        "per unit of the goal than thinning channels (docs/pruning.md)",
    )
    calib_images: int = Field(
        128, ge=8, description="calibration images that channel costs and the reconstruction are measured on"
    )
    sensitivity_images: int = Field(
        SENSITIVITY_IMAGES,
        ge=1,
        description="of the calibration images, how many each channel group's cost to the head's outputs "
        "is measured on (at half the input size down to 320 px, at full size below 640 px; at most "
        "calib_images); fewer make the allocation noisy",
    )

    @property
    def goal(self) -> tuple[str, float]:
        return ("latency", self.latency) if self.latency is not None else super().goal

    @property
    def measures_latency(self) -> bool:
        return self.latency is not None or self.round_to == "auto"

    def default_steps(self) -> int:
        """Enough geometric steps that none removes more than 1 - RECONSTRUCT_STEP of the goal."""
        return self.steps or max(1, math.ceil(math.log(self.goal[1]) / math.log(RECONSTRUCT_STEP)))


class AutoConfig(ReconstructConfig):
    """The default: reconstruct when calibration data is given, else magnitude pruning (`resolve`)."""

    method: Literal["auto"] = Field(
        "auto",
        description="reconstruct: data-aware selection + layer-wise reconstruction (needs data); "
        "magnitude: weight-norm ranking only; auto: reconstruct when data is given, else magnitude",
    )


class MagnitudeConfig(SharedKeys):
    """Torch-Pruning's scheduler ranking by weight norm, Taylor or BN scale (`pipeline.pruning.magnitude`)."""

    method: Literal["magnitude"] = Field(
        "magnitude", description="weight-norm ranking with Torch-Pruning's scheduler, no reconstruction"
    )
    importance: Literal["l1", "l2", "taylor", "bn-scale"] = Field(
        "l2", description="channel importance: weight l1/l2 norm, first-order Taylor (needs data), BN scale"
    )
    global_pruning: bool = Field(
        True, description="rank channels across all layers (global) instead of pruning each layer alike"
    )
    isomorphic: bool = Field(
        False, description="rank channels only against groups of the same structure (isomorphic pruning)"
    )
    finetune_epochs_per_step: int = Field(
        0, ge=0, description="fine-tuning epochs after each pruning step (needs data; 0: none)"
    )
    bn_batches: int = Field(
        8, ge=0, description="batches of training images to re-estimate BatchNorm statistics with (0: skip)"
    )
    batch: int = Field(16, ge=1, description="batch size for Taylor gradients, BatchNorm and fine-tuning")

    @field_validator("round_to", mode="before")
    @classmethod
    def _a_count(cls, value: Any) -> Any:
        if value == "auto":
            raise ValueError("round_to: auto is measured by method 'reconstruct'; 'magnitude' takes a count")
        return value

    @property
    def needs_labels(self) -> bool:
        return self.importance == "taylor" or self.finetune_epochs_per_step > 0


MethodConfig = AutoConfig | ReconstructConfig | MagnitudeConfig
METHODS: dict[str, type[MethodConfig]] = {
    "auto": AutoConfig,
    "reconstruct": ReconstructConfig,
    "magnitude": MagnitudeConfig,
}


def _methods(names: list[str]) -> str:
    quoted = " and ".join(f"'{name}'" for name in names)
    return f"method {quoted}" if len(names) == 1 else f"methods {quoted}"


def _method(value: Any) -> str | None:
    """The union member's tag: its class name (so that errors name keys, not the member), by `method`."""
    method = value.get("method", "auto") if isinstance(value, dict) else getattr(value, "method", None)
    config = METHODS.get(method) if isinstance(method, str) else None
    return config.__name__ if config else None


PruneConfig = Annotated[
    Annotated[AutoConfig, Tag("AutoConfig")]
    | Annotated[ReconstructConfig, Tag("ReconstructConfig")]
    | Annotated[MagnitudeConfig, Tag("MagnitudeConfig")],
    Discriminator(
        _method,
        custom_error_type="invalid_method",
        custom_error_message=f"method is one of {', '.join(METHODS)}",
    ),
]


def resolve(config: MethodConfig, data: Path | None, model: Path) -> ReconstructConfig | MagnitudeConfig:
    """The method that runs: `auto` is reconstruct with calibration data, magnitude without (the keys it
    shares with magnitude carried over); a latency goal or round_to: auto without data is an error."""
    if config.method == "magnitude" or data is not None:
        if isinstance(config, AutoConfig):
            return ReconstructConfig(**config.model_dump(exclude={"method"}))
        return config
    if config.measures_latency or config.remove_blocks:
        raise InputError(
            "a latency goal, round_to: auto and remove_blocks need data-aware pruning: give --data D.yaml "
            f"or an image folder (method {config.method!r})",
            path=model,
        )
    if config.method == "reconstruct":
        raise InputError(
            "method 'reconstruct' needs calibration images (--data D.yaml or an image folder)", path=model
        )
    shared = config.model_dump(include=set(SharedKeys.model_fields) - {"method"})
    return MagnitudeConfig(**shared)
