"""Release gates: every budget limit checked against one run's reports, as pass, fail or inconclusive.

A check compares the figure's 95% interval with the limit: wholly within it passes, wholly beyond it
fails, and an interval that straddles the limit is inconclusive (the run cannot tell; measure longer,
on more data, or decide with `--strict`). Exit codes: 0 all pass, 1 any fails, 3 none fails but some
are inconclusive (1 with strict), 2 bad input.
"""

from __future__ import annotations

import fnmatch
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from optbench.bench import REFERENCE
from optbench.budget import SHAPED, SIZE, Budget, Limit, written_unit
from optbench.errors import OptbenchError, did_you_mean
from optbench.failures import FailedJob
from optbench.measure import ratio_interval
from optbench.peers.speedup import budget_words
from optbench.relative_speedup import RowChoice
from optbench.report import Measurement, Report
from optbench.runtimes import RuntimeSpec, names_of

Verdict = Literal["pass", "fail", "inconclusive"]
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3
# how each limit's figure is shown: unit after the number, scale from the report's unit
DISPLAY = {
    "max_accuracy_drop": (" points", 1.0),
    "min_relative_accuracy": ("% of the reference", 100.0),
    "max_p50": (" ms", 1.0),
    "max_p99": (" ms", 1.0),
    "min_speedup": ("x", 1.0),
    "min_speedup_vs_peer": ("x", 1.0),
    "max_memory": (" MiB", 1.0),
    "max_size": (" MiB", 1.0),
}


# min_speedup's bar unless a budget names another: the baseline on PyTorch eager FP32 (CPU), as in reports
REFERENCE_ROW = RowChoice(("baseline", REFERENCE.engine, REFERENCE.device, REFERENCE.precision))


@dataclass(frozen=True)
class Check:
    """One limit applied to one report: the figure, its 95% interval, the verdict and why."""

    budget: str
    # where no report matches: the budget's patterns, or the one pattern of them that selects nothing
    variant: str  # the report's variant; else variants ['baseline+*'], or variant 'baselin+onnx'
    runtime: str  # the runtime's label (torch-cpu-fp32); else runtimes ['*'], or runtime 'tensorrt'
    limit: Limit
    shape: str  # the budget's shape where the limit holds at one ("batch 1 x 128"), else ""
    value: float | None  # None when the figure cannot be had: `unjudged` says why, and the check fails
    low: float | None
    high: float | None
    verdict: Verdict
    against: str = ""  # what a relative figure was measured against: the fastest peer, or speedup_against's row
    machine: str = ""  # the hardware fingerprint of the report's machine (a run may span several)
    unjudged: str = ""  # why the figure cannot be had (not measured at the shape, the job failed); "" when judged
    row: tuple[str, ...] = ()  # the judged report's row in tables (Report.key: variant, engine, device, precision)

    @classmethod
    def unjudgeable(
        cls,
        budget: Budget,
        variant: str,
        runtime: str,
        limit: Limit,
        why: str,
        machine: str = "",
        row: tuple[str, ...] = (),
    ) -> Check:
        """A check whose figure cannot be had: it fails, saying why."""
        shape = _shape(budget, limit)
        return cls(budget.name, variant, runtime, limit, shape, None, None, None, "fail", "", machine, why, row)

    @property
    def reason(self) -> str:
        """One line: what was measured against what."""
        where = f"{self.variant} on {self.runtime}"
        if self.value is None:
            return f"{where}: {self.limit.key} cannot be checked: {self.unjudged}"
        where += (f" at {self.shape}" if self.shape else "") + (f" against {self.against}" if self.against else "")
        unit, scale = DISPLAY[self.limit.key]
        figure = f"{self.value * scale:.4g}{unit}"
        written = written_unit(str(self.limit.text))
        if unit == " MiB" and written.lower() in SIZE and written.lower() != "mib":  # in the limit's unit too
            figure = f"{self.value / SIZE[written.lower()]:.4g} {written} ({figure.strip()})"
        if self.low is not None and self.high is not None and self.low != self.high:
            figure += f" (95% interval {self.low * scale:.4g} to {self.high * scale:.4g})"
        relation = {"pass": "within", "fail": "breaks", "inconclusive": "straddles"}[self.verdict]
        few = (
            "368 timed calls cannot bound a p99 from above"
            if self.limit.key == "max_p99"
            else "6 timed calls cannot bound a p50"
        )
        unbounded = f" (fewer than {few}: raise [bench] min_iters)"
        return f"{where}: {self.limit.key} {figure} {relation} the limit {self.limit.text}" + (
            unbounded if self.high is not None and math.isinf(self.high) else ""
        )


