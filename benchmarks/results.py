"""The versioned Result schema (a public contract: tools and CI read these field names) and its files."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmarks.accuracy import EVALUATION, NmsThresholds
from core.artifacts import write_json_atomic
from core.errors import InputError
from core.families import FAMILY_NAMES
from core.validation import validation_error

SCHEMA_VERSION = 3
SOURCE_ROLE = "source"  # Result.role of the unpruned model a run benches as the reference for its own
READABLE_SCHEMAS = (1, 2, 3)  # versions 2 and 3 only added fields: older files read with their defaults
# Before schema 3 the end-to-end loop ran NMS with mAP's thresholds; results of those files say so.
EVALUATION_E2E = {**asdict(EVALUATION), "evaluation": True}


class LatencyStats(BaseModel):
    n: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


class Result(BaseModel):
    """One measurement of (model, target, precision, batch, device).

    `key` (target/precision as configured) names the engine everywhere; `ran_as` is what actually ran.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    role: str | None = None  # "source": the unpruned model a pipeline run measures its model against
    target: str
    precision: str  # the precision that actually ran (e.g. "bf16" for an OpenVINO FP32 IR on AMX)
    requested_precision: str | None = None
    batch: int = 1
    streams: int = 1
    threads: int | None = None  # what the backend ran with, read back from it
    dataset: str | None = None
    letterbox: str | None = None  # "square 640x640" etc: mAP is only comparable like with like
    timing_images: str | None = None  # what the timed loops ran on: "<dataset>/<split>" or "synthetic HxW"
    map_images: int | None = None  # images that measured mAP
    map_partial: bool = False  # mAP of a subset of the split (bench --max-images / --fraction)
    memory_mb: float | None = None  # peak resident memory added by loading and running the engine
    memory_method: str | None = None
    backend_settings: dict[str, Any] = Field(default_factory=dict)  # read back from the backend
    profile: dict[str, Any] | None = None  # per-layer times of `bench --profile`
    gpu_split_ms: dict[str, float] | None = None  # TensorRT: median H2D, GPU compute and D2H per batch
    latency_ms: LatencyStats
    e2e_latency_ms: LatencyStats | None = None
    e2e_thresholds: dict[str, Any] | None = None  # the e2e loop's NMS: conf, iou, max_det, multi_label
    throughput_ips: float | None = None
    throughput: list[dict[str, Any]] = Field(default_factory=list)  # [{batch, streams, ips}]
    size_mb: float | None = None
    params: int | None = None
    gflops: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    device: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    artifact_sha256: str | None = None
    created_at: str
    flags: list[str] = Field(default_factory=list)  # noise: figures to trust less (benchmarks.noise)
    samples_ms: list[float] = Field(default_factory=list)  # raw model-only latencies, for `compare`
    e2e_samples_ms: list[float] = Field(default_factory=list)
    stage_story: list[dict[str, Any]] = Field(default_factory=list)  # params/GFLOPs per pipeline stage
    build_notes: list[str] = Field(default_factory=list)  # what the build checked or chose (INT8 drop, ...)
    imgsz: int | None = None  # the engine's square input size, whether or not mAP was measured
    family: str | None = None  # yolov8, yolo11, yolo26 (core.families); None: not recorded (older files)

    @property
    def key(self) -> str:
        return f"{self.target}/{self.requested_precision or self.precision}"

    @property
    def ran_as(self) -> str:
        return self.precision

    def matches(self, pattern: str) -> bool:
        """Glob (case-insensitive) on the target, the key, or target/ran-as: all name this engine."""
        names = {self.target, self.key, f"{self.target}/{self.precision}"}
        return any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for name in names)

    @property
    def e2e_nms(self) -> str:
        """The NMS thresholds e2e latency was timed with, in words ("" when unknown)."""
        if not self.e2e_thresholds:
            return ""
        if self.e2e_thresholds.get("evaluation"):
            return "evaluation thresholds (conf 0.001, multi-label)"
        known = {k: v for k, v in self.e2e_thresholds.items() if k in NmsThresholds.__dataclass_fields__}
        return NmsThresholds(**known).describe()

    @property
    def family_name(self) -> str:
        """The detector family as people write it ("YOLO26"), "" when the engine did not record one."""
        return FAMILY_NAMES.get(self.family or "", self.family or "")

    @property
    def model_label(self) -> str:
        """The model with its family: "yolov8n-pruned (YOLOv8)", or the model alone when unknown."""
        return f"{self.model} ({self.family_name})" if self.family_name else self.model

    @property
    def is_source(self) -> bool:
        return self.role == SOURCE_ROLE

    @property
    def device_name(self) -> str:
        return str(self.device.get("name", "unknown"))


class ResultsFile(BaseModel):
    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    results: list[Result]

    model_config = ConfigDict(populate_by_name=True)


def save_results(path: Path, results: list[Result]) -> Path:
    payload = {"schema": SCHEMA_VERSION, "results": [r.model_dump(mode="json") for r in results]}
    return write_json_atomic(Path(path), payload)


def load_results(*paths: Path) -> list[Result]:
    """Read one or more results files; errors name the file and what is wrong with it."""
    results: list[Result] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError("results file not found", path=path)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc})", path=path) from exc
        if not isinstance(raw, dict) or raw.get("schema") not in READABLE_SCHEMAS:
            raise InputError(
                f"not an edgepipe results file with schema {' or '.join(map(str, READABLE_SCHEMAS))}",
                path=path,
                hint=f'expected {{"schema": {SCHEMA_VERSION}, "results": [...]}}, as `edgepipe bench` writes',
            )
        try:
            loaded = ResultsFile.model_validate(raw).results
        except ValidationError as exc:
            raise validation_error(exc, what="invalid results file", model=ResultsFile, path=path) from None
        if raw["schema"] < 3:
            for result in loaded:
                if result.e2e_latency_ms is not None and result.e2e_thresholds is None:
                    result.e2e_thresholds = dict(EVALUATION_E2E)
        results.extend(loaded)
    return results
