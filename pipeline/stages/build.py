"""Build a device-specific engine directory from the exported ONNX (or the checkpoint, for torch).

The target does the backend work; this stage checks the request up front (known target, supported
precision, library installed, calibration data for INT8), draws the shared calibration set and builds
into a temporary directory that becomes the engine directory only when complete. With a val set, an
INT8 build is checked against FP32 on the same target (`verify`) and falls back past the bound
(`targets.accuracy_bound`); without one, it warns that its mAP is unchecked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from core import progress
from core.artifacts import Artifact, atomic_output, refuse_overwrite
from core.calibration import CalibrationSet
from core.dataset import check_fits_model, load_dataset
from core.defaults import DEFAULT_IMGSZ
from core.engine_record import read_artifact_dir
from core.errors import BackendUnavailable, CheckFailed, InputError
from core.validation import reported_by_pydantic
from pipeline.stages.auto_precision import build_auto
from pipeline.stages.base import Section, StageContext
from targets.base import (
    AUTO,
    BuildInputs,
    check_precision,
    get_target,
    parse_options,
    precision_libraries,
    target_names,
)
from targets.engine_dir import onnx_facts
from targets.options import TargetOptions

# Besides its target's: ONNX (the model facts every build reads), torch and Ultralytics (the NMS of mAP)
HARNESS_LIBS = ("onnx", "torch", "ultralytics")

log = logging.getLogger(__name__)


class BuildEntry(Section):
    renamed: ClassVar[dict[str, str]] = {"calib_size": "calib_images", "max_map_drop": "max_drop_vs_fp32"}

    target: str = Field(description=f"backend: {', '.join(target_names())} (`edgepipe device` lists them)")
    precision: str = Field(
        "fp32",
        description="fp32, bf16, fp16 or int8, as the target supports; auto: the fastest within the bound",
    )
    calib_images: int = Field(
        300,
        ge=1,
        description="INT8: calibration images drawn from the train split (one engine calibrates once: more "
        "than the 64 of each search candidate)",
    )
    calib_seed: int = Field(0, description="INT8: seed of the calibration sample")
    max_drop_vs_fp32: float | None = Field(
        None,
        ge=0,
        description="INT8 (and precision auto): largest allowed absolute mAP50-95 drop against fp32 on the "
        "same target (default: 1% of fp32)",
    )
    verify: bool = Field(
        True, description="INT8: measure mAP against fp32 on the val set and fall back past the bound"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="target-specific build options (docs/config.md lists each target's)"
    )

    @field_validator("target")
    @classmethod
    def _known_target(cls, name: str) -> str:
        with reported_by_pydantic():
            get_target(name)
        return name

    @model_validator(mode="after")
    def _known_options(self) -> BuildEntry:
        with reported_by_pydantic():
            self.parsed_options()
        return self

    def parsed_options(self, **derived: Any) -> TargetOptions:
        """The entry's options, with what the build derives from its other keys, in the target's model."""
        return parse_options(get_target(self.target), {**self.options, **derived})

    def libraries(self) -> tuple[str, ...]:
        """The libraries in the cache key of this entry's build and bench: the harness's and the target's."""
        target = get_target(self.target)
        return tuple(
            dict.fromkeys((*HARNESS_LIBS, *precision_libraries(target, self.precision, self.options)))
        )


def build_engine(
    entry: BuildEntry,
    out_dir: Path,
    *,
    onnx: Path | None,
    checkpoint: Path | None,
    calib_data: Path | None,
    val_data: Path | None,
    imgsz: int | None = None,
) -> Artifact:
    """Check the request, draw the calibration set for INT8 and let the target write `out_dir`."""
    target = get_target(entry.target)
    check_precision(target, entry.precision)
    if entry.precision == AUTO:

        def build_one(candidate: BuildEntry, directory: Path) -> Artifact:
            return build_engine(
                candidate, directory, onnx=onnx, checkpoint=checkpoint, calib_data=calib_data,
                val_data=val_data, imgsz=imgsz,
            )  # fmt: skip

        return build_auto(entry, Path(out_dir), build_one, val_data)
    options = entry.parsed_options()
    ok, reason = target.available()
    if not ok and options.needs_backend:
        raise BackendUnavailable(reason)
    facts = onnx_facts(onnx) if onnx is not None else None  # also rejects a corrupt ONNX before any work
    size = facts.imgsz if facts is not None else imgsz or DEFAULT_IMGSZ
    calibration = None
    if entry.precision == "int8" and options.needs_calibration:
        if calib_data is None:
            raise InputError("int8 needs calibration images", hint="pass --data data.yaml (its train split)")
        calibration = CalibrationSet.from_dataset(calib_data, size, entry.calib_images, entry.calib_seed)
        checked = check_options_for(entry, val_data or val_split_of(calib_data))
        options = entry.parsed_options(**checked)
        if "val_data" in checked and facts is not None:
            check_fits_model(checked["val_data"], len(facts.names), ("val",))
    elif entry.max_drop_vs_fp32 is not None and entry.precision != "int8":
        raise InputError("--max-drop-vs-fp32 applies to int8 builds only")
    elif entry.max_drop_vs_fp32 is not None:
        options = entry.parsed_options(max_map_drop=entry.max_drop_vs_fp32)  # refused with a given Q/DQ ONNX
    inputs = BuildInputs(
        onnx=Path(onnx) if onnx else None,
        checkpoint=Path(checkpoint) if checkpoint else None,
        imgsz=size,
    )
    return target.build(inputs, entry.precision, calibration, options, Path(out_dir))


