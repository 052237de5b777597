"""Read a YAML file that must hold a mapping (and validate it with a model), with errors that name the file,
the line or key, and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import InputError
from core.validation import validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_yaml_mapping(path: Path | str, what: str, expected: str) -> dict[str, Any]:
    """`what` names the file's role ("budgets file"); `expected` says what its top level should hold."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        with open(path) as stream:  # a stream, so that YAML's error marks name the file
            raw = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML{where}: {problem}", path=path) from exc
    if not isinstance(raw, dict):
        raise InputError(f"expected {expected} at the top", path=path)
    return raw


def read_yaml_model(
    path: Path | str, model: type[ModelT], *, what: str, expected: str, invalid: str, hint: str
) -> ModelT:
    """The mapping validated by `model`; `invalid` heads the list of errors (`invalid config`)."""
    raw = read_yaml_mapping(path, what, expected)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, what=invalid, model=model, path=path, hint=hint) from None
