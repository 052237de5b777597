"""The gate's verdicts as JUnit XML: one testcase per (budget, result), failures explained in one line."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from benchmarks.budgets import Verdict


def testcase_name(verdict: Verdict) -> str:
    result = verdict.result
    return f"budgets[{verdict.index}] {verdict.budget.label}: {result.key} batch {result.batch}"


def gate_junit(verdicts: list[Verdict], suite: str = "edgepipe gate") -> str:
    failures = sum(not v.passed for v in verdicts)
    root = ET.Element("testsuites", name=suite, tests=str(len(verdicts)), failures=str(failures))
    by_device: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_device.setdefault(verdict.result.device_name, []).append(verdict)
    for device, group in by_device.items():
        suite_el = ET.SubElement(
            root,
            "testsuite",
            name=f"{suite} on {device}",
            tests=str(len(group)),
            failures=str(sum(not v.passed for v in group)),
            errors="0",
            skipped="0",
        )
        for verdict in group:
            case = ET.SubElement(
                suite_el,
                "testcase",
                name=testcase_name(verdict),
                classname=f"edgepipe.gate.{verdict.result.target}.{verdict.result.model}",
            )
            if verdict.result.family:
                properties = ET.SubElement(case, "properties")
                ET.SubElement(properties, "property", name="family", value=verdict.result.family_name)
            details = "\n".join(check.describe() for check in verdict.checks)
            if not verdict.passed:
                message = "; ".join(check.describe() for check in verdict.failures)
                failure = ET.SubElement(case, "failure", message=message, type="BudgetExceeded")
                failure.text = details
            ET.SubElement(case, "system-out").text = details
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
