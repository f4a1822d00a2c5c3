"""`optbench compare`: marks on fixture reports, row matching, and results read from git revisions."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import make_report, on_cuda_events, with_drop, with_figures

from optbench.budget import parse_budget
from optbench.cli import main
from optbench.compare import (
    COLUMNS,
    Failures,
    _binomial,
    budget_regressions,
    calibration_note,
    compare,
    model_note,
    render,
)
from optbench.failures import FailedJob, write_failures
from optbench.measure import Latency, throughput
from optbench.report import SCHEMA, Report, settings_hash, workload_fingerprint, write_report
from optbench.runtimes import RuntimeSpec
from optbench.table import to_frame


def _marks(a: list[Report], b: list[Report]) -> dict[tuple[str, int, str], str]:
    """(variant, batch size, figure) -> mark."""
    table = compare(to_frame(a), to_frame(b))
    return {(r.variant, r.batch_size, r.figure): r.mark for r in table.itertuples()}


def test_the_same_figures_are_not_significant() -> None:
    report = with_figures(make_report(shapes=((1, 128),)), p50_ms=10, spread_ms=0.5, speedup=1.0)
    marks = _marks([report], [report])
    assert set(marks.values()) == {"not significant"}
    assert set(compare(to_frame([report]), to_frame([report]))["why"]) == {"unchanged"}  # model size has no interval
    assert {figure for _, _, figure in marks} == {
        "p50_ms",
        "p99_ms",
        "throughput_sps",
        "speedup_p50",
        "peak_rss_mb",
        "model_mb",
        "accuracy",
    }


def test_faster_and_slower_p50_beyond_the_intervals_are_better_and_worse() -> None:
    base = make_report(shapes=((1, 128),))
    before = with_figures(base, p50_ms=10, spread_ms=0.2)
    assert _marks([before], [with_figures(base, p50_ms=8, spread_ms=0.2)])["baseline", 1, "p50_ms"] == "better"
    assert _marks([before], [with_figures(base, p50_ms=12, spread_ms=0.2)])["baseline", 1, "p50_ms"] == "worse"


def test_a_p50_from_fewer_than_6_calls_is_never_better_or_worse() -> None:
    base = make_report(shapes=((1, 128),))
    before = with_figures(base, p50_ms=10, spread_ms=0.2, calls=5)
    table = compare(to_frame([before]), to_frame([with_figures(base, p50_ms=5, spread_ms=0.1, calls=5)]))
    row = table[table["figure"] == "p50_ms"].iloc[0]
    assert row["mark"] == "not significant"
    assert row["why"] == "the 95% intervals overlap: one is unbounded (too few timed calls: raise [bench] min_iters)"


def test_a_p99_unbounded_from_above_is_never_better_or_worse_and_says_why() -> None:
    """61 calls bound a p50 both ways but a p99 only from below: each side's p99 interval reaches up to infinity, so
    a p50 20% faster is better while the p99 is not significant, for want of calls."""
    base = make_report(shapes=((1, 128),))
    table = compare(to_frame([with_figures(base, p50_ms=10, spread_ms=0.2)]), to_frame([with_figures(base, p50_ms=8)]))
    rows = table.set_index("figure")
    assert (rows.loc["p50_ms", "mark"], rows.loc["p99_ms", "mark"]) == ("better", "not significant")
    assert rows.loc["p99_ms", "why"] == (
        "the 95% intervals overlap: one is unbounded (too few timed calls: raise [bench] min_iters)"
    )


def test_overlapping_intervals_are_not_significant() -> None:
    base = make_report(shapes=((1, 128),))
    before, after = with_figures(base, p50_ms=10, spread_ms=4), with_figures(base, p50_ms=10.5, spread_ms=4)
    table = compare(to_frame([before]), to_frame([after]))
    row = table[table["figure"] == "p50_ms"].iloc[0]
    assert row["mark"] == "not significant" and row["why"] == "the 95% intervals overlap"
    assert row["change_pct"] == pytest.approx(5.0)


def test_intervals_that_meet_at_an_end_overlap() -> None:
    base = make_report(shapes=((1, 128),))
    a = to_frame([with_figures(base, p50_ms=10, spread_ms=0.1)])
    b = to_frame([with_figures(base, p50_ms=12, spread_ms=0.1)])
    a["p50_ci_high"] = b["p50_ci_low"] = 11.0
    for slower, faster in ((a, b), (b, a)):  # B's interval above A's, and below it
        row = compare(slower, faster).set_index("figure").loc["p50_ms"]
        assert (row["mark"], row["why"]) == ("not significant", "the 95% intervals overlap")


def test_a_one_tick_change_of_a_coarse_clock_is_not_significant() -> None:
    """CUDA events read to 0.5 us: 400 calls all on 10.0 us against all on 10.5 us may be one duration read
    on either side of a tick, so the timings are not significant; three ticks apart they are."""
    base = make_report(shapes=((1, 128),))
    timings = ("p50_ms", "p99_ms", "throughput_sps")
    before = on_cuda_events(base, 10.0)
    table = compare(to_frame([before]), to_frame([on_cuda_events(base, 10.5)]))
    rows = table[table["figure"].isin(timings)]
    assert list(rows["mark"]) == ["not significant"] * 3
    assert set(rows["why"]) == {"the 95% intervals overlap"}
    marks = _marks([before], [on_cuda_events(base, 11.5)])
    assert [marks["baseline", 1, figure] for figure in timings] == ["worse", "worse", "worse"]


def test_a_change_inside_the_a_a_noise_floor_is_not_significant() -> None:
    base = make_report(shapes=((1, 128),))
    before = with_figures(base, p50_ms=10, spread_ms=0.1, noise_floor_pct=8.0)
    after = with_figures(base, p50_ms=9.5, spread_ms=0.1, noise_floor_pct=3.0)
    table = compare(to_frame([before]), to_frame([after]))
    row = table[table["figure"] == "p50_ms"].iloc[0]
    assert row["mark"] == "not significant"
    assert row["why"] == "within the 8.0% noise floor (a gap of 5.1% of their mean)"  # the larger floor
    floor_in_b = compare(  # A's run made no A/A repeat (aa_check off, or its repeat failed): B's floor holds
        to_frame([with_figures(base, p50_ms=10, spread_ms=0.1)]),
        to_frame([with_figures(base, p50_ms=9.5, spread_ms=0.1, noise_floor_pct=8.0)]),
    )
    assert (
        floor_in_b.set_index("figure").loc["p50_ms", "why"]
        == "within the 8.0% noise floor (a gap of 5.1% of their mean)"
    )
    on_it = compare(
        to_frame([with_figures(base, p50_ms=13, spread_ms=0.1, noise_floor_pct=8.0)]),
        to_frame([with_figures(base, p50_ms=12, spread_ms=0.1)]),
    )
    row = on_it[on_it["figure"] == "p50_ms"].iloc[0]  # 13 to 12 ms: 1 ms is 8.0% of their mean, on the floor
    assert row["mark"] == "not significant"
    quieter = with_figures(base, p50_ms=10, spread_ms=0.1, noise_floor_pct=2.0)
    assert _marks([quieter], [with_figures(base, p50_ms=9.5, spread_ms=0.1)])["baseline", 1, "p50_ms"] == "better"


def test_a_timing_change_is_held_against_the_noise_floor_in_percent_of_the_mean_as_the_floor_is_measured() -> None:
    """The floor is the A/A p50 gap in percent of the two p50s' mean, so a change is measured the same way: in
    percent of A alone, a slowdown read larger and a speedup smaller than the floor it is held against."""
    base = make_report(shapes=((1, 128),))
    before = with_figures(base, p50_ms=10, spread_ms=0.1, noise_floor_pct=10.0)
    slower = compare(to_frame([before]), to_frame([with_figures(base, p50_ms=11.04, spread_ms=0.1)]))
    row = slower.set_index("figure").loc["p50_ms"]  # +10.4% of A, but 1.04 ms is 9.9% of their mean, 10.52
    assert row["change_pct"] == pytest.approx(10.4)
    assert row["mark"] == "not significant"
    assert row["why"] == "within the 10.0% noise floor (a gap of 9.9% of their mean)"
    faster = compare(to_frame([before]), to_frame([with_figures(base, p50_ms=9.0, spread_ms=0.1)]))
    row = faster.set_index("figure").loc["p50_ms"]  # -10.0% of A, but 1 ms is 10.5% of 9.5: beyond the floor
    assert row["change_pct"] == pytest.approx(-10.0)
    assert row["mark"] == "better"


def test_throughput_and_speedup_are_held_against_the_noise_floor_as_the_p50_is() -> None:
    """Both move as one over a timing: a chain 4% faster in a run whose A/A floor is 8% is noise in its throughput
    and speedup as in its p50, though all three intervals are narrow enough to tell the two apart."""
    from optbench.measure import throughput

    def timed(report: Report, p50_ms: float, speedup: float | None = None) -> Report:
        report = with_figures(report, p50_ms=p50_ms, spread_ms=0.05, speedup=speedup, noise_floor_pct=8.0)
        (m,) = report.measurements
        measured = dataclasses.replace(m, throughput_sps=throughput(1, m.latency))
        return dataclasses.replace(report, measurements=(measured,))

    reference, chain = make_report(shapes=((1, 128),)), make_report(("onnx",), shapes=((1, 128),))
    before = [timed(reference, 10, 1.0), timed(chain, 5, 2.0)]
    after = [timed(reference, 10, 1.0), timed(chain, 4.8, 10 / 4.8)]
    rows = compare(to_frame(before), to_frame(after)).set_index(["variant", "figure"]).loc["baseline+onnx"]
    for figure in ("p50_ms", "throughput_sps", "speedup_p50"):
        assert rows.loc[figure, "mark"] == "not significant", figure
        assert rows.loc[figure, "why"].startswith("within the 8.0% noise floor (a gap of 4.1% of their mean)"), figure


def test_memory_moves_under_five_percent_are_noise_and_size_changes_always_count() -> None:
    base = make_report(shapes=((1, 128),))
    marks = _marks([with_figures(base, peak_rss_mb=1000)], [with_figures(base, peak_rss_mb=1040)])
    assert marks["baseline", 1, "peak_rss_mb"] == "not significant"
    marks = _marks([with_figures(base, peak_rss_mb=1000)], [with_figures(base, peak_rss_mb=1050)])
    assert marks["baseline", 1, "peak_rss_mb"] == "not significant"  # 5% exactly: on the tolerance is within it
    marks = _marks([with_figures(base, peak_rss_mb=1000)], [with_figures(base, peak_rss_mb=1100)])
    assert marks["baseline", 1, "peak_rss_mb"] == "worse"
    smaller = dataclasses.replace(base, artifact={**base.artifact, "size_mb": 40.0})
    assert _marks([base], [smaller])["baseline", 1, "model_mb"] == "better"


def test_the_a_a_noise_floor_holds_for_timings_only() -> None:
    """It is the p50 gap of one model timed twice: memory keeps its own 5%, size and accuracy count as they are."""
    base = with_figures(make_report(shapes=((1, 128),)), peak_rss_mb=1000, noise_floor_pct=8.0)
    smaller = dataclasses.replace(base, artifact={**base.artifact, "size_mb": 80.0})  # -7.6%
    marks = _marks([base], [with_figures(smaller, peak_rss_mb=1070, noise_floor_pct=8.0)])  # +7%
    assert (marks["baseline", 1, "model_mb"], marks["baseline", 1, "peak_rss_mb"]) == ("better", "worse")


def test_a_figure_measured_on_one_side_only_is_not_comparable() -> None:
    """B's chain has no speedup (its run's reference was not measured): a missing figure is no change to mark."""
    chain = make_report(("onnx",), shapes=((1, 128),))
    (m,) = chain.measurements
    without = dataclasses.replace(chain, measurements=(dataclasses.replace(m, speedup_p50=None),))
    for a, b in ((chain, without), (without, chain)):
        row = compare(to_frame([a]), to_frame([b])).set_index("figure").loc["speedup_p50"]
        assert (row["mark"], row["why"]) == ("not comparable", "not measured on both sides")


def test_accuracy_beyond_its_binomial_interval_is_worse() -> None:
    good, bad = make_report(shapes=((1, 128),)), make_report(shapes=((1, 128),), flip=7)
    assert _marks([good], [bad])["baseline", 1, "accuracy"] == "worse"  # 10 test rows: 1.0 against 0.3
    assert _marks([bad], [good])["baseline", 1, "accuracy"] == "better"
    slightly = make_report(shapes=((1, 128),), flip=1)  # 0.9 against 1.0 is within the interval
    assert _marks([good], [slightly])["baseline", 1, "accuracy"] == "not significant"
    # every row right is no certainty on 10 rows: 1.0 against 0.6 (Fisher's exact test: p = 0.09) is not marked
    # (a normal-approximation interval has no width at 1.0 and marked it worse)
    fewer = make_report(shapes=((1, 128),), flip=4)
    assert _marks([good], [fewer])["baseline", 1, "accuracy"] == "not significant"
    broken = make_report(shapes=((1, 128),), flip=10)  # accuracy 0: a change from zero has no percentage
    assert _marks([broken], [good])["baseline", 1, "accuracy"] == "better"
    row = compare(to_frame([broken]), to_frame([good])).set_index("figure").loc["accuracy"]
    assert pd.isna(row["change_pct"])  # not +inf%


@pytest.mark.parametrize(
    ("accuracy", "rows", "interval"),
    [(0.8, 10, (0.4902, 0.9433)), (1.0, 10, (0.7225, 1.0)), (0.0, 10, (0.0, 0.2775)), (0.5, 100, (0.4038, 0.5962))],
)
def test_an_accuracy_s_interval_is_wilson_s_score_interval(accuracy: float, rows: int, interval: tuple) -> None:
    """Wilson's 95% interval as tables of it give it: 8 of 10 right is 0.490 to 0.943, and 10 of 10 still 0.72 to 1."""
    assert _binomial(pd.Series({"accuracy": accuracy, "test_rows": rows})) == pytest.approx(interval, abs=1e-4)


