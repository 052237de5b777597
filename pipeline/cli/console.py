"""The command line's output: the one stdout Console (tables, results), the stderr one (log lines,
progress bars, warnings), the rich logging handler and the progress reporter library code reports to.

Library code never prints: it logs through `logging.getLogger(__name__)` and reports progress through
`core.progress`; `user_output()` shows both here while a command runs (pipeline/cli/errors.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, ConsoleRenderable
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TimeElapsedColumn
from rich.text import Text

from core import progress

# The packages whose INFO lines the user sees (what a build or a fallback loop is doing); other
# libraries' loggers keep their own level (WARNING).
PACKAGES = ("core", "benchmarks", "targets", "pipeline")


def make_console(stderr: bool = False) -> Console:
    # A terminal reports its own width; a pipe or CI log would fall back to 80 columns and fold tables.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=160)


console = make_console()
err_console = make_console(stderr=True)


class UserLogHandler(RichHandler):
    """Log records as the user reads them: time and message, "warning:" before a warning, no file:line
    (it wraps and means nothing to a user), no markup parsing (paths and lists carry brackets)."""

    def __init__(self) -> None:
        super().__init__(
            console=err_console, show_path=False, show_level=False, markup=False, log_time_format="[%X]"
        )

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        text = super().render_message(record, message)
        if record.levelno >= logging.WARNING and isinstance(text, Text):
            style = "bold red" if record.levelno >= logging.ERROR else "yellow"
            return Text.assemble((f"{record.levelname.lower()}: ", style), text)
        return text


class RichReporter:
    """`core.progress.Reporter` drawn as rich bars on stderr; the display lives while a task is open."""

    def __init__(self) -> None:
        self._display: Progress | None = None
        self._open = 0

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[progress.Task]:
        if self._display is None:
            columns = (SpinnerColumn(), "{task.description}", BarColumn(), MofNCompleteColumn())
            self._display = Progress(*columns, TimeElapsedColumn(), console=err_console, transient=True)
            self._display.start()
        self._open += 1
        task_id = self._display.add_task(description, total=total)
        try:
            yield _RichTask(self._display, task_id)
        finally:
            self._display.remove_task(task_id)
            self._open -= 1
            if not self._open:
                self._display.stop()
                self._display = None


class _RichTask:
    def __init__(self, display: Progress, task_id: TaskID) -> None:
        self._display, self._id = display, task_id

    def update(
        self, description: str | None = None, *, completed: float | None = None, total: float | None = None
    ) -> None:
        self._display.update(self._id, description=description, completed=completed, total=total)

    def advance(self, amount: float = 1) -> None:
        self._display.advance(self._id, amount)


def install_logging() -> None:
    """Log records of edgepipe's packages (INFO and up) and other libraries' warnings go to the stderr
    console. Idempotent: every command calls it."""
    root = logging.getLogger()
    if not any(isinstance(handler, UserLogHandler) for handler in root.handlers):
        root.addHandler(UserLogHandler())
    for name in PACKAGES:
        logging.getLogger(name).setLevel(logging.INFO)


@contextmanager
def user_output() -> Iterator[None]:
    """What a command runs inside: library logs and progress shown on the stderr console."""
    install_logging()
    with progress.reporting(RichReporter()):
        yield
