"""The one spelling of a torch device that edgepipe passes on: `cpu` or `cuda:N`, from a config file or
the command line alike."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)


def normalized_device(value: str | int) -> str:
    """`cpu` or `cuda:N` (`cuda` is `cuda:0`); the older `N` still means `cuda:N`, with a warning.

    Raises ValueError for anything else (a config key's validator turns it into a user error)."""
    text = str(value).strip()
    if text == "cpu" or re.fullmatch(r"cuda:\d+", text):
        return text
    if text == "cuda":
        return "cuda:0"
    if re.fullmatch(r"\d+", text):
        log.warning(
            f"device {text} is deprecated: use cuda:{text} (the old spelling goes in the next release)"
        )
        return f"cuda:{text}"
    raise ValueError(f"device takes cpu, cuda or cuda:N, got {text!r}")
