"""Read a YAML file that must hold a mapping, with errors that name the file and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError


def read_yaml_mapping(path: Path | str, what: str, expected: str) -> dict[str, Any]:
    """`what` names the file's role ("budgets file"); `expected` says what its top level should hold."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", path=path) from exc
    if not isinstance(raw, dict):
        raise InputError(f"expected {expected} at the top", path=path)
    return raw
