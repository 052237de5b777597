"""`--trust-checkpoint`: the one option, shared by every command that opens a checkpoint."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated

import typer

from core.safe_load import trust_checkpoints

HELP = (
    "unpickle checkpoints fully, which can run code in them: only for files you trust "
    "(default: weights only, model classes on an allow-list)"
)


def with_trust_option(fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` with a `--trust-checkpoint` flag added to its options."""

    @functools.wraps(fn)
    def wrapper(*args, trust_checkpoint: bool = False, **kwargs):
        if trust_checkpoint:
            trust_checkpoints()
        return fn(*args, **kwargs)

    annotation = Annotated[bool, typer.Option("--trust-checkpoint", help=HELP)]
    signature = inspect.signature(fn, eval_str=True)  # typer reads the annotations from it
    flag = inspect.Parameter(
        "trust_checkpoint", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=annotation
    )
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), flag])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**fn.__annotations__, "trust_checkpoint": annotation}
    return wrapper
