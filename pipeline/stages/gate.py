"""The release gate: check results against a budgets YAML; JUnit XML and Markdown for CI.

Exit codes (via the CLI): 0 every budget holds, 1 one breaks (CheckFailed), 2 unusable inputs (InputError).
A result flagged as noisy (benchmarks.noise) gives a warning, and fails the gate when `strict` is set.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from rich.table import Table

from benchmarks.budgets import Verdict, budget_verdicts, load_budgets
from benchmarks.results import Result
from core.artifacts import Artifact, write_atomic
from core.errors import CheckFailed
from pipeline.report.inputs import results_from_inputs
from pipeline.report.junit import gate_junit
from pipeline.report.markdown import gate_markdown, gate_verdict_line
from pipeline.stages.base import Section, StageContext


class GateConfig(Section):
    """Release gate: budgets per device and target, checked against every benchmark result."""

    budgets: Path = Field(description="budgets YAML (see examples/budgets.yaml)")
    junit: str = Field("gate.xml", description="file name of the JUnit XML in the stage's output folder")
    markdown: str = Field(
        "gate.md", description="file name of the Markdown summary in the stage's output folder"
    )
    strict: bool = Field(False, description="fail the gate when a checked result is flagged as noisy")

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
    verdicts = budget_verdicts(load_budgets(budgets), results, source=budgets)
    if junit is not None:
        write_atomic(junit, gate_junit(verdicts))
    if markdown is not None:
        write_atomic(markdown, gate_markdown(verdicts, noise_warnings(verdicts)))
    return verdicts


def noise_warnings(verdicts: list[Verdict]) -> list[str]:
    """One line per noise flag of each checked result (a result checked by several budgets once)."""
    lines = [
        f"{v.result.device_name}: {v.result.key} batch {v.result.batch}: {flag}"
        for v in verdicts
        for flag in v.result.flags
    ]
    return list(dict.fromkeys(lines))


def broken_checks(verdicts: list[Verdict]) -> list[dict[str, str]]:
    """The broken checks as rows of text (kept in the gate artifact, so `run` can print them)."""
    return [
        {
            "budget": f"[{v.index}] {v.budget.label}",
            "result": result_text(v.result),
            "criterion": check.criterion,
            "measured": check.measured_text,
            "limit": check.limit_text,
            "margin": check.margin_text,
        }
        for v in verdicts
        for check in v.failures
    ]


def gate_failure(verdicts: list[Verdict], strict: bool = False) -> CheckFailed | None:
    """The gate's failed check (exit 1): a broken budget or, with `strict`, a result flagged as noisy;
    None when it passes."""
    if any(not v.passed for v in verdicts):
        line = gate_verdict_line(verdicts).replace("**", "").removeprefix("❌ ")
        return CheckFailed(line, hint="the table above shows each broken budget and its margin")
    noise = noise_warnings(verdicts)
    if strict and noise:
        return CheckFailed(
            f"{len(noise)} checked result(s) flagged as noisy (--strict)",
            hint="measure on an idle machine, or drop --strict to accept them with a warning",
        )
    return None


def result_text(result: Result) -> str:
    """ "CPU: openvino/int8 b1, YOLO26": the device, engine and batch a check judged, and its family."""
    family = f", {result.family_name}" if result.family_name else ""
    return f"{result.device_name}: {result.key} b{result.batch}{family}"


def broken_table(rows: list[dict[str, str]]) -> Table:
    table = Table(title="broken budgets", title_justify="left", title_style="bold red")
    for column in ("budget", "result", "criterion", "measured", "limit", "margin"):
        right = column in ("measured", "limit", "margin")
        table.add_column(column, justify="right" if right else "left", no_wrap=right)
    for row in rows:
        cells = [row[c] for c in ("budget", "result", "criterion", "measured", "limit")]
        table.add_row(*cells, f"[red]{row['margin']}[/red]")
    return table


def run(config: GateConfig, ctx: StageContext) -> dict[str, Artifact]:
    """Write the verdict; a broken budget does not fail the stage, the caller reads `passed`."""
    junit, markdown = ctx.out_dir / config.junit, ctx.out_dir / config.markdown
    verdicts = check_budgets(results_from_inputs(ctx.inputs), config.budgets, junit, markdown)
    failures = sum(not v.passed for v in verdicts)
    noise = noise_warnings(verdicts)
    return {
        "gate": Artifact.from_path(
            "gate",
            markdown,
            passed=failures == 0 and not (config.strict and noise),
            failures=failures,
            checks=len(verdicts),
            junit=config.junit,
            broken=broken_checks(verdicts),
            noise=noise,
            strict=config.strict,
        )
    }


def verdict_table(verdicts: list[Verdict]) -> Table:
    """One row per check; the budget and result are named on the first row of each (budget, result)."""
    table = Table(title="edgepipe gate", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("budget")
    table.add_column("result (device: target batch, family)")
    table.add_column("criterion")
    for column in ("measured", "limit", "margin"):
        table.add_column(column, justify="right", no_wrap=True)
    for verdict in verdicts:
        result = verdict.result
        for i, check in enumerate(verdict.checks):
            table.add_row(
                "[green]✔[/green]" if check.passed else "[bold red]✘[/bold red]",
                f"[{verdict.index}] {verdict.budget.label}" if i == 0 else "",
                result_text(result) if i == 0 else "",
                check.criterion,
                check.measured_text,
                check.limit_text,
                check.margin_text if check.passed else f"[red]{check.margin_text}[/red]",
                end_section=i == len(verdict.checks) - 1,
            )
    return table
