"""pydantic validation errors as user errors: the one place they are turned into messages.

Each error becomes one line naming the key (`bench.min_seconds`, `budgets[0].target`) or the command-line
option (`--macs`), what is wrong and the value given; an unknown key gets the nearest valid key
("did you mean `min_seconds`?").
"""

from __future__ import annotations

import contextlib
import difflib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.errors import InputError


def validation_error(
    exc: ValidationError,
    *,
    what: str,
    model: type[BaseModel] | None = None,
    path: Path | str | None = None,
    hint: str | None = None,
    options: bool = False,
    one_line: bool | None = None,
) -> InputError:
    """An InputError listing every error of `exc`: a file's errors one per line under `what`; a command's
    options (`options=True`, keys named as `--option`), or `one_line=True`, on one line."""
    lines = [describe(error, model, options) for error in exc.errors()]
    single = options if one_line is None else one_line
    message = f"{what}: " + "; ".join(lines) if single else f"{what}:\n  " + "\n  ".join(lines)
    return InputError(message, path=path, hint=hint)


@contextlib.contextmanager
def reported_by_pydantic() -> Iterator[None]:
    """Inside a pydantic validator: an InputError becomes the ValueError pydantic reports under the key."""
    try:
        yield
    except InputError as exc:
        raise ValueError(str(exc)) from None


def describe(error: Any, model: type[BaseModel] | None = None, options: bool = False) -> str:
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    if error["type"] == "unused_key":  # a valid key of another variant (a pruning method's config)
        loc.append(error["ctx"]["key"])
    where = _option(loc) if options else _key(loc)
    got = error.get("input")
    if error["type"] == "extra_forbidden":
        detail = "unknown " + ("option" if options else "key")
        nearest = _nearest(model, list(error["loc"])) if model is not None else None
        if nearest:
            detail += f"; did you mean `{nearest}`?"
    elif error["type"] == "unused_key":
        detail = str(error["msg"])
    elif error["type"] == "missing":
        detail = "required " + ("option" if options else "key") + " is missing"
    else:
        detail = str(error["msg"]).removeprefix("Value error, ")
        if got is not None and not isinstance(got, dict | list):
            detail += f" (got {got!r})"
    if not where:
        return detail
    return f"{where} {detail}" if options else f"key '{where}': {detail}"


_PRIMITIVE_TAGS = frozenset({"int", "float", "str", "bool", "bytes", "none"})


def _is_union_tag(part: Any) -> bool:
    """pydantic adds the member tried to a union's location (`Path`, `SynthSource`, `int`,
    `function-after[...]`, `literal['auto']`)."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part or part in _PRIMITIVE_TAGS)


def _key(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _option(loc: list[Any]) -> str:
    names = [str(part) for part in loc if not isinstance(part, int)]
    return "--" + names[-1].replace("_", "-") if names else ""


def _nearest(model: type[BaseModel], loc: list[Any]) -> str | None:
    """The valid key closest to the unknown last key of `loc`, in the model that holds it (in a union of
    models, the member the union tag in `loc` names)."""
    holder: Any = model
    annotation: Any = None
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if _is_union_tag(part):
            holder = _model_in(annotation, part) or holder
            continue
        fields = getattr(holder, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        holder = _model_in(annotation)
        if holder is None:
            return None
    fields = getattr(holder, "model_fields", None)
    if not fields or not loc:
        return None
    found = difflib.get_close_matches(str(loc[-1]), list(fields), n=1, cutoff=0.6)
    return found[0] if found else None


def _model_in(annotation: Any, name: str | None = None) -> type[BaseModel] | None:
    """The model class inside an annotation such as `Section | None`, `list[Entry]` or `Path | Source`;
    with `name`, the one of that class name (a member of a tagged union such as `prune`'s methods)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation if name in (None, annotation.__name__) else None
    if get_origin(annotation) in (Union, types.UnionType, list, tuple, dict, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg, name)
            if found is not None:
                return found
    return None
