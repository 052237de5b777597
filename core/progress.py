"""Progress as library code reports it; the command line decides how it looks.

Library code opens a task on `current()` and updates it; it never draws a bar. Nothing is shown unless
the caller installed a reporter with `reporting()` (the CLI installs one that draws rich progress bars),
as a `logging` record shows nothing until a handler is installed. The reporter is a context variable, so
code deep inside a target's build reports without a parameter threaded through every protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol, TypeVar

T = TypeVar("T")


class Task(Protocol):
    """One piece of work in progress: its description, and how much of `total` is done."""

    def update(
        self, description: str | None = None, *, completed: float | None = None, total: float | None = None
    ) -> None: ...

    def advance(self, amount: float = 1) -> None: ...


class Reporter(Protocol):
    """Opens tasks; a task is shown while its context is open. `total` None: no known end (a spinner)."""

    def task(self, description: str, total: float | None = None) -> AbstractContextManager[Task]: ...


class _SilentTask:
    def update(
        self, description: str | None = None, *, completed: float | None = None, total: float | None = None
    ) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        pass


class Silent:
    """The default reporter: shows nothing."""

    def task(self, description: str, total: float | None = None) -> AbstractContextManager[Task]:
        return nullcontext(_SilentTask())


_SILENT = Silent()
_current: ContextVar[Reporter | None] = ContextVar("edgepipe_progress", default=None)


def current() -> Reporter:
    """The reporter the caller installed, else the silent one."""
    return _current.get() or _SILENT


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Library code run inside this block reports its progress to `reporter`."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def track(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    """`items`, advancing a task of `total` steps on the current reporter as each is consumed."""
    with current().task(description, total) as task:
        for item in items:
            yield item
            task.advance()
