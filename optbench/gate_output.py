"""The gate's checks as people and CI systems read them: the summary lines, JUnit XML, and JSON for scripts."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from optbench.gate import DISPLAY, Check, exit_code
from optbench.machines import machines
from optbench.report import Report
from optbench.table import gemm_words


def heading(run: list[Report], budget_file: Path) -> str:
    """The line above the summary: the run judged, and the machines its figures come from, each with its GEMM
    calibration (a latency limit failed on a busy machine reads as one, its GEMM far below the machine's usual)."""
    described = ", ".join(f"machine {m.key}{gemm_words(m.calibrations, ', ')}" for m in machines(run))
    return f"gating {run[0].recipe} run {run[0].run_id} ({len(run)} reports; {described}) against {budget_file}\n"


def summary(checks: list[Check], *, strict: bool) -> str:
    """A line per check (verdict first), then the counts and the exit code."""
    lines = [f"{c.verdict.upper():<12} {c.budget}: {c.reason}" for c in checks]
    counts = Counter(c.verdict for c in checks)
    code = exit_code(checks, strict=strict)
    lines.append(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['inconclusive']} inconclusive"
        f"{' (strict: inconclusive fails)' if strict and counts['inconclusive'] else ''}: exit {code}"
    )
    return "\n".join(lines) + "\n"


def junit_xml(checks: list[Check], *, strict: bool) -> str:
    """JUnit XML for CI systems: a test suite per budget, a test case per check; failing checks carry
    their reason, inconclusive ones are skipped (failures with `strict`)."""
    root = ET.Element("testsuites", name="optbench gate")
    suites: dict[str, ET.Element] = {}
    for check in checks:
        suite = suites.get(check.budget)
        if suite is None:
            suite = suites[check.budget] = ET.SubElement(root, "testsuite", name=check.budget)
        name = f"{check.limit.key} {check.limit.text}" + (f" at {check.shape}" if check.shape else "")
        case = ET.SubElement(suite, "testcase", classname=f"{check.variant}.{check.runtime}", name=name)
        if check.verdict == "fail" or (strict and check.verdict == "inconclusive"):
            ET.SubElement(case, "failure", message=check.reason, type=check.verdict)
        elif check.verdict == "inconclusive":
            ET.SubElement(case, "skipped", message=check.reason)
    for element in [root, *suites.values()]:
        cases = element.iter("testcase")
        total = list(cases)
        element.set("tests", str(len(total)))
        element.set("failures", str(sum(1 for c in total if c.find("failure") is not None)))
        element.set("skipped", str(sum(1 for c in total if c.find("skipped") is not None)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def checks_json(checks: list[Check], *, strict: bool, run: list[Report], budget_file: Path) -> str:
    """The gate's verdict for scripts: the run judged, the counts and exit code, and each check with its figure,
    interval and limit in the unit the summary lines use (`unit`); a figure that cannot be had, or an interval end
    no call bounds, is null (`unjudged` and `reason` say why)."""
    counts = Counter(c.verdict for c in checks)
    document = {
        "recipe": run[0].recipe,
        "run_id": run[0].run_id,
        "budget_file": str(budget_file),
        "strict": strict,
        # one run: each machine's one calibration (`machines`: the lowest its reports read)
        "machines": [{"machine": m.key, "calibration_gflops": m.calibrations[0]} for m in machines(run)],
        "exit_code": exit_code(checks, strict=strict),
        "counts": {verdict: counts[verdict] for verdict in ("pass", "fail", "inconclusive")},
        "checks": [_check_record(check) for check in checks],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _check_record(check: Check) -> dict[str, Any]:
    unit, scale = DISPLAY[check.limit.key]
    return {
        "budget": check.budget,
        "variant": check.variant,
        "runtime": check.runtime,
        "machine": check.machine or None,
        "limit": check.limit.key,
        "limit_written": check.limit.text,
        "limit_value": _scaled(check.limit.value, scale),
        "unit": unit.strip(),
        "shape": check.shape or None,
        "value": _scaled(check.value, scale),
        "low": _scaled(check.low, scale),
        "high": _scaled(check.high, scale),
        "verdict": check.verdict,
        "against": check.against or None,
        "unjudged": check.unjudged or None,
        "reason": check.reason,
    }


def _scaled(value: float | None, scale: float) -> float | None:
    """`value` in the summary's unit; None for none, or for an end no figure bounds (JSON has no infinity)."""
    return None if value is None or not math.isfinite(value) else value * scale
