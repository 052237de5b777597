"""Library code logs (`logging.getLogger(__name__)`) and reports progress (`core.progress`); only the
command line (`pipeline/cli`) owns consoles, progress bars and tables, and shows what the library says."""

from __future__ import annotations

import ast
import logging
from contextlib import contextmanager
from pathlib import Path

import typer
from typer.testing import CliRunner

from core import progress
from pipeline.cli.console import RichReporter
from pipeline.cli.errors import user_errors

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "benchmarks", "targets", "pipeline")
CLI = REPO / "pipeline" / "cli"


def library_modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if CLI not in path.parents:
                yield path, ast.parse(path.read_text())


def test_library_code_creates_no_console_progress_bar_or_print():
    found = []
    for path, tree in library_modules():
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "id", None) or getattr(called, "attr", None)
            if name in ("Console", "Progress", "print") and not (
                name == "print" and isinstance(called, ast.Attribute)  # console.print of a passed-in console
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}(")
            if isinstance(node, ast.ImportFrom) and node.module in ("rich.progress", "rich.logging"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import")
    assert not found, found


def test_console_instances_live_in_the_cli_only():
    made = [
        path.relative_to(REPO)
        for path in (REPO / "pipeline" / "cli").rglob("*.py")
        if "Console(" in path.read_text()
    ]
    assert made == [Path("pipeline/cli/console.py")]


class Recorder:
    """A `core.progress.Reporter` that keeps every description and count it is given."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.advanced = 0

    @contextmanager
    def task(self, description: str, total: float | None = None):
        recorder = self
        recorder.seen.append(description)

        class Task:
            def update(self, description=None, *, completed=None, total=None):
                if description:
                    recorder.seen.append(description)

            def advance(self, amount=1):
                recorder.advanced += 1

        yield Task()


def test_progress_is_silent_until_a_reporter_is_installed():
    with progress.current().task("nobody listens", 2) as task:
        task.advance()  # no display, no error
    recorder = Recorder()
    with progress.reporting(recorder):
        assert list(progress.track(["a", "b"], "two items", 2)) == ["a", "b"]
    assert recorder.seen == ["two items"] and recorder.advanced == 2
    assert not isinstance(progress.current(), Recorder)


def test_a_library_warning_reaches_the_user_through_the_cli_handler():
    """What a library module logs is shown by the command, "warning:" first; INFO lines too."""

    def speak() -> None:
        logging.getLogger("targets.some_backend").warning("calibration set has 3 images")
        logging.getLogger("pipeline.stages.some_stage").info("building step 2 of 3")
        logging.getLogger("pipeline.stages.some_stage").debug("not for users")
        assert isinstance(progress.current(), RichReporter)

    demo = typer.Typer()
    demo.command()(user_errors(speak))  # as pipeline.cli registers every command
    result = CliRunner().invoke(demo, [], catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "warning: calibration set has 3 images" in result.output
    assert "building step 2 of 3" in result.output and "not for users" not in result.output


def test_bench_reports_each_measurement_to_the_installed_reporter(tiny_checkpoint):
    """(tests/test_safe_load.py sees a library warning reach the user of `edgepipe export`.)"""
    from pipeline.stages.benchmark import BenchConfig, bench_artifact

    recorder = Recorder()
    config = BenchConfig(
        accuracy=False, memory=False, warmup=1, iters=3, min_seconds=0, throughput_seconds=0.1
    )
    with progress.reporting(recorder):
        bench_artifact(tiny_checkpoint, None, config, imgsz=64)
    assert "torch/fp32 batch 1: model latency" in recorder.seen
    assert "torch/fp32 batch 1: end-to-end latency" in recorder.seen
