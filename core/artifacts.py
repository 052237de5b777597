"""Artifacts: files a stage produced, with their sha256, kind and metadata; atomic writes.

A build artifact is a directory holding the engine files and an `artifact.json` that describes it,
so `edgepipe bench --artifact DIR` needs nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.errors import InputError

ARTIFACT_FILE = "artifact.json"
# Ultralytics writes label caches beside a dataset's labels: not part of the dataset's content.
TRAINER_CACHES = frozenset({".cache", ".npy"})
MANIFEST_FILE = "manifest.json"


class Artifact(BaseModel):
    """One output of a stage. `path` is absolute once loaded; `sha256` covers the file or the directory."""

    kind: str  # checkpoint | onnx | engine | results | report | gate | dataset
    path: Path
    sha256: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_path(cls, kind: str, path: Path, **metadata: Any) -> Artifact:
        return cls(kind=kind, path=Path(path).resolve(), sha256=content_sha256(kind, path), metadata=metadata)

    def verify(self) -> None:
        """Fail when the file changed since it was recorded (a checkpoint is code: never trust a swap)."""
        if not self.path.exists():
            raise InputError("artifact is missing", path=self.path)
        actual = content_sha256(self.kind, self.path)
        if actual != self.sha256:
            raise InputError(
                f"sha256 changed since it was recorded ({self.sha256[:12]} -> {actual[:12]})",
                path=self.path,
                hint="re-run the stage that produced it (edgepipe run --force) instead of editing artifacts",
            )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: Path, skip_suffixes: frozenset[str] = frozenset()) -> str:
    """sha256 of a file, or of a directory's relative names and file contents in sorted order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise InputError("no such file or directory", path=path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix not in skip_suffixes):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def content_sha256(kind: str, path: Path) -> str:
    """The artifact's hash; a dataset's ignores the label caches training writes into it."""
    return sha256_path(path, TRAINER_CACHES if kind == "dataset" else frozenset())


def sha256_json(value: Any) -> str:
    """Stable hash of a JSON-able value (keys sorted, paths as strings)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results and reports are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def refuse_overwrite(path: Path, force: bool, option: str = "--output") -> None:
    """An InputError when `path` is a non-empty file or directory and `force` is not set.

    Called before any work, so a refused command leaves the old output byte-identical.
    """
    path = Path(path)
    occupied = (path.is_file() and path.stat().st_size > 0) or (path.is_dir() and any(path.iterdir()))
    if occupied and not force:
        raise InputError(
            f"{option} exists and is not empty: refusing to replace it",
            path=path,
            hint="pass --force to replace it, or choose another output path",
        )


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temp path beside `final` (file or directory); rename it onto `final` only on success.

    An existing `final` is replaced only once the new output is complete, so a failed run loses nothing.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{tmp}: the step wrote no output")
        if final.exists():
            backup = final.parent / f".{final.name}.old{os.getpid()}"
            os.replace(final, backup)
            os.replace(tmp, final)
            _remove(backup)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
