"""Each command's options are declared from its config model: same key, same default, same help."""

from __future__ import annotations

import inspect
from typing import get_args, get_type_hints

import pytest
from typer.models import ParameterInfo

from pipeline.cli import bench, build, export, finetune, prune, report, search
from pipeline.pruning.config import AutoConfig, MagnitudeConfig
from pipeline.stages.benchmark import BenchConfig
from pipeline.stages.build import BuildEntry
from pipeline.stages.export import ExportConfig
from pipeline.stages.finetune import FinetuneConfig
from pipeline.stages.report import ReportConfig
from pipeline.stages.search import SearchConfig

# command module, its model(s), option name -> config key where they differ, options that differ on purpose
COMMANDS = [
    # prune: the keys of the default method (auto) and magnitude's own; --data and --imgsz are the run's
    (prune, (AutoConfig, MagnitudeConfig), {}, {"data", "imgsz"}),
    (finetune, FinetuneConfig, {}, {"data", "device", "teacher"}),  # see README: a path, the run's device
    (export, ExportConfig, {"tolerance": "parity_tolerance", "box_tolerance": "parity_box_tolerance"}, set()),
    (bench, BenchConfig, {}, {"batch"}),  # comma-separated on the command line, a list in the config
    (build, BuildEntry, {}, {"target"}),  # the command defaults to onnxruntime; a build entry names one
    (search, SearchConfig, {}, {"imgsz", "macs"}),  # comma-separated on the command line, lists in the config
    (report, ReportConfig, {}, set()),
]


def options(command) -> dict[str, tuple[ParameterInfo, object]]:
    hints = get_type_hints(command, include_extras=True)
    found = {}
    for name, parameter in inspect.signature(command).parameters.items():
        info = next(a for a in get_args(hints[name]) if isinstance(a, ParameterInfo))
        found[name] = (info, parameter.default)
    return found


@pytest.mark.parametrize(
    ("module", "model", "aliases", "own"), COMMANDS, ids=lambda v: getattr(v, "__name__", "")
)
def test_options_are_the_config_keys(module, model, aliases, own):
    models = model if isinstance(model, tuple) else (model,)
    shared = 0
    for name, (info, value) in options(module.command).items():
        assert info.help, f"{module.__name__}: --{name} has no help"
        key = aliases.get(name, name)
        holder = next((m for m in models if key in m.model_fields), None)
        if holder is None or name in own:
            continue
        field = holder.model_fields[key]
        assert info.help == field.description, f"{module.__name__}: --{name} help differs from {key}'s"
        if value is not inspect.Parameter.empty:
            assert value == field.get_default(call_default_factory=True), (
                f"{module.__name__}: --{name} default"
            )
        shared += 1
    assert shared, f"{module.__name__} declares no option from {models[0].__name__}"