def test_rows_only_on_one_side_are_newly_failing_or_new() -> None:
    a = [make_report(shapes=((1, 128),)), make_report(("onnx",), shapes=((1, 128),))]
    b = [make_report(shapes=((1, 128),)), make_report(("prune",), shapes=((1, 128),))]
    marks = _marks(a, b)
    assert marks["baseline+onnx", 1, "-"] == "newly failing"
    assert marks["baseline+prune", 1, "-"] == "new"


def test_different_workloads_are_not_comparable() -> None:
    base = make_report(shapes=((1, 128),))
    marks = _marks([base], [with_figures(base, workload="other-data")])
    assert marks == {("baseline", 1, "-"): "not comparable"}


def test_without_the_workloads_the_why_names_every_setting_that_makes_rows_not_comparable() -> None:
    # compare() called without the reports' workloads: the why lists what may differ, as compare --help does
    base = make_report(shapes=((1, 128),))
    (why,) = compare(to_frame([base]), to_frame([with_figures(base, workload="other-data")]))["why"]
    assert why.endswith("(data, max_length, threads, timing, max_batches or rounds differ)")


def test_the_cli_names_the_workload_settings_that_differ(tmp_path: Path, capsys) -> None:
    base = make_report(shapes=((1, 128),))
    rounds = with_figures(dataclasses.replace(base, workload={**base.workload, "rounds": 2}), workload="two-rounds")
    for side, report in (("a", base), ("b", rounds)):
        write_report(report, (tmp_path / side).mkdir() or tmp_path / side)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    (why,) = pd.read_csv(io.StringIO(capsys.readouterr().out))["why"]
    assert why == "workload differs: rounds None vs 2"


