"""What the runner hands a stage: a fresh output directory, named input artifacts and run settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from core.artifacts import Artifact
from core.errors import InputError

log = logging.getLogger(__name__)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    # Keys renamed in this release, old -> new: the old one still reads, with a warning, until the next
    # release (docs/config.md lists them); both at once is an error.
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not set(cls.renamed) & set(data):
            return data
        data = dict(data)
        for old, new in cls.renamed.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old!r} is the old name of {new!r}: give {new!r} only")
                log.warning(
                    f"the key {old!r} is deprecated: use {new!r} (the old name goes in the next release)"
                )
                data[new] = data.pop(old)
        return data


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
