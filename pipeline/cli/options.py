"""Command-line options declared from the config models, so that each setting is declared once.

An option that is a config key takes its help (the key's description) and its default from the model;
`tests/test_cli_options.py` checks every command against its model. `config_from_options` builds the
model from the parsed options, a bad value being a one-line error naming the option.
"""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from core.validation import validation_error

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
