"""Progress lines carry no source-file references (`openvino_int8.py:85`), which wrap and mean nothing."""

from __future__ import annotations

import re
from pathlib import Path

from core.console import log_console

REPO = Path(__file__).resolve().parents[1]


def test_log_lines_name_no_source_file(capsys):
    log_console().log("INT8 is outside the bound: falling back")
    err = capsys.readouterr().err
    assert "falling back" in err and not re.search(r"\w+\.py:\d+", err)


def test_every_module_that_logs_uses_the_log_console():
    for package in ("core", "benchmarks", "targets", "pipeline"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if re.search(r"\bconsole\.log\(", text):
                assert "console = log_console()" in text, path
