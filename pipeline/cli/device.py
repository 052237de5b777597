"""`edgepipe device`: this machine's fingerprint and the targets and precisions that can run here."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from benchmarks.device import fingerprint, library_versions
from core.families import supported
from pipeline.cli.console import console
from targets.base import all_targets, every_library


def targets_here() -> list[dict[str, Any]]:
    """Each target: available or why not, the precisions it runs here and those it cannot, with why."""
    found = []
    for target in all_targets():
        ok, reason = target.available()
        unavailable: dict[str, str] = getattr(target, "unavailable_precisions", dict)() if ok else {}
        found.append({
            "target": target.name,
            "available": ok,
            "reason": reason,
            "precisions": [p for p in target.precisions if p not in unavailable],
            "unavailable_precisions": unavailable,
        })  # fmt: skip
    return found


def device_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of the tables")
    ] = False,
) -> None:
    """Print this machine's fingerprint and which targets and precisions can run here (with the reason
    when not)."""
    info, targets = fingerprint(), targets_here()
    versions = library_versions(every_library())  # those installed of every target's libraries
    if as_json:
        found = {"device": info, "targets": targets, "versions": versions, "models": supported()}
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    console.print(fingerprint_table(info))
    console.print(targets_table(targets))
    console.print(f"libraries: {', '.join(f'{name} {version}' for name, version in versions.items())}")
    console.print(f"models: {supported()}")


def fingerprint_table(info: dict[str, Any]) -> Table:
    """The device fingerprint, one row per set field (a nested one as key.sub), versions left out."""
    table = Table(title=f"device: {info.get('name', 'unknown')}", show_header=False)
    for key, value in info.items():
        if key == "versions" or value in (None, [], {}):
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                if item not in (None, [], {}):
                    table.add_row(
                        f"{key}.{sub}", ", ".join(map(str, item)) if isinstance(item, list) else str(item)
                    )
        else:
            table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    return table


def targets_table(targets: list[dict[str, Any]]) -> Table:
    """Each target: available here, the precisions it runs, why not the others."""
    rows = Table(title="targets")
    for column in ("target", "available", "precisions", "reason"):
        rows.add_column(column)
    for entry in targets:
        mark = "[green]yes[/green]" if entry["available"] else "[red]no[/red]"
        reasons = [entry["reason"]] + [f"no {p}: {why}" for p, why in entry["unavailable_precisions"].items()]
        rows.add_row(entry["target"], mark, ", ".join(entry["precisions"]), "; ".join(reasons))
    return rows
