"""What a fleet run leaves in its output folder: results, cells, one report and one gate for all devices.

- results.json   every result of the matrix (measured now, or taken from the history)
- cells.json     every cell: status, the node(s) it ran on, start and end times, the error if it failed
- report.html/.md  the report of `edgepipe report`, plus the cells that could not be measured
- gate.xml/.md   the budgets (when the matrix names them) and one JUnit testcase per cell
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html import escape
from pathlib import Path

from benchmarks.budgets import Verdict, budget_verdicts, load_budgets
from benchmarks.results import Result, save_results
from core.artifacts import write_atomic, write_json_atomic
from core.errors import EXIT_BAD_INPUT, CheckFailed, EdgepipeError, InputError
from pipeline.fleet.driver import CellOutcome
from pipeline.fleet.matrix import Matrix
from pipeline.report.junit import gate_junit as budgets_junit
from pipeline.report.markdown import gate_markdown as budgets_markdown
from pipeline.report.markdown import gate_verdict_line, table
from pipeline.stages.report import write_report


@dataclass(frozen=True)
class GateOutcome:
    verdicts: list[Verdict]
    unchecked: list[str]  # budgets that matched no result, with the reason

    @property
    def broken(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]


class CouldNotMeasure(EdgepipeError):
    """Some cells of the matrix produced no result (exit 2, distinct from a broken budget's 1)."""

    exit_code = EXIT_BAD_INPUT


def fleet_failure(gate: GateOutcome, outcomes: list[CellOutcome], out_dir: Path) -> EdgepipeError | None:
    """How a fleet run fails: a broken budget (exit 1), else cells not measured or budgets matching no
    result (exit 2); None when every cell was measured and every budget holds."""
    if gate.broken:
        line = gate_verdict_line(gate.verdicts).replace("**", "").removeprefix("❌ ")
        return CheckFailed(line, hint=f"see {out_dir / 'gate.md'}")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed or gate.unchecked:
        return CouldNotMeasure(
            f"{len(failed)} of {len(outcomes)} cells could not be measured"
            + (f"; {len(gate.unchecked)} budgets matched no result" if gate.unchecked else ""),
            hint=f"see {out_dir / 'cells.json'}; run again to retry only those cells",
        )
    return None


def write_outputs(matrix: Matrix, outcomes: list[CellOutcome], out_dir: Path) -> GateOutcome:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [result for outcome in outcomes for result in outcome.results]
    failed = [o for o in outcomes if o.status == "failed"]
    save_results(out_dir / "results.json", results)
    write_json_atomic(out_dir / "cells.json", {"cells": [cell_record(o) for o in outcomes]})
    if results:
        write_fleet_report(results, failed, out_dir / "report.html", matrix.baseline)
    gate = run_gate(matrix.budgets, results)
    write_atomic(out_dir / "gate.xml", gate_junit(gate, outcomes))
    write_atomic(out_dir / "gate.md", gate_markdown(gate, failed))
    return gate


def cell_record(outcome: CellOutcome) -> dict[str, object]:
    return {
        "cell": outcome.key,
        "model": outcome.cell.model,
        "target": outcome.cell.target,
        "kind": outcome.cell.kind,
        "status": outcome.status,
        "error": outcome.error,
        "attempts": outcome.attempts,
        "results": len(outcome.results),
    }


def unmeasured_rows(failed: list[CellOutcome]) -> list[list[str]]:
    return [[o.cell.kind, o.cell.model, o.cell.target, o.error or ""] for o in failed]


def write_fleet_report(
    results: list[Result], failed: list[CellOutcome], html_path: Path, baseline: str
) -> None:
    """`edgepipe report`'s page for all devices, with the cells that could not be measured appended."""
    title = "edgepipe fleet report" + (f" ({len(failed)} cells could not be measured)" if failed else "")
    html_path, markdown_path = write_report(results, html_path, baseline=baseline, title=title)
    if not failed:
        return
    header = ["device kind", "model", "target", "why"]
    markdown = f"\n## Could not be measured\n\n{table(header, unmeasured_rows(failed))}\n"
    write_atomic(markdown_path, markdown_path.read_text() + markdown)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
        for row in unmeasured_rows(failed)
    )
    section = (
        "<section><h2>Could not be measured</h2><table><thead><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in header)
        + f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )
    html = html_path.read_text()
    html = html.replace("</main>", section + "</main>", 1) if "</main>" in html else html + section
    write_atomic(html_path, html)


def run_gate(budgets: Path | None, results: list[Result]) -> GateOutcome:
    """Each budget checked on its own: one matching no result (its cells failed) does not hide the others."""
    if budgets is None:
        return GateOutcome([], [])
    verdicts: list[Verdict] = []
    unchecked: list[str] = []
    for budget in load_budgets(budgets):
        try:
            verdicts += budget_verdicts([budget], results, source=budgets)
        except InputError as exc:
            unchecked.append(f"{budget.label}: {str(exc).splitlines()[0]}")
    return GateOutcome(verdicts, unchecked)


def gate_junit(gate: GateOutcome, outcomes: list[CellOutcome]) -> str:
    """The budgets' JUnit suites, then a suite with one testcase per cell (an error when not measured)."""
    root = ET.fromstring(budgets_junit(gate.verdicts, suite="edgepipe fleet gate").encode())
    failed = [o for o in outcomes if o.status == "failed"]
    suite = ET.SubElement(
        root, "testsuite", name="edgepipe fleet cells", tests=str(len(outcomes)), errors=str(len(failed))
    )
    suite.set("failures", "0")
    for outcome in outcomes:
        case = ET.SubElement(
            suite, "testcase", name=outcome.cell.label, classname=f"edgepipe.fleet.{outcome.cell.kind}"
        )
        if outcome.status == "failed":
            ET.SubElement(case, "error", message=outcome.error or "", type="CouldNotMeasure")
        else:
            ET.SubElement(case, "system-out").text = f"{outcome.status}: {len(outcome.results)} result(s)"
    for reason in gate.unchecked:
        case = ET.SubElement(
            suite, "testcase", name=f"budget {reason.split(':')[0]}", classname="edgepipe.fleet"
        )
        ET.SubElement(case, "error", message=reason, type="NotChecked")
    root.set("errors", str(len(failed) + len(gate.unchecked)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def gate_markdown(gate: GateOutcome, failed: list[CellOutcome]) -> str:
    parts = [budgets_markdown(gate.verdicts) if gate.verdicts else "No budgets were checked.\n"]
    if gate.unchecked:
        parts.append(
            "## Budgets not checked\n\n" + "\n".join(f"- {reason}" for reason in gate.unchecked) + "\n"
        )
    if failed:
        header = ["device kind", "model", "target", "why"]
        parts.append(f"## Could not be measured\n\n{table(header, unmeasured_rows(failed))}\n")
    return "\n".join(parts)
