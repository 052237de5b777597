"""Run the configured stages in order, cache each by content, resume after a crash, lock the work dir.

A stage's cache key hashes its config section, the sha256 of its input artifacts, the data it reads,
the versions of the libraries it uses and edgepipe's own source code. Each stage runs in a fresh
temporary directory that is renamed to `stages/<label>-<key>` only once `stage.json` (its completion
record) is written, so a crash or Ctrl-C never leaves a half-artifact that a later run would trust.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel

from core.artifacts import (
    MANIFEST_FILE,
    TRAINER_CACHES,
    Artifact,
    now_iso,
    sha256_json,
    sha256_path,
    write_json_atomic,
)
from core.errors import EdgepipeError, InputError
from pipeline.stages.base import RunSettings, StageContext

log = logging.getLogger(__name__)
STAGE_RECORD = "stage.json"
SOURCE_PACKAGES = ("core", "benchmarks", "targets", "pipeline")  # edgepipe's code, hashed into stage keys
STAGE_ORDER = ("data", "search", "prune", "finetune", "export", "build", "bench", "report", "gate")


@dataclass
class StagePlan:
    """One unit of cached work. `needs` maps a ctx input name to an available artifact name."""

    label: str  # unique, e.g. "build:openvino/int8"
    stage: str  # one of STAGE_ORDER, for --from/--only
    run: Callable[[StageContext], dict[str, Artifact]]
    section: Any  # the config section, hashed into the key
    needs: dict[str, str] = field(default_factory=dict)
    provides: dict[str, str] = field(default_factory=dict)  # stage output name -> available name
    libraries: tuple[str, ...] = ()
    reads: tuple[Path, ...] = ()  # data the stage reads, fingerprinted into the key


@dataclass
class StageOutcome:
    label: str
    status: str  # "ran" or "cached"
    seconds: float
    directory: Path
    artifacts: dict[str, Artifact]


def stage_versions(names: tuple[str, ...]) -> dict[str, str]:
    """edgepipe's and the stage's libraries' versions for its cache key, "absent" included (installing
    one changes the key); `benchmarks.device.library_versions` is what a result records."""
    versions = {"edgepipe": _version("edgepipe")}
    versions.update({name: _version(name) for name in names})
    return versions


@functools.cache
def source_digest() -> str:
    """sha256 of edgepipe's Python sources. The version string alone stays the same while a developer
    changes the code, and a stage written by an older pruner would then be reused."""
    roots = [Path(str(importlib.import_module(name).__file__)).parent for name in SOURCE_PACKAGES]
    return digest_sources(roots)


def digest_sources(roots: list[Path]) -> str:
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def fingerprint_data(path: Path) -> str:
    """A cheap, content-sensitive fingerprint of a dataset: its YAML, label contents, image names and sizes.

    Images are not hashed byte by byte (a COCO-sized set would take minutes on every run); a replaced
    image of a different size, any label edit or a changed YAML all change the fingerprint.
    """
    path = Path(path)
    if path.is_dir():
        return sha256_path(path)
    entries: list[Any] = [path.name, path.read_text() if path.is_file() else "absent"]
    root = path.parent
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.name.startswith(".") or file.suffix in TRAINER_CACHES:
            continue
        rel = file.relative_to(root).as_posix()
        if file.suffix in {".txt", ".yaml", ".yml", ".json"}:
            entries.append((rel, sha256_path(file)))
        else:
            entries.append((rel, file.stat().st_size))
    return sha256_json(entries)


def _jsonable(value: Any) -> Any:
    """Config values for hashing: sections as dicts, input files by content rather than by name."""
    if isinstance(value, BaseModel):
        return {k: _jsonable(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return {"file": value.name, "sha256": sha256_path(value)} if value.exists() else str(value)
    return value


class WorkDir:
    """The run's directory: stage outputs, the manifest and the lock."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.stages = self.root / "stages"
        self.lock_file = self.root / ".edgepipe.lock"
        self.lock_info = self.root / ".edgepipe.lock.json"

    def stage_dir(self, label: str, key: str) -> Path:
        safe = label.replace("/", "-").replace(":", "-")
        return self.stages / f"{safe}-{key[:12]}"

    def lock(self, wait_seconds: float = 0) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_file))
        try:
            lock.acquire(timeout=wait_seconds)
        except Timeout:
            holder = self.lock_info.read_text().strip() if self.lock_info.exists() else "unknown"
            raise EdgepipeError(
                f"another edgepipe run holds this work dir ({holder})",
                path=self.root,
                hint="wait for it to finish, pass --wait SECONDS, or use another --workdir",
            ) from None
        write_json_atomic(
            self.lock_info, {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}
        )
        return lock

    def clean_stale(self) -> None:
        """Remove temporary stage dirs left by an interrupted run (we hold the lock: none is live)."""
        if self.stages.is_dir():
            for tmp in self.stages.glob(".tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)


def read_stage_record(directory: Path) -> dict[str, Artifact] | None:
    record = directory / STAGE_RECORD
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    return {name: Artifact.model_validate(a) for name, a in data["artifacts"].items()}


class StageRunner:
    """Executes StagePlans in order against a WorkDir."""

    def __init__(self, workdir: WorkDir, settings: RunSettings):
        self.workdir = workdir
        self.settings = settings
        self.available: dict[str, Artifact] = {}
        self.outcomes: list[StageOutcome] = []
        self.on_outcome: Callable[[StagePlan, StageOutcome], None] | None = None

    def seed(self, name: str, artifact: Artifact) -> None:
        """Register an input that no stage produces (the user's model)."""
        self.available[name] = artifact

    def cache_key(self, plan: StagePlan, inputs: dict[str, Artifact]) -> str:
        return sha256_json(
            {
                "stage": plan.label,
                "section": _jsonable(plan.section),
                "inputs": {name: a.sha256 for name, a in sorted(inputs.items())},
                "reads": [fingerprint_data(p) for p in plan.reads],
                "settings": {"imgsz": self.settings.imgsz, "device": self.settings.device},
                "versions": stage_versions(plan.libraries),
                "code": source_digest(),
            }
        )

    def execute(
        self,
        plans: list[StagePlan],
        *,
        force_from: str | None = None,
        only: str | None = None,
        force: bool = False,
    ) -> list[StageOutcome]:
        if force_from and force_from not in STAGE_ORDER:
            raise InputError(f"--from {force_from!r}: unknown stage; stages are {', '.join(STAGE_ORDER)}")
        if only and only not in {p.stage for p in plans}:
            raise InputError(
                f"--only {only!r}: this config has no such stage; it has "
                f"{', '.join(dict.fromkeys(p.stage for p in plans))}"
            )
        forced_index = STAGE_ORDER.index(force_from) if force_from else len(STAGE_ORDER)
        for plan in plans:
            inputs = {}
            for ctx_name, available_name in plan.needs.items():
                if available_name not in self.available:
                    raise InputError(
                        f"stage {plan.label} needs {available_name!r}, which is not produced yet",
                        hint=f"run the earlier stages first (edgepipe run CONFIG without --only {only})"
                        if only
                        else None,
                    )
                inputs[ctx_name] = self.available[available_name]
            key = self.cache_key(plan, inputs)
            directory = self.workdir.stage_dir(plan.label, key)
            rerun = force or STAGE_ORDER.index(plan.stage) >= forced_index or only == plan.stage
            cached = None if rerun else read_stage_record(directory)
            if cached is None and only and only != plan.stage:
                raise InputError(
                    f"--only {only}: the earlier stage {plan.label} has no complete cached output",
                    hint="run the whole pipeline once first",
                )
            if cached is not None:
                outcome = StageOutcome(plan.label, "cached", 0.0, directory, cached)
                log.info(f"cached   {plan.label}  {directory.name}")
            else:
                outcome = self._run_stage(plan, inputs, key, directory)
            for output_name, artifact in outcome.artifacts.items():
                self.available[f"{output_name}:{plan.label}"] = artifact
                if output_name in plan.provides:
                    self.available[plan.provides[output_name]] = artifact
            self.outcomes.append(outcome)
            if self.on_outcome is not None:
                self.on_outcome(plan, outcome)
            self.write_manifest()
        return self.outcomes

    def _run_stage(
        self, plan: StagePlan, inputs: dict[str, Artifact], key: str, directory: Path
    ) -> StageOutcome:
        for artifact in inputs.values():
            artifact.verify()
        log.info(f"running  {plan.label}")
        tmp = self.workdir.stages / f".tmp-{directory.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        start = time.perf_counter()
        try:
            produced = plan.run(StageContext(out_dir=tmp, settings=self.settings, inputs=inputs))
            seconds = time.perf_counter() - start
            artifacts = {name: _relocate(a, tmp, directory) for name, a in produced.items()}
            record = {
                "label": plan.label,
                "key": key,
                "seconds": round(seconds, 3),
                "created_at": now_iso(),
                "versions": stage_versions(plan.libraries),
                "artifacts": {n: a.model_dump(mode="json") for n, a in artifacts.items()},
            }
            write_json_atomic(tmp / STAGE_RECORD, record)
            if directory.exists():  # an older, incomplete or forced output: replace it whole
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(f"done     {plan.label}  {seconds:.1f} s")
        return StageOutcome(plan.label, "ran", seconds, directory, artifacts)

    def write_manifest(self) -> Path:
        return write_json_atomic(
            self.workdir.root / MANIFEST_FILE,
            {
                "schema": 1,
                "updated_at": now_iso(),
                "stages": [
                    {
                        "label": o.label,
                        "status": o.status,
                        "seconds": round(o.seconds, 3),
                        "directory": str(o.directory),
                        "artifacts": {n: a.model_dump(mode="json") for n, a in o.artifacts.items()},
                    }
                    for o in self.outcomes
                ],
            },
        )


def _relocate(artifact: Artifact, tmp: Path, final: Path) -> Artifact:
    """Point an artifact written inside the temp dir at where it will live after the rename."""
    path = Path(artifact.path).resolve()
    try:
        rel = path.relative_to(tmp.resolve())
    except ValueError as exc:
        raise RuntimeError(f"stage wrote {path} outside its output directory {tmp}") from exc
    return artifact.model_copy(update={"path": final / rel})
