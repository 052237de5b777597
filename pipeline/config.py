"""The pipeline YAML: pydantic models whose errors name the file, the key and what is expected.

Each stage declares its own section model next to its code (pipeline/stages/*.py); this module only
composes them. Relative paths are resolved against the config file's folder, and every path (all are
inputs: outputs live in the work dir) must exist before any work starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from core.defaults import DEFAULT_IMGSZ
from core.errors import InputError
from core.letterbox import check_imgsz
from core.torch_devices import normalized_device
from core.validation import reported_by_pydantic
from core.yamlfile import read_yaml_model
from pipeline.stages.base import Section
from pipeline.stages.benchmark import BenchConfig
from pipeline.stages.build import BuildEntry
from pipeline.stages.export import ExportConfig
from pipeline.stages.finetune import FinetuneConfig
from pipeline.stages.gate import GateConfig
from pipeline.stages.prune import PruneConfig
from pipeline.stages.report import ReportConfig
from targets.base import check_precision, get_target


class SynthData(Section):
    """Generate the embedded synthetic dataset instead of naming a data.yaml."""

    images: int = Field(600, ge=2, description="number of images, train and val together")
    seed: int = Field(0, description="random seed; the same seed gives the same files")
    imgsz: int = Field(320, ge=32, description="image side in pixels")


class SynthSource(Section):
    synth: SynthData = Field(description="parameters of `edgepipe data synth`")


class PipelineConfig(Section):
    name: str = Field("edgepipe", description="a name for this pipeline, shown in reports")
    model: Path = Field(description="the Ultralytics YOLOv8 .pt checkpoint to start from")
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="the sha256 `model` must have, checked before the file is opened (a pin)",
    )
    trust_checkpoint: bool = Field(
        False,
        description="unpickle checkpoints fully, which can run code in them: only for files you trust "
        "(default: weights only, model classes on an allow-list)",
    )
    data: Path | SynthSource = Field(
        description="data.yaml for fine-tuning and INT8 calibration (train split), or {synth: {...}}"
    )
    val: Path | None = Field(None, description="data.yaml whose val split measures mAP; default: `data`")
    imgsz: int = Field(DEFAULT_IMGSZ, ge=32, description="input size in pixels (square letterbox)")
    device: str = Field("cpu", description="torch device for prune/fine-tune: cpu, cuda or cuda:N")
    prune: PruneConfig | None = Field(None, description="structured pruning; omit to skip")
    finetune: FinetuneConfig | None = Field(None, description="fine-tuning after pruning; omit to skip")
    export: ExportConfig | None = Field(None, description="ONNX export; needed by every target but torch")
    build: list[BuildEntry] = Field(default_factory=list, description="one entry per target/precision")
    bench: BenchConfig | None = Field(None, description="latency, throughput and mAP of every build")
    report: ReportConfig | None = Field(None, description="HTML and Markdown report")
    gate: GateConfig | None = Field(None, description="release gate against a budgets file")

    @field_validator("build")
    @classmethod
    def _known_targets_and_precisions(cls, entries: list[BuildEntry]) -> list[BuildEntry]:
        """Fail at load, before any work, rather than after a long fine-tune."""
        for index, entry in enumerate(entries):
            try:
                check_precision(get_target(entry.target), entry.precision)
            except InputError as exc:
                raise ValueError(f"build[{index}]: {exc}") from None
        return entries

    @field_validator("device", mode="before")
    @classmethod
    def _torch_device(cls, value: str | int) -> str:
        return normalized_device(value)

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_stride(cls, value: int) -> int:
        with reported_by_pydantic():
            return check_imgsz(value)


def _resolve_paths(model: BaseModel, base: Path, file: Path, where: str = "") -> None:
    """Make Path fields absolute (relative to the config's folder) and check they exist."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{where}.{name}" if where else name
        if isinstance(value, Path):
            resolved = value if value.is_absolute() else (base / value).resolve()
            if not _exists(resolved):
                raise InputError(
                    f"key '{key}': {value} does not exist (resolved to {resolved})",
                    path=file,
                    hint=f"relative paths are resolved against the config's folder, {base}; "
                    f"the comments at the top of {file.name} say where its files come from",
                )
            setattr(model, name, resolved)
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base, file, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base, file, f"{key}[{i}]")


def _exists(path: Path) -> bool:
    # Ultralytics model YAMLs such as `yolov8n.yaml` are found in its package, not on disk.
    return path.exists() or (path.suffix in {".yaml", ".yml"} and path.name.startswith("yolov8"))


def load_config(path: Path | str) -> PipelineConfig:
    path = Path(path)
    config = read_yaml_model(
        path,
        PipelineConfig,
        what="config file",
        expected="a mapping of sections (model, data, prune, ...)",
        invalid="invalid config",
        hint="docs/config.md lists every key",
    )
    _resolve_paths(config, path.parent.resolve(), path)
    return config
