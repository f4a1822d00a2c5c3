"""Budgets and `optbench gate`: every verdict and exit code, JUnit output, and bad budget files."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import UNKNOWN_ROW_NAMES, make_report, on_cuda_events, with_drop, with_figures

from optbench.accuracy import Drop
from optbench.budget import LIMIT_UNITS, Limit, load_budgets, parse_budget, parse_limit
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.failures import FAILURES_FILE, FailedJob, write_failures
from optbench.gate import evaluate, exit_code, newest_run, verdict
from optbench.gate_output import checks_json, heading, junit_xml, summary
from optbench.report import Report, write_report
from optbench.runtimes import RuntimeSpec

SHAPE = "batch_size = 1\nseq_len = 128\n"


def _budget(text: str, tmp_path: Path) -> Path:
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    return path


def _checks(text: str, reports: list[Report], tmp_path: Path) -> list:
    return evaluate(load_budgets(_budget(text, tmp_path)), reports)


def _run() -> list[Report]:
    """A run: the baseline at 20 ms, a chain at 4 ms (5x) with a drop of 0.5 points [+0.3, +1.4]."""
    baseline = with_figures(make_report(shapes=((1, 128),)), p50_ms=20, spread_ms=0.4, speedup=1.0, peak_rss_mb=900)
    chain = with_figures(make_report(("onnx",), shapes=((1, 128),)), p50_ms=4, spread_ms=0.08, speedup=5.0)
    return [baseline, with_drop(chain, 0.5, 0.3, 1.4)]


# --- verdicts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "low", "high", "expected"),
    [
        ("max_p50", 8.0, 9.0, "pass"),
        ("max_p50", 9.0, 11.0, "inconclusive"),
        ("max_p50", 10.5, 12.0, "fail"),
        ("max_p50", 9.0, 10.0, "pass"),  # on the limit is within it
        ("max_p50", 10.0, 12.0, "inconclusive"),  # its low end on the limit: not wholly beyond it
        ("min_speedup", 10.5, 12.0, "pass"),
        ("min_speedup", 9.0, 11.0, "inconclusive"),
        ("min_speedup", 8.0, 9.0, "fail"),
        ("min_speedup", 10.0, 12.0, "pass"),
        ("min_speedup", 8.0, 10.0, "inconclusive"),
    ],
)
def test_verdict_compares_the_whole_interval_with_the_limit(key: str, low: float, high: float, expected: str) -> None:
    assert verdict(Limit(key, 10.0, "10"), low, high) == expected


@pytest.mark.parametrize("key", list(LIMIT_UNITS))
def test_every_budget_key_is_checked_and_written_out(key: str, tmp_path: Path) -> None:
    """A limit is registered in three places (budget.LIMIT_UNITS, gate.DISPLAY, and gate._figure or a check of its
    own): a key added to the first alone failed only once a budget used it, with a KeyError."""
    example = LIMIT_UNITS[key][1]
    checks = _checks(f"[[budget]]\n{SHAPE}{key} = {example}\n", _run(), tmp_path)
    assert checks and all(check.limit.key == key for check in checks)
    assert key.removeprefix("max_").removeprefix("min_") in summary(checks, strict=False)  # each check's reason


def test_a_limit_of_zero_is_met_by_a_figure_of_zero(tmp_path: Path) -> None:
    """A limit is 0 or more: "no drop at all" is met by the reference, whose drop against itself is zero and certain."""
    (check,) = _checks('[[budget]]\nvariants = ["baseline"]\nmax_accuracy_drop = "0 points"\n', _run(), tmp_path)
    assert (check.value, check.verdict) == (0.0, "pass")


def test_a_latency_limit_within_a_tick_of_a_coarse_clock_s_readings_is_inconclusive(tmp_path: Path) -> None:
    """Every call read 10.5 us on CUDA events (0.5 us ticks): the p50 may be anywhere from 10.0 to 11.0 us, so a
    10.4 us limit is neither met nor broken; one beyond the tick is."""
    report = on_cuda_events(make_report(shapes=((1, 128),)), 10.5)
    budget = '[[budget]]\nvariants = ["baseline"]\n' + SHAPE + 'max_p50 = "{}"\n'
    verdicts = [
        _checks(budget.format(limit), [report], tmp_path)[0].verdict for limit in ("11.1 us", "10.4 us", "9.9 us")
    ]
    assert verdicts == ["pass", "inconclusive", "fail"]


def test_accuracy_drop_pass_inconclusive_and_fail(tmp_path: Path) -> None:
    chain = _run()[1]
    checks = {
        limit: _checks(f'[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "{limit}"\n', [chain], tmp_path)
        for limit in ("1.5 points", "1.0 points", "0.2 points")
    }
    assert [c[0].verdict for c in checks.values()] == ["pass", "inconclusive", "fail"]
    assert checks["0.2 points"][0].reason == (
        "baseline+onnx on torch-cpu-fp32: max_accuracy_drop 0.5 points (95% interval 0.3 to 1.4) "
        "breaks the limit 0.2 points"
    )


def test_a_variant_that_agrees_on_a_small_split_cannot_pass_a_tight_drop_budget(tmp_path: Path) -> None:
    """20 test rows with no disagreement cannot vouch for a drop below half a point (the interval is about
    +-16 points); on 2,000 rows they can vouch for 0.5 but not 0.1."""
    budget = '[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "{}"\n'
    verdicts = []
    for rows, limit in ((20, "0.5 points"), (20, "20 points"), (2000, "0.5 points"), (2000, "0.1 points")):
        logits = np.tile([[2.0, 0.0]], (rows, 1))
        drop = Drop.paired(np.zeros(rows, dtype=int), logits, logits.copy())
        agreeing = dataclasses.replace(_run()[1], drop=drop)
        (check,) = _checks(budget.format(limit), [agreeing], tmp_path)
        verdicts.append(check.verdict)
    assert verdicts == ["inconclusive", "pass", "pass", "inconclusive"]


def test_relative_accuracy_is_a_fraction_of_the_reference(tmp_path: Path) -> None:
    chain = dataclasses.replace(_run()[1])  # accuracy 1.0 on the fixture rows, drop 0.5 -> reference 1.005
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmin_relative_accuracy = "98%"\n', [chain], tmp_path)
    assert check.value == pytest.approx(1.0 / 1.005)
    assert check.low == pytest.approx((1.005 - 0.014) / 1.005) and check.verdict == "pass"
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmin_relative_accuracy = "99.5%"\n', [chain], tmp_path)
    assert check.verdict == "inconclusive"


def test_relative_accuracy_of_a_large_drop_is_a_fraction_of_the_reference_s_accuracy(tmp_path: Path) -> None:
    """Accuracy 0.5 after a drop of 30 points [25, 35]: the reference scored 0.8, so the variant keeps 62.5% of it
    (56.25% to 68.75%), not 1 - 0.30; shown in percent, as the limit is written."""
    chain = _run()[1]
    lossy = with_drop(dataclasses.replace(chain, metrics=dataclasses.replace(chain.metrics, accuracy=0.5)), 30, 25, 35)
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmin_relative_accuracy = "60%"\n', [lossy], tmp_path)
    assert (check.value, check.low, check.high) == pytest.approx((0.625, 0.5625, 0.6875))
    assert check.verdict == "inconclusive"
    assert check.reason.endswith(
        "min_relative_accuracy 62.5% of the reference (95% interval 56.25 to 68.75) straddles the limit 60%"
    )


def test_latency_speedup_memory_and_size(tmp_path: Path) -> None:
    text = (
        f'[[budget]]\nvariants = ["baseline+onnx"]\n{SHAPE}max_p50 = "5 ms"\nmax_p99 = "0.004 s"\n'
        'min_speedup = "4x"\nmax_memory = "0.5 GB"\nmax_size = "50 MB"\n'
    )
    checks = {c.limit.key: c for c in _checks(text, _run(), tmp_path)}
    assert checks["max_p50"].verdict == "pass"
    assert checks["max_p99"].verdict == "fail"  # p99 of 4 +- 0.08 ms is above 4 ms
    assert checks["max_p99"].reason.endswith("cannot bound a p99 from above: raise [bench] min_iters)")
    loose = text.replace('max_p99 = "0.004 s"', 'max_p99 = "5 ms"')
    p99 = next(c for c in _checks(loose, _run(), tmp_path) if c.limit.key == "max_p99")
    assert p99.verdict == "inconclusive" and "(95% interval 4.075 to inf)" in p99.reason  # 61 calls: no upper end
    speedup = checks["min_speedup"]
    assert speedup.verdict == "pass" and speedup.low < 5.0 < speedup.high  # both p50 intervals widen it
    assert checks["max_memory"].verdict == "fail"  # 512.5 MiB > 0.5 GB = 476.8 MiB
    memory = checks["max_memory"]
    assert (memory.value, memory.low, memory.high) == (512.5, 512.5, 512.5)  # the peak RSS at the shape, not the size
    assert checks["max_size"].verdict == "fail"  # 86.6 MiB
    assert checks["max_memory"].reason.endswith("breaks the limit 0.5 GB")


def test_a_p50_from_fewer_than_6_calls_leaves_latency_and_speedup_inconclusive(tmp_path: Path) -> None:
    baseline, chain = (with_figures(report, p50_ms=report.measurements[0].latency.p50_ms, calls=5) for report in _run())
    text = f'[[budget]]\nvariants = ["baseline+onnx"]\n{SHAPE}max_p50 = "5 ms"\nmin_speedup = "4x"\n'
    checks = {c.limit.key: c for c in _checks(text, [baseline, chain], tmp_path)}
    assert checks["max_p50"].verdict == checks["min_speedup"].verdict == "inconclusive"
    assert checks["min_speedup"].reason.endswith(
        "(95% interval 0 to inf) straddles the limit 4x (fewer than 6 timed calls cannot bound a p50: "
        "raise [bench] min_iters)"
    )


def test_a_size_is_shown_in_its_limits_unit(tmp_path: Path) -> None:
    # 86.6 MiB is 90.8 MB: "86.6 MiB breaks the limit 90 MB" read as if the gate had the comparison backwards
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmax_size = "90 MB"\n', _run(), tmp_path)
    assert check.verdict == "fail"
    assert check.reason.endswith("max_size 90.81 MB (86.6 MiB) breaks the limit 90 MB")
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmax_size = "90 MiB"\n', _run(), tmp_path)
    assert check.reason.endswith("max_size 86.6 MiB within the limit 90 MiB")


def test_a_budget_without_a_matching_report_or_shape_fails(tmp_path: Path) -> None:
    (check,) = _checks('[[budget]]\nvariants = ["baseline+tensorrt"]\nmax_size = "10 MB"\n', _run(), tmp_path)
    assert check.verdict == "fail" and "no report in the run matches" in check.reason
    text = '[[budget]]\nvariants = ["baseline"]\nbatch_size = 32\nseq_len = 128\nmax_p50 = "1 s"\n'
    (check,) = _checks(text, _run(), tmp_path)
    assert check.verdict == "fail" and "not measured at batch 32 x 128" in check.reason


def test_a_budget_that_judges_nothing_fails_every_limit(tmp_path: Path) -> None:
    """A budget that matches no report, a pattern that selects nothing and a failed job the budget selects each fail
    every limit of the budget, one line (and one JUnit case) per limit: failing only the first still exited 1, but
    the summary, JUnit and JSON dropped the other limits as if they had never been asked for."""
    limits = f'{SHAPE}max_p50 = "5 ms"\nmax_size = "1 GB"\n'
    unmatched = _checks(f'[[budget]]\nvariants = ["baseline+tensorrt"]\n{limits}', _run(), tmp_path)
    misspelt = _checks(f'[[budget]]\nvariants = ["baseline", "baselin+onnx"]\n{limits}', _run(), tmp_path)
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed")
    budget = load_budgets(_budget(f'[[budget]]\nvariants = ["baseline+onnx"]\n{limits}', tmp_path))
    failed = evaluate(budget, [_run()[0]], [crashed])
    for checks in (unmatched, [c for c in misspelt if c.value is None], failed):
        assert [(c.limit.key, c.verdict) for c in checks] == [("max_p50", "fail"), ("max_size", "fail")]


def test_a_budget_that_misses_the_run_names_what_the_run_has(tmp_path: Path) -> None:
    # a typo in a variant, or a shape the run did not time: the line lists what the budget could have named
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onx"]\nmax_size = "10 MB"\n', _run(), tmp_path)
    assert check.reason == (
        "variants ['baseline+onx'] on runtimes ['*']: max_size cannot be checked: no report in the run matches "
        "(it has baseline on torch-cpu-fp32, baseline+onnx on torch-cpu-fp32): fix the budget's variants or runtimes"
    )
    text = '[[budget]]\nvariants = ["baseline"]\nbatch_size = 1\nseq_len = 64\nmax_p50 = "1 s"\nmin_speedup = "1x"\n'
    checks = _checks(text, _run(), tmp_path)
    assert [(c.limit.key, c.verdict) for c in checks] == [("max_p50", "fail"), ("min_speedup", "fail")]
    for check in checks:
        assert check.reason.endswith("not measured at batch 1 x 64 (measured: batch 1 x 128)")


def test_each_pattern_that_selects_nothing_fails_beside_those_that_match(tmp_path: Path) -> None:
    """A misspelt pattern next to a right one passed unjudged: "no report in the run matches" was said only when
    the whole budget matched nothing, so the gate checked less than the budget said, and passed."""
    text = '[[budget]]\nvariants = ["baseline+onnx", "baselin+onnx+int8"]\nmax_size = "1 GB"\n'
    typo, judged = _checks(text, _run(), tmp_path)
    assert (judged.variant, judged.verdict) == ("baseline+onnx", "pass")
    assert (typo.variant, typo.runtime, typo.verdict) == ("variant 'baselin+onnx+int8'", "runtimes ['*']", "fail")
    assert typo.unjudged == (
        "no report in the run matches it (it has baseline on torch-cpu-fp32, baseline+onnx on torch-cpu-fp32; "
        "did you mean 'baseline+onnx'?): fix or drop it in the budget's variants"
    )
    text = '[[budget]]\nruntimes = ["torch", "onnxruntime"]\nmax_size = "1 GB"\nmax_accuracy_drop = "3 points"\n'
    checks = _checks(text, _run(), tmp_path)
    assert exit_code(checks, strict=False) == 1
    unmatched = [c for c in checks if c.verdict == "fail"]
    assert [(c.variant, c.runtime, c.limit.key) for c in unmatched] == [
        ("variants ['*']", "runtime 'onnxruntime'", "max_accuracy_drop"),
        ("variants ['*']", "runtime 'onnxruntime'", "max_size"),
    ]
    assert unmatched[0].unjudged.endswith("on torch-cpu-fp32): fix or drop it in the budget's runtimes")
    # a variant's glob written in runtimes gets no variant's name as a runtime to mean ("did you mean 'baseline'?")
    misplaced = '[[budget]]\nruntimes = ["torch", "baseline*"]\nmax_size = "1 GB"\n'
    (unmatched,) = [c for c in _checks(misplaced, _run(), tmp_path) if c.verdict == "fail"]
    assert unmatched.unjudged.endswith("on torch-cpu-fp32): fix or drop it in the budget's runtimes")
    # a pattern that selects only a failed job already fails with the failure's reason
    failed = [FailedJob("baseline+onnx-int8", "onnxruntime-cpu-fp32", "latency-1", "crashed")]
    text = '[[budget]]\nvariants = ["baseline+onnx", "baseline+onnx-int8"]\nmax_size = "1 GB"\n'
    crashed, passed = evaluate(load_budgets(_budget(text, tmp_path)), _run(), failed)
    assert (crashed.variant, crashed.unjudged, passed.verdict) == (
        failed[0].variant,
        "its latency-1 failed: crashed",
        "pass",
    )


def test_a_pattern_written_twice_that_selects_nothing_fails_once(tmp_path: Path) -> None:
    """One misspelt pattern, pasted twice, is one mistake: it fails each limit once, not once per copy (the summary
    and JUnit counted two failures)."""
    text = '[[budget]]\nvariants = ["baseline", "baselin+onnx", "baselin+onnx"]\nmax_size = "1 GB"\n'
    checks = _checks(text, _run(), tmp_path)
    assert [(c.variant, c.verdict) for c in checks] == [("variant 'baselin+onnx'", "fail"), ("baseline", "pass")]


def test_a_pattern_the_budget_s_other_patterns_leave_out_is_not_called_misspelt(tmp_path: Path) -> None:
    """A variant the run has, on a runtime the budget's runtimes leave out, was answered "did you mean
    'baseline+onnx'?" (itself) and told to fix the budget's variants: it names the runtime the run has it on."""
    onnx = with_figures(
        make_report(("onnx",), runtime=RuntimeSpec("onnxruntime"), shapes=((1, 128),)), p50_ms=4, spread_ms=0.08
    )
    text = '[[budget]]\nvariants = ["baseline", "baseline+onnx"]\nruntimes = ["torch"]\nmax_size = "1 GB"\n'
    unmatched, judged = _checks(text, [_run()[0], onnx], tmp_path)
    assert (judged.variant, judged.verdict) == ("baseline", "pass")
    assert (unmatched.variant, unmatched.runtime, unmatched.verdict) == (
        "variant 'baseline+onnx'",
        "runtimes ['torch']",
        "fail",
    )
    assert unmatched.unjudged == (
        "no report in the run matches it with the budget's runtimes (it has baseline+onnx on onnxruntime-cpu-fp32 "
        "for it): fix or drop it in the budget's variants, or fix its runtimes"
    )
    text = '[[budget]]\nvariants = ["baseline"]\nruntimes = ["torch", "onnxruntime"]\nmax_size = "1 GB"\n'
    unmatched, _ = _checks(text, [_run()[0], onnx], tmp_path)
    assert unmatched.unjudged.startswith("no report in the run matches it with the budget's variants (it has ")


