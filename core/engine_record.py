"""`artifact.json`, the engine record: what `edgepipe build` writes into every engine directory.

`edgepipe bench --artifact DIR`, `build --qdq-onnx DIR` and the tools read nothing else, so its field
names are a public contract. Targets add their own sections (`quantization`, `accuracy_control`,
`tensorrt`, `inference_precision_hint`, `made_for`, ...) as extra keys, kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from core.artifacts import ARTIFACT_FILE
from core.errors import InputError
from core.validation import validation_error


class EngineSource(BaseModel):
    """What the engine was built from, with the hashes that tie it to its inputs."""

    model_config = ConfigDict(extra="allow")

    onnx: str | None
    onnx_sha256: str | None
    checkpoint: str | None
    checkpoint_sha256: str | None


class EngineRecord(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    kind: str  # "engine"
    target: str
    precision: str  # as requested
    runtime_precision: str  # what actually runs, e.g. "int8+fp32"
    model_file: str  # the engine file inside the directory
    imgsz: int
    batch: int | None  # None: dynamic batch
    names: dict[str, str]
    family: str | None = None  # yolov8, yolo11, yolo26 (core.families); None in older records
    source: EngineSource
    calibration: dict[str, Any] | None  # CalibrationSet.record() of an INT8 build
    params: int | None
    gflops: float | None
    versions: dict[str, str]
    options: dict[str, Any]  # the target's build options
    files_sha256: dict[str, str]  # every file of the directory but artifact.json
    created_at: str

    def as_metadata(self) -> dict[str, Any]:
        """The record as the JSON-able dict an Artifact carries (and artifact.json holds); a key an older
        record lacks (`family`) stays out, so it reads back as written."""
        return self.model_dump(mode="json", exclude_unset=True)


def read_engine_record(directory: Path) -> EngineRecord:
    """Read and check `directory/artifact.json`; an InputError names the file and the bad key."""
    meta_file = Path(directory) / ARTIFACT_FILE
    if not meta_file.is_file():
        raise InputError(f"not an edgepipe build directory (no {ARTIFACT_FILE})", path=directory)
    try:
        raw = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc}", path=meta_file) from exc
    try:
        return EngineRecord.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(
            exc, what="not an engine record", model=EngineRecord, path=meta_file, hint="rebuild the engine"
        ) from None


def read_artifact_dir(directory: Path) -> dict[str, Any]:
    """The checked engine record of a directory `edgepipe build` wrote, as the dict an Artifact carries."""
    return read_engine_record(directory).as_metadata()