def _run_with(report: Report, workload: dict) -> Report:
    """`report` measured under `workload`, with the fingerprints the benchmark writes for it."""
    measurements = tuple(
        dataclasses.replace(m, workload_fingerprint=workload_fingerprint(workload, m.batch_size, m.seq_len))
        for m in report.measurements
    )
    return dataclasses.replace(report, workload=workload, measurements=measurements)


@pytest.mark.parametrize(
    ("rounds", "figure", "why"), [(1, "p50_ms", "unchanged"), (2, "", "workload differs: rounds 1 vs 2")]
)
def test_a_version_1_report_compares_as_the_one_round_it_ran(
    tmp_path: Path, capsys, rounds: int, figure: str, why: str
) -> None:
    # version 1 wrote no rounds (its runs measured one): "rounds None vs 1" made every row not comparable
    base, settings = make_report(shapes=((1, 128),)), {"dataset": "rotten-tomatoes", "rows": 10, "max_batches": 64}
    old = write_report(_run_with(base, settings), tmp_path / "a")
    old.write_text(json.dumps({**json.loads(old.read_text()), "schema_version": 1}))
    write_report(_run_with(base, {**settings, "rounds": rounds}), tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)  # an empty cell as ""
    assert dict(zip(table["figure"], table["why"], strict=True)).get(figure) == why


ALICE = {"dataset": "/home/alice/reviews.csv", "data_fingerprint": "1ecb15b5d0943002", "rows": 10, "rounds": 1}


@pytest.mark.parametrize(
    ("b", "figure", "why"),
    [
        ({"dataset": "/builds/42/reviews.csv"}, "p50_ms", "unchanged"),
        (  # the same path with other rows in it: the content tells
            {"data_fingerprint": "9f00c3a1b2d4e5f6"},
            "",
            "workload differs: data_fingerprint 1ecb15b5d0943002 vs 9f00c3a1b2d4e5f6",
        ),
    ],
)
def test_one_data_file_read_from_two_paths_is_one_workload(
    tmp_path: Path, capsys, b: dict, figure: str, why: str
) -> None:
    """The same recipe on two machines (or CI checkouts) reads the user's file from two paths: every row was not
    comparable, "workload differs: dataset /home/alice/reviews.csv vs /builds/42/reviews.csv", rows alike."""
    base = make_report(shapes=((1, 128),))
    write_report(_run_with(base, ALICE), tmp_path / "a")
    write_report(_run_with(base, {**ALICE, **b}), tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)  # an empty cell as ""
    assert dict(zip(table["figure"], table["why"], strict=True)).get(figure) == why


