"""A command's config-key options, generated from its config model so that each key is declared once.

A command declares what is not a config key (its inputs, outputs, --force) and one parameter annotated
`KeyOptions[Model]`; `config_options(Model, command=...)` puts in its place one option per key of the
model, as Polygraphy's argument groups are declared once and subscribed to: `--key-name`, help the key's
description, default the key's default, a bool flag (`--key/--no-key` when it defaults to True), and the
hidden old spelling of each renamed key. The command builds its section with `options.build()`, through
the same model a config file goes through: a bad value is one line naming the option. A key the command
spells another way (a comma list, a path it passes itself) is in `own`; one with no option in `file_only`.
`tests/test_cli_options.py` checks that every key is one of the three.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from typer.main import get_current_context  # of the click Typer vendors, which runs the commands

from core.errors import InputError
from core.torch_devices import normalized_device
from core.validation import validation_error
from pipeline.cli.console import err_console

ModelT = TypeVar("ModelT", bound=BaseModel)
BuiltT = TypeVar("BuiltT", bound=BaseModel)


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


@dataclass(frozen=True)
class Spelling:
    """A key's option where `--key-name` of the key's type is not it: its declarations, the type typer
    parses (for a key typer cannot read, such as `int | "auto"`) and other `typer.Option` settings."""

    declarations: tuple[str, ...] = ()
    annotation: Any = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandKeys:
    """Which keys of a command's model(s) are generated options, the command's own, or file-only."""

    models: tuple[type[BaseModel], ...]
    generated: tuple[str, ...]
    own: Mapping[str, tuple[str, ...]]  # key -> the command's options that set it
    file_only: Mapping[str, str]  # key -> why it has no option


@dataclass(frozen=True)
class KeyOptions(Generic[ModelT]):
    """The parsed values of a command's generated options, and which of them the user gave."""

    model: type[ModelT]
    command: str
    values: Mapping[str, Any]
    given: frozenset[str]

    def build(self, **own: Any) -> ModelT:
        """The config section from the options and the keys the command parsed itself (`own`)."""
        return config_from_options(self.model, self.command, **{**self.values, **own})

    def build_as(self, model: type[BuiltT], *, given_only: bool = False, **own: Any) -> BuiltT:
        """The section as `model` (prune's method); `given_only`: only the options the user gave, so that
        a key the model does not use is an error only when it was asked for."""
        values = {k: v for k, v in self.values.items() if not given_only or k in self.given}
        return config_from_options(model, self.command, **{**values, **own})


def config_options(
    *models: type[BaseModel],
    command: str,
    own: Mapping[str, str | tuple[str, ...]] | None = None,
    file_only: Mapping[str, str] | None = None,
    spellings: Mapping[str, Spelling] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command: its `KeyOptions` parameter becomes one option per key of `models` (the first
    model's keys, then the others' own), less `own` and `file_only`."""
    owned = {key: (names,) if isinstance(names, str) else names for key, names in (own or {}).items()}
    file_only = file_only or {}
    spellings = spellings or {}
    holders: dict[str, type[BaseModel]] = {}
    for model in models:
        holders |= {key: model for key in model.model_fields if key not in holders}
    generated = {
        key: _key_parameter(model, key, spellings.get(key, Spelling()))
        for key, model in holders.items()
        if key not in owned and key not in file_only
    }
    renames = {old: new for model in models for old, new in getattr(model, "renamed", {}).items()}
    aliases = {
        old: _alias_parameter(holders[new], old, new) for old, new in renames.items() if new in generated
    }
    defaults = {key: parameter.default for key, parameter in generated.items()}
    keys = CommandKeys(models, tuple(generated), owned, file_only)

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(fn, eval_str=True)
        slot = next(p.name for p in signature.parameters.values() if _is_key_options(p.annotation))
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name == slot:
                parameters += [*generated.values(), *aliases.values()]
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        full = signature.replace(parameters=parameters)

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> None:
            bound = full.bind(**kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            values = {key: arguments.pop(key) for key in generated}
            given = _given(command, values, defaults)
            for old, new in ((old, renames[old]) for old in aliases):
                if (value := arguments.pop(old)) is not None:
                    said = (f"--{old.replace('_', '-')}", f"--{new.replace('_', '-')}")
                    values[new] = renamed(values[new] if new in given else None, value, command=command,
                                          old_name=said[0], new_name=said[1])  # fmt: skip
                    given |= {new}
            options = KeyOptions(models[0], command, values, frozenset(given))
            return fn(**arguments, **{slot: options})

        wrapper.__signature__ = full  # type: ignore[attr-defined]  # typer reads the options from it
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        wrapper.config_keys = keys  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _key_parameter(model: type[BaseModel], key: str, spelling: Spelling) -> inspect.Parameter:
    info = model.model_fields[key]
    default = inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True)
    annotation = spelling.annotation or _typer_type(info.annotation)
    name = "--" + key.replace("_", "-")
    declarations = spelling.declarations or (
        (f"{name}/--no-{name[2:]}",) if annotation is bool and default is True else (name,)
    )
    option = typer.Option(*declarations, help=info.description, **spelling.settings)
    return inspect.Parameter(
        key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


def _alias_parameter(model: type[BaseModel], old: str, new: str) -> inspect.Parameter:
    """The hidden old spelling of a renamed key (core.section), read with a deprecation warning."""
    annotation = _typer_type(model.model_fields[new].annotation)
    option = typer.Option(
        f"--{old.replace('_', '-')}", hidden=True, help=f"deprecated: --{new.replace('_', '-')}"
    )
    return inspect.Parameter(
        old, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation | None, option]
    )


def _typer_type(annotation: Any) -> Any:
    """The type typer parses for a key: a Literal's choices as text (the model names the valid ones)."""
    if get_origin(annotation) is Literal:
        return str
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        parsed = {_typer_type(a) for a in members}
        if len(parsed) != 1:
            raise TypeError(f"typer cannot parse {annotation}: give the key a Spelling with an annotation")
        (single,) = parsed
        return single | None if len(members) < len(get_args(annotation)) else single
    return annotation


def _is_key_options(annotation: Any) -> bool:
    return annotation is KeyOptions or get_origin(annotation) is KeyOptions


def _given(command: str, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> set[str]:
    """The options set on the command line; called as a function, those not at their default."""
    context = get_current_context(silent=True)
    if context is not None and context.command.name == command:
        return {k for k in values if getattr(context.get_parameter_source(k), "name", "DEFAULT") != "DEFAULT"}
    return {k for k, v in values.items() if v != defaults[k]}
