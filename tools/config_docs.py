"""Write docs/config.md, every key of the pipeline YAML, the targets' build options and the budgets YAML,
from the pydantic models that validate them, and the options of `edgepipe search` (which has no YAML
section) from the command itself, so the page lists what `--help` lists: `python -m tools.config_docs`
(tests/test_docs.py fails when the page is out of date)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from benchmarks.budgets import Budget
from pipeline.config import PipelineConfig
from targets.base import all_targets

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"
HEADER = """# Configuration keys

Generated from the pydantic models that validate each file (`python -m tools.config_docs`); a key not
listed here is an error, and the error names the nearest valid key. Relative paths in a pipeline config
are resolved against the config file's folder.
"""


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in get_args(annotation)]
        return " or ".join(dict.fromkeys(names))  # a union of sections is one "section"
    if origin in (list, tuple):
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        return "mapping"
    if str(origin).endswith("Literal"):
        return " or ".join(f"`{value}`" for value in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return "none" if value is None else f"`{value!r}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


TABLE = ["| key | type | default | meaning |", "|---|---|---|---|"]


def _row(key: str, field: Any, type_name: str | None = None) -> str:
    meaning = (field.description or "").replace("|", "\\|")
    return f"| `{key}` | {type_name or _type_name(field.annotation)} | {_default(field)} | {meaning} |"


def section(model: type[BaseModel], prefix: str, title: str) -> list[str]:
    """A table of `model`'s keys, then one for each nested section, depth first."""
    lines = [f"## {title}", "", *TABLE]
    nested: list[tuple[list[type[BaseModel]], str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        lines.append(_row(key, field))
        models = _models_in(field.annotation)
        if models:
            list_like = get_origin(field.annotation) is list
            nested.append((models, f"{key}[]." if list_like else f"{key}."))
    lines.append("")
    for old, new in getattr(model, "renamed", {}).items():
        lines.append(f"`{prefix}{old}` was renamed `{prefix}{new}`: the old key still reads, with a warning,")
        lines += ["until the next release.", ""]
    for models, inner_prefix in nested:
        name = inner_prefix.rstrip(".")
        if len(models) > 1:
            lines += method_sections(models, name)
        else:
            lines += section(models[0], inner_prefix, f"`{name}`")
    return lines


def method_sections(models: list[type[BaseModel]], name: str) -> list[str]:
    """A section that is one config per `method` (`prune`): the keys every method takes, then each
    method's own keys (methods with the same keys in one table)."""

    def facts(model: type[BaseModel], key: str) -> tuple | None:
        field = model.model_fields.get(key)
        return None if field is None else (field.annotation, field.description, field.default)

    def shared(key: str) -> bool:
        return all(facts(model, key) == facts(models[0], key) for model in models)

    default = models[0]
    common = [key for key in default.model_fields if key != "method" and shared(key)]
    methods = " or ".join(f"`{model.model_fields['method'].default}`" for model in models)
    lines = [f"## `{name}`: the keys of every method", "", *TABLE]
    lines.append(_row(f"{name}.method", default.model_fields["method"], methods))
    lines += [_row(f"{name}.{key}", default.model_fields[key]) for key in common]
    groups: dict[tuple, list[type[BaseModel]]] = {}
    for model in models:
        own = tuple(key for key in model.model_fields if key != "method" and key not in common)
        groups.setdefault(tuple((key, model.model_fields[key].description) for key in own), []).append(model)
    for own, members in groups.items():
        which = " or ".join(f"`method: {model.model_fields['method'].default}`" for model in members)
        whose = "its" if len(members) == 1 else "their"
        lines += ["", f"## `{name}` with {which}: {whose} own keys", "", *TABLE]
        lines += [_row(f"{name}.{key}", members[0].model_fields[key]) for key, _ in own]
    return [*lines, "", "A key of another method is an error naming the key and the method.", ""]


def command_options(name: str, title: str) -> list[str]:
    """A table of a command's options as its `--help` lists them (the click command typer builds)."""
    from typer.main import get_command

    from pipeline.cli import app

    command: Any = get_command(app)  # Typer's own click: checked by attribute, not by class
    lines = [f"## {title}", "", "| option | type | default | meaning |", "|---|---|---|---|"]
    for param in command.commands[name].params:
        if param.param_type_name != "option" or param.hidden:
            continue
        names = " / ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        kind = "flag" if param.is_flag else param.bare_type()
        default = (
            "required" if param.required else "none" if param.default is None else f"`{param.default!r}`"
        )
        meaning = (param.help or "").replace("|", "\\|")
        lines.append(f"| {names} | {kind} | {default} | {meaning} |")
    return [*lines, ""]


def render() -> str:
    lines = [HEADER, *section(PipelineConfig, "", "Pipeline config (`edgepipe run CONFIG`)")]
    for target in all_targets():
        lines += section(target.options_model, "", f"`build[].options` for target `{target.name}`")
    lines += section(Budget, "", "Budgets file: each entry of `budgets:` (`edgepipe gate --budgets`)")
    lines += command_options("search", "Budget search: the options of `edgepipe search` (docs/search.md)")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
