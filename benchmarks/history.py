"""A local SQLite history of benchmark results, queryable by device, target, model, dataset and date.

Where it lives: `edgepipe run` keeps one per work dir (WORKDIR/history.sqlite); `bench`, `history` and
`fleet` use the project's, ./.edgepipe/history.sqlite, or the file EDGEPIPE_HISTORY names. The global
one (~/.cache/edgepipe/history.sqlite) is opt-in (`--global-history`), so unrelated models and datasets
do not mix. Each row keeps the whole Result as JSON, plus the columns a query filters and sorts on; a
result is recorded once however often it is appended (its record's sha256 is unique).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path

from benchmarks.results import Result
from core.errors import InputError

HISTORY_ENV = "EDGEPIPE_HISTORY"
HISTORY_FILE = "history.sqlite"
PROJECT_DIR = ".edgepipe"
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


def global_history_path() -> Path:
    return Path.home() / ".cache" / "edgepipe" / HISTORY_FILE


def history_path(workdir: Path | None = None) -> Path:
    """The work dir's history, else the one EDGEPIPE_HISTORY names, else the project's (in the cwd)."""
    if workdir is not None:
        return Path(workdir) / HISTORY_FILE
    return Path(os.environ.get(HISTORY_ENV) or Path.cwd() / PROJECT_DIR / HISTORY_FILE).expanduser()


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)  # several benches may append at once
    connection.execute(SCHEMA)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
    if "record_sha256" not in columns:  # a history written before results were deduplicated
        connection.execute("ALTER TABLE results ADD COLUMN record_sha256 TEXT")
    connection.execute("CREATE UNIQUE INDEX IF NOT EXISTS results_record ON results (record_sha256)")
    return connection


def append_results(results: Iterable[Result], path: Path | None = None) -> Path:
    """Add the results not recorded yet; returns the history file."""
    path = Path(path) if path else history_path()
    rows = []
    for r in results:
        record = r.model_dump_json()
        digest = hashlib.sha256(record.encode()).hexdigest()
        rows.append(
            (r.created_at, r.device_name, r.model, r.target, r.requested_precision or r.precision,
             r.batch, r.artifact_sha256, record, digest)
        )  # fmt: skip
    with closing(_connect(path)) as connection, connection:
        connection.executemany(
            "INSERT OR IGNORE INTO results (created_at, device, model, target, precision, batch,"
            " artifact_sha256, record, record_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return path


def parse_since(text: str) -> datetime:
    """A date or date-time (ISO 8601); one without a time zone is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since takes a date like 2026-12-01 or 2026-12-01T09:30, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def query_results(
    device: str = "*",
    target: str = "*",
    last: int | None = None,
    path: Path | None = None,
    *,
    model: str = "*",
    dataset: str = "*",
    since: datetime | None = None,
) -> list[Result]:
    """Newest first. Globs (case-insensitive) on the device name, the engine (`Result.matches`), the
    model and the dataset (a result without mAP has none: only `*` matches it)."""
    path = Path(path) if path else history_path()
    if not path.is_file():
        return []
    found = []
    with closing(_connect(path)) as connection:
        for (record,) in connection.execute("SELECT record FROM results ORDER BY id DESC"):
            result = Result.model_validate(json.loads(record))
            if not (
                _glob(result.device_name, device)
                and result.matches(target)
                and _glob(result.model, model)
                and (dataset == "*" or _glob(result.dataset or "", dataset))
                and (since is None or datetime.fromisoformat(result.created_at) >= since)
            ):
                continue
            found.append(result)
            if last is not None and len(found) >= last:
                break
    return found


def _glob(value: str, pattern: str) -> bool:
    return fnmatchcase(value.lower(), pattern.lower())
