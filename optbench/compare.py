"""Two sets of results side by side: the change of every figure, marked better, worse, not significant,
newly failing, new or not comparable.

A change counts only when the two figures' 95% intervals do not overlap and, for timings, it is larger
than the runs' A/A noise floor (the p50 gap between two measurements of one model in one run, in percent of their
mean; the change is measured the same way for that, though shown in percent of A).
Rows are matched by variant, runtime, device, precision, batch size and sequence length, and by machine
when a side holds results of several machines (a distributed run); with one machine a side, the two are
compared as they are, across machines too (the machine column says "A -> B"). When a side holds several
runs, each row's newest report is used. Newly failing: a row A measured and B did not (with the reason B's
failures.json gives where B's newest run failed it), or, given budgets, a budget check that A's newest run passed
(or left inconclusive) and B's does not pass: it fails, cannot be judged (as the gate, which fails it: not measured
at the budget's shape, its job or step failed, with that reason) or has no report to judge at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import pandas as pd

from optbench.budget import Budget
from optbench.failures import FailedJob
from optbench.gate import REFERENCE_ROW, Check, evaluate, newest_run
from optbench.machines import Machine, legend_labels, machine_key_of
from optbench.measure import gap_pct, ratio_interval
from optbench.relative_speedup import add_speedup_vs
from optbench.report import Report, flat_workload
from optbench.runtimes import runtime_label
from optbench.table import commit_label, gemm_words, markdown_lines, missing, records_csv, records_json, said_once

KEY = ["variant", "runtime", "device", "precision_mode", "batch_size", "seq_len"]
MARKS = ("better", "worse", "not significant", "newly failing", "new", "not comparable")
MEMORY_TOLERANCE_PCT = 5.0  # peak RSS has no interval; smaller moves are allocator noise
# How far apart two runs' GEMM calibrations (environment.calibration_gflops) may read before `compare` says their
# timings are not to be read as the model's. The committed runs of one machine (9ebfb24f566c) read 94.8 to 158.7
# GFLOP/s (1.7x) with baseline p50s within 1.6x of each other: a 0.3 s matmul on a shared VM is a weak signal in
# that range, so only twice that is said; a run beside three test suites read 15x below its machine's usual.
CALIBRATION_APART = 2.0


@dataclass(frozen=True)
class Figure:
    """One compared figure: which direction is better, its 95% interval in a row, and a tolerance for
    figures measured once (no interval)."""

    column: str
    lower_is_better: bool
    interval: Callable[[pd.Series], tuple[float, float]]
    timing: bool = False  # the A/A noise floor applies
    tolerance_pct: float = 0.0


def _columns(low: str, high: str) -> Callable[[pd.Series], tuple[float, float]]:
    return lambda row: (row[low], row[high])


def _speedup_interval(row: pd.Series) -> tuple[float, float]:
    """speedup_p50's interval as the gate has it: what the row's and the reference's p50 intervals allow
    (`compare` adds the reference's as speedup_vs); the row's own p50 interval where the reference is absent."""
    if not missing(row["speedup_vs_ci_low"]):
        return row["speedup_vs_ci_low"], row["speedup_vs_ci_high"]
    reference = row["speedup_p50"] * row["p50_ms"]
    return ratio_interval((reference, reference), (row["p50_ci_low"], row["p50_ci_high"]))


def _inverse_of_mean(column: str) -> Callable[[pd.Series], tuple[float, float]]:
    """The interval of a figure that moves as 1 / mean latency (throughput): the mean's normal-approximation
    95% interval (its calls' spread over the square root of their count), widened by the clock's resolution
    as the percentiles' are (every reading, so their mean, is known only to within one tick), inverted."""

    def interval(row: pd.Series) -> tuple[float, float]:
        value, mean = row[column], row["mean_ms"]
        half = 1.96 * row["std_ms"] / math.sqrt(row["iterations"]) + row["clock_resolution_ms"]
        return value * mean / (mean + half), value * mean / (mean - half) if half < mean else math.inf

    return interval


def _exact(column: str) -> Callable[[pd.Series], tuple[float, float]]:
    return lambda row: (row[column], row[column])


def _binomial(row: pd.Series) -> tuple[float, float]:
    """Wilson's 95% score interval of an accuracy measured on `test_rows` examples: unlike the normal
    approximation's, it does not shrink to nothing at 0 or 1 (every row right on a small split) nor reach past
    them. No rows recorded: the accuracy alone."""
    p, n = row["accuracy"], row["test_rows"]
    if not n or pd.isna(n):
        return p, p
    z2 = 1.96**2 / n
    center = (p + z2 / 2) / (1 + z2)
    half = math.sqrt(z2 * (p * (1 - p) + z2 / 4)) / (1 + z2)
    return max(center - half, 0.0), min(center + half, 1.0)


FIGURES = (
    Figure("p50_ms", True, _columns("p50_ci_low", "p50_ci_high"), timing=True),
    Figure("p99_ms", True, _columns("p99_ci_low", "p99_ci_high"), timing=True),
    Figure("throughput_sps", False, _inverse_of_mean("throughput_sps"), timing=True),  # batch / mean latency
    Figure("speedup_p50", False, _speedup_interval, timing=True),
    Figure("peak_rss_mb", True, _exact("peak_rss_mb"), tolerance_pct=MEMORY_TOLERANCE_PCT),
    Figure("model_mb", True, _exact("model_mb")),
    Figure("accuracy", False, _binomial),
)
COLUMNS = [*KEY, "machine", "figure", "a", "b", "change_pct", "mark", "why"]


@dataclass(frozen=True)
class Failures:
    """The failed jobs and steps of a side's newest run (its failures.json), and the machines that run measured on.
    A run leaves a variant whose job failed out of every machine's reports on that runtime (a failed step: on every
    runtime), so a failure is why it has no report on each of those machines, and on no other."""

    jobs: tuple[FailedJob, ...] = ()
    machines: frozenset[str] = frozenset()

    @classmethod
    def of_run(cls, jobs: Iterable[FailedJob], run: list[Report]) -> Failures:
        """`jobs`, the failures of `run` (one run's reports), on its machines."""
        return cls(tuple(jobs), frozenset(str(r.environment.get("machine") or "") for r in run))

    def of(self, variant: str, runtime: str, machine: str | None) -> tuple[FailedJob, str] | None:
        """The failure that left `variant` on `runtime` (a label) without a report on `machine`, and that machine;
        `machine` None where rows are matched across machines (one a side): on the run's one machine."""
        on = next(iter(self.machines), "") if machine is None else machine
        failure = next((f for f in self.jobs if f.variant == variant and f.runtime in (runtime, "")), None)
        return (failure, on) if failure is not None and on in self.machines else None


def match_key(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """KEY, plus the machine when either side holds results of several machines."""
    several = any(frame["machine"].nunique(dropna=False) > 1 for frame in (a, b))
    return [*KEY, "machine"] if several else KEY


def newest(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Each row key once: the newest report's row."""
    ordered = frame.sort_values(["created_at", "run_id"], kind="stable")
    return ordered.drop_duplicates(key, keep="last").set_index(key, drop=False)


def _with_reference(rows: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """`newest` rows with the interval of each one's speedup over its run's reference (speedup_vs_ci_*)."""
    return add_speedup_vs(rows.reset_index(drop=True), REFERENCE_ROW).set_index(key, drop=False)


def compare(
    a: pd.DataFrame,
    b: pd.DataFrame,
    workloads: Mapping[str, Mapping] | None = None,
    failures_b: Callable[[], Failures] = Failures,
) -> pd.DataFrame:
    """Every figure of every row key of `a` and `b` (report tables, `table.to_frame`), with its mark;
    `workloads` (workload fingerprint -> the report's workload, `report.workloads_of`) names what differs where
    two rows are not comparable, and `failures_b` (called where a row is newly failing, so a damaged failures.json
    stops only a comparison that uses it; `Side.failures` reads it once) why B has no report of a row."""
    key = match_key(a, b)
    a, b = _with_reference(newest(a, key), key), _with_reference(newest(b, key), key)
    out = []
    for row in a.index.union(b.index, sort=False):
        sides = [frame.loc[row] for frame in (a, b) if row in frame.index]
        failed = None if row in b.index else _failed_in_b(row, len(key) > len(KEY), failures_b())
        machines = [*(_machine(side["machine"]) or "-" for side in sides), *([failed[1] or "-"] if failed else [])]
        where = [*row[: len(KEY)], " -> ".join(dict.fromkeys(machines))]
        if row not in b.index:
            why = "no report in B" + (f": {failed[0].why}" if failed else "")
            out.append([*where, "-", "measured", "missing", None, "newly failing", why])
        elif row not in a.index:
            out.append([*where, "-", "missing", "measured", None, "new", "no report in A"])
        elif a.loc[row, "workload"] != b.loc[row, "workload"]:
            why = _workload_change(a.loc[row, "workload"], b.loc[row, "workload"], workloads or {})
            out.append([*where, "-", "-", "-", None, "not comparable", why])
        else:
            out += [[*where, *_figure_row(figure, a.loc[row], b.loc[row])] for figure in FIGURES]
    return pd.DataFrame(out, columns=COLUMNS)


def _failed_in_b(row: tuple, several: bool, failures: Failures) -> tuple[FailedJob, str] | None:
    """The failure in B's newest run that left a row A measured (its key; with the machine where `several`, as
    `match_key`) without a report in B, and B's machine."""
    variant, engine, device, precision = row[:4]
    return failures.of(variant, runtime_label(engine, device, precision), _machine(row[-1]) if several else None)


def _machine(value: object) -> str:
    """A row's machine key, "" for a report that names none (None, or NaN in a frame beside reports that do), as
    `Failures` holds it."""
    return "" if missing(value) else str(value)


def _workload_change(a: str, b: str, workloads: Mapping[str, Mapping]) -> str:
    """Why two rows are not comparable: the workload settings that differ, where both sides' are known."""
    if a not in workloads or b not in workloads:
        return f"workload {a} vs {b} (data, max_length, threads, timing, max_batches or rounds differ)"
    flat_a, flat_b = (flat_workload(workloads[side]) for side in (a, b))
    keys = sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))
    return "workload differs: " + "; ".join(f"{k} {flat_a.get(k)} vs {flat_b.get(k)}" for k in keys)


def budget_regressions(
    budgets: list[Budget], a: list[Report], b: list[Report], failures_b: Failures = Failures()
) -> pd.DataFrame:
    """Comparison rows for the budget checks that A's newest run passed (or left inconclusive) and B's newest run
    does not pass: B fails it, or cannot judge it (not measured at the budget's shape, or its job or step failed:
    `failures_b`, B's failures.json), which the gate fails too, or has no report to judge it on at all. Checks
    are matched by budget, limit, shape, variant and runtime, and by machine when a side's run spans several (as
    rows are, `match_key`); A's check of a variant B's run failed (its job on that runtime, or its step) gets the
    gate's check of that failure, which names no machine (nor, for a step, a runtime), on B's (`Failures.of`)."""
    run_a, run_b = newest_run(a), newest_run(b)
    several = any(len({r.environment.get("machine") for r in run}) > 1 for run in (run_a, run_b))

    def key(check: Check) -> tuple[str, ...]:
        """One check of one budget: budgets may share a name (one per shape, say)."""
        machine = check.machine if several else ""
        return check.budget, check.variant, check.runtime, check.limit.key, check.limit.text, check.shape, machine

    def in_b(old: Check) -> Check | None:
        """B's check of A's check `old`: the gate's check of the failure that left B's run without its report (on the
        runtime "-" for a step's, on no machine), placed on the machine `Failures.of` says, or else the same one."""
        failed = failures_b.of(old.variant, old.runtime, old.machine if several else None)
        if failed is None:
            return after.get(key(old))
        failure, machine = failed
        check = after.get(key(replace(old, runtime=failure.runtime or "-", machine="")))
        return None if check is None else replace(check, machine=machine)

    before = {key(check): check for check in evaluate(budgets, run_a)}  # a report copied in twice: checked once
    after = {key(check): check for check in evaluate(budgets, run_b, list(failures_b.jobs))}
    out = []
    for old in before.values():
        new = in_b(old)
        if old.verdict == "fail" or (new is not None and new.verdict != "fail"):
            continue
        # A's check passed, so it judged a report: the row names that report's engine, device and precision
        machine = " -> ".join(dict.fromkeys(check.machine or "-" for check in (old, new) if check is not None))
        figure = f"{old.limit.key} ({old.budget}{f', {old.shape}' if old.shape else ''})"
        b_verdict, why = (
            (new.verdict, new.reason)
            if new
            else ("missing", f"no report of {old.variant} on {old.runtime} in B's newest run")
        )
        out.append([*old.row, "-", "-", machine, figure, old.verdict, b_verdict, None, "newly failing", why])
    return pd.DataFrame(out, columns=COLUMNS)


def _figure_row(figure: Figure, a: pd.Series, b: pd.Series) -> list:
    """[figure, a, b, change %, mark, why] for one figure of one matched row."""
    before, after = a[figure.column], b[figure.column]
    if missing(before) or missing(after):
        return [figure.column, before, after, None, "not comparable", "not measured on both sides"]
    change = 100 * (after - before) / before if before else None  # no percentage of a zero
    (a_low, a_high), (b_low, b_high) = figure.interval(a), figure.interval(b)
    if after == before:
        return [figure.column, before, after, change, "not significant", "unchanged"]
    if a_low <= b_high and b_low <= a_high:
        unbounded = any(math.isinf(end) for end in (a_low, a_high, b_low, b_high))
        few = ": one is unbounded (too few timed calls: raise [bench] min_iters)" if unbounded else ""
        return [figure.column, before, after, change, "not significant", f"the 95% intervals overlap{few}"]
    if figure.timing:  # the floor is two p50s' gap in percent of their mean: the change is measured alike against it
        floor = max((x for x in (a["noise_floor_pct"], b["noise_floor_pct"]) if not missing(x)), default=None)
        gap = gap_pct(before, after)
        if floor is not None and gap <= floor:
            why = f"within the {floor:.1f}% noise floor (a gap of {gap:.1f}% of their mean)"
            return [figure.column, before, after, change, "not significant", why]
    elif change is not None and abs(change) <= figure.tolerance_pct:
        why = f"within the {figure.tolerance_pct:.1f}% noise floor"
        return [figure.column, before, after, change, "not significant", why]
    better = (after < before) == figure.lower_is_better
    return [figure.column, before, after, change, "better" if better else "worse", ""]


def sides(a: pd.DataFrame, b: pd.DataFrame, known: list[Machine]) -> list[str]:
    """What each side of `compare(a, b)` stands for, a line each: the runs its rows come from (each row's newest
    report), with their commit and machine (described as `known`, the machines of both sides' reports, tell them)."""
    key, labels = match_key(a, b), legend_labels(known)
    lines = []
    for name, frame in (("A", a), ("B", b)):
        used = _runs_used(frame, key)
        runs = []
        for recipe, run_id, commit, dirty, machine, gflops in used.itertuples(index=False):
            at = machine_key_of(machine)
            runs.append(
                f"{recipe}/{run_id} (commit {commit_label(commit, dirty)}, machine {at}: {labels[at]}"
                f"{gemm_words([gflops], ', ')})"
            )
        lines.append(f"{name}: {'; '.join(runs)}")
    return lines


def _runs_used(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The runs (and machines) whose reports `compare` reads from `frame`: those of each row's newest report, each
    once, with their commit and GEMM calibration."""
    return newest(frame, key)[
        ["recipe", "run_id", "git_commit", "git_dirty", "machine", "calibration_gflops"]
    ].drop_duplicates()


def calibration_note(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """A warning where the GEMM calibration of the runs `compare(a, b)` uses (each row's newest report) reads
    CALIBRATION_APART times apart or more, from the slowest to the fastest: a plain matmul ran that much slower on
    one side (a busy or throttled machine, or another machine), so its timings moved for reasons of the machine's,
    not the model's. None where they agree or a side's reports have none (older reports)."""
    key = match_key(a, b)
    figures = {name: _runs_used(frame, key)["calibration_gflops"].dropna() for name, frame in (("A", a), ("B", b))}
    if any(f.empty for f in figures.values()):
        return None
    low, high = min(min(f) for f in figures.values()), max(max(f) for f in figures.values())
    if low <= 0 or high / low < CALIBRATION_APART:
        return None
    said = " and ".join(f"{gemm_words(f)} in {name}" for name, f in figures.items())
    return (
        f"Machine state: the calibration read {said} ({high / low:.1f}x apart): a plain matmul ran that "
        "much slower on one side (a busy or throttled machine, or another machine), so its latency and throughput "
        "changes may be the machine's, not the model's: measure both on one quiet machine to tell them apart"
    )


def model_note(a: list[Report], b: list[Report]) -> str | None:
    """A line where the newest runs of the two sides start from different baselines (the weights' sha256 differ): each
    row then compares two models, as a run on one user's model against a run on another's does. None where they
    start from the same one, or a side's newest run holds no baseline report."""
    baselines = [
        {
            r.artifact["sha256"]: r.artifact.get("origin") or {}
            for r in newest_run(side)
            if not r.artifact.get("lineage")
        }
        for side in (a, b)
    ]
    if not all(baselines) or baselines[0].keys() == baselines[1].keys():
        return None
    checkpoints = [{origin.get("checkpoint", "?") for origin in side.values()} for side in baselines]
    if checkpoints[0] == checkpoints[1] and len(checkpoints[0]) == 1:  # one checkpoint, fine-tuned twice
        shas = [", ".join(sha[:12] for sha in side) for side in baselines]
        return (
            f"Models: both sides' baselines come from {next(iter(checkpoints[0]))}, but their weights differ (sha256 "
            f"{shas[0]} in A, {shas[1]} in B: fine-tuned on another machine or release, or the checkpoint changed): "
            "each row compares two models"
        )
    named = [
        ", ".join(f"{origin.get('checkpoint', '?')} (sha256 {sha[:12]})" for sha, origin in side.items())
        for side in baselines
    ]
    return (
        f"Models: the runs start from different baselines, A's {named[0]} and B's {named[1]}: each row compares "
        "two models, not one model between two runs"
    )


def render(table: pd.DataFrame, fmt: str, *, only_changes: bool = False, named: Sequence[str] = ()) -> str:
    """The comparison as Markdown (counts per mark first, before --only-changes leaves rows out; the `named` lines,
    `sides`; the settings every row shown shares, said once rather than as columns; a line saying so where
    --only-changes leaves none), CSV or JSON (with no row left: the header alone, `[]`, what a script reads as no
    changes; a cell without a value, `-` in Markdown, empty in CSV and null in JSON)."""
    counts = table["mark"].value_counts()
    summary = ", ".join(f"{counts[m]} {m}" for m in MARKS if m in counts) or "nothing to compare"
    if only_changes:
        table = table[table["mark"] != "not significant"]
        if "not significant" in counts:
            summary += " (the not significant left out)"
    if fmt in ("csv", "json"):  # a budget row's batch_size "-" beside integers broke a script's int(), say
        table = table.mask(table.eq("-"))
        return records_csv(table) if fmt == "csv" else records_json(table)
    head = [summary, "", *([*named, ""] if named else [])]
    if only_changes and table.empty:
        return "\n".join([*head, "no changes: every figure compared is not significant"]) + "\n"
    line, columns = said_once(table, COLUMNS)  # as in a run's table
    lines = [*head, *([line, ""] if line else [])]
    rows = []
    for row in table.to_dict("records"):
        cells = {column: _cell(column, row[column]) for column in columns}
        cells["a"], cells["b"] = _told_apart(row["a"], row["b"])
        rows.append([cells[column] for column in columns])
    return "\n".join(lines + markdown_lines(columns, rows)) + "\n"


def _cell(column: str, value: object, extra_decimals: int = 0) -> str:
    if missing(value):
        return "-"
    if column == "change_pct":  # a change too small for one decimal keeps its first digit: never a 0.0% that moved
        decimals = 1 if value == 0 or abs(value) >= 0.05 else -math.floor(math.log10(abs(value)))
        return f"{value:+.{decimals}f}%"
    if isinstance(value, float):
        return f"{value:.{(4 if abs(value) < 1 else 2) + extra_decimals}f}"
    return str(value)


def _told_apart(a: object, b: object) -> tuple[str, str]:
    """A's and B's figure as cells, with more decimals (up to 6 more) where two figures that differ would print
    alike: a model 8 bytes smaller read 55.99 and 55.99, marked better."""
    for extra in range(7):
        shown = _cell("a", a, extra), _cell("b", b, extra)
        if shown[0] != shown[1] or a == b or not (isinstance(a, float) and isinstance(b, float)):
            break
    return shown


@dataclass(frozen=True)
class Side:
    """One side of a comparison while it is open (`open_side`): the reports found, with their files."""

    found: list[tuple[Path, Report]]

    @property
    def files(self) -> list[Path]:
        return [file for file, _ in self.found]

    @cached_property
    def reports(self) -> list[Report]:
        """Its reports, a run copied into two folders counted once, as report and gate count it (`report.distinct`)."""
        from optbench.report import distinct

        return distinct(self.found)

    @cached_property
    def failures(self) -> Failures:
        """The failed jobs and steps of its newest run, as the gate reads them; read when first asked for, so a
        damaged failures.json stops only a comparison that uses it (B's, with budgets or a row newly failing)."""
        from optbench.failures import run_failures

        run = newest_run(self.reports)
        return Failures.of_run(run_failures(self.found, run[0].run_id), run)


@contextmanager
def open_side(path: str) -> Iterator[Side]:
    """One side's reports: a results folder or report file, or `REV:PATH` for results committed in git (their
    files, unpacked for the reading, are there until the block ends)."""
    from optbench.report import report_files
    from optbench.results_at import results_at

    with results_at(path) as folder:
        yield Side(report_files(folder))
