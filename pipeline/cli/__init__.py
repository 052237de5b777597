"""The `edgepipe` command line: `run` chains the stages from one config; each stage is also a command.

One module per command; each builds its config section from options generated from the section's model
(options.py), calls one library function and prints, so the command line adds no behaviour of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from pipeline.cli import (
    bench,
    build,
    compare,
    data,
    device,
    export,
    finetune,
    fleet,
    gate,
    history,
    prune,
    report,
    run,
    search,
)
from pipeline.cli.errors import user_errors
from pipeline.cli.trust import with_trust_option

app = typer.Typer(
    name="edgepipe",
    help="Prune, fine-tune, export, build, benchmark and gate YOLOv8, YOLO11 and YOLO26 edge detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Typer's rich panels print "<bool>" beside every flag (--help <bool>), as if it took a value; the
    # plain help lists flags bare and value options with their type.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)
data_app = typer.Typer(help="Datasets: make the embedded synthetic dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def register(typer_app: typer.Typer, name: str, fn: Callable[..., None]) -> None:
    typer_app.command(name)(user_errors(fn))


register(app, "run", with_trust_option(run.run_command))
register(app, "device", device.device_command)
# The commands that can open a checkpoint (build and bench: the torch target runs a .pt).
for _name, _module in (
    ("search", search),
    ("prune", prune),
    ("finetune", finetune),
    ("export", export),
    ("build", build),
    ("bench", bench),
):
    register(app, _name, with_trust_option(_module.command))
register(app, "report", report.command)
register(app, "gate", gate.command)


register(app, "compare", compare.compare_command)
register(app, "history", history.history_command)
register(data_app, "synth", data.command)
app.add_typer(fleet.fleet_app, name="fleet")


def main() -> None:
    app()
