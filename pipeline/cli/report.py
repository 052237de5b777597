"""`edgepipe report`: the HTML and Markdown report of results files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.results import load_results
from pipeline.cli.console import console
from pipeline.cli.options import KeyOptions, config_options
from pipeline.stages.report import ReportConfig, write_report


@config_options(
    ReportConfig, command="report", file_only={"search": "a run's: its search.json, as a section"}
)
def command(
    *,
    results: Annotated[list[Path], typer.Argument(help="results JSON files written by `edgepipe bench`")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="the HTML file to write; the Markdown goes beside it (.md)")
    ] = Path("report.html"),
    options: KeyOptions[ReportConfig],
) -> None:
    """Write a self-contained HTML report (tables, latency-vs-mAP Pareto plot, latency CDFs) and report.md."""
    config = options.build()
    loaded = load_results(*results)
    with console.status("rendering the report"):
        html, markdown = write_report(loaded, output, baseline=config.baseline, title=config.title)
    console.print(f"report: [bold]{html}[/bold]\nmarkdown: {markdown}")