def newest_run(reports: list[Report]) -> list[Report]:
    """The reports of the newest run among `reports` (a gate judges one run)."""
    if not reports:
        raise OptbenchError("no optbench reports to gate: give a run's folder (results/<recipe>/<run id>)")
    latest = max((r.created_at, r.run_id) for r in reports)
    return [r for r in reports if (r.created_at, r.run_id) == latest]


def evaluate(budgets: list[Budget], reports: list[Report], failed: list[FailedJob] | None = None) -> list[Check]:
    """Every limit of every budget against every report it selects (one run's reports); a job or step of the
    run that failed (`failed`, from its failures.json) fails every limit of the budgets that select it, with its
    reason alone: a budget that selects no report (or only peers) because its job failed is not also told to fix
    its patterns. A budget that matches nothing fails every limit once; one that matches something fails every
    limit once more for each of its variant or runtime patterns that selects nothing (`_unmatched_patterns`)."""
    checks = []
    for budget in budgets:
        failures = [f for f in failed or [] if _selects_failure(budget, f)]
        for failure in failures:
            runtime = failure.runtime or "-"
            checks += [
                Check.unjudgeable(budget, failure.variant, runtime, limit, failure.why) for limit in budget.limits
            ]
        chosen = [r for r in reports if _selects(budget, r)]
        variants, runtimes = f"variants {list(budget.variants)}", f"runtimes {list(budget.runtimes)}"
        if not chosen and not failures:
            why = f"no report in the run matches (it has {_have(reports)}): fix the budget's variants or runtimes"
            checks += [Check.unjudgeable(budget, variants, runtimes, limit, why) for limit in budget.limits]
        else:
            checks += _unmatched_patterns(budget, reports, failures)
        for report in chosen:
            checks += [
                _check(budget, limit, report, reports)
                for limit in budget.limits
                if not (limit.key == "min_speedup_vs_peer" and report.peer)  # peers are the bar, not gated
            ]
        # a limit that judged nothing must not pass unseen (a failure the budget selects already fails it)
        if chosen and not failures and all(r.peer for r in chosen):
            peers = ", ".join(dict.fromkeys(r.variant for r in chosen))
            why = (
                f"only peers match ({peers}), and peers are its bar, not gated by it: "
                "name a variant of yours in the budget's variants"
            )
            checks += [
                Check.unjudgeable(budget, variants, runtimes, limit, why)
                for limit in budget.limits
                if limit.key == "min_speedup_vs_peer"
            ]
    return checks


def _unmatched_patterns(budget: Budget, reports: list[Report], failures: list[FailedJob]) -> list[Check]:
    """Every limit failed for each pattern of the budget's variants or runtimes that selects no report and no
    failure of the run (`failures`, those the budget selects), beside the others: a misspelt pattern next to a
    right one judged less than the budget says, and passed."""
    checks = []
    patterns = [*(("variants", p) for p in budget.variants), *(("runtimes", p) for p in budget.runtimes)]
    for key, pattern in dict.fromkeys(patterns):  # a pattern written twice fails once
        alone = replace(budget, **{key: (pattern,)})
        if any(_selects(alone, r) for r in reports) or any(_selects_failure(alone, f) for f in failures):
            continue
        other = "runtimes" if key == "variants" else "variants"
        if key == "variants":
            where = (f"variant {pattern!r}", f"runtimes {list(budget.runtimes)}")
        else:
            where = (f"variants {list(budget.variants)}", f"runtime {pattern!r}")
        anywhere = replace(budget, **{key: (pattern,), other: ("*",)})
        if found := [r for r in reports if _selects(anywhere, r)]:  # spelt right: the other patterns leave it out
            why = (
                f"no report in the run matches it with the budget's {other} (it has {_have(found)} for it): fix or "
                f"drop it in the budget's {key}, or fix its {other}"
            )
        else:  # runtimes get no guess: load_budgets checked a plain one's spelling (not a glob's)
            hint = did_you_mean([pattern], dict.fromkeys(r.variant for r in reports)) if key == "variants" else ""
            why = (
                f"no report in the run matches it (it has {_have(reports)}{hint}): fix or drop it in the budget's {key}"
            )
        checks += [Check.unjudgeable(budget, *where, limit, why) for limit in budget.limits]
    return checks


