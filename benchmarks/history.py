"""A local SQLite history of every benchmark result, queryable per device and target.

The database lives at ~/.cache/edgepipe/history.sqlite unless EDGEPIPE_HISTORY names another file.
Each row keeps the whole Result as JSON, plus the columns a query filters and sorts on.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from fnmatch import fnmatch
from pathlib import Path

from benchmarks.results import Result

HISTORY_ENV = "EDGEPIPE_HISTORY"
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    precision TEXT NOT NULL,
    batch INTEGER NOT NULL,
    artifact_sha256 TEXT,
    record TEXT NOT NULL
)
"""


def history_path() -> Path:
    default = Path.home() / ".cache" / "edgepipe" / "history.sqlite"
    return Path(os.environ.get(HISTORY_ENV) or default).expanduser()


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)  # several benches may append at once
    connection.execute(SCHEMA)
    return connection


def append_results(results: Iterable[Result], path: Path | None = None) -> Path:
    path = Path(path) if path else history_path()
    rows = [
        (
            r.created_at,
            r.device_name,
            r.model,
            r.target,
            r.requested_precision or r.precision,
            r.batch,
            r.artifact_sha256,
            r.model_dump_json(),
        )
        for r in results
    ]
    with closing(_connect(path)) as connection, connection:
        connection.executemany(
            "INSERT INTO results (created_at, device, model, target, precision, batch, artifact_sha256,"
            " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return path


def query_results(
    device: str = "*", target: str = "*", last: int | None = None, path: Path | None = None
) -> list[Result]:
    """Newest first. `device` globs the device name, `target` globs 'target' or 'target/precision'."""
    path = Path(path) if path else history_path()
    if not path.is_file():
        return []
    with closing(_connect(path)) as connection:
        rows = connection.execute("SELECT device, target, precision, record FROM results ORDER BY id DESC")
        found = []
        for device_name, target_name, precision, record in rows:
            if not fnmatch(device_name, device):
                continue
            if not (fnmatch(target_name, target) or fnmatch(f"{target_name}/{precision}", target)):
                continue
            found.append(Result.model_validate(json.loads(record)))
            if last is not None and len(found) >= last:
                break
    return found