def test_a_report_whose_fingerprints_hashed_its_data_files_path_compares_by_the_data(tmp_path: Path, capsys) -> None:
    """Reports written before: their workload fingerprints hashed the path in, and are read as hashed now."""
    base = make_report(shapes=((1, 128),))
    old = write_report(_run_with(base, ALICE), tmp_path / "a")
    data = json.loads(old.read_text())
    for m in data["measurements"]:
        m["workload_fingerprint"] = settings_hash({**ALICE, "batch_size": 1, "seq_len": 128}, 12)
    old.write_text(json.dumps(data))
    write_report(_run_with(base, {**ALICE, "dataset": "/builds/42/reviews.csv"}), tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert dict(zip(table["figure"], table["why"], strict=True))["p50_ms"] == "unchanged"


def test_committed_reports_of_versions_1_and_3_compare(capsys) -> None:
    # export-onnx: one run before reports recorded rounds, one after with one round and the same settings, and
    # results/all's run of 3 rounds and a shorter min_seconds
    results = Path(__file__).resolve().parents[1] / "results"
    old, new = (str(results / "export-onnx" / run) for run in ("20261130T033448Z-8570", "20261130T214428Z-6a6f"))
    assert main(["compare", old, new, "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 56 and "not comparable" not in set(table["mark"])
    assert main(["compare", old, str(results / "all" / "20261130T103213Z-c015"), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table.loc[table["mark"] == "not comparable", "why"]) == {
        "workload differs: rounds 1 vs 3; timing.min_seconds 2.0 vs 1.5"
    }


def test_each_side_uses_its_newest_report_per_row() -> None:
    base = make_report(shapes=((1, 128),))
    old = dataclasses.replace(with_figures(base, p50_ms=20, spread_ms=0.1), created_at="2026-11-01T00:00:00+00:00")
    new = dataclasses.replace(with_figures(base, p50_ms=10, spread_ms=0.1), created_at="2026-11-30T00:00:00+00:00")
    old = dataclasses.replace(old, run_id="20261201T000000Z-ffff")  # newest by time, whatever its run id sorts as
    for a_side in ([new, old], [old, new]):  # whichever order the reports are read in
        table = compare(to_frame(a_side), to_frame([new]))
        assert table.loc[table["figure"] == "p50_ms", "mark"].tolist() == ["not significant"]


def test_of_two_runs_of_one_second_the_newest_is_the_one_whose_run_id_sorts_last() -> None:
    """Two recipes' runs finished in one second (created_at has seconds): the row is read from the run whose id sorts
    last, the run the gate and the budget checks take as newest, not from whichever recipe's name sorts last."""
    base = make_report(shapes=((1, 128),))
    earlier = dataclasses.replace(with_figures(base, p50_ms=20, spread_ms=0.1), recipe="zeta", run_id="20261130-0001")
    later = dataclasses.replace(with_figures(base, p50_ms=10, spread_ms=0.1), recipe="alpha", run_id="20261130-0002")
    table = compare(to_frame([earlier, later]), to_frame([later]))
    assert table.loc[table["figure"] == "p50_ms", "mark"].tolist() == ["not significant"]


def test_markdown_counts_the_marks_and_only_changes_filters() -> None:
    base = make_report(("onnx",), shapes=((1, 128),))
    before, after = with_figures(base, p50_ms=10, spread_ms=0.2, speedup=1.0), with_figures(base, p50_ms=5, speedup=2.0)
    table = compare(to_frame([before]), to_frame([after]))
    text = render(table, "md")
    assert text.splitlines()[0].startswith("2 better, 5 not significant")  # 61 calls cannot bound a p99
    changes = render(table, "md", only_changes=True)
    assert "not significant |" not in changes and "| better |" in changes
    assert changes.splitlines()[0] == "2 better, 5 not significant (the not significant left out)"
    unchanged = compare(to_frame([before]), to_frame([before]))
    assert render(unchanged, "md", only_changes=True).splitlines()[0].endswith("not significant left out)")
    assert pd.read_json(io.StringIO(render(table, "json")))["mark"].tolist().count("better") == 2


def test_only_changes_with_none_says_so_in_markdown_and_leaves_csv_and_json_empty() -> None:
    # the Markdown was a table of its header alone, as if the rows had been lost
    base = make_report(("onnx",), shapes=((1, 128),))
    unchanged = compare(to_frame([base]), to_frame([base]))
    lines = render(unchanged, "md", only_changes=True).splitlines()
    assert lines == [
        "7 not significant (the not significant left out)",
        "",
        "no changes: every figure compared is not significant",
    ]
    assert pd.read_csv(io.StringIO(render(unchanged, "csv", only_changes=True))).columns.tolist() == COLUMNS
    assert pd.read_csv(io.StringIO(render(unchanged, "csv", only_changes=True))).empty  # a script reads no rows
    assert render(unchanged, "json", only_changes=True) == "[]"  # pandas indents an empty list as "[\n\n]"


def test_only_changes_keeps_the_rows_that_are_not_compared_figure_by_figure() -> None:
    """--only-changes leaves out the not significant alone: a row newly failing, new or not comparable is a change."""
    shape = ((1, 128),)
    a = [make_report(shapes=shape), make_report(("onnx",), shapes=shape), make_report(("distill",), shapes=shape)]
    b = [make_report(shapes=shape), make_report(("prune",), shapes=shape)]
    b.append(with_figures(make_report(("distill",), shapes=shape), workload="other-data"))
    table = compare(to_frame(a), to_frame(b))
    changes = {"baseline+onnx": "newly failing", "baseline+prune": "new", "baseline+distill": "not comparable"}
    for fmt in ("csv", "md"):
        text = render(table, fmt, only_changes=True)
        for variant, mark in changes.items():
            assert any(variant in line and mark in line for line in text.splitlines()), (fmt, variant)


def test_markdown_shows_a_change_too_small_for_two_decimals() -> None:
    # results/all's two runs: a model 8 bytes smaller read "55.99 | 55.99 | -0.0% | better"
    base = make_report(shapes=((1, 128),))
    a, b = (dataclasses.replace(base, artifact={**base.artifact, "size_mb": size}) for size in (55.991024, 55.991016))
    text = render(compare(to_frame([a]), to_frame([b])), "md")
    assert "| model_mb | 55.991024 | 55.991016 | -0.00001% | better |" in text
    assert "| model_mb | 86.60 | 86.60 | +0.0% | not significant | unchanged |" in render(
        compare(to_frame([base]), to_frame([base])), "md"
    )


def _write(results: Path, reports: list[Report]) -> Path:
    for report in reports:
        write_report(report, results / report.recipe / report.run_id)
    return results


def test_cli_compares_two_folders(tmp_path: Path, capsys) -> None:
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [with_figures(base, p50_ms=10, spread_ms=0.2)])
    b = _write(tmp_path / "b", [with_figures(base, p50_ms=5, spread_ms=0.2)])
    assert main(["compare", str(a), str(b), "--only-changes"]) == 0
    out = capsys.readouterr().out
    assert "All rows: device cpu · runtime precision fp32 · batch 1 · seq_len 128\n" in out  # said once
    assert "| baseline | torch | box-1 | p50_ms | 10.00 | 5.00 | -50.0% | better |" in out


def test_cli_compare_names_the_runs_each_side_stands_for_with_their_commit_and_machine(tmp_path: Path, capsys) -> None:
    """A side may hold several runs (each row from its newest), a git revision's results or a colleague's folder: the
    Markdown named none of them, so which run, commit and machine each side was could not be read from it."""
    base = make_report(shapes=((1, 128),))
    older = dataclasses.replace(base, run_id="20261129T000000Z-0000", created_at="2026-11-29T00:00:00+00:00")
    other = make_report(("onnx",), shapes=((1, 128),), recipe="other", run_id="20261201T000000Z-0000")
    outside_git = {**other.environment, "git": {"commit": None, "dirty": None}}  # no commit to name
    commit = "def4567890abcdef1234567890abcdef12345678"  # as git gives it: shown as its first 12
    colleague = {"machine": "box-2", "git": {"commit": commit, "dirty": True}, "cpu": {"model": "Xeon"}}
    a = _write(tmp_path / "a", [older, base, dataclasses.replace(other, environment=outside_git)])  # older: superseded
    b = _write(tmp_path / "b", [dataclasses.replace(base, environment=colleague)])
    assert main(["compare", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:4] == [
        "A: demo/20261130T031500Z-3f9a (commit abc123, machine box-1: x (cores unknown)); "
        "other/20261201T000000Z-0000 (commit unknown, machine box-1: x (cores unknown))",
        "B: demo/20261130T031500Z-3f9a (commit def4567890ab (dirty), machine box-2: Xeon (cores unknown))",
    ]
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(",".join(COLUMNS) + "\n")  # tools read the rows alone, as before


def _calibrated(report: Report, gflops: float | None) -> Report:
    return dataclasses.replace(report, environment={**report.environment, "calibration_gflops": gflops})


@pytest.mark.parametrize("fmt", ["md", "csv"])
def test_cli_compare_says_when_the_runs_gemm_calibrations_read_far_apart(tmp_path: Path, capsys, fmt: str) -> None:
    """A run on a busy machine (its GEMM calibration 15x below the other's) read as a model ten times slower: every
    latency marked worse, with nothing in the comparison to say the machine, not the model, had changed."""
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [_calibrated(with_figures(base, p50_ms=10, spread_ms=0.2), 167.46)])
    b = _write(tmp_path / "b", [_calibrated(with_figures(base, p50_ms=100, spread_ms=0.2), 11.2)])
    assert main(["compare", str(a), str(b), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    note = (
        "Machine state: the calibration read GEMM 167.5 GFLOP/s in A and GEMM 11.2 GFLOP/s in B (15.0x apart): a "
        "plain matmul ran that much slower on one side"
    )
    if fmt == "md":
        lines = out.splitlines()
        assert lines[2].endswith("(commit abc123, machine box-1: x (cores unknown), GEMM 167.5 GFLOP/s)")
        assert lines[3].endswith("(commit abc123, machine box-1: x (cores unknown), GEMM 11.2 GFLOP/s)")
        assert lines[4].startswith(note) and err == ""
    else:  # the rows alone on stdout, for tools; the note where the log is read
        assert out.startswith(",".join(COLUMNS) + "\n") and "GEMM" not in out and err.startswith(note)


def _of_model(report: Report, checkpoint: str, sha256: str) -> Report:
    return dataclasses.replace(
        report, artifact={**report.artifact, "origin": {"checkpoint": checkpoint}, "sha256": sha256}
    )


@pytest.mark.parametrize("fmt", ["md", "csv"])
def test_cli_compare_says_when_the_runs_baselines_are_different_models(tmp_path: Path, capsys, fmt: str) -> None:
    """Runs of one recipe on two users' models (--model ./bert, then --model ./distilbert) were compared row by row,
    'baseline' against 'baseline', marked better and worse, with nothing to say the rows were two models."""
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [_of_model(base, "/models/bert", "61" * 32)])
    b = _write(tmp_path / "b", [_of_model(base, "/models/distilbert", "74" * 32)])
    assert main(["compare", str(a), str(b), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    note = (
        "Models: the runs start from different baselines, A's /models/bert (sha256 616161616161) and B's "
        "/models/distilbert (sha256 747474747474): each row compares two models, not one model between two runs"
    )
    if fmt == "md":
        assert out.splitlines()[4] == note and err == ""
    else:
        assert out.startswith(",".join(COLUMNS) + "\n") and "Models" not in out and err.strip() == note


def test_cli_compare_says_when_one_checkpoints_baselines_have_different_weights(tmp_path: Path, capsys) -> None:
    """The committed baseline runs of two machines fine-tuned the built-in encoder to different weights: 'different
    baselines, A's default and B's default' read as a contradiction."""
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [_of_model(base, "default", "61" * 32)])
    b = _write(tmp_path / "b", [_of_model(base, "default", "74" * 32)])
    assert main(["compare", str(a), str(b)]) == 0
    assert (
        "Models: both sides' baselines come from default, but their weights differ (sha256 616161616161 in A, "
        "747474747474 in B: fine-tuned on another machine or release, or the checkpoint changed)"
    ) in capsys.readouterr().out


def test_cli_compare_is_silent_on_one_baseline(tmp_path: Path, capsys) -> None:
    """Two runs of one model (its path moved, its bytes the same) say nothing of models."""
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [_of_model(base, "/models/bert", "61" * 32)])
    b = _write(tmp_path / "b", [_of_model(base, "/elsewhere/bert", "61" * 32)])
    assert main(["compare", str(a), str(b)]) == 0
    assert "Models" not in capsys.readouterr().out


@pytest.mark.parametrize(("a_gflops", "b_gflops"), [(100.0, 50.1), (100.0, None), (None, None)])
def test_cli_compare_is_silent_on_calibrations_close_or_missing(
    tmp_path: Path, capsys, a_gflops: float | None, b_gflops: float | None
) -> None:
    """Under 2x (one machine's committed runs read up to 1.7x apart on a shared VM), or a side without one (older
    reports): nothing said of the machine's state."""
    base = make_report(shapes=((1, 128),))
    a = _write(tmp_path / "a", [_calibrated(base, a_gflops)])
    b = _write(tmp_path / "b", [_calibrated(base, b_gflops)])
    assert main(["compare", str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert "Machine state" not in out + err
    assert ("GEMM 100.0 GFLOP/s" in out) == (a_gflops is not None)


def test_calibrations_2x_apart_are_said_whichever_side_is_slower() -> None:
    base = make_report(shapes=((1, 128),))
    for a, b in ((100.0, 50.0), (50.0, 100.0)):
        note = calibration_note(to_frame([_calibrated(base, a)]), to_frame([_calibrated(base, b)]))
        assert note is not None and "(2.0x apart)" in note, (a, b)


def _earlier(report: Report) -> Report:
    """`report` as a run of the day before, superseded by `report`'s own run."""
    return dataclasses.replace(report, run_id="20261129T031500Z-0001", created_at="2026-11-29T03:15:00+00:00")


def test_the_calibration_of_a_run_no_row_is_read_from_is_not_said() -> None:
    """A side's folder holds a run on a busy machine (11.2 GFLOP/s), measured again since on a quiet one: compare reads
    each row's newest report, so the old run's calibration says nothing of the figures compared, and the note that
    their changes may be the machine's would be wrong; with the busy run the newest, it is said."""
    base = make_report(shapes=((1, 128),))
    busy, quiet = _earlier(_calibrated(base, 11.2)), _calibrated(base, 167.46)
    assert calibration_note(to_frame([busy, quiet]), to_frame([_calibrated(base, 160.0)])) is None
    assert calibration_note(to_frame([busy]), to_frame([_calibrated(base, 160.0)])) is not None


def test_an_older_run_of_another_model_in_a_side_is_not_said() -> None:
    """A's folder holds an old run on --model ./bert before the runs on the default model that B also holds: the
    newest runs start from one baseline, so there is no 'Models:' line; with A's bert run the newest, there is."""
    base = make_report(shapes=((1, 128),))
    bert, default = _earlier(_of_model(base, "/models/bert", "61" * 32)), _of_model(base, "default", "74" * 32)
    assert model_note([bert, default], [default]) is None
    assert model_note([bert], [default]) is not None


def test_cli_compares_results_committed_in_git(tmp_path: Path, monkeypatch, capsys) -> None:
    base = make_report(shapes=((1, 128),))
    repo = tmp_path / "repo"
    _write(repo / "results", [with_figures(base, p50_ms=10, spread_ms=0.2)])
    (repo / "README.md").write_text("not results\n")
    (repo / "old").mkdir()
    (repo / "old" / "r.json").write_text(json.dumps({"schema": SCHEMA, "schema_version": 99}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first run"], check=True)
    _write(repo / "results", [with_figures(base, p50_ms=20, spread_ms=0.2)])  # overwrite: the new run, uncommitted
    monkeypatch.chdir(repo)
    assert main(["compare", "HEAD:results", "results", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.loc[table["figure"] == "p50_ms", "mark"].tolist() == ["worse"]
    assert main(["compare", "HEAD:no-such-folder", "results"]) == 2
    assert "neither a path nor committed results" in capsys.readouterr().err
    # errors name a file read from git as typed, not the temporary folder it was extracted to
    assert main(["compare", "HEAD:README.md", "results"]) == 2
    assert "error: HEAD:README.md is not an optbench report" in capsys.readouterr().err
    assert main(["compare", "HEAD:old", "results"]) == 2
    assert "error: HEAD:old/r.json has report schema_version 99" in capsys.readouterr().err


def test_cli_refuses_a_missing_side(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path / "nothing"), str(tmp_path)]) == 2
    assert "does not exist: give a results folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    assert "holds no optbench reports: give a folder a recipe run wrote" in capsys.readouterr().err


# --- budgets: checks that newly fail -------------------------------------------------------------------

BUDGET = {"name": "ship", "variants": ["baseline+onnx"], "max_accuracy_drop": "1 point", "max_size": "100 MB"}


def _chain(drop: float) -> Report:
    return with_drop(make_report(("onnx",), shapes=((1, 128),)), drop, drop - 0.3, drop + 0.3)


def test_a_check_that_passed_in_a_and_fails_in_b_is_newly_failing() -> None:
    budget = parse_budget(BUDGET, "budget 1")
    table = budget_regressions([budget], [_chain(0.2)], [_chain(2.0)])
    assert table[["variant", "figure", "a", "b", "mark"]].values.tolist() == [
        ["baseline+onnx", "max_accuracy_drop (ship)", "pass", "fail", "newly failing"]
    ]
    assert "breaks the limit 1 point" in table["why"].iloc[0]
    assert budget_regressions([budget], [_chain(2.0)], [_chain(2.5)]).empty  # failing before too: not new
    assert budget_regressions([budget], [_chain(2.0)], [_chain(0.2)]).empty
    # B cannot tell (its interval straddles the limit): not a check B fails
    assert budget_regressions([budget], [_chain(0.2)], [_chain(0.9)]).empty
    assert budget_regressions([budget], [_chain(0.9)], [_chain(0.9)]).empty


def test_a_check_that_a_left_inconclusive_and_b_fails_is_newly_failing() -> None:
    """A's interval straddled the limit (it may have passed); B's is past it: a regression, as the docs say."""
    budget = parse_budget(BUDGET, "budget 1")
    table = budget_regressions([budget], [_chain(0.9)], [_chain(2.0)])
    assert table[["figure", "a", "b", "mark"]].values.tolist() == [
        ["max_accuracy_drop (ship)", "inconclusive", "fail", "newly failing"]
    ]


def test_cli_compare_with_budgets_lists_newly_failing_checks(tmp_path: Path, capsys) -> None:
    a, b = _write(tmp_path / "a", [_chain(0.2)]), _write(tmp_path / "b", [_chain(2.0)])
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nname = "ship"\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 point"\n')
    assert main(["compare", str(a), str(b), "--budget", str(budgets), "--only-changes"]) == 0
    out = capsys.readouterr().out
    # the runtime as the figure rows have it, its device and precision said once with theirs
    assert "| baseline+onnx | torch | box-1 | max_accuracy_drop (ship) | pass | fail | - | newly failing |" in out
    assert "All rows: device cpu · runtime precision fp32\n" in out  # no batch -: the budget row has no shape
    assert main(["compare", str(a), str(b), "--budget", str(budgets), "--format", "csv"]) == 0
    figures = [row["figure"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert figures[0] == "max_accuracy_drop (ship)" and len(figures) > 1  # the budget's rows first, then the figures
    budgets.write_text('[[budget]]\nmax_accuracy_drop = "1"\n')
    assert main(["compare", str(a), str(b), "--budget", str(budgets)]) == 2
    assert "max_accuracy_drop" in capsys.readouterr().err


def test_compare_help_says_it_exits_0_whatever_it_marks_and_names_gate_for_ci(capsys) -> None:
    """compare exits 0 with rows newly failing or worse, as above, by design: its --help did not say so, nor which
    command fails a release."""
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "compare exits 0 whatever it marks (worse, newly failing, with --budget too): to pass or fail a release in "
        "CI, use optbench gate, whose exit code does." in text
    )


LATENCY = {"name": "latency", "variants": ["baseline+onnx"], "batch_size": 1, "seq_len": 128, "max_p50": "20 ms"}
PASSED = with_figures(make_report(("onnx",), shapes=((1, 128),)), p50_ms=10)


def test_a_check_b_cannot_judge_or_lacks_is_newly_failing_as_the_gate_fails_it() -> None:
    """A check A passed that B cannot judge (its shape not measured, its job failed) fails in B's gate: a
    regression. It was left out when its reason, held where the shape was, matched none of A's checks."""
    budget = parse_budget(LATENCY, "budget 1")
    columns = ["variant", "runtime", "device", "precision_mode", "figure", "a", "b", "mark"]
    row = ["baseline+onnx", "torch", "cpu", "fp32", "max_p50 (latency, batch 1 x 128)", "pass"]
    assert budget_regressions([budget], [PASSED], [PASSED]).empty  # both pass
    unmeasured = budget_regressions([budget], [PASSED], [make_report(("onnx",), shapes=((8, 64),))])
    assert unmeasured[columns].values.tolist() == [[*row, "fail", "newly failing"]]
    assert unmeasured["why"].iloc[0].endswith("not measured at batch 1 x 128 (measured: batch 8 x 64)")
    baseline_only = [make_report(shapes=((1, 128),))]
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    failed = budget_regressions([budget], [PASSED], baseline_only, Failures.of_run([crashed], baseline_only))
    assert failed[columns].values.tolist() == [[*row, "fail", "newly failing"]]
    assert failed["why"].iloc[0].endswith("max_p50 cannot be checked: its latency-1 failed: crashed with SIGSEGV")
    missing = budget_regressions([budget], [PASSED], baseline_only)  # no failures.json: no report of it at all
    assert missing[columns].values.tolist() == [[*row, "missing", "newly failing"]]
    assert missing["why"].iloc[0] == "no report of baseline+onnx on torch-cpu-fp32 in B's newest run"


def test_budget_checks_are_compared_across_machines_with_one_machine_a_side() -> None:
    budget = parse_budget(LATENCY, "budget 1")
    slower = _on(with_figures(PASSED, p50_ms=30), "box-2")
    table = budget_regressions([budget], [PASSED], [slower])
    assert table[["machine", "a", "b"]].values.tolist() == [["box-1 -> box-2", "pass", "fail"]]


def test_cli_compare_reads_the_failed_jobs_of_b(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a", [PASSED])
    baseline = make_report(shapes=((1, 128),))
    b = _write(tmp_path / "b", [baseline])
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    write_failures([crashed], b / baseline.recipe / baseline.run_id, baseline.run_id)
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nname = "latency"\nvariants = ["baseline+onnx"]\nbatch_size = 1\nseq_len = 128\nmax_p50 = "20 ms"\n'
    )
    assert main(["compare", str(a), str(b), "--budget", str(budgets), "--only-changes"]) == 0
    out = capsys.readouterr().out
    assert "| max_p50 (latency, batch 1 x 128) | pass | fail | - | newly failing |" in out
    assert "its latency-1 failed: crashed with SIGSEGV" in out


def _with_calls(ms: list[float]) -> Report:
    """The baseline at batch 1 whose timed calls took `ms`, its throughput theirs."""
    report = make_report(shapes=((1, 128),))
    latency = Latency.from_values([round(v * 1e6) for v in ms])
    (m,) = report.measurements
    changed = dataclasses.replace(m, latency=latency, throughput_sps=throughput(1, latency))
    return dataclasses.replace(report, measurements=(changed,))


def test_throughput_is_judged_by_the_spread_of_the_mean_it_comes_from() -> None:
    """Throughput is batch / mean latency: one stalled call moves it a lot and the p50 not at all, so its
    interval comes from the mean's spread, not the p50's narrow one."""
    steady = [40 + 0.1 * (i % 5) for i in range(20)]
    stalled = [*steady[:19], 400.0]
    marks = _marks([_with_calls(steady)], [_with_calls(stalled)])
    assert marks["baseline", 1, "p50_ms"] == "not significant"
    assert marks["baseline", 1, "throughput_sps"] == "not significant"  # -31%, inside the mean's interval
    faster = [v / 2 for v in steady]
    assert _marks([_with_calls(steady)], [_with_calls(faster)])["baseline", 1, "throughput_sps"] == "better"


def test_a_throughput_beyond_both_means_95_percent_intervals_is_marked() -> None:
    """Calls of 10 and 12 ms against 8.9 and 10.9 ms, 20 each: the means' intervals (11 +- 0.44, 9.9 +- 0.44 ms)
    are 0.22 ms apart, so the throughput is better; at 1.5 times their width they would overlap."""
    marks = _marks([_with_calls([10, 12] * 10)], [_with_calls([8.9, 10.9] * 10)])
    assert marks["baseline", 1, "throughput_sps"] == "better"


def test_a_throughput_whose_mean_s_interval_reaches_zero_is_unbounded() -> None:
    """One call stalled for a second among 20 of 1 ms: the mean's 95% interval (49 +- 91 ms) reaches below zero, so
    the throughput may be anything above 7 samples a second; it is never better or worse, and says why."""
    stalled, steady = _with_calls([*[1.0] * 20, 1000.0]), _with_calls([1.0] * 21)
    row = compare(to_frame([stalled]), to_frame([steady])).set_index("figure").loc["throughput_sps"]
    assert row["mark"] == "not significant"
    assert row["why"] == "the 95% intervals overlap: one is unbounded (too few timed calls: raise [bench] min_iters)"


def test_speedup_is_judged_with_the_reference_spread_as_the_gate_judges_it() -> None:
    """speedup_p50 divides the reference's p50 by the row's: a noisy reference widens its interval."""
    reference = with_figures(make_report(shapes=((1, 128),)), p50_ms=10, spread_ms=3, speedup=1.0)
    chain = make_report(("onnx",), shapes=((1, 128),))
    before = [reference, with_figures(chain, p50_ms=5, spread_ms=0.05, speedup=2.0)]
    after = [reference, with_figures(chain, p50_ms=4.5, spread_ms=0.05, speedup=10 / 4.5)]
    marks = _marks(before, after)
    assert marks["baseline+onnx", 1, "p50_ms"] == "better"
    assert marks["baseline+onnx", 1, "speedup_p50"] == "not significant"  # the row's p50 alone would say better
    alone = _marks(before[1:], after[1:])  # no reference in the results: the row's own p50 interval
    assert alone["baseline+onnx", 1, "speedup_p50"] == "better"


def test_a_speedup_without_its_reference_is_judged_by_the_row_s_own_p50_interval() -> None:
    """No reference in the results: a 200 ms reference over p50s of 100 ms (90 to 110) and 118 ms (108 to 128),
    whose intervals overlap, is no change in the speedup either (1.82 to 2.22x against 1.56 to 1.85x)."""
    chain = make_report(("onnx",), shapes=((1, 128),))
    before = with_figures(chain, p50_ms=100, spread_ms=40, speedup=2.0)
    after = with_figures(chain, p50_ms=118, spread_ms=40, speedup=200 / 118)
    marks = _marks([before], [after])
    assert marks["baseline+onnx", 1, "p50_ms"] == marks["baseline+onnx", 1, "speedup_p50"] == "not significant"


def _on(report: Report, machine: str | None) -> Report:
    return dataclasses.replace(report, environment={**report.environment, "machine": machine})


def test_a_run_on_several_machines_is_matched_machine_by_machine() -> None:
    base = make_report(shapes=((1, 128),))
    a = [_on(with_figures(base, p50_ms=10, spread_ms=0.2), "fast"), _on(with_figures(base, p50_ms=30), "slow")]
    b = [_on(with_figures(base, p50_ms=20, spread_ms=0.2), "fast"), _on(with_figures(base, p50_ms=30), "slow")]
    table = compare(to_frame(a), to_frame(b))
    p50 = table[table["figure"] == "p50_ms"].set_index("machine")
    assert p50.loc["fast", "mark"] == "worse" and p50.loc["slow", "mark"] == "not significant"
    one_each = compare(to_frame(a[:1]), to_frame(b[1:]))  # one machine a side: compared across machines
    assert set(one_each["machine"]) == {"fast -> slow"}


def test_a_run_on_several_machines_against_one_on_one_is_matched_machine_by_machine() -> None:
    """A Ray run on two machines against a local run on one of them: one side of several machines is enough, or
    A's two machines' rows would be one row, the slow machine's compared as the fast one's."""
    base = make_report(shapes=((1, 128),))
    a = [_on(with_figures(base, p50_ms=10, spread_ms=0.2), "fast"), _on(with_figures(base, p50_ms=30), "slow")]
    b = [_on(with_figures(base, p50_ms=10, spread_ms=0.2), "fast")]
    for first, second, lacking in ((a, b, "newly failing"), (b, a, "new")):
        table = compare(to_frame(first), to_frame(second))
        marks = table.set_index(["machine", "figure"])["mark"]
        assert marks["fast", "p50_ms"] == "not significant"
        assert marks["slow", "-"] == lacking


def test_a_report_without_a_machine_is_a_machine_of_its_own() -> None:
    """An older report names no machine: beside one that does, it may be another machine, so a side holding both is
    matched machine by machine; its rows read '-' for the machine (they read 'nan'), and a failure B's run of such
    reports records says why such a row has no report in B (it was looked for on a machine named 'nan')."""
    base, chain = make_report(shapes=((1, 128),)), PASSED
    a = [_on(with_figures(base, p50_ms=10, spread_ms=0.2), "fast"), _on(with_figures(base, p50_ms=30), None)]
    b = [_on(with_figures(base, p50_ms=10, spread_ms=0.2), "fast")]
    marks = compare(to_frame(a), to_frame(b)).set_index(["machine", "figure"])["mark"]
    assert marks["fast", "p50_ms"] == "not significant"
    assert marks["-", "-"] == "newly failing"
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    unnamed = [_on(base, None)]
    table = compare(
        to_frame([_on(chain, "fast"), _on(chain, None)]),
        to_frame(unnamed),
        failures_b=lambda: Failures.of_run([crashed], unnamed),
    )
    rows = table.loc[table["mark"] == "newly failing", ["machine", "why"]].values.tolist()
    assert rows == [["fast", "no report in B"], ["-", "no report in B: its latency-1 failed: crashed with SIGSEGV"]]


def test_budget_checks_are_told_apart_by_budget_and_limit() -> None:
    """Two budgets of one name with two limits on one figure, and one of another name with the same limit, are three
    checks: the two 20 ms limits newly fail, each listed, and the 50 ms limit still passes."""
    names_and_limits = [("latency", "20 ms"), ("latency", "50 ms"), ("release", "20 ms")]
    budgets = [
        parse_budget({**LATENCY, "name": name, "max_p50": limit}, f"budget {i}")
        for i, (name, limit) in enumerate(names_and_limits)
    ]
    table = budget_regressions(budgets, [PASSED], [with_figures(PASSED, p50_ms=30)])
    assert table["figure"].tolist() == ["max_p50 (latency, batch 1 x 128)", "max_p50 (release, batch 1 x 128)"]
    assert all(why.endswith("breaks the limit 20 ms") for why in table["why"])


def test_budget_checks_are_told_apart_by_runtime() -> None:
    """One variant on two runtimes is two checks: the one that newly fails is listed on its runtime."""
    budget = parse_budget(LATENCY, "budget 1")
    on_ort = with_figures(make_report(("onnx",), runtime=RuntimeSpec("onnxruntime"), shapes=((1, 128),)), p50_ms=10)
    table = budget_regressions([budget], [PASSED, on_ort], [with_figures(PASSED, p50_ms=30), on_ort])
    assert table[["runtime", "a", "b"]].values.tolist() == [["torch", "pass", "fail"]]


def test_budget_checks_are_those_of_each_side_s_newest_run() -> None:
    """A side may hold several runs: A's newest passed where its older run failed, B's newest fails where its older
    run passed, so the check newly fails whatever order the reports are read in."""
    budget = parse_budget(LATENCY, "budget 1")
    older = {"run_id": "20261129T000000Z-0000", "created_at": "2026-11-29T00:00:00+00:00"}
    a = [PASSED, dataclasses.replace(with_figures(PASSED, p50_ms=30), **older)]
    b = [with_figures(PASSED, p50_ms=30), dataclasses.replace(PASSED, **older)]
    for a_side, b_side in ((a, b), (a[::-1], b[::-1])):
        table = budget_regressions([budget], a_side, b_side)
        assert table[["a", "b", "mark"]].values.tolist() == [["pass", "fail", "newly failing"]]


def test_budgets_of_one_name_at_two_shapes_are_checked_apart() -> None:
    def at(batch: int, seq_len: int) -> dict:
        return {
            "name": "latency",
            "variants": ["baseline"],
            "batch_size": batch,
            "seq_len": seq_len,
            "max_p50": "20 ms",
        }

    budgets = [parse_budget(at(1, 128), "budget 1"), parse_budget(at(8, 64), "budget 2")]
    base = make_report(shapes=((1, 128), (8, 64)))
    before = dataclasses.replace(
        base,
        measurements=(with_figures(base, p50_ms=10).measurements[0], with_figures(base, p50_ms=30).measurements[1]),
    )
    after = with_figures(base, p50_ms=30)
    table = budget_regressions(budgets, [before], [after])
    assert table[["figure", "a", "b"]].values.tolist() == [["max_p50 (latency, batch 1 x 128)", "pass", "fail"]]
    assert table["seq_len"].tolist() == ["-"]  # not "batch 1 x 128", which the All rows line called a seq_len


def test_a_failed_step_in_b_gives_the_checks_a_passed_its_reason() -> None:
    """A step's failure (before any runtime) is recorded on no runtime: its checks were matched to none of A's,
    which read 'missing', 'no report of baseline+onnx on torch-cpu-fp32', without the failure failures.json holds."""
    budget = parse_budget(LATENCY, "budget 1")
    broken = FailedJob("baseline+onnx", "", "step onnx", "export failed: opset 99")
    b = [make_report(shapes=((1, 128),))]
    table = budget_regressions([budget], [PASSED], b, Failures.of_run([broken], b))
    assert table[["variant", "runtime", "a", "b", "mark"]].values.tolist() == [
        ["baseline+onnx", "torch", "pass", "fail", "newly failing"]
    ]
    assert table["why"].iloc[0].endswith("max_p50 cannot be checked: its step onnx failed: export failed: opset 99")


def test_a_failed_job_in_a_run_on_several_machines_gives_each_check_a_passed_its_reason_there() -> None:
    """A run leaves a variant whose job failed out of every machine's reports, so its failure (recorded on no
    machine) is why each machine of B's run has no report of it: each such check reads on its machine, where it read
    'box-1 -> -'. On a machine B's run did not measure on, the failure says nothing: no report there at all."""
    budget = parse_budget(LATENCY, "budget 1")
    a = [_on(PASSED, "box-1"), _on(PASSED, "box-2")]
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    b = [_on(make_report(shapes=((1, 128),)), machine) for machine in ("box-1", "box-2")]
    table = budget_regressions([budget], a, b, Failures.of_run([crashed], b))
    assert table[["machine", "a", "b"]].values.tolist() == [["box-1", "pass", "fail"], ["box-2", "pass", "fail"]]
    assert all(
        why.endswith("max_p50 cannot be checked: its latency-1 failed: crashed with SIGSEGV") for why in table["why"]
    )
    on_box_2 = b[1:]
    table = budget_regressions([budget], a, on_box_2, Failures.of_run([crashed], on_box_2))
    assert table[["machine", "b"]].values.tolist() == [["box-1", "missing"], ["box-2", "fail"]]


def test_a_failed_job_in_b_on_another_machine_names_b_s_machine() -> None:
    """With one machine a side, checks are matched across machines and the row says 'A -> B': a failure's said
    'box-1 -> -', as if B had run nowhere."""
    budget = parse_budget(LATENCY, "budget 1")
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    b = [_on(make_report(shapes=((1, 128),)), "box-2")]
    table = budget_regressions([budget], [PASSED], b, Failures.of_run([crashed], b))
    assert table[["machine", "b"]].values.tolist() == [["box-1 -> box-2", "fail"]]


def test_a_row_b_lacks_through_a_recorded_failure_says_why() -> None:
    """A plain row newly failing said only 'no report in B' where B's failures.json says why (a failed job on its
    runtime, or a failed step, on every runtime); a failure of another runtime or variant explains nothing."""
    a = [make_report(shapes=((1, 128),)), PASSED]
    b = [_on(make_report(shapes=((1, 128),)), "box-2")]

    def newly_failing(*failed: FailedJob) -> list[list[str]]:
        table = compare(to_frame(a), to_frame(b), failures_b=lambda: Failures.of_run(failed, b))
        return table.loc[table["mark"] == "newly failing", ["variant", "machine", "why"]].values.tolist()

    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    failed = "no report in B: its latency-1 failed: crashed with SIGSEGV"
    assert newly_failing(crashed) == [["baseline+onnx", "box-1 -> box-2", failed]]
    broken = FailedJob("baseline+onnx", "", "step onnx", "export failed: opset 99")
    assert newly_failing(broken)[0][2] == "no report in B: its step onnx failed: export failed: opset 99"
    elsewhere = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")
    another = FailedJob("baseline+prune", "torch-cpu-fp32", "latency-1", "crashed")
    assert newly_failing(elsewhere) == newly_failing(another) == newly_failing()
    assert newly_failing() == [["baseline+onnx", "box-1", "no report in B"]]


def test_a_failed_step_of_another_variant_in_b_leaves_a_check_b_passes_alone() -> None:
    """B's run failed its prune step and measured baseline+onnx, which passes its budget as in A: no regression. A
    failure matched by runtime alone would stand for every variant, the check read as that failure's and listed newly
    failing, 'missing'."""
    budget = parse_budget(LATENCY, "budget 1")
    broken = FailedJob("baseline+prune", "", "step prune", "pruning failed: no heads left")
    assert budget_regressions([budget], [PASSED], [PASSED], Failures.of_run([broken], [PASSED])).empty


def test_a_row_on_a_machine_b_s_run_did_not_measure_on_has_no_failure_reason() -> None:
    a = [_on(PASSED, "box-1"), _on(PASSED, "box-2")]
    b = [_on(make_report(shapes=((1, 128),)), machine) for machine in ("box-1", "box-2")]
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    table = compare(to_frame(a), to_frame(b), failures_b=lambda: Failures.of_run([crashed], b[1:]))
    rows = table.loc[table["mark"] == "newly failing", ["machine", "why"]].values.tolist()
    assert rows == [
        ["box-1", "no report in B"],
        ["box-2", "no report in B: its latency-1 failed: crashed with SIGSEGV"],
    ]


def test_cli_compare_counts_a_run_copied_into_two_folders_once(tmp_path: Path, capsys) -> None:
    """As report and gate do (`report.distinct`): B's run in its folder and in a backup judged two reference rows
    at the budget's shape, 'names 2 rows: name one', and listed a speedup check A passed as newly failing."""
    reference = with_figures(make_report(shapes=((1, 128),)), p50_ms=10, spread_ms=0.2, speedup=1.0)
    chain = with_figures(make_report(("onnx",), shapes=((1, 128),)), p50_ms=5, spread_ms=0.2, speedup=2.0)
    a = _write(tmp_path / "a", [reference, chain])
    b = _write(tmp_path / "b", [reference, chain])
    write_report(reference, b / "backup")
    write_report(chain, b / "backup")
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nname = "fast"\nvariants = ["baseline+onnx"]\nbatch_size = 1\nseq_len = 128\nmin_speedup = "1.5x"\n'
    )
    assert main(["compare", str(a), str(b), "--budget", str(budgets), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["mark"]) == {"not significant"}


def test_cli_compare_reads_b_s_failures_file_only_where_a_row_uses_it(tmp_path: Path, capsys) -> None:
    """B's failed jobs say why a row or budget check is newly failing: a damaged failures.json in A, or in B where
    nothing is newly failing, stopped a comparison that never reads it (exit 2, 'is damaged'); in B where a row is
    newly failing it is refused, as the gate refuses it."""
    run = Path(PASSED.recipe) / PASSED.run_id
    a, b = _write(tmp_path / "a", [PASSED]), _write(tmp_path / "b", [PASSED])
    for side in (a, b):
        (side / run / "failures.json").write_text('[{"job": ["latency-1"]}]')  # JSON, but no failed job
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 0
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nname = "ship"\nvariants = ["baseline+onnx"]\nmax_accuracy_drop = "1 point"\n')
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--budget", str(budgets)]) == 2
    assert f"{b / run / 'failures.json'} is damaged" in capsys.readouterr().err
    (b / run / f"{PASSED.variant}.torch-cpu-fp32.json").unlink()
    write_report(make_report(shapes=((1, 128),)), b / run)
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 2
    assert f"{b / run / 'failures.json'} is damaged" in capsys.readouterr().err


def test_cli_compare_gives_the_reason_b_s_failures_file_records(tmp_path: Path, monkeypatch, capsys) -> None:
    """Read from B's run folder while it is there: for REV:PATH, the folder git's files are unpacked to."""
    a = _write(tmp_path / "a", [PASSED])
    baseline = make_report(shapes=((1, 128),))
    repo = tmp_path / "repo"
    b = _write(repo / "results", [baseline])
    crashed = FailedJob("baseline+onnx", "torch-cpu-fp32", "latency-1", "crashed with SIGSEGV")
    write_failures([crashed], b / baseline.recipe / baseline.run_id, baseline.run_id)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a run"], check=True)
    monkeypatch.chdir(repo)
    for side in ("results", "HEAD:results"):
        assert main(["compare", str(a), side, "--only-changes"]) == 0
        assert (
            "| newly failing | no report in B: its latency-1 failed: crashed with SIGSEGV |" in capsys.readouterr().out
        )


def test_csv_and_json_leave_cells_without_a_value_empty_not_markdown_s_dash() -> None:
    """A budget row has no batch size or length, a row not comparable no figure, a or b: they read "-", a string in a
    column of integers or numbers, which a script's int() or float() fails on; null in JSON, empty in CSV."""
    base = make_report(("onnx",), shapes=((1, 128),))
    table = compare(to_frame([base]), to_frame([with_figures(base, workload="other-data")]))
    budget = parse_budget(LATENCY, "budget 1")
    table = pd.concat([budget_regressions([budget], [PASSED], [with_figures(PASSED, p50_ms=30)]), table])
    budget_row, not_comparable = json.loads(render(table, "json"))
    assert (budget_row["batch_size"], budget_row["seq_len"], budget_row["a"]) == (None, None, "pass")
    assert (not_comparable["batch_size"], not_comparable["figure"], not_comparable["a"]) == (1, None, None)
    rows = pd.read_csv(io.StringIO(render(table, "csv")))
    assert rows["batch_size"].isna().tolist() == [True, False] and rows["figure"].isna().tolist() == [False, True]
    assert pd.isna(rows["b"].iloc[1])
    assert "| - | - |" in render(table, "md")  # people still read a dash