def _have(reports: list[Report]) -> str:
    """What the run has, for a budget or pattern that matches none of it: each variant on each runtime, once."""
    return ", ".join(dict.fromkeys(f"{r.variant} on {_runtime(r).label}" for r in reports))


def _runtime(report: Report) -> RuntimeSpec:
    return RuntimeSpec.from_dict(report.runtime)


def _selects(budget: Budget, report: Report) -> bool:
    return _picks(budget, report.variant, names_of(_runtime(report).label))


def _selects_failure(budget: Budget, failure: FailedJob) -> bool:
    """Whether the budget would have judged the failed job's variant; a failed step fails it on every runtime."""
    return _picks(budget, failure.variant, names_of(failure.runtime) if failure.runtime else ())


def _picks(budget: Budget, variant: str, runtime_names: tuple[str, ...]) -> bool:
    """Whether the budget's patterns match the variant and one of the runtime's names (its engine name or
    label); no names (a failed step, before any runtime) match every runtime pattern."""
    return any(fnmatch.fnmatchcase(variant, p) for p in budget.variants) and (
        not runtime_names or any(fnmatch.fnmatchcase(n, p) for n in runtime_names for p in budget.runtimes)
    )


def _check(budget: Budget, limit: Limit, report: Report, run: list[Report]) -> Check:
    runtime, shape = _runtime(report).label, _shape(budget, limit)
    if limit.key == "min_speedup_vs_peer":
        outcome = _speedup_vs_peer(report, budget, run, shape)
    elif limit.key == "min_speedup":
        outcome = _speedup_against(report, budget.speedup_against or REFERENCE_ROW, budget, run, shape)
        if budget.speedup_against is None and not isinstance(outcome, str):
            outcome = (outcome[0], "")  # the run's reference goes without saying
    else:
        figure = _figure(limit.key, report, budget, shape)
        outcome = figure if isinstance(figure, str) else (figure, "")
    if not isinstance(outcome, str) and any(math.isnan(x) for x in outcome[0]):  # NaN would read as inconclusive
        outcome = "the report holds no number for this figure (NaN): re-run the recipe that wrote it"
    machine = str(report.environment.get("machine") or "")
    if isinstance(outcome, str):  # why the figure cannot be had
        return Check.unjudgeable(budget, report.variant, runtime, limit, outcome, machine, report.key)
    (value, low, high), against = outcome
    verdict_ = verdict(limit, low, high)
    return Check(
        budget.name, report.variant, runtime, limit, shape, value, low, high, verdict_, against, machine, row=report.key
    )


def _shape(budget: Budget, limit: Limit) -> str:
    """The shape the limit holds at ("batch 1 x 128"), or "" for a limit of the whole model (accuracy, size)."""
    return f"batch {budget.batch_size} x {budget.seq_len}" if limit.key in SHAPED else ""


def _speedup_vs_peer(
    report: Report, budget: Budget, run: list[Report], shape: str
) -> tuple[tuple[float, float, float], str] | str:
    """The fastest peer's p50 over this variant's with its interval, and that peer; as the report's
    `speedup_vs_peer`, among the peers within the peer accuracy budget at the budget's shape on the same machine
    and device. Why it cannot be had (not measured, beyond the budget, no such peer) otherwise."""
    points = budget_words(budget.peer_budget_points)
    own = _at(report, budget.batch_size, budget.seq_len)
    if own is None:
        return _unmeasured(report, shape)
    if report.drop.points > budget.peer_budget_points:
        return f"its accuracy drop {report.drop.points:.2f} points is beyond the peer budget of {points}"
    device = report.runtime.get("device")
    peers = _measured_beside(
        report,
        run,
        budget,
        lambda other: (
            other.peer and other.drop.points <= budget.peer_budget_points and other.runtime.get("device") == device
        ),
    )
    if not peers:
        return f"no peer within {points} was measured at {shape} on this machine and device"
    fastest, peer = min(peers, key=lambda pair: pair[0].latency.p50_ms)
    return _speedup_over(fastest, own), f"{peer.variant} on {_runtime(peer).label}"