def test_a_check_that_cannot_be_judged_keeps_its_shape_apart_from_why(tmp_path: Path) -> None:
    """The shape is the budget's whether or not the run measured it (compare matches checks by it, CI systems
    track JUnit cases by name); why the figure cannot be had is said apart."""
    text = '[[budget]]\nvariants = ["baseline"]\nbatch_size = 1\nseq_len = 64\nmax_p50 = "1 s"\n'
    text += '[[budget]]\nvariants = ["baseline+onnx"]\n' + SHAPE + 'max_memory = "1 GB"\n'
    text += '[[budget]]\nvariants = ["baseline+tensorrt"]\n' + SHAPE + 'max_memory = "1 GB"\n'
    failed = [FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed")]
    unmeasured, crashed, unmatched = evaluate(load_budgets(_budget(text, tmp_path)), _run()[:1], failed)
    assert unmeasured.shape == "batch 1 x 64"
    assert unmeasured.unjudged == "not measured at batch 1 x 64 (measured: batch 1 x 128)"
    assert (crashed.shape, crashed.unjudged) == ("batch 1 x 128", "its latency-1 failed: crashed")
    assert unmatched.shape == "batch 1 x 128" and unmatched.unjudged.startswith("no report in the run matches")
    cases = ET.fromstring(junit_xml([unmeasured, crashed, unmatched], strict=False)).iter("testcase")
    assert [case.get("name") for case in cases] == [
        "max_p50 1 s at batch 1 x 64",
        "max_memory 1 GB at batch 1 x 128",
        "max_memory 1 GB at batch 1 x 128",
    ]


def test_patterns_select_variants_and_runtimes(tmp_path: Path) -> None:
    checks = _checks(
        '[[budget]]\nvariants = ["baseline*"]\nruntimes = ["torch-cpu-*"]\nmax_size = "1 GB"\n', _run(), tmp_path
    )
    assert sorted(c.variant for c in checks) == ["baseline", "baseline+onnx"]
    assert _checks('[[budget]]\nruntimes = ["onnxruntime"]\nmax_size = "1 GB"\n', _run(), tmp_path)[0].verdict == "fail"


@pytest.mark.parametrize(
    ("limits", "strict", "code"),
    [
        ('max_accuracy_drop = "2 points"', False, 0),
        ('max_accuracy_drop = "1 points"', False, 3),
        ('max_accuracy_drop = "1 points"', True, 1),
        ('max_accuracy_drop = "0.1 points"', False, 1),
        ('max_accuracy_drop = "1 points"\nmax_size = "1 MB"', False, 1),  # a failure outranks inconclusive
    ],
)
def test_exit_codes(limits: str, strict: bool, code: int, tmp_path: Path) -> None:
    checks = _checks(f'[[budget]]\nvariants = ["baseline+onnx"]\n{limits}\n', _run(), tmp_path)
    assert exit_code(checks, strict=strict) == code


def test_junit_counts_failures_and_skips_inconclusive(tmp_path: Path) -> None:
    text = '[[budget]]\nname = "release"\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 points"\n'
    text += 'max_size = "1 MB"\n'
    checks = _checks(text + '[[budget]]\nmax_size = "1 GB"\n', _run(), tmp_path)
    root = ET.fromstring(junit_xml(checks, strict=False))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    assert root.get("name") == "optbench gate"
    suite = root.find("testsuite[@name='release']")
    failure = suite.find("testcase/failure")
    assert failure.get("message").startswith("baseline+onnx on torch-cpu-fp32: max_size 90.81 MB (86.6 MiB) breaks")
    # an inconclusive check says why, as a failing one does (a CI system shows a skip's message)
    assert (
        suite.find("testcase/skipped").get("message").startswith("baseline+onnx on torch-cpu-fp32: max_accuracy_drop")
    )
    # CI systems group cases by class: the variant and runtime judged
    assert [case.get("classname") for case in root.iter("testcase")] == [
        "baseline+onnx.torch-cpu-fp32",
        "baseline+onnx.torch-cpu-fp32",
        "baseline.torch-cpu-fp32",
        "baseline+onnx.torch-cpu-fp32",
    ]
    strict = ET.fromstring(junit_xml(checks, strict=True))
    assert (strict.get("failures"), strict.get("skipped")) == ("2", "0")
    # a limit of the whole model is named without a shape; an inconclusive check failed by --strict says so
    assert [case.get("name") for case in root.iter("testcase")] == [
        "max_accuracy_drop 1 points",
        "max_size 1 MB",
        "max_size 1 GB",
        "max_size 1 GB",
    ]
    assert [failure.get("type") for failure in strict.iter("failure")] == ["inconclusive", "fail"]


def test_the_summary_states_the_exit_code_strict_gives(tmp_path: Path) -> None:
    """Its last line promises the exit code: with --strict an inconclusive check fails, and it says exit 1, not 3."""
    checks = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 points"\n', _run(), tmp_path)
    assert summary(checks, strict=False).splitlines()[-1] == "0 passed, 0 failed, 1 inconclusive: exit 3"
    assert summary(checks, strict=True).splitlines()[-1] == (
        "0 passed, 0 failed, 1 inconclusive (strict: inconclusive fails): exit 1"
    )
    passing = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', _run(), tmp_path)
    assert summary(passing, strict=True).splitlines()[-1] == "1 passed, 0 failed, 0 inconclusive: exit 0"


def test_the_newest_run_is_gated() -> None:
    old, new = make_report(run_id="a"), dataclasses.replace(make_report(run_id="b"), created_at="2027-01-01T00:00:00")
    assert newest_run([new, old]) == [new]
    same_second = dataclasses.replace(make_report(run_id="c"), created_at=new.created_at)
    assert newest_run([new, same_second, old]) == [same_second]  # two runs published in one second: one judged
    with pytest.raises(OptbenchError, match="no optbench reports to gate"):
        newest_run([])
    earlier_id = dataclasses.replace(make_report(run_id="0"), created_at="2027-02-01T00:00:00")
    assert newest_run([earlier_id, new]) == [earlier_id]  # the newest by time, whatever its id sorts as


# --- bad budget files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[budget]]\nmax_latency = "5 ms"\n', r"unknown key\(s\) \['max_latency'\]"),
        (
            '[[budget]]\nmax_size = "1 GB"\n[[budget]]\nname = "latency"\nmax_latency = "5 ms"\n',
            r"\['max_latency'\] in .* \[\[budget\]\] #2 \(latency\): known keys",
        ),
        ('[[budget]]\nmax_size = "5 ms"\n', r"max_size = \"5 ms\": the unit must be one of \['gb', 'gib'"),
        (f'[[budget]]\n{SHAPE}max_p50 = "5 MB"\n', r"max_p50 = \"5 MB\": the unit must be one of \['ms', 's', 'us'\]"),
        (f"[[budget]]\n{SHAPE}max_p50 = 5\n", r"max_p50 = 5 has no unit: write it with one, e.g. max_p50 = \"10 ms\""),
        ('[[budget]]\nmax_accuracy_drop = "1%"\n', r"the unit must be one of \['point', 'points', 'pp', 'pt'\]"),
        ('[[budget]]\nmin_speedup = "fast"\n', "is not a number with a unit"),
        (f'[[budget]]\n{SHAPE}max_p50 = "1e999 ms"\n', r'max_p50 = "1e999 ms" is not a finite number: e.g. max_p50 ='),
        ('[[budget]]\nmax_size = "-5 MB"\n', r'max_size = "-5 MB" is negative: a limit is 0 or more, e.g. max_size ='),
        ('[[budget]]\nmax_size = "1 GB 500 MB"\n', r"max_size = \"1 GB 500 MB\": the unit must be one of"),
        (
            '[[budget]]\nmax_size = "40 Mb"\n',
            r'"40 Mb": Mb reads as Mbits, and a size is in bytes: write max_size = "40 MB"',
        ),
        (
            f'[[budget]]\n{SHAPE}max_memory = "2 gib"\n',
            r'"2 gib": gib reads as gibits, and a size is in bytes: write max_memory = "2 GiB"',
        ),
        ('[[budget]]\nmax_accuracy_drop = "-1e999 points"\n', r"\"-1e999 points\" is not a finite number"),
        ('[[budget]]\nmax_p50 = "5 ms"\n', r"hold at one shape: add batch_size = 1 and seq_len = 128"),
        ('[[budget]]\nbatch_size = 1\nmax_p50 = "5 ms"\n', r"hold at one shape: add batch_size = 1 and seq_len = 128"),
        ('[[budget]]\nname = "empty"\n', "sets no limit"),
        (
            '[[budget]]\nname = 3\nmax_size = "1 GB"\n',
            r"#1 name = 3: give the text the gate shows for it, e\.g\. name =",
        ),
        ('[[budget]]\nname = " "\nmax_size = "1 GB"\n', r"#1 name = \" \": give the text the gate shows for it"),
        ('[[budget]]\nvariants = []\nmax_size = "1 GB"\n', "give a list of names or patterns"),
        ('[limits]\nmax_size = "1 GB"\n', r"unknown key\(s\) \['limits'\]"),
        ("# nothing here\n", "has no budgets"),
        (
            '[budget]\nmax_size = "1 GB"\n',
            r"\[budget\] is one table, not a list of budgets: write \[\[budget\]\], with two",
        ),
        ("[[budget]\n", "is not valid TOML"),
        (
            '[[budget]]\nbatch_size = 99999999999999999999\nseq_len = 128\nmax_p50 = "1 ms"\n',
            r"not valid TOML: budget #1\.batch_size = 99999999999999999999 is beyond TOML's 64-bit integers",
        ),
        ("budget = [1, 2]\n", "budget must be \\[\\[budget\\]\\] tables"),
    ],
)
def test_bad_budget_files_are_refused_with_the_fix(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_budgets(_budget(text, tmp_path))


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("max_p50", "2 s", 2000.0),
        ("max_p50", "250 us", 0.25),
        ("max_p99", "3 ms", 3.0),
        ("max_memory", "1.5 GiB", 1536.0),
        ("max_memory", "1.5 GB", 1.5e9 / 2**20),
        ("max_memory", "512 MiB", 512.0),
        ("max_memory", "40 MB", 40e6 / 2**20),
        ("max_size", "2048 KiB", 2.0),
        ("max_size", "1000 KB", 1e6 / 2**20),
        ("max_accuracy_drop", "0.5 pp", 0.5),
        ("max_accuracy_drop", "0.5 pt", 0.5),
        ("min_relative_accuracy", "99.9%", 0.999),
        ("min_speedup", "1.5x", 1.5),
    ],
)
def test_every_unit_converts_to_the_unit_reports_use(key: str, text: str, value: float) -> None:
    """Reports give ms, MiB, points, x and relative accuracy as a fraction: a GiB read as a GB, or a KB as a KiB,
    moved the limit by 2 to 7% and the gate judged against a limit the budget did not set."""
    assert parse_limit(key, text, "b").value == pytest.approx(value)


