"""The MATRIX.yaml of `edgepipe fleet run`: models x targets/precisions x device kinds.

```yaml
models:
  - onnx: models/yolov8n.onnx            # or `checkpoint: pruned.pt` (exported on the driver first)
targets: [onnxruntime/fp32, openvino/int8]   # "target/precision", or a build entry mapping
devices:
  - x86-avx512                            # a kind, as `edgepipe fleet join` advertises it
  - kind: orin-nano
    targets: [tensorrt/fp16, tensorrt/int8]   # this kind's own list instead of `targets`
data: datasets/val/data.yaml              # its val split measures mAP (unless bench.accuracy is false)
calibration: datasets/train/data.yaml     # its train split calibrates INT8
bench: {iters: 200, batch: [1]}           # the `bench` options of a pipeline config
budgets: budgets.yaml                     # optional: gate every device's results
```
Relative paths are resolved against the matrix file's folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.yamlfile import read_yaml_model
from pipeline.stages.base import Section
from pipeline.stages.benchmark import BenchConfig
from pipeline.stages.build import BuildEntry
from targets.base import get_target


def _build_entries(value: Any) -> Any:
    """'openvino/int8' -> {'target': 'openvino', 'precision': 'int8'}; mappings pass through."""
    if not isinstance(value, list):
        return value
    entries = []
    for item in value:
        if isinstance(item, str):
            target, _, precision = item.partition("/")
            item = {"target": target, "precision": precision or "fp32"}
        entries.append(item)
    return entries


class ModelSpec(Section):
    onnx: Path | None = Field(None, description="an exported ONNX model, shipped to every device")
    checkpoint: Path | None = Field(None, description="a .pt checkpoint, exported to ONNX on the driver")
    name: str | None = Field(None, description="the model's name in results; default: the file's stem")
    imgsz: int = Field(DEFAULT_IMGSZ, ge=32, description="input size of the ONNX exported from a checkpoint")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.onnx is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of `onnx` or `checkpoint`")
        return self

    @property
    def source(self) -> Path:
        return self.onnx or self.checkpoint  # type: ignore[return-value]

    @property
    def label(self) -> str:
        return self.name or self.source.stem


class DeviceSpec(Section):
    kind: str = Field(description="device kind, as advertised by `edgepipe fleet join` (device:<kind>)")
    targets: list[BuildEntry] | None = Field(
        None, description="this kind's target/precision list; default: the matrix's `targets`"
    )

    _entries = field_validator("targets", mode="before")(_build_entries)


class Matrix(Section):
    models: list[ModelSpec] = Field(min_length=1, description="the models to build and benchmark")
    targets: list[BuildEntry] = Field(
        default_factory=list, description="'target/precision' strings or build entries, for every device"
    )
    devices: list[DeviceSpec] = Field(min_length=1, description="device kinds (strings or mappings)")
    data: Path | None = Field(None, description="data.yaml whose val split measures mAP")
    calibration: Path | None = Field(None, description="data.yaml whose train split calibrates INT8")
    data_paths: Literal["ship", "shared"] = Field(
        "ship",
        description="ship: send the ONNX and images through Ray's object store; "
        "shared: every device reads `data` and `calibration` at the same path (a network share)",
    )
    bench: BenchConfig = Field(default_factory=BenchConfig, description="benchmark options")
    budgets: Path | None = Field(None, description="budgets YAML to gate the results of every device")
    baseline: str = Field("onnxruntime/fp32", description="target/precision the report's mAP drop is against")

    _entries = field_validator("targets", mode="before")(_build_entries)

    @field_validator("devices", mode="before")
    @classmethod
    def _device_kinds(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"kind": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Matrix:
        for index, device in enumerate(self.devices):
            where = f"devices[{index}] ({device.kind})"
            entries = device.targets if device.targets is not None else self.targets
            if not entries:
                raise ValueError(f"{where} has no targets: set `targets`")
            for entry in entries:
                if not get_target(entry.target).from_onnx:
                    raise ValueError(
                        f"{where}: the {entry.target} target runs a checkpoint; a fleet builds from ONNX"
                    )
                if entry.precision == "int8" and self.calibration is None:
                    raise ValueError(f"{where}: {entry.target}/int8 needs `calibration` (a data.yaml)")
        if self.bench.accuracy and self.data is None:
            raise ValueError("bench.accuracy: measuring mAP needs `data`; or set bench.accuracy: false")
        labels = [model.label for model in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError(f"models: names must be unique, got {labels}; set `name` on each model")
        return self

    def cells(self) -> list[Cell]:
        return [
            Cell(model.label, device.kind, entry)
            for model in self.models
            for device in self.devices
            for entry in (device.targets if device.targets is not None else self.targets)
        ]


@dataclass(frozen=True)
class Cell:
    """One (model, device kind, target/precision) of the matrix: one Ray task."""

    model: str
    kind: str
    build: BuildEntry

    @property
    def target(self) -> str:
        return f"{self.build.target}/{self.build.precision}"

    @property
    def label(self) -> str:
        return f"{self.model} {self.target} on {self.kind}"

    def key(self, source_sha256: str, bench: BenchConfig, dataset: str | None) -> str:
        """Identity in the history: a cell with this key is measured already unless --force."""
        identity = {
            "model": self.model,
            "source": source_sha256,
            "kind": self.kind,
            "build": self.build.model_dump(mode="json"),
            "bench": bench.model_dump(mode="json"),
            "dataset": dataset,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_matrix(path: Path | str) -> Matrix:
    """Read and validate MATRIX.yaml; errors name the file and the key; paths become absolute."""
    path = Path(path)
    matrix = read_yaml_model(
        path,
        Matrix,
        what="matrix file",
        expected="a mapping with `models`, `targets` and `devices`",
        invalid="invalid matrix",
        hint="see docs/fleet.md for the format",
    )
    return _resolve_paths(matrix, path)


def _resolve_paths(matrix: Matrix, path: Path) -> Matrix:
    base = path.parent.resolve()

    def absolute(value: Path | None) -> Path | None:
        return None if value is None else (base / value).resolve()

    models = [
        model.model_copy(update={"onnx": absolute(model.onnx), "checkpoint": absolute(model.checkpoint)})
        for model in matrix.models
    ]
    for model in models:
        if not model.source.is_file():
            raise InputError(f"models: {model.source} not found", path=path)
    return matrix.model_copy(
        update={
            "models": models,
            "data": absolute(matrix.data),
            "calibration": absolute(matrix.calibration),
            "budgets": absolute(matrix.budgets),
        }
    )