def _speedup_against(
    report: Report, choice: RowChoice, budget: Budget, run: list[Report], shape: str
) -> tuple[tuple[float, float, float], str] | str:
    """The chosen row's p50 over this variant's, with the interval both p50 intervals allow, at the budget's
    shape on the same machine (a run on several machines has a reference on each), and 1 exactly for the
    chosen row itself; why it cannot be had (not measured, no such row, more than one) otherwise."""
    own = _at(report, budget.batch_size, budget.seq_len)
    if own is None:
        return _unmeasured(report, shape)
    rows = _measured_beside(report, run, budget, lambda other: choice.names(other.key))
    if not rows:
        return f"no {choice.text} was measured at {shape} on this machine"
    if len(rows) > 1:
        names = ", ".join(sorted("/".join(r.key) for _, r in rows))
        return f"{choice.text} names {len(rows)} rows at {shape} on this machine ({names}): name one"
    ((theirs, chosen),) = rows
    if chosen is report:  # one p50 over itself: 1 exactly, not its interval taken twice (0.99x to 1.01x)
        return (1.0, 1.0, 1.0), "/".join(chosen.key)
    return _speedup_over(theirs, own), "/".join(chosen.key)


def _measured_beside(
    report: Report, run: list[Report], budget: Budget, keep: Callable[[Report], bool]
) -> list[tuple[Measurement, Report]]:
    """The reports of `run` that `keep` selects, on `report`'s machine, each with its measurement at the
    budget's shape (those not measured there left out)."""
    machine = report.environment.get("machine")
    return [
        (measurement, other)
        for other in run
        if keep(other)
        and other.environment.get("machine") == machine
        and (measurement := _at(other, budget.batch_size, budget.seq_len)) is not None
    ]


def verdict(limit: Limit, low: float, high: float) -> Verdict:
    """Pass when the whole interval meets the limit, fail when none of it does, else inconclusive."""
    if limit.is_max:
        return "pass" if high <= limit.value else "fail" if low > limit.value else "inconclusive"
    return "pass" if low >= limit.value else "fail" if high < limit.value else "inconclusive"


def _figure(key: str, report: Report, budget: Budget, shape: str) -> tuple[float, float, float] | str:
    """The limit's figure in `report` with its 95% interval (at the budget's `shape` for a shaped limit); why it
    cannot be had (the report lacks the shape or the figure) otherwise."""
    drop = report.drop
    if key == "max_accuracy_drop":
        return drop.points, drop.ci_low, drop.ci_high
    if key == "min_relative_accuracy":
        reference = report.metrics.accuracy + drop.points / 100  # the reference's accuracy, a fraction
        if reference <= 0:
            return "its reference scored 0 accuracy: nothing is relative to it"

        def relative(points: float) -> float:
            return (reference - points / 100) / reference

        return relative(drop.points), relative(drop.ci_high), relative(drop.ci_low)
    if key == "max_size":
        size = report.artifact.get("size_mb")  # a report may lack it: the table shows it as unknown
        if size is None:
            return "the report holds no model size (artifact.size_mb): re-run the recipe that wrote it"
        return size, size, size
    measurement = _at(report, budget.batch_size, budget.seq_len)
    if measurement is None:
        return _unmeasured(report, shape)
    latency = measurement.latency
    if key == "max_p50":
        return latency.p50_ms, latency.p50_ci_low, latency.p50_ci_high
    if key == "max_p99":
        return latency.p99_ms, latency.p99_ci_low, latency.p99_ci_high
    return measurement.peak_rss_mb, measurement.peak_rss_mb, measurement.peak_rss_mb  # max_memory


def _speedup_over(reference: Measurement, own: Measurement) -> tuple[float, float, float]:
    """reference p50 / own p50, with the interval both p50 intervals allow."""
    theirs, ours = reference.latency, own.latency
    low, high = ratio_interval((theirs.p50_ci_low, theirs.p50_ci_high), (ours.p50_ci_low, ours.p50_ci_high))
    return theirs.p50_ms / ours.p50_ms, float(low), float(high)


def _unmeasured(report: Report, shape: str) -> str:
    """Why a shaped limit cannot be checked on `report`: the shape it lacks, and the shapes it has."""
    measured = ", ".join(f"batch {m.batch_size} x {m.seq_len}" for m in report.measurements) or "none"
    return f"not measured at {shape} (measured: {measured})"


def _at(report: Report, batch_size: int | None, seq_len: int | str | None) -> Measurement | None:
    return next((m for m in report.measurements if (m.batch_size, m.seq_len) == (batch_size, seq_len)), None)


def exit_code(checks: list[Check], *, strict: bool) -> int:
    """0 all pass, 1 any fails (or any is inconclusive with `strict`), 3 none fails but some are inconclusive."""
    verdicts = Counter(c.verdict for c in checks)
    if verdicts["fail"] or (strict and verdicts["inconclusive"]):
        return EXIT_FAIL
    return EXIT_INCONCLUSIVE if verdicts["inconclusive"] else EXIT_PASS