@pytest.mark.parametrize(
    ("runtime", "hint"),
    [
        ("onxruntime", "did you mean 'onnxruntime'?"),
        ("onnxruntime-cpu-fp23", "did you mean 'onnxruntime-cpu-fp32' or 'onnxruntime-cpu-fp16'?"),
        ("torch-gpu-fp32-compile", "did you mean 'torch-cpu-fp32-compile'?"),  # the options kept
        ("torch-cpu-fp16", "did you mean 'torch-cuda-fp16' or 'torch-cpu-fp32'?"),  # torch on the CPU runs fp32 only
        ("TensorRT", "did you mean 'tensorrt'?"),
    ],
)
def test_a_runtime_that_names_no_runtime_is_refused(runtime: str, hint: str, tmp_path: Path) -> None:
    """A typo matched no report, so the gate failed as if the model had regressed (exit 1): it is bad input."""
    text = f'[[budget]]\nruntimes = ["torch", "{runtime}"]\nmax_size = "1 GB"\n'
    with pytest.raises(OptbenchError) as refused:
        load_budgets(_budget(text, tmp_path))
    message = str(refused.value)
    assert f"runtimes: {runtime!r} names no runtime: give one of ['onnxruntime', 'tensorrt', 'torch']" in message
    assert "onnxruntime-cpu-fp32" in message and message.endswith(hint)


