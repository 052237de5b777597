"""Errors users see. Exit codes are a public contract: 1 a check or budget failed, 2 unusable input."""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class EdgepipeError(Exception):
    """An error with a message fit for the user and the exit code the CLI returns."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.hint = hint
        text = f"{path}: {message}" if path is not None else message
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class InputError(EdgepipeError):
    """Unusable input: a missing or corrupt file, an invalid option, a dataset that does not fit."""


class CheckFailed(EdgepipeError):
    """A check ran and failed: parity out of tolerance, a budget broken."""

    exit_code = EXIT_CHECK_FAILED


class BackendUnavailable(InputError):
    """A target's library is missing on this machine; the hint says how to install it."""


class PrecisionUnavailable(InputError):
    """This device cannot run the precision asked for (bf16 on a CPU without bf16 units, fp16 on a CPU)."""
