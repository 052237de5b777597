"""`edgepipe fleet join` (on each device) and `edgepipe fleet run` (on the head node)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from benchmarks.device import fingerprint
from pipeline.cli.console import console
from pipeline.cli.errors import user_errors
from pipeline.fleet.driver import nodes_table, run_matrix
from pipeline.fleet.join import ray_start_command, start_ray
from pipeline.fleet.matrix import load_matrix
from pipeline.fleet.outputs import fleet_failure, write_outputs
from pipeline.fleet.resources import available_targets, device_kind, node_resources, require_ray

fleet_app = typer.Typer(
    help="Benchmark a matrix of models x targets x devices on a Ray cluster of devices.",
    no_args_is_help=True,
)


Address = Annotated[
    str, typer.Option("--address", envvar="RAY_ADDRESS", help="the head node's host:port (ray start --head)")
]
Kind = Annotated[
    str | None, typer.Option("--kind", help="device kind to advertise (default: from the fingerprint's name)")
]
NumCpus = Annotated[
    int | None, typer.Option("--num-cpus", min=0, help="CPUs Ray may use for other work (default: all)")
]
NodeIp = Annotated[
    str | None,
    typer.Option("--node-ip", help="this device's address as the head sees it (default: Ray's guess)"),
]
Block = Annotated[
    bool, typer.Option("--block/--no-block", help="stay in the foreground until stopped (for a container)")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="print the `ray start` command, start nothing")]


def join_command(
    address: Address,
    kind: Kind = None,
    num_cpus: NumCpus = None,
    node_ip: NodeIp = None,
    block: Block = False,
    dry_run: DryRun = False,
) -> None:
    """Join this device to the fleet: a Ray worker node advertising its kind, targets and one bench slot."""
    require_ray()
    info = fingerprint()
    resources = node_resources(device_kind(info, kind), available_targets())
    table = Table(title=f"joining {address} as {info.get('name')}", show_header=False, title_justify="left")
    for name, amount in resources.items():
        table.add_row(name, f"{amount:g}")
    console.print(table)
    command = ray_start_command(address, resources, num_cpus, node_ip, block)
    if dry_run:
        typer.echo(shlex.join(command))
        return
    start_ray(command, address)


HeadAddress = Annotated[
    str, typer.Option("--address", envvar="RAY_ADDRESS", help="the head node's host:port")
]
Output = Annotated[Path, typer.Option("--output", "-o", help="folder for results, report and gate")]
Retries = Annotated[
    int, typer.Option("--retries", min=0, help="re-runs of a cell whose device died or that failed")
]
NodeWait = Annotated[
    float, typer.Option("--node-wait", min=0, help="seconds a cell waits for a device of its kind to join")
]


def run_command(
    matrix: Annotated[Path, typer.Argument(help="MATRIX.yaml: models, targets/precisions, device kinds")],
    address: HeadAddress,
    output: Output = Path("fleet"),
    force: Annotated[bool, typer.Option("--force", help="re-measure cells already in the history")] = False,
    retries: Retries = 2,
    node_wait: NodeWait = 120.0,
) -> None:
    """Build and benchmark every cell on a device of its kind; one report and one gate for all devices.

    Exit 0: every cell measured and every budget holds; 1: a budget broken; 2: a cell could not be measured.
    """
    spec = load_matrix(matrix)
    outcomes = run_matrix(
        spec, address, output, force=force, retries=retries, node_wait=node_wait,
        show_nodes=lambda nodes: console.print(nodes_table(nodes)),
    )  # fmt: skip
    gate = write_outputs(spec, outcomes, output)
    console.print(cells_table(outcomes))
    console.print(f"wrote {output}/ (results.json, cells.json, report.html, gate.xml, gate.md)")
    if (failure := fleet_failure(gate, outcomes, output)) is not None:
        raise failure
    console.print(f"[bold green]all {len(outcomes)} cells measured[/bold green]")


def cells_table(outcomes):
    table = Table(title="edgepipe fleet cells", title_justify="left")
    for column in ("device kind", "model", "target", "status", "node", "seconds", "note"):
        table.add_column(column)
    style = {"measured": "green", "in history": "cyan", "failed": "bold red"}
    for outcome in sorted(outcomes, key=lambda o: (o.cell.kind, o.cell.model, o.cell.target)):
        last = outcome.attempts[-1] if outcome.attempts else {}
        seconds = f"{last['ended'] - last['started']:.1f}" if last.get("ended") else ""
        retried = f"{len(outcome.attempts)} attempts; " if len(outcome.attempts) > 1 else ""
        table.add_row(
            outcome.cell.kind,
            outcome.cell.model,
            outcome.cell.target,
            f"[{style.get(outcome.status, 'white')}]{outcome.status}",
            str(last.get("hostname") or "") + (f" {last['node_id'][:8]}" if last.get("node_id") else ""),
            seconds,
            retried + (outcome.error or ""),
        )
    return table


fleet_app.command("join")(user_errors(join_command))
fleet_app.command("run")(user_errors(run_command))