@dataclass(frozen=True)
class BuiltEngine:
    """An engine directory `edgepipe build` wrote: its path, its record (artifact.json), the build time."""

    path: Path
    record: dict[str, Any]
    seconds: float

    def unmet_bound(self) -> CheckFailed | None:
        """The failed check (exit 1) of an INT8 build whose accuracy-checked fallback ended above its bound;
        the engine is kept, the best model found, labelled `accuracy_control.met = false`."""
        control = self.record.get("accuracy_control")
        if not control or "steps" not in control or control["met"]:
            return None
        final = control["final"]
        return CheckFailed(
            f"mAP50-95 drop {final['drop']:.4f} is above the bound {control['max_map_drop']:.4f} after "
            f"{len(control['steps'])} steps; kept the best model found (mAP50-95 {final['map50_95']:.4f}), "
            "labelled accuracy_control.met = false",
            path=self.path,
            hint="allow a larger drop, more steps (--max-steps), or calibrate on more images "
            "(--calib-images)",
        )


def build_engine_dir(
    entry: BuildEntry,
    output: Path,
    *,
    force: bool,
    onnx: Path | None,
    checkpoint: Path | None,
    calib_data: Path | None,
    val_data: Path | None,
    imgsz: int | None = None,
) -> BuiltEngine:
    """`build_engine` into `output`, which appears only when complete (an existing one is refused unless
    `force`); its unmet INT8 bound, if any, is the caller's to raise (`BuiltEngine.unmet_bound`)."""
    refuse_overwrite(output, force)
    started = time.perf_counter()
    with (
        atomic_output(output) as staged,
        progress.current().task(f"building {entry.target}/{entry.precision}"),
    ):
        build_engine(
            entry, staged, onnx=onnx, checkpoint=checkpoint, calib_data=calib_data, val_data=val_data,
            imgsz=imgsz,
        )  # fmt: skip
    return BuiltEngine(output, read_artifact_dir(output), time.perf_counter() - started)


def val_split_of(data: Path) -> Path | None:
    """The calibration data.yaml itself when it has a val split: the INT8 check measures mAP there."""
    return data if load_dataset(data).splits.get("val") else None


def check_options_for(entry: BuildEntry, val_data: Path | None) -> dict[str, Any]:
    """The target options that make an INT8 build check itself against FP32 (none: unchecked)."""
    if entry.max_drop_vs_fp32 is not None and not entry.verify:
        raise InputError(
            "--max-drop-vs-fp32 bounds the checked INT8 drop, --no-verify skips the check: pass one"
        )
    if not entry.verify:
        return {}
    if val_data is None:
        if entry.max_drop_vs_fp32 is not None:
            raise InputError("--max-drop-vs-fp32 needs a validation set", hint="pass --val data.yaml")
        log.warning(
            f"{entry.target}/int8 mAP is unchecked: neither --val nor the calibration "
            "data.yaml has a val split to measure it against fp32 (pass --val data.yaml, or --no-verify to "
            "build unchecked on purpose)"
        )
        return {}
    checked: dict[str, Any] = {"val_data": str(val_data)}
    if entry.max_drop_vs_fp32 is not None:
        checked["max_map_drop"] = entry.max_drop_vs_fp32
    return checked


def run(entry: BuildEntry, ctx: StageContext) -> dict[str, Artifact]:
    onnx = ctx.inputs["onnx"].path if "onnx" in ctx.inputs else None
    checkpoint = ctx.inputs["model"].path if "model" in ctx.inputs else None
    artifact = build_engine(
        entry,
        ctx.out_dir / "engine",
        onnx=onnx,
        checkpoint=checkpoint,
        calib_data=ctx.settings.data,
        val_data=ctx.settings.val,
        imgsz=ctx.settings.imgsz,
    )
    return {"engine": artifact}
