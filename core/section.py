"""The base of every typed config section: unknown keys are errors, not silently ignored."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

log = logging.getLogger(__name__)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    # Keys renamed in this release, old -> new: the old one still reads, with a warning, until the next
    # release (docs/config.md lists them); both at once is an error.
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not set(cls.renamed) & set(data):
            return data
        data = dict(data)
        for old, new in cls.renamed.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old!r} is the old name of {new!r}: give {new!r} only")
                log.warning(
                    f"the key {old!r} is deprecated: use {new!r} (the old name goes in the next release)"
                )
                data[new] = data.pop(old)
        return data