@pytest.mark.parametrize(
    ("runtime", "options", "hint"),
    [
        ("torch-cpu-fp32-compil", "compil", "; did you mean 'torch-cpu-fp32-compile'?"),
        (
            "onnxruntime-cuda-fp16-tensorrt-trt-int9",
            "tensorrt-trt-int9",
            "; did you mean 'onnxruntime-cuda-fp16-tensorrt-trt-int8'?",
        ),
    ],
)
def test_a_runtime_label_with_options_the_runtime_lacks_is_refused(
    runtime: str, options: str, hint: str, tmp_path: Path
) -> None:
    """The options were not checked: such a label matched no report, and the gate failed as if the model had
    regressed (exit 1)."""
    text = f'[[budget]]\nruntimes = ["torch", "{runtime}"]\nmax_size = "1 GB"\n'
    with pytest.raises(OptbenchError) as refused:
        load_budgets(_budget(text, tmp_path))
    message = str(refused.value)
    base = runtime.removesuffix(f"-{options}")
    assert f"runtimes: {runtime!r}: {base} has no options {options!r}: give one of ['{base}', " in message
    assert f'or a glob such as "{base}-*"{hint}' in message


@pytest.mark.parametrize(
    ("runtime", "refusal"),
    [
        (
            "torch-cpu-fp32-cuda-graphs",
            "torch-cuda-graphs does not run on cpu/fp32, only on cuda/bf16, cuda/fp16, cuda/fp32: give one of "
            "['torch-cuda-bf16-cuda-graphs', 'torch-cuda-fp16-cuda-graphs', 'torch-cuda-fp32-cuda-graphs'], or one "
            "of torch-cpu-fp32's own labels; did you mean 'torch-cuda-fp32-cuda-graphs'?",
        ),
        (
            "onnxruntime-cuda-bf16-tensorrt-trt-int8",
            "onnxruntime-tensorrt-trt-int8 does not run on cuda/bf16, only on cuda/fp16, cuda/fp32: give one of "
            "['onnxruntime-cuda-fp16-tensorrt-trt-int8', 'onnxruntime-cuda-fp32-tensorrt-trt-int8'], or one of "
            "onnxruntime-cuda-bf16's own labels; did you mean 'onnxruntime-cuda-fp16-tensorrt-trt-int8'?",
        ),
    ],
)
def test_a_runtime_label_with_options_that_run_on_another_device_or_precision_names_where(
    runtime: str, refusal: str, tmp_path: Path
) -> None:
    """CUDA graphs asked of torch on the CPU were answered 'torch-cpu-fp32 has no options' and 'did you mean
    torch-cpu-fp32-compile?', another option, as if the option were misspelt: the label is refused saying where
    they run, and suggests the label there."""
    text = f'[[budget]]\nruntimes = ["{runtime}"]\nmax_size = "1 GB"\n'
    with pytest.raises(OptbenchError) as refused:
        load_budgets(_budget(text, tmp_path))
    assert str(refused.value).endswith(f"runtimes: {runtime!r}: {refusal}")


def test_runtime_names_labels_with_options_and_globs_are_read() -> None:
    runtimes = ["torch", "onnxruntime-cuda-fp16-tensorrt-trt-int8", "torch-cpu-fp32-compile", "onx*", "tensorrt-[cg]*"]
    runtimes += ["torch-compile", "onnxruntime-tensorrt-trt-int8"]  # as the report's runtime column shows them
    assert parse_budget({"runtimes": runtimes, "max_size": "1 GB"}, "b").runtimes == tuple(runtimes)


@pytest.mark.parametrize(
    ("runtime", "picked"),
    [("torch-compile", ["torch-cpu-fp32-compile"]), ("torch", ["torch-cpu-fp32", "torch-cpu-fp32-compile"])],
)
def test_a_runtime_named_as_the_report_s_runtime_column_shows_it_picks_its_rows(
    runtime: str, picked: list[str], tmp_path: Path
) -> None:
    """The report's runtime column says `torch-compile` (and `report --against` takes it): a budget naming it was
    refused as naming no runtime, though the table the user copied it from shows it."""
    compiled = with_figures(
        make_report(runtime=RuntimeSpec("torch", options={"compile": True}), shapes=((1, 128),)),
        p50_ms=10,
        spread_ms=0.2,
    )
    checks = _checks(f'[[budget]]\nruntimes = ["{runtime}"]\nmax_size = "1 GB"\n', [*_run()[:1], compiled], tmp_path)
    assert sorted(c.runtime for c in checks) == picked


def test_bad_shape_values_are_refused() -> None:
    with pytest.raises(OptbenchError, match="batch_size = 0: give a positive integer"):
        parse_budget({"batch_size": 0, "seq_len": 128, "max_p50": "1 ms"}, "b")
    with pytest.raises(OptbenchError, match='seq_len = "long"'):
        parse_budget({"batch_size": 1, "seq_len": "long", "max_p50": "1 ms"}, "b")
    with pytest.raises(OptbenchError, match="seq_len = true: give a positive integer"):
        parse_budget({"batch_size": 1, "seq_len": True, "max_p50": "1 ms"}, "b")
    with pytest.raises(OptbenchError, match="seq_len = 0: give a positive integer"):
        parse_budget({"batch_size": 1, "seq_len": 0, "max_p50": "1 ms"}, "b")
    with pytest.raises(OptbenchError, match="batch_size = true: give a positive integer"):  # judged batch 1
        parse_budget({"batch_size": True, "seq_len": 128, "max_p50": "1 ms"}, "b")


def test_the_smallest_shape_is_read() -> None:
    budget = parse_budget({"batch_size": 1, "seq_len": 1, "max_p50": "1 ms"}, "b")
    assert (budget.batch_size, budget.seq_len) == (1, 1)


def test_a_budget_at_the_data_s_own_lengths_judges_that_measurement(tmp_path: Path) -> None:
    """seq_len = "data", as a recipe's seq_lens has it, is a shape of its own, not a bad value."""
    text = '[[budget]]\nvariants = ["baseline"]\nbatch_size = 8\nseq_len = "data"\nmax_p50 = "1 s"\n'
    (check,) = _checks(text, [make_report()], tmp_path)
    assert (check.shape, check.value, check.verdict) == ("batch 8 x data", 12.0, "pass")


def test_a_budget_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[budget]]\nname = "café"\nmax_size = "1 GB"\n'.encode("latin-1"))
    with pytest.raises(OptbenchError, match="is not UTF-8 text"):
        load_budgets(path)


def test_relative_accuracy_of_a_reference_that_scored_nothing_cannot_be_checked(tmp_path: Path) -> None:
    chain = _run()[1]
    nothing = dataclasses.replace(
        chain,
        metrics=dataclasses.replace(chain.metrics, accuracy=0.0),
        drop=dataclasses.replace(chain.drop, points=0.0, ci_low=0.0, ci_high=0.0),
    )
    (check,) = _checks('[[budget]]\nvariants = ["baseline+onnx"]\nmin_relative_accuracy = "98%"\n', [nothing], tmp_path)
    assert check.verdict == "fail" and "its reference scored 0 accuracy" in check.reason


def test_a_figure_without_a_number_fails_rather_than_being_inconclusive(tmp_path: Path) -> None:
    chain = _run()[1]
    unknown = dataclasses.replace(chain, drop=dataclasses.replace(chain.drop, ci_high=float("nan")))
    (check,) = _checks(
        '[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', [unknown], tmp_path
    )
    assert check.verdict == "fail" and "holds no number for this figure (NaN)" in check.reason


# --- the command ------------------------------------------------------------------------------------------


def _results(tmp_path: Path) -> Path:
    for report in _run():
        write_report(report, tmp_path / "results" / "demo" / report.run_id)
    return tmp_path / "results"


