"""The command line follows from the config models: every key of a command's section is an option generated
from it (same name, help and default), an option the command spells its own way, or file-only on
purpose; and each command function only builds its section, calls the library and prints."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import pytest
import typer
from pydantic import Field
from typer.main import get_command
from typer.testing import CliRunner

import pipeline.cli
from core.section import Section
from pipeline.cli import app
from pipeline.cli.options import KeyOptions, Spelling, config_options, default


def leaves(group, prefix=""):
    """Every command of the app by its full name ("data synth"), groups opened."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaves(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


COMMANDS = dict(leaves(get_command(app)))
# The commands with a config section; the others (run, gate, compare, ...) take files, not keys
SECTIONED = ["bench", "build", "export", "finetune", "prune", "report", "search"]


def keys_of(name: str):
    return COMMANDS[name].callback.config_keys


def test_the_commands_with_a_section_generate_their_options():
    assert sorted(n for n, c in COMMANDS.items() if hasattr(c.callback, "config_keys")) == SECTIONED


@pytest.mark.parametrize("name", SECTIONED)
def test_every_key_is_an_option_or_the_commands_own_or_file_only(name):
    keys = keys_of(name)
    every = {key for model in keys.models for key in model.model_fields}
    generated, own, file_only = set(keys.generated), set(keys.own), set(keys.file_only)
    assert generated | own | file_only == every, (
        f"{name}: keys reached by no option: {every - generated - own}"
    )
    assert not (generated & own or generated & file_only or own & file_only)
    params = {p.name for p in COMMANDS[name].params}
    setters = {option for options in keys.own.values() for option in options}
    assert setters <= params, f"{name}: no such option sets a key: {setters - params}"
    assert all(keys.file_only.values()), "say why a key has no option"


@pytest.mark.parametrize("name", SECTIONED)
def test_each_generated_option_has_its_keys_help_and_default(name):
    keys = keys_of(name)
    params = {p.name: p for p in COMMANDS[name].params}
    for key in keys.generated:
        field = next(m for m in keys.models if key in m.model_fields).model_fields[key]
        param = params[key]
        assert param.help == field.description, f"{name} --{key}: help is not the key's description"
        if field.is_required():
            assert param.required, f"{name} --{key}"
        else:
            assert param.default == field.get_default(call_default_factory=True), f"{name} --{key}: default"
        assert not param.hidden


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_function_is_short(name):
    """A command parses, builds its section, calls the library and prints: about 30 lines."""
    function = inspect.unwrap(COMMANDS[name].callback)
    lines, _ = inspect.getsourcelines(function)
    lines = lines[next(i for i, line in enumerate(lines) if line.lstrip().startswith("def ")) :]
    assert len(lines) <= 35, f"edgepipe {name}: {len(lines)} lines"


def test_the_options_a_command_spells_itself_default_to_their_keys_defaults():
    from pipeline.cli import bench, search
    from pipeline.stages.benchmark import BenchConfig
    from pipeline.stages.search import SearchConfig

    defaults = {p.name: p.default for p in COMMANDS["bench"].params}
    assert bench.parse_batches(defaults["batch"]) == default(BenchConfig, "batch")
    defaults = {p.name: p.default for p in COMMANDS["search"].params}
    for option, key, cast in (
        ("precision", "precisions", str),
        ("macs", "macs", float),
        ("imgsz", "imgsz", int),
    ):
        parsed = search.comma_list(defaults[option], cast, f"--{option}")
        assert parsed == default(SearchConfig, key), f"search --{option}"


def test_no_command_decides_a_failed_check():
    """Exit 1 is the library's to decide: no module of the CLI makes a CheckFailed (it raises those the
    library returns), so `edgepipe run` and a command fail alike."""
    cli = Path(pipeline.cli.__file__).parent
    deciding = [path.name for path in cli.glob("*.py") if "CheckFailed" in path.read_text()]
    assert deciding == []


# The generator itself, on a section of its own.


class Toy(Section):
    renamed: ClassVar[dict[str, str]] = {"old_count": "count"}

    count: int = Field(3, ge=1, description="how many")
    ratio: float | None = Field(None, gt=0, description="a ratio")
    mode: Literal["fast", "slow"] = Field("fast", description="which way")
    strict: bool = Field(True, description="refuse what is odd")
    verbose: bool = Field(False, description="say more")
    label: str = Field(description="what to call it")
    kept: bool = Field(False, description="kept or dropped")


built: list[tuple[Toy, frozenset[str]]] = []


@config_options(Toy, command="toy", spellings={"kept": Spelling(("--keep/--drop",))})
def toy(*, path: Annotated[str, typer.Option(help="a path")] = "p", options: KeyOptions[Toy]) -> None:
    built.append((options.build(), options.given))


toy_app = typer.Typer(rich_markup_mode=None)
toy_app.command("toy")(toy)
toy_app.command("other")(lambda: None)


def run_toy(*args: str):
    built.clear()
    return CliRunner().invoke(toy_app, ["toy", *args])


def test_generated_options_build_the_section_and_know_what_was_given():
    result = run_toy("--label", "x", "--count", "5", "--no-strict", "--verbose", "--drop", "--mode", "slow")
    assert result.exit_code == 0, result.output
    [(config, given)] = built
    assert config == Toy(label="x", count=5, strict=False, verbose=True, kept=False, mode="slow")
    assert given == {"label", "count", "strict", "verbose", "kept", "mode"}
    assert run_toy("--label", "x").exit_code == 0 and built[0] == (Toy(label="x"), frozenset({"label"}))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--label", "x", "--count", "0"), "--count Input should be greater than or equal to 1 (got 0)"),
        (("--label", "x", "--mode", "odd"), "--mode Input should be 'fast' or 'slow' (got 'odd')"),
        (("--label", "x", "--ratio", "0"), "--ratio Input should be greater than 0 (got 0.0)"),
        ((), "Missing option '--label'"),
    ],
)
def test_a_bad_value_exits_2_naming_the_option(args, named):
    from pipeline.cli.errors import user_errors

    strict_app = typer.Typer(rich_markup_mode=None)
    strict_app.command("toy")(user_errors(toy))
    strict_app.command("other")(lambda: None)
    result = CliRunner().invoke(strict_app, ["toy", *args])
    assert result.exit_code == 2 and named in " ".join(result.output.split()), result.output


def test_a_renamed_key_keeps_its_old_spelling_hidden_with_a_warning():
    result = run_toy("--label", "x", "--old-count", "7")
    assert result.exit_code == 0, result.output
    assert built[0][0].count == 7 and "--old-count` is deprecated: use --count" in result.output
    help_text = CliRunner().invoke(toy_app, ["toy", "--help"]).output
    assert "--old-count" not in help_text and "--keep / --drop" in help_text and "--verbose" in help_text
    assert "--strict / --no-strict" in help_text and "--path" in help_text


def test_called_as_a_function_the_options_not_at_their_default_are_given():
    toy(label="x", count=4)
    assert built[-1] == (Toy(label="x", count=4), frozenset({"label", "count"}))
