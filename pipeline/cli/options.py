"""Command-line options declared from the config models, so that each setting is declared once.

An option that is a config key takes its help (the key's description) and its default from the model;
`tests/test_cli_options.py` checks every command against its model. `config_from_options` builds the
model from the parsed options, a bad value being a one-line error naming the option.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from core.errors import InputError
from core.torch_devices import normalized_device
from core.validation import validation_error
from pipeline.cli.console import err_console

ModelT = TypeVar("ModelT", bound=BaseModel)


def option(model: type[BaseModel], key: str, *declarations: str, **settings: Any) -> Any:
    """`typer.Option(*declarations, **settings)` with the config key's description as its help."""
    return typer.Option(*declarations, help=model.model_fields[key].description, **settings)


def default(model: type[BaseModel], key: str) -> Any:
    """The config key's default value."""
    return model.model_fields[key].get_default(call_default_factory=True)


def config_from_options(model: type[ModelT], command: str, **values: Any) -> ModelT:
    try:
        return model(**values)
    except ValidationError as exc:
        raise validation_error(
            exc, what="invalid options", model=model, options=True, hint=f"see `edgepipe {command} --help`"
        ) from None


DEVICE_HELP = "where to run: cpu, cuda or cuda:N"


def renamed(new: Any, old: Any, *, command: str, old_name: str, new_name: str) -> Any:
    """The value of a renamed option: the new spelling's, else the old one's (with a warning).

    Old spellings keep working for one release so that scripts have time to move.
    """
    if old is None:
        return new
    err_console.print(
        f"[yellow]warning[/]: `edgepipe {command} {old_name}` is deprecated: use {new_name} "
        "(the old spelling goes in the next release)"
    )
    return old if new is None else new


def device_option(value: str, command: str) -> str:
    """`cpu` or `cuda:N` for torch (`cuda` is `cuda:0`); the training commands' old `N` means `cuda:N`."""
    if re.fullmatch(r"\d+", value):  # said as the option it is, before the library would say it again
        renamed(None, value, command=command, old_name=f"--device {value}", new_name=f"--device cuda:{value}")
        return f"cuda:{value}"
    try:
        return normalized_device(value)
    except ValueError:
        raise InputError(f"--device takes cpu, cuda or cuda:N, got {value!r}") from None