def test_cli_exit_codes_reasons_and_junit(tmp_path: Path, capsys) -> None:
    results = _results(tmp_path)
    passing = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', tmp_path)
    assert main(["gate", "--budget", str(passing), str(results)]) == 0
    assert "1 passed, 0 failed, 0 inconclusive: exit 0" in capsys.readouterr().out
    inconclusive = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 points"\n', tmp_path)
    assert main(["gate", "--budget", str(inconclusive), str(results)]) == 3
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--budget", str(inconclusive), str(results), "--strict", "--junit", str(junit)]) == 1
    assert ET.parse(junit).getroot().get("failures") == "1"
    assert capsys.readouterr().out.endswith("0 passed, 0 failed, 1 inconclusive (strict: inconclusive fails): exit 1\n")
    failing = _budget(f'[[budget]]\nvariants = ["baseline+onnx"]\n{SHAPE}min_speedup = "6x"\n', tmp_path)
    assert main(["gate", "--budget", str(failing), str(results)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "min_speedup 5x" in out and "breaks the limit 6x" in out


def test_the_gate_names_each_machine_of_the_run_with_its_gemm_calibration(tmp_path: Path, capsys) -> None:
    """A max_p50 failed on a busy CI runner read as a slow model: the gate's output said nothing of the machine.
    Each machine is named with the lowest GEMM calibration its reports read (a resumed run's may read two)."""

    def on(report: Report, machine: str | None, gflops: float | None) -> Report:
        return dataclasses.replace(
            report, environment={**report.environment, "machine": machine, "calibration_gflops": gflops}
        )

    baseline, chain = _run()
    second = make_report(("prune",), shapes=((1, 128),))
    run = [on(baseline, "box-1", 167.46), on(chain, "box-1", 11.2), on(second, None, None)]
    assert heading(run, Path("b.toml")) == (
        "gating demo run 20261130T031500Z-3f9a (3 reports; machine box-1, GEMM 11.2 GFLOP/s, machine unknown) "
        "against b.toml\n"
    )
    for report in run:
        write_report(report, tmp_path / "results" / "demo" / report.run_id)
    budget, verdict = (
        _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', tmp_path),
        tmp_path / "g.json",
    )
    assert main(["gate", "--budget", str(budget), str(tmp_path / "results"), "--json", str(verdict)]) == 0
    assert capsys.readouterr().out.startswith(
        "gating demo run 20261130T031500Z-3f9a (3 reports; machine box-1, GEMM 11.2"
    )
    assert json.loads(verdict.read_text())["machines"] == [
        {"machine": "box-1", "calibration_gflops": 11.2},
        {"machine": "unknown", "calibration_gflops": None},
    ]


def test_cli_json_gives_a_script_the_verdict_and_each_figure(tmp_path: Path, capsys) -> None:
    """A CI script read the verdict from the summary lines or JUnit's messages; --json gives it the figures."""
    results = _results(tmp_path)
    text = f'[[budget]]\nname = "ship"\nvariants = ["baseline+onnx"]\n{SHAPE}max_accuracy_drop = "1 points"\n'
    text += 'min_relative_accuracy = "90%"\nmax_p50 = "3 ms"\n'
    text += '[[budget]]\nvariants = ["baseline+onx"]\nmax_size = "1 GB"\n'  # matches nothing: unjudged
    budget, verdict = _budget(text, tmp_path), tmp_path / "out" / "gate.json"
    assert main(["gate", "--budget", str(budget), str(results), "--json", str(verdict)]) == 1
    document = json.loads(verdict.read_text())
    run = _run()
    assert (document["recipe"], document["run_id"]) == (run[0].recipe, run[0].run_id)
    assert (document["budget_file"], document["strict"], document["exit_code"]) == (str(budget), False, 1)
    assert document["counts"] == {"pass": 1, "fail": 2, "inconclusive": 1}
    assert document["machines"] == [{"machine": "box-1", "calibration_gflops": None}]  # the fixture has no GEMM
    drop, relative, p50, unmatched = document["checks"]
    assert drop["budget"] == "ship" and drop["variant"] == "baseline+onnx" and drop["runtime"] == "torch-cpu-fp32"
    assert (drop["limit"], drop["limit_written"], drop["limit_value"], drop["unit"]) == (
        "max_accuracy_drop",
        "1 points",
        1.0,
        "points",
    )
    assert (drop["value"], drop["low"], drop["high"], drop["verdict"]) == (0.5, 0.3, 1.4, "inconclusive")
    assert drop["shape"] is None and drop["unjudged"] is None and drop["reason"].startswith("baseline+onnx on torch")
    assert (relative["unit"], relative["limit_value"], relative["verdict"]) == ("% of the reference", 90.0, "pass")
    assert (relative["value"], relative["low"]) == (pytest.approx(99.502488), pytest.approx(98.606965))
    assert (drop["machine"], unmatched["machine"]) == ("box-1", None)  # no report: no machine
    assert (p50["limit"], p50["unit"], p50["shape"], p50["value"]) == ("max_p50", "ms", "batch 1 x 128", 4.0)
    assert p50["verdict"] == "fail"
    assert (unmatched["value"], unmatched["low"], unmatched["high"], unmatched["verdict"]) == (None, None, None, "fail")
    assert "matches" in unmatched["unjudged"] and unmatched["variant"] == "variants ['baseline+onx']"
    assert "FAIL" in capsys.readouterr().out  # the summary is printed as without --json
    assert main(["gate", "--budget", str(budget), str(results), "--json", str(verdict), "--strict"]) == 1
    assert json.loads(verdict.read_text())["strict"] is True
    inconclusive = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 points"\n', tmp_path)
    for strict, code in (([], 3), (["--strict"], 1)):  # as the command exits
        assert main(["gate", "--budget", str(inconclusive), str(results), "--json", str(verdict), *strict]) == code
        assert json.loads(verdict.read_text())["exit_code"] == code


def test_json_names_the_row_a_speedup_is_against(tmp_path: Path) -> None:
    """speedup_against's row, or null for the run's reference, which goes without saying."""
    run = _gpu_run()
    budget = (
        AGAINST_BUDGET
        + f'[[budget]]\nvariants = ["baseline"]\nruntimes = ["torch-cuda-fp16"]\n{SHAPE}min_speedup = "2x"\n'
    )
    checks = evaluate(load_budgets(_budget(budget, tmp_path)), run)
    records = json.loads(checks_json(checks, strict=False, run=run, budget_file=tmp_path / "budgets.toml"))["checks"]
    assert [(r["runtime"], r["against"]) for r in records] == [
        ("torch-cpu-fp32", "baseline/torch/cuda/fp32"),
        ("torch-cuda-fp32", "baseline/torch/cuda/fp32"),
        ("torch-cuda-fp16", "baseline/torch/cuda/fp32"),
        ("torch-cuda-fp16", None),
    ]


def test_cli_json_writes_an_unbounded_end_as_null(tmp_path: Path) -> None:
    """JSON has no infinity: json.dumps wrote the invalid token Infinity for a p99 that too few calls bound."""
    report = with_figures(make_report(("onnx",), shapes=((1, 128),)), p50_ms=4, spread_ms=0.08, calls=20)
    assert math.isinf(report.measurements[0].latency.p99_ci_high)  # 20 calls cannot bound a p99 from above
    write_report(report, tmp_path / "results" / "demo" / report.run_id)
    budget = _budget(f'[[budget]]\nvariants = ["baseline+onnx"]\n{SHAPE}max_p99 = "1 s"\n', tmp_path)
    verdict = tmp_path / "gate.json"
    assert main(["gate", "--budget", str(budget), str(tmp_path / "results"), "--json", str(verdict)]) == 3
    # json.loads takes the invalid token Infinity: parse_constant refuses it
    document = json.loads(verdict.read_text(), parse_constant=lambda token: pytest.fail(f"{token} in the JSON"))
    (check,) = document["checks"]
    assert check["high"] is None and check["low"] is not None and check["verdict"] == "inconclusive"


def test_cli_junit_and_json_on_one_file_are_refused(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _results(tmp_path)
    budget = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', tmp_path)
    same = tmp_path / "gate.out"
    assert main(["gate", "--budget", str(budget), str(results), "--junit", str(same), "--json", str(same)]) == 2
    assert f"--junit {same} and --json {same} name one file: give each its own file" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # relative and absolute
    assert main(["gate", "--budget", str(budget), str(results), "--junit", same.name, "--json", str(same)]) == 2
    assert f"--junit {same.name} and --json {same} name one file: give each its own file" in capsys.readouterr().err
    assert not same.exists()
    junit = tmp_path / "gate.xml"  # refused before anything is written, --junit's file too
    assert main(["gate", "--budget", str(budget), str(results), "--junit", str(junit), "--json", str(budget)]) == 2
    assert f"--json: {budget} is a file this command reads" in capsys.readouterr().err
    assert not junit.exists()


def test_a_report_without_its_model_size_fails_the_size_limit_saying_so(tmp_path: Path, capsys) -> None:
    """A report whose artifact lacks size_mb (edited by hand, or another tool's) crashed gate and compare --budget
    with a KeyError; its size limit cannot be checked, and fails as any figure the gate cannot have does."""
    results = _results(tmp_path)
    (path,) = results.glob("demo/*/baseline+onnx.*.json")
    data = json.loads(path.read_text())
    del data["artifact"]["size_mb"]
    path.write_text(json.dumps(data))
    budget = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_size = "1 GB"\n', tmp_path)
    assert main(["gate", "--budget", str(budget), str(results)]) == 1
    why = "max_size cannot be checked: the report holds no model size (artifact.size_mb): re-run the recipe"
    assert f"FAIL         #1: baseline+onnx on torch-cpu-fp32: {why}" in capsys.readouterr().out
    assert main(["compare", str(results), str(results), "--budget", str(budget)]) == 0


def test_a_failed_job_of_the_run_fails_the_budgets_that_select_it(tmp_path: Path, capsys) -> None:
    results = _results(tmp_path)
    (run,) = (results / "demo").iterdir()
    write_failures(
        [
            FailedJob("baseline+onnx-int8", "onnxruntime-cpu-fp32", "latency-3", "crashed with SIGSEGV"),
            FailedJob("baseline+student", "", "step distill", "out of memory"),
        ],
        run,
        run.name,
    )
    every = '[[budget]]\nname = "every"\nvariants = ["*"]\nruntimes = ["onnxruntime"]\nmax_size = "1 GB"\n'
    every = _budget(every, tmp_path)
    assert main(["gate", "--budget", str(every), str(results)]) == 1
    out = capsys.readouterr().out
    crashed = "max_size cannot be checked: its latency-3 failed: crashed with SIGSEGV"
    assert f"FAIL         every: baseline+onnx-int8 on onnxruntime-cpu-fp32: {crashed}" in out
    assert "baseline+student on -: max_size cannot be checked: its step distill failed: out of memory" in out
    torch_only = _budget(
        '[[budget]]\nvariants = ["baseline+onnx*"]\nruntimes = ["torch"]\nmax_size = "1 GB"\n', tmp_path
    )
    assert main(["gate", "--budget", str(torch_only), str(run)]) == 0  # the failed job was on another runtime
    renamed = run.rename(results / "demo" / "release-candidate")  # failures.json found beside the reports
    every = _budget('[[budget]]\nvariants = ["*"]\nruntimes = ["onnxruntime"]\nmax_size = "1 GB"\n', tmp_path)
    capsys.readouterr()
    for where in (results, renamed / "baseline.torch-cpu-fp32.json"):
        assert main(["gate", "--budget", str(every), str(where)]) == 1
        assert crashed in capsys.readouterr().out
    assert main(["gate", "--budget", str(every), str(renamed)]) == 1
    alone = capsys.readouterr().out.splitlines()
    shutil.copytree(renamed, results / "backup" / renamed.name)  # one run in two folders: counted once
    assert main(["gate", "--budget", str(every), str(results)]) == 1
    out = capsys.readouterr().out
    assert out.count(crashed) == 1
    assert out.splitlines()[0] == alone[0] and out.splitlines()[-1] == alone[-1]  # its reports and checks once
    elsewhere = tmp_path / "elsewhere"  # a report copied beside another run's failures.json
    write_failures([FailedJob("baseline", "torch-cpu-fp32", "accuracy-1", "killed")], elsewhere, "another-run")
    shutil.copy(renamed / "baseline.torch-cpu-fp32.json", elsewhere)
    torch_only = _budget('[[budget]]\nvariants = ["baseline"]\nruntimes = ["torch"]\nmax_size = "1 GB"\n', tmp_path)
    assert main(["gate", "--budget", str(torch_only), str(elsewhere)]) == 0
    assert "killed" not in capsys.readouterr().out


def test_a_failures_file_that_links_to_nothing_stops_the_gate(tmp_path: Path, capsys) -> None:
    """Given a report file, the gate looks for its run's failures.json beside it: one that links to nothing was
    passed over as if the run had recorded no failure, and a budget over every variant passed (exit 0) though the
    run's failed jobs could not be read. Given the folder, the walk over its JSON files already refused it."""
    results = _results(tmp_path)
    (run,) = (results / "demo").iterdir()
    (run / FAILURES_FILE).symlink_to(tmp_path / "moved" / FAILURES_FILE)
    every = _budget('[[budget]]\nvariants = ["*"]\nmax_size = "1 GB"\n', tmp_path)
    for where in (run / "baseline.torch-cpu-fp32.json", results):
        assert main(["gate", "--budget", str(every), str(where)]) == 2
        err = capsys.readouterr().err
        assert f"cannot read {run / FAILURES_FILE} (No such file or directory): delete or restore" in err


def test_a_budget_whose_only_job_failed_fails_once_with_the_failure(tmp_path: Path, capsys) -> None:
    """Its failure's line came with a second, "no report in the run matches ...: fix the budget's variants or
    runtimes", though the budget was right: one failure counted twice (in the gate, and in JUnit), half of it
    with wrong advice. A budget that matches nothing and no failure still gets that advice."""
    results = _results(tmp_path)
    (run,) = (results / "demo").iterdir()
    write_failures([FailedJob("baseline+onnx-int8", "onnxruntime-cpu-fp32", "latency-1", "crashed")], run, run.name)
    text = '[[budget]]\nname = "int8"\nvariants = ["baseline+onnx-int8"]\nmax_size = "1 GB"\n'
    text += '[[budget]]\nname = "typo"\nvariants = ["baseline+onx"]\nmax_size = "1 GB"\n'
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--budget", str(_budget(text, tmp_path)), str(results), "--junit", str(junit)]) == 1
    _, int8, typo, counts = capsys.readouterr().out.splitlines()  # after the line naming the run
    crashed = "baseline+onnx-int8 on onnxruntime-cpu-fp32: max_size cannot be checked: its latency-1 failed: crashed"
    assert int8 == f"FAIL         int8: {crashed}"
    assert typo.startswith("FAIL         typo: variants ['baseline+onx'] on runtimes ['*']: max_size cannot be ")
    assert typo.endswith("fix the budget's variants or runtimes")
    assert counts == "0 passed, 2 failed, 0 inconclusive: exit 1"
    suites = {suite.get("name"): suite.get("failures") for suite in ET.parse(junit).getroot().iter("testsuite")}
    assert suites == {"int8": "1", "typo": "1"}


def test_cli_a_misspelt_pattern_beside_a_right_one_exits_1_and_fails_in_junit(tmp_path: Path, capsys) -> None:
    text = '[[budget]]\nname = "ship"\nvariants = ["baseline+onnx", "baselin+onnx+int8"]\nmax_size = "1 GB"\n'
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--budget", str(_budget(text, tmp_path)), str(_results(tmp_path)), "--junit", str(junit)]) == 1
    _, typo, judged, counts = capsys.readouterr().out.splitlines()
    assert typo.startswith("FAIL         ship: variant 'baselin+onnx+int8' on runtimes ['*']: max_size cannot be")
    assert judged.startswith("PASS         ship: baseline+onnx on torch-cpu-fp32: max_size")
    assert counts == "1 passed, 1 failed, 0 inconclusive: exit 1"
    (failure,) = ET.parse(junit).getroot().iter("failure")
    assert failure.get("message") == typo.removeprefix("FAIL         ship: ")


def test_cli_bad_budget_exits_2_and_writes_no_junit(tmp_path: Path, capsys) -> None:
    results = _results(tmp_path)
    bad = _budget('[[budget]]\nmax_size = "12 parsecs"\n', tmp_path)
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--budget", str(bad), str(results), "--junit", str(junit)]) == 2
    assert 'max_size = "12 parsecs": the unit must be one of' in capsys.readouterr().err
    assert not junit.exists()
    unknown = _budget('[[budget]]\nmax_size = "1 GB"\nmin_throughput = "100 sps"\n', tmp_path)
    assert main(["gate", "--budget", str(unknown), str(results)]) == 2
    assert "unknown key(s) ['min_throughput']" in capsys.readouterr().err
    misspelt = _budget('[[budget]]\nruntimes = ["onxruntime"]\nmax_size = "1 GB"\n', tmp_path)
    assert main(["gate", "--budget", str(misspelt), str(results)]) == 2  # not 1: the model did not regress
    assert "did you mean 'onnxruntime'?" in capsys.readouterr().err
    misspelt = _budget('[[budget]]\nruntimes = ["torch-cpu-fp32-compil"]\nmax_size = "1 GB"\n', tmp_path)
    assert main(["gate", "--budget", str(misspelt), str(results)]) == 2  # an option, as a runtime: bad input
    assert "did you mean 'torch-cpu-fp32-compile'?" in capsys.readouterr().err
    assert main(["gate", "--budget", str(tmp_path / "missing.toml"), str(results)]) == 2


def test_cli_junit_that_cannot_be_written_prints_no_verdict(tmp_path: Path, capsys) -> None:
    results = _results(tmp_path)
    passing = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', tmp_path)
    (tmp_path / "gate.xml").mkdir()
    assert main(["gate", "--budget", str(passing), str(results), "--junit", str(tmp_path / "gate.xml")]) == 2
    out, err = capsys.readouterr()
    assert "gate.xml: it is a folder" in err
    assert out == ""  # no verdict, whose summary would promise an exit code the command does not give
    (tmp_path / "ci").write_text("a file where the report's folder should be\n")
    for junit in (tmp_path / "ci" / "gate.xml", tmp_path / "ci" / "reports" / "gate.xml"):  # said "(File exists)"
        assert main(["gate", "--budget", str(passing), str(results), "--junit", str(junit)]) == 2
        assert f"cannot write {junit}: {tmp_path / 'ci'} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("refused", ["--junit", "--json"])
def test_cli_junit_and_json_are_written_both_or_neither(refused: str, tmp_path: Path, capsys) -> None:
    """The JUnit written and then the JSON refused (a full disk, a folder that cannot be written): the gate exited 2
    and left CI a JUnit of passes, or a previous run's file beside the new one."""
    results = _results(tmp_path)
    passing = _budget('[[budget]]\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "2 points"\n', tmp_path)
    (tmp_path / "ci").write_text("a file where a folder should be\n")
    outputs = {"--junit": tmp_path / "gate.xml", "--json": tmp_path / "gate.json"}
    (tmp_path / "gate.xml").write_text("last run's\n")
    outputs[refused] = tmp_path / "ci" / "gate.out"
    argv = ["gate", "--budget", str(passing), str(results)]
    assert main([*argv, *(f"{option}={path}" for option, path in outputs.items())]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "gate.xml").read_text() == "last run's\n"  # the JUnit, refused or not written over
    assert not (tmp_path / "gate.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


# --- against the peers -----------------------------------------------------------------------------------


def _peers_run() -> list[Report]:
    """Ours at 20 ms (drop 0.5), peers at 25 ms (drop 0.2), 10 ms (drop 2.0) and 700 ms (drop 0), one shape."""
    ort = RuntimeSpec("onnxruntime")

    def at(steps: tuple[str, ...], p50: float, drop: float, runtime: RuntimeSpec = ort) -> Report:
        report = with_figures(make_report(steps, runtime=runtime, shapes=((1, 128),)), p50_ms=p50, spread_ms=p50 / 50)
        return with_drop(report, drop, drop - 0.5, drop + 0.5)

    return [
        at((), 40, 0.0, RuntimeSpec("torch")),
        at(("onnx", "quantize-dynamic"), 20, 0.5),
        at(("peer-optimum",), 25, 0.2),
        at(("peer-optimum-lossy",), 10, 2.0),
        at(("peer-torchao",), 700, 0.0, RuntimeSpec("torch")),
    ]


PEER_BUDGET = f'[[budget]]\nvariants = ["*"]\n{SHAPE}min_speedup_vs_peer = "1.1x"\n'


def test_speedup_vs_the_fastest_peer_within_the_accuracy_budget(tmp_path: Path) -> None:
    checks = {c.variant: c for c in _checks(PEER_BUDGET, _peers_run(), tmp_path)}
    assert set(checks) == {"baseline", "baseline+onnx+quantize-dynamic"}  # peers are the bar, not gated
    ours = checks["baseline+onnx+quantize-dynamic"]
    assert ours.against == "baseline+peer-optimum on onnxruntime-cpu-fp32"  # the 10 ms peer dropped 2 points
    assert ours.value == pytest.approx(25 / 20) and ours.low < 1.25 < ours.high and ours.verdict == "pass"
    assert ours.reason.startswith(
        "baseline+onnx+quantize-dynamic on onnxruntime-cpu-fp32 at batch 1 x 128 against baseline+peer-optimum on "
        "onnxruntime-cpu-fp32: min_speedup_vs_peer 1.25x"
    )
    assert checks["baseline"].value == pytest.approx(25 / 40) and checks["baseline"].verdict == "fail"


def test_a_wider_peer_budget_lets_the_lossy_peer_set_the_bar(tmp_path: Path) -> None:
    budget = PEER_BUDGET + 'peer_max_accuracy_drop = "2.5 points"\n'
    checks = {c.variant: c for c in _checks(budget, _peers_run(), tmp_path)}
    ours = checks["baseline+onnx+quantize-dynamic"]
    assert ours.value == pytest.approx(10 / 20) and ours.verdict == "fail"
    assert ours.against == "baseline+peer-optimum-lossy on onnxruntime-cpu-fp32"


def test_the_fastest_peer_is_the_one_of_lowest_p50_however_noisy(tmp_path: Path) -> None:
    """The bar is the peer of lowest p50, as the report's speedup_vs_peer has it: a noisy peer at 12 ms is faster
    than a steady one at 13 ms though its interval reaches higher, so ours at 10 ms is 1.2x (inconclusive against
    1.1x: the peer is noisy), not a clear 1.3x."""

    def at(steps: tuple[str, ...], runtime: str, p50: float, spread: float) -> Report:
        report = make_report(steps, runtime=RuntimeSpec(runtime), shapes=((1, 128),))
        return with_figures(report, p50_ms=p50, spread_ms=spread)

    run = [
        at(("onnx",), "onnxruntime", 10, 0.2),
        at(("peer-optimum",), "onnxruntime", 12, 10),
        at(("peer-torchao",), "torch", 13, 0.1),
    ]
    (ours,) = _checks(PEER_BUDGET, run, tmp_path)
    assert ours.against == "baseline+peer-optimum on onnxruntime-cpu-fp32"
    assert (ours.value, ours.verdict) == (pytest.approx(12 / 10), "inconclusive")


@pytest.mark.parametrize(("points", "bar"), [("0.5", "baseline+peer-optimum"), ("2", "baseline+peer-optimum-lossy")])
def test_a_drop_on_the_peer_budget_is_within_it(points: str, bar: str, tmp_path: Path) -> None:
    """Ours dropped 0.5 points, the lossy peer 2.0: a drop on the peer budget competes, ours or a peer's."""
    budget = PEER_BUDGET + f'peer_max_accuracy_drop = "{points} points"\n'
    (ours,) = [c for c in _checks(budget, _peers_run(), tmp_path) if c.variant == "baseline+onnx+quantize-dynamic"]
    assert ours.value is not None and ours.against == f"{bar} on onnxruntime-cpu-fp32"


def test_speedup_vs_peer_cannot_be_checked_without_a_peer_or_beyond_the_budget(tmp_path: Path) -> None:
    budget = PEER_BUDGET + 'peer_max_accuracy_drop = "0.3 points"\n'
    checks = {c.variant: c for c in _checks(budget, _peers_run(), tmp_path)}
    ours = checks["baseline+onnx+quantize-dynamic"]
    assert ours.verdict == "fail" and ours.value is None
    assert "its accuracy drop 0.50 points is beyond the peer budget of 0.3 points" in ours.reason
    without_peers = [r for r in _peers_run() if not r.peer]
    (ours,) = [c for c in _checks(PEER_BUDGET, without_peers, tmp_path) if c.variant != "baseline"]
    assert ours.verdict == "fail" and "no peer within 1 point was measured at batch 1 x 128" in ours.reason


def test_speedup_vs_peer_of_a_variant_not_measured_at_the_shape_cannot_be_checked(tmp_path: Path) -> None:
    """The peers were measured at the budget's shape, the variant only at another: its own p50 is not there."""
    run = _peers_run()
    (m,) = run[1].measurements
    run[1] = dataclasses.replace(run[1], measurements=(dataclasses.replace(m, batch_size=8),))
    (ours,) = [c for c in _checks(PEER_BUDGET, run, tmp_path) if c.variant == run[1].variant]
    assert (ours.value, ours.verdict) == (None, "fail")
    assert ours.unjudged == "not measured at batch 1 x 128 (measured: batch 8 x 128)"


def test_speedup_vs_peer_is_against_peers_on_the_variant_s_device(tmp_path: Path) -> None:
    """A variant on CUDA beating peers timed on the CPU says nothing of the peers: with none on its device it
    cannot be checked (it passed 5x against the CPU's optimum peer)."""
    cuda = make_report(("onnx",), runtime=RuntimeSpec("torch", "cuda", "fp16"), shapes=((1, 128),))
    run = [*_peers_run(), with_figures(cuda, p50_ms=5, spread_ms=0.1)]
    (check,) = [c for c in _checks(PEER_BUDGET, run, tmp_path) if c.runtime == "torch-cuda-fp16"]
    assert (check.value, check.verdict) == (None, "fail")
    assert check.unjudged == "no peer within 1 point was measured at batch 1 x 128 on this machine and device"


def test_a_peer_budget_that_selects_only_peers_fails(tmp_path: Path) -> None:
    """Peers are the bar, not gated: a budget whose variants name only peers judged nothing, and the gate
    passed (exit 0, --strict too) with no line for it."""
    budget = f'[[budget]]\nvariants = ["baseline+peer-*"]\n{SHAPE}min_speedup_vs_peer = "1.1x"\n'
    budget += 'max_accuracy_drop = "3 points"\n'
    checks = _checks(budget, _peers_run(), tmp_path)
    assert [c.limit.key for c in checks].count("max_accuracy_drop") == 3  # the peers' own drops are judged
    (check,) = [c for c in checks if c.limit.key == "min_speedup_vs_peer"]
    assert check.verdict == "fail" and exit_code(checks, strict=False) == 1
    assert check.reason == (
        "variants ['baseline+peer-*'] on runtimes ['*']: min_speedup_vs_peer cannot be checked: only peers match "
        "(baseline+peer-optimum, baseline+peer-optimum-lossy, baseline+peer-torchao), and peers are its bar, not "
        "gated by it: name a variant of yours in the budget's variants"
    )


def test_a_peer_budget_whose_own_variant_failed_fails_once_with_the_failure(tmp_path: Path) -> None:
    """Its variant's job failed, so only peers matched: beside the failure's line came "only peers match ...:
    name a variant of yours in the budget's variants", though the budget named one."""
    budget = f'[[budget]]\nvariants = ["baseline+onnx+*", "baseline+peer-*"]\n{SHAPE}min_speedup_vs_peer = "1.1x"\n'
    run = [r for r in _peers_run() if r.variant != "baseline+onnx+quantize-dynamic"]
    failed = [FailedJob("baseline+onnx+quantize-dynamic", "onnxruntime-cpu-fp32", "latency-1", "crashed")]
    (check,) = evaluate(load_budgets(_budget(budget, tmp_path)), run, failed)
    assert (check.variant, check.verdict, check.unjudged) == (
        failed[0].variant,
        "fail",
        "its latency-1 failed: crashed",
    )


def test_peer_budget_needs_a_unit_and_a_shape(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r'peer_max_accuracy_drop = 1 has no unit: .*"1.0 points"'):
        load_budgets(_budget(PEER_BUDGET + "peer_max_accuracy_drop = 1\n", tmp_path))
    with pytest.raises(OptbenchError, match=r"\['min_speedup_vs_peer'\] hold at one shape"):
        load_budgets(_budget('[[budget]]\nmin_speedup_vs_peer = "1x"\n', tmp_path))


def test_a_peer_budget_without_min_speedup_vs_peer_is_refused(tmp_path: Path) -> None:
    # alone it chose the peers of no check: a budget meant to cap the drop passed every variant, without a word
    with pytest.raises(OptbenchError, match="it chooses the peers min_speedup_vs_peer is measured against, so it goes"):
        load_budgets(_budget('[[budget]]\nmax_size = "1 GB"\npeer_max_accuracy_drop = "0.5 points"\n', tmp_path))


# --- against a row the budget names ----------------------------------------------------------------------


def _gpu_run() -> list[Report]:
    """The baseline on the CPU at 40 ms, on CUDA at FP32 4 ms and at FP16 1.6 ms, one shape."""
    specs = {40.0: RuntimeSpec("torch"), 4.0: RuntimeSpec("torch", "cuda"), 1.6: RuntimeSpec("torch", "cuda", "fp16")}
    return [
        with_figures(make_report(runtime=spec, shapes=((1, 128),)), p50_ms=p50, spread_ms=p50 / 50)
        for p50, spec in specs.items()
    ]


AGAINST_BUDGET = f'[[budget]]\n{SHAPE}min_speedup = "2x"\nspeedup_against = "baseline/torch/cuda/fp32"\n'


def test_min_speedup_against_the_row_the_budget_names(tmp_path: Path) -> None:
    checks = {c.runtime: c for c in _checks(AGAINST_BUDGET, _gpu_run(), tmp_path)}
    fp16 = checks["torch-cuda-fp16"]
    assert fp16.value == pytest.approx(4 / 1.6) and fp16.low < 2.5 < fp16.high and fp16.verdict == "pass"
    assert fp16.against == "baseline/torch/cuda/fp32"
    assert fp16.reason.startswith(
        "baseline on torch-cuda-fp16 at batch 1 x 128 against baseline/torch/cuda/fp32: min_speedup 2.5x"
    )
    assert checks["torch-cuda-fp32"].value == 1.0 and checks["torch-cuda-fp32"].verdict == "fail"  # below 2x
    assert checks["torch-cpu-fp32"].value == pytest.approx(0.1) and checks["torch-cpu-fp32"].verdict == "fail"


def test_the_row_a_speedup_is_against_is_exactly_as_fast_as_itself(tmp_path: Path) -> None:
    """Its speedup over itself is one p50 over the same p50, so it is 1 with no spread: "no variant slower than the
    reference" (min_speedup = "1x" over every variant) could never pass while the reference's own check took its
    p50 interval twice (0.99x to 1.01x, inconclusive)."""
    budget = f'[[budget]]\nvariants = ["*"]\n{SHAPE}min_speedup = "1x"\n'
    checks = {c.variant: c for c in _checks(budget, _run(), tmp_path)}
    baseline = checks["baseline"]
    assert (baseline.value, baseline.low, baseline.high, baseline.verdict) == (1.0, 1.0, 1.0, "pass")
    assert checks["baseline+onnx"].verdict == "pass"
    against = {c.runtime: c for c in _checks(AGAINST_BUDGET.replace('"2x"', '"1x"'), _gpu_run(), tmp_path)}
    assert (against["torch-cuda-fp32"].low, against["torch-cuda-fp32"].verdict) == (1.0, "pass")


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (
            "baseline/torch/cuda",
            "baseline/torch/cuda names 2 rows at batch 1 x 128 on this machine (baseline/torch/cuda/fp16, "
            "baseline/torch/cuda/fp32): name one",
        ),
        ("baseline/onnxruntime", "no baseline/onnxruntime was measured at batch 1 x 128 on this machine"),
    ],
)
def test_min_speedup_against_a_row_that_is_not_one_cannot_be_checked(row: str, why: str, tmp_path: Path) -> None:
    budget = AGAINST_BUDGET.replace("baseline/torch/cuda/fp32", row)
    checks = _checks(budget, _gpu_run(), tmp_path)
    assert len(checks) == 3 and all(c.verdict == "fail" and c.value is None for c in checks)
    assert all(c.reason.endswith(f"min_speedup cannot be checked: {why}") for c in checks)
    assert checks[0].reason.startswith("baseline on torch-cpu-fp32: min_speedup cannot be checked: ")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('min_speedup_vs_peer = "1x"\nspeedup_against = "baseline"', "as a string .* beside a min_speedup"),
        ('min_speedup = "2x"\nspeedup_against = 1', "as a string"),
        ('min_speedup = "2x"\nspeedup_against = "a/b/c/d/e"', r"speedup_against: cannot read the row 'a/b/c/d/e'"),
    ],
)
def test_speedup_against_needs_a_row_and_a_min_speedup(line: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_budgets(_budget(f"[[budget]]\n{SHAPE}{line}\n", tmp_path))


@pytest.mark.parametrize(
    ("row", "message"),
    UNKNOWN_ROW_NAMES,
)
def test_speedup_against_a_runtime_device_or_precision_optbench_lacks_is_refused(
    row: str, message: str, tmp_path: Path
) -> None:
    """Such a row names no row of any run, so min_speedup failed (exit 1) as if the model had regressed."""
    with pytest.raises(OptbenchError, match=f"speedup_against: cannot read the row '{row}': {message}"):
        load_budgets(_budget(AGAINST_BUDGET.replace("baseline/torch/cuda/fp32", row), tmp_path))


def test_speedup_against_a_runtime_with_options_is_read(tmp_path: Path) -> None:
    row = "baseline+onnx/onnxruntime-tensorrt-trt-int8/cuda/fp16"  # the table's runtime column: engine and options
    (budget,) = load_budgets(_budget(AGAINST_BUDGET.replace("baseline/torch/cuda/fp32", row), tmp_path))
    assert budget.speedup_against is not None and budget.speedup_against.text == row


def _on(report: Report, machine: str, p50_ms: float) -> Report:
    report = with_figures(report, p50_ms=p50_ms, spread_ms=p50_ms / 50)
    return dataclasses.replace(report, environment={**report.environment, "machine": machine})


def test_min_speedup_is_against_the_reference_of_the_same_machine(tmp_path: Path) -> None:
    """A run on several machines (Ray) has a reference on each: a variant is measured against its own."""
    budget = f'[[budget]]\nvariants = ["baseline+onnx"]\n{SHAPE}min_speedup = "2x"\n'
    reference, onnx = make_report(shapes=((1, 128),)), make_report(("onnx",), shapes=((1, 128),))
    run = [_on(reference, "box-a", 40), _on(reference, "box-b", 10), _on(onnx, "box-a", 10), _on(onnx, "box-b", 8)]
    assert sorted(round(c.value, 2) for c in _checks(budget, run, tmp_path)) == [1.25, 4.0]  # 10/8 and 40/10
    (alone,) = _checks(budget, [_on(reference, "box-b", 10), _on(onnx, "box-a", 10)], tmp_path)
    assert alone.verdict == "fail"
    assert alone.reason.endswith("no baseline/torch/cpu/fp32 was measured at batch 1 x 128 on this machine")


def _timed(steps: tuple[str, ...], p50_by_seq_len: dict[int, float]) -> Report:
    """A report measured at batch 1 and each sequence length, at its p50 there (in that order)."""
    single = [
        with_figures(make_report(steps, shapes=((1, seq_len),)), p50_ms=p50, spread_ms=p50 / 50)
        for seq_len, p50 in p50_by_seq_len.items()
    ]
    return dataclasses.replace(single[0], measurements=tuple(m for report in single for m in report.measurements))


def test_min_speedup_is_against_the_reference_at_the_budget_s_shape(tmp_path: Path) -> None:
    """The reference is timed at every shape of the run: at 16 tokens the variant (5 ms) is 1.6x the reference
    (8 ms), and only the reference's 40 ms at 128 tokens, its first measurement, makes it 8x and passes a 2x budget."""
    run = [_timed((), {128: 40, 16: 8}), _timed(("onnx",), {128: 10, 16: 5})]
    budget = '[[budget]]\nvariants = ["baseline+onnx"]\nbatch_size = 1\nseq_len = {}\nmin_speedup = "2x"\n'
    (short,) = _checks(budget.format(16), run, tmp_path)
    assert (short.value, short.verdict) == (pytest.approx(8 / 5), "fail")
    (long,) = _checks(budget.format(128), run, tmp_path)
    assert (long.value, long.verdict) == (pytest.approx(40 / 10), "pass")


# --- the committed budgets and run ----------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
BUDGETS = REPO / "recipes" / "budgets.toml"
CHAIN = "baseline+student-l4+prune-h50-f70+onnx+quantize-dynamic"


def test_the_shipped_budgets_parse() -> None:
    assert [b.name for b in load_budgets(BUDGETS)] == ["shippable chain", "INT8 pays for itself", "every variant"]


def test_the_committed_run_passes_the_committed_budgets(capsys) -> None:
    assert main(["gate", "--budget", str(BUDGETS), str(REPO / "results" / "all")]) == 0
    out = capsys.readouterr().out
    assert f"PASS         shippable chain: {CHAIN} on onnxruntime-cpu-fp32 at batch 1 x 128: min_speedup" in out
    assert f"PASS         INT8 pays for itself: {CHAIN} on onnxruntime-cpu-fp32 at batch 1 x 128 against " in out


def test_the_committed_peers_run_passes_the_peer_budget(capsys) -> None:
    budgets = REPO / "recipes" / "budgets-peers.toml"
    assert main(["gate", "--budget", str(budgets), str(REPO / "results" / "peers")]) == 0
    out = capsys.readouterr().out
    assert (
        "PASS         ahead of the peers: baseline+onnx+quantize-dynamic on onnxruntime-cpu-fp32 at batch 1 x 128 "
        in out
    )
    # the newest run (20261202T144824Z-d899, AVX-512 VNNI): optimum's static INT8 lost 0.48 points, within the
    # budget, and was the faster of its two INT8 presets
    assert "against baseline+optimum-int8-static on onnxruntime-cpu-fp32: min_speedup_vs_peer 1.07x" in out


def test_a_variant_that_breaks_the_chain_budget_fails_it(tmp_path: Path, capsys) -> None:
    budgets = BUDGETS.read_text()
    assert f'variants = ["{CHAIN}"]' in budgets
    onnx_only = _budget(budgets.replace(f'variants = ["{CHAIN}"]', 'variants = ["baseline+onnx"]'), tmp_path)
    assert main(["gate", "--budget", str(onnx_only), str(REPO / "results" / "all")]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert any("baseline+onnx on onnxruntime-cpu-fp32 at batch 1 x 128: min_speedup" in line for line in failed)


def test_a_recipe_given_as_a_budget_file_points_to_run() -> None:
    """The reverse mistake of a budget file given to `run`: it read "unknown key(s) ... known keys are ['budget']"."""
    recipe = Path(__file__).parents[1] / "recipes" / "quantize-dynamic.toml"
    with pytest.raises(OptbenchError, match=r"quantize-dynamic.toml is a recipe, not a budget file: `optbench run "):
        load_budgets(recipe)
