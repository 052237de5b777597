"""What the runner hands a stage: a fresh output directory, named input artifacts and run settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.artifacts import Artifact
from core.errors import InputError
from core.section import Section as Section  # every stage's section (re-exported: the stages' import)


@dataclass(frozen=True)
class RunSettings:
    """Settings every stage may read; all paths absolute."""

    imgsz: int
    device: str
    data: Path | None  # data.yaml used for fine-tuning and INT8 calibration (its train split)
    val: Path | None  # data.yaml whose val split measures mAP
    model_name: str = "model"
    histories: tuple[Path, ...] = ()  # where the bench stage records results; () the project's history


@dataclass
class StageContext:
    out_dir: Path
    settings: RunSettings
    inputs: dict[str, Artifact] = field(default_factory=dict)

    def input(self, name: str) -> Artifact:
        if name not in self.inputs:
            raise InputError(f"this stage needs the {name!r} artifact, which no earlier stage produced")
        return self.inputs[name]
