"""The release gate: check results against a budgets YAML; JUnit XML and Markdown for CI.

Exit codes (via the CLI): 0 every budget holds, 1 one breaks (CheckFailed), 2 unusable inputs (InputError).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from rich.table import Table

from benchmarks.budgets import Verdict, evaluate, load_budgets
from benchmarks.results import Result
from core.artifacts import Artifact, write_atomic
from pipeline.report.inputs import results_from_inputs
from pipeline.report.junit import gate_junit
from pipeline.report.markdown import gate_markdown
from pipeline.stages.base import Section, StageContext


class GateConfig(Section):
    """Release gate: budgets per device and target, checked against every benchmark result."""

    budgets: Path = Field(description="budgets YAML (see examples/budgets.yaml)")
    junit: str = Field("gate.xml", description="file name of the JUnit XML in the stage's output folder")
    markdown: str = Field(
        "gate.md", description="file name of the Markdown summary in the stage's output folder"
    )

    @field_validator("junit", "markdown")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or Path(value).name != value:
            raise ValueError(
                f"must be a plain file name (written into the stage's output folder), got {value!r}"
            )
        return value


def check_budgets(
    results: list[Result], budgets: Path, junit: Path | None = None, markdown: Path | None = None
) -> list[Verdict]:
    """Evaluate the budgets file against the results and write the JUnit and Markdown files asked for."""
    verdicts = evaluate(load_budgets(budgets), results, source=budgets)
    if junit is not None:
        write_atomic(junit, gate_junit(verdicts))
    if markdown is not None:
        write_atomic(markdown, gate_markdown(verdicts))
    return verdicts


def run(config: GateConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Write the verdict; a broken budget does not fail the stage, the caller reads `passed`."""
    junit, markdown = ctx.out_dir / config.junit, ctx.out_dir / config.markdown
    verdicts = check_budgets(results_from_inputs(ctx.inputs), config.budgets, junit, markdown)
    failures = sum(not v.passed for v in verdicts)
    return {
        "gate": Artifact.from_path(
            "gate",
            markdown,
            passed=failures == 0,
            failures=failures,
            checks=len(verdicts),
            junit=config.junit,
        )
    }


def verdict_table(verdicts: list[Verdict]) -> Table:
    """One row per check; the budget and result are named on the first row of each (budget, result)."""
    table = Table(title="edgepipe gate", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("budget")
    table.add_column("result (device: target batch)")
    table.add_column("criterion")
    for column in ("measured", "limit", "margin"):
        table.add_column(column, justify="right", no_wrap=True)
    for verdict in verdicts:
        result = verdict.result
        for i, check in enumerate(verdict.checks):
            table.add_row(
                "[green]✔[/green]" if check.passed else "[bold red]✘[/bold red]",
                f"[{verdict.index}] {verdict.budget.label}" if i == 0 else "",
                f"{result.device_name}: {result.key} b{result.batch}" if i == 0 else "",
                check.criterion,
                check.measured_text,
                check.limit_text,
                check.margin_text if check.passed else f"[red]{check.margin_text}[/red]",
                end_section=i == len(verdict.checks) - 1,
            )
    return table
