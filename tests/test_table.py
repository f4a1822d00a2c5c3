"""The result table: reports flattened to one frame, and rendered as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import SHAPE_GROUPED_ROWS, gpu_report, make_report, with_drop, with_figures

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.failures import FailedJob
from optbench.report import COLUMNS, EXTRA_COLUMNS, Report, write_report
from optbench.runtimes import RuntimeSpec
from optbench.table import (
    commit_label,
    format_cell,
    format_number,
    format_points,
    format_speedup,
    gemm_words,
    no_rows,
    records_csv,
    render,
    run_facts,
    said_once,
    settings_line,
    to_frame,
)


def test_to_frame_columns_and_values() -> None:
    report = make_report(("onnx",), flip=3)
    frame = to_frame([report])
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert list(frame.columns) == COLUMNS + EXTRA_COLUMNS
    assert len(frame) == 2
    row = frame.iloc[0].to_dict()
    m = report.measurements[0]
    assert row["variant"] == "baseline+onnx"
    assert row["runtime"] == "torch"
    assert row["device"] == "cpu"
    assert row["precision_mode"] == "fp32"
    assert row["batch_size"] == 1
    assert row["seq_len"] == 128
    assert row["p50_ms"] == m.latency.p50_ms
    assert row["p99_ci_high"] == m.latency.p99_ci_high
    assert row["iterations"] == 40
    assert row["accuracy"] == pytest.approx(0.7)
    assert row["accuracy_drop"] == pytest.approx(30.0)
    assert row["relative_accuracy_pct"] == pytest.approx(70.0)  # 0.7 of a reference at 1.0
    assert row["agreement"] == pytest.approx(0.7)
    assert row["model_mb"] == 86.6 and row["parameters_m"] == pytest.approx(22.7)
    assert row["threads"] == 2
    assert row["git_commit"] == "abc123"
    assert frame["git_dirty"].tolist() == [False, False]
    assert row["machine"] == "box-1"
    assert row["workload"] == "wl-1-128"
    assert frame.iloc[1]["seq_len"] == "data"


def test_to_frame_sorts_batch_sizes_as_numbers() -> None:
    shapes = ((10, 128), (2, 128))
    frame = to_frame([make_report(("onnx",), shapes=shapes), make_report(shapes=shapes)])
    assert list(zip(frame["batch_size"], frame["variant"], strict=True)) == [
        (2, "baseline"),
        (2, "baseline+onnx"),
        (10, "baseline"),
        (10, "baseline+onnx"),
    ]


def test_to_frame_groups_the_rows_of_each_shape_with_lengths_as_numbers() -> None:
    # rows of one batch size at two lengths alternated variant by variant, and lengths sorted as text put 128
    # before 16: the HTML page numbered its plotted shape's rows 1, -, 2, -, 3
    shapes = ((1, 128), (1, "data"), (1, 16))
    frame = to_frame([make_report(("onnx",), shapes=shapes), make_report(shapes=shapes)])
    assert list(zip(frame["seq_len"], frame["variant"], strict=True)) == SHAPE_GROUPED_ROWS


def test_to_frame_puts_the_reference_first_at_each_shape_whatever_its_runtime() -> None:
    """Rows at a shape are by variant, then runtime: by runtime first, the ONNX chain on onnxruntime would come before
    the baseline on torch, which the others are read against."""
    reports = [make_report(("onnx",), runtime=RuntimeSpec("onnxruntime")), make_report()]
    frame = to_frame(reports)
    assert list(zip(frame["batch_size"], frame["variant"], strict=True)) == [
        (1, "baseline"),
        (1, "baseline+onnx"),
        (8, "baseline"),
        (8, "baseline+onnx"),
    ]


def test_to_frame_keeps_each_runs_rows_together_in_run_order() -> None:
    """A results folder of two runs: sorted by shape alone, the CSV and JSON would interleave their rows."""
    later, earlier = make_report(run_id="20261201T000000Z-0000"), make_report(run_id="20261130T031500Z-3f9a")
    frame = to_frame([later, earlier])
    assert frame["run_id"].tolist() == [earlier.run_id] * 2 + [later.run_id] * 2
    assert frame["batch_size"].tolist() == [1, 8, 1, 8]


def test_to_frame_of_no_reports() -> None:
    frame = to_frame([])
    assert list(frame.columns) == COLUMNS + EXTRA_COLUMNS
    assert frame.empty
    assert render(frame, "md") == "no reports found\n"


def test_a_table_that_does_not_count_its_reports_is_one_of_none() -> None:
    """A frame built elsewhere, without to_frame's count of the reports it came from."""
    assert no_rows(pd.DataFrame()) == "no reports found"


def test_markdown_of_reports_without_measurements_says_they_were_found() -> None:
    # it said "no reports found" of reports that were found and read, only without a measured shape
    frame = to_frame([dataclasses.replace(make_report(steps), measurements=()) for steps in [(), ("onnx",)]])
    text = render(frame, "md")
    assert "no reports found" not in text
    assert text == "2 reports found, none with a measurement (a latency at a batch shape)\n"


def test_cli_report_of_reports_without_measurements_says_they_were_found(tmp_path: Path, capsys) -> None:
    write_report(dataclasses.replace(make_report(), measurements=()), tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("1 report found, none with a measurement")


def test_render_csv_header() -> None:
    text = render(to_frame([make_report(), make_report(("onnx",))]), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == COLUMNS + EXTRA_COLUMNS
    assert len(rows) == 5


def test_csv_floats_keep_their_digits_without_binary_noise() -> None:
    frame = pd.DataFrame({"p50_ms": [44.333232499999994, 0.1 + 0.2, 1.25e-5], "iterations": [102, 3, 7]})
    rows = list(csv.reader(io.StringIO(records_csv(frame))))
    assert rows[1:] == [["44.3332325", "102"], ["0.3", "3"], ["1.25e-05", "7"]]


def test_csv_floats_among_words_keep_their_digits_without_binary_noise() -> None:
    # compare's `a` and `b` hold figures beside words (`measured`, `missing`, a budget's verdicts): pandas formats
    # only float columns, so its CSV wrote 44.333232499999994 where report's wrote 44.3332325
    frame = pd.DataFrame({"a": [44.333232499999994, "missing", None, float("inf"), 1], "b": [True] * 5})
    rows = list(csv.reader(io.StringIO(records_csv(frame))))
    assert rows[1:] == [["44.3332325", "True"], ["missing", "True"], ["", "True"], ["inf", "True"], ["1", "True"]]


def test_render_markdown() -> None:
    text = render(to_frame([make_report(), make_report(("quantize-dynamic",), flip=1)]), "md")
    assert "### demo · run 20261130T031500Z-3f9a" in text
    assert "baseline+quantize-dynamic" in text
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert "p50_ms" in header and "accuracy_drop" in header and "relative_accuracy_pct" in header
    table = [line for line in text.splitlines() if line.startswith("| baseline")]
    assert len(table) == 4
    assert all(line.count("|") == header.count("|") for line in table)
    lines = text.splitlines()
    assert lines[lines.index(header) + 1] == "|" + " --- |" * (header.count("|") - 1)
    assert any("2.50x" in line for line in table)  # speedup_p50 of 1.5 + batch 1
    assert any("| - |" in line for line in table)  # the baseline has no speedup of its own
    drops = [line.split(" | ")[header.split(" | ").index("accuracy_drop")] for line in table]
    assert "+0.00" in drops  # the reference itself: no interval
    assert any(re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", d) for d in drops)


def test_markdown_writes_accuracy_to_four_places_and_relative_accuracy_as_a_percentage() -> None:
    shape = ((1, 128),)
    frame = to_frame([make_report(shapes=shape), make_report(("onnx",), shapes=shape, flip=3)])
    (line,) = [line for line in render(frame, "md").splitlines() if line.startswith("| baseline+onnx ")]
    assert "| 0.7000 | +30.00 [" in line and "] | 70.0% | 2.50x |" in line


def test_a_run_of_one_row_says_where_it_comes_from() -> None:
    text = render(to_frame([make_report(shapes=((1, 128),))]), "md")
    assert "created 2026-11-30T03:15:00+00:00 · commit abc123 · machine box-1 · 2 threads · 10 test rows" in text


def test_runs_without_notes_are_one_blank_line_apart() -> None:
    run_ids = ("20261130T031500Z-3f9a", "20261201T000000Z-0000")
    runs = [make_report(run_id=run_id, shapes=((1, 128),)) for run_id in run_ids]
    text = render(to_frame(runs), "md")
    assert " |\n\n### demo · run 20261201T000000Z-0000\n" in text
    assert "\n\n\n" not in text and text.endswith(" |\n")


def _noisy_run(floor: float | None) -> list:
    """The reference, a variant 1.05x faster (p50s 4.9% apart) and one 1.5x faster (40% apart)."""
    shape = ((1, 128),)
    return [
        with_figures(make_report(steps, shapes=shape), speedup=speedup, noise_floor_pct=floor)
        for steps, speedup in [((), 1.0), (("onnx",), 1.05), (("quantize-dynamic",), 1.5)]
    ]


def test_markdown_marks_speedups_within_the_a_a_noise_floor_and_states_it() -> None:
    text = render(to_frame(_noisy_run(8.0)), "md")
    assert "| ~1.05x |" in text and "| 1.50x |" in text
    assert "| 1.00x |" in text  # the reference against itself is no measured speedup
    assert "- **A/A noise floor**: the reference's two p50s in this run differ by 8.0% at batch 1 x 128. " in text
    quiet = render(to_frame(_noisy_run(4.0)), "md")
    assert "| 1.05x |" in quiet and "~1" not in quiet
    unknown = render(to_frame(_noisy_run(None)), "md")  # aa_check off, or a version 1 report
    assert "~" not in unknown and "noise floor" not in unknown


def test_the_noise_floor_of_a_run_on_one_machine_at_two_shapes_names_no_machine() -> None:
    run = [with_figures(make_report(steps), speedup=1.5, noise_floor_pct=8.0) for steps in ((), ("onnx",))]
    assert (
        "- **A/A noise floor**: the reference's two p50s in this run differ by 8.0% at batch 1 x 128, "
        "8.0% at batch 8 x data. " in render(to_frame(run), "md")
    )


def test_the_noise_floor_of_a_run_on_several_machines_names_each_machine() -> None:
    """A Ray run measures the reference twice on each machine: two floors at one shape, each said with its machine."""
    run = [
        dataclasses.replace(report, environment={**report.environment, "machine": machine})
        for machine, floor in (("fast", 8.0), ("slow", 3.0))
        for report in _noisy_run(floor)
    ]
    assert (
        "- **A/A noise floor**: the reference's two p50s in this run differ by 8.0% at batch 1 x 128 on machine fast, "
        "3.0% at batch 1 x 128 on machine slow. " in render(to_frame(run), "md")
    )


def test_a_speedup_is_marked_up_to_and_on_the_noise_floor_in_percent_of_the_two_p50s_mean() -> None:
    """As the A/A floor is measured: 1.05x is p50s 4.88% apart in percent of their mean (5% of the slower)."""
    assert format_speedup(1.05, 4.9) == "~1.05x"
    assert format_speedup(1.05, 4.8) == "1.05x"
    assert format_speedup(1.5, 40.0) == "~1.50x"  # p50s 40% apart: on the floor is within it
    assert format_speedup(1.004, 5.0) == "~1.00x"  # p50s 0.4% apart: within a floor however close to 1


def test_a_speedup_two_decimals_round_to_zero_keeps_a_digit() -> None:
    """A variant 300 times slower than the row it is against read 0.00x: no speedup at all, or a broken figure."""
    assert format_speedup(0.0033, None) == "0.003x"
    assert format_speedup(0.00034, 5.0) == "0.0003x"
    assert format_speedup(0.005, None) == "0.01x"  # two decimals tell it from zero: as before
    assert format_speedup(0.00497, None) == "0.005x"  # two decimals would round it to 0.00
    # the ~ of a floor that wide (199% of the p50s' mean; an A/A floor of 179% was measured on a loaded machine)
    assert format_speedup(0.0033, 200.0) == "~0.003x"


def test_render_json() -> None:
    frame = to_frame([make_report(), make_report(("onnx",))])
    records = json.loads(render(frame, "json"))
    assert len(records) == 4
    assert list(records[0]) == COLUMNS + EXTRA_COLUMNS
    assert {r["variant"] for r in records} == {"baseline", "baseline+onnx"}


def test_render_json_of_no_rows_is_an_empty_list() -> None:
    """A report without measurements has no rows: pandas indented its empty list as "[\n\n]"."""
    frame = to_frame([dataclasses.replace(make_report(), measurements=())])
    assert render(frame, "json") == "[]"


@pytest.mark.parametrize("fmt", ["xml", "html ", "", "MD"])
def test_render_unknown_format(fmt: str) -> None:
    with pytest.raises(OptbenchError, match=f"unknown report format {fmt!r}: use md, csv or json"):
        render(to_frame([make_report()]), fmt)


def test_markdown_lists_artifact_warnings_once_per_variant() -> None:
    warned = make_report(("onnx",))
    artifact = {**warned.artifact, "details": {"warnings": ["no Attention was fused"]}}
    warned = dataclasses.replace(warned, artifact=artifact)
    frame = to_frame([make_report(), warned])
    assert set(frame["warnings"]) == {"", "no Attention was fused"}
    lines = render(frame, "md").splitlines()
    assert lines.count("- **warning (baseline+onnx)**: no Attention was fused") == 1


def test_markdown_shows_gpu_and_startup_columns_only_for_runs_that_have_them() -> None:
    cpu = render(to_frame([make_report()]), "md")
    assert not {"gpu_peak_reserved_mb", "load_s", "first_call_s"} & set(cpu.split(" | "))
    gpu = render(to_frame([gpu_report()]), "md")
    header = next(line for line in gpu.splitlines() if line.startswith("| variant"))
    assert header.endswith("| gpu_peak_reserved_mb | gpu_process_mb | load_s | first_call_s |")
    assert "| 256.0 | 900.0 | 1.25 | 14.50 |" in gpu


def test_markdown_shows_gpu_columns_for_a_run_with_some_rows_on_cuda() -> None:
    """A run of the baseline on cpu and a variant on cuda: the GPU columns are the cuda rows', "-" on the others."""
    text = render(to_frame([make_report(), gpu_report()]), "md")
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert header.endswith("| gpu_peak_reserved_mb | gpu_process_mb | load_s | first_call_s |")
    assert "| 256.0 | 900.0 | 1.25 | 14.50 |" in text and "| - | - | - | - |" in text


def test_markdown_tells_apart_rows_that_differ_only_in_precision() -> None:
    # gpu.toml measures the baseline on cuda in fp32, fp16 and bf16: the table showed three identical row names,
    # and --against asks for the precision "as the table's columns show them"
    reports = [make_report(runtime=RuntimeSpec("torch", "cuda", precision)) for precision in ("fp32", "fp16", "bf16")]
    text = render(to_frame(reports), "md")
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert header.startswith("| variant | runtime | precision_mode | batch_size |")
    assert "All rows: device cuda\n" in text
    names = [line.split(" | ")[:5] for line in text.splitlines() if line.startswith("| baseline")]
    assert len(names) == len({tuple(name) for name in names}) == 6  # three precisions at two shapes
    # a run of one precision says it once, as the runtime's: beside an INT8 model, a bare "fp32" reads as the model's
    text = render(to_frame([make_report(), make_report(("onnx", "quantize-dynamic"))]), "md")
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert header.startswith("| variant | runtime | batch_size |")
    assert "All rows: device cpu · runtime precision fp32\n" in text


def test_markdown_says_once_the_settings_every_row_of_a_run_shares() -> None:
    # device, batch and length were columns of one value on every row: 200-character lines, a third of them repeats
    shape = ((1, 128),)
    frame = to_frame([make_report(shapes=shape), make_report(("onnx",), shapes=shape)])
    text = render(frame, "md")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    assert header.startswith("| variant | runtime | p50_ms |")
    assert lines.index("All rows: device cpu · runtime precision fp32 · batch 1 · seq_len 128") < lines.index(header)
    assert all(line.count("|") == header.count("|") for line in lines if line.startswith("| baseline"))
    rows = list(csv.reader(io.StringIO(render(frame, "csv"))))  # CSV and JSON are for tools: every column
    assert rows[0] == COLUMNS + EXTRA_COLUMNS and rows[1][2:5] == ["cpu", "1", "128"]
    assert json.loads(render(frame, "json"))[0]["batch_size"] == 1


def test_markdown_keeps_a_setting_the_rows_differ_in_as_a_column() -> None:
    frame = to_frame([make_report(shapes=((1, 128), (8, 128)))])
    text = render(frame, "md")
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert header.startswith("| variant | runtime | batch_size | p50_ms |")
    assert "All rows: device cpu · runtime precision fp32 · seq_len 128\n" in text
    assert "| baseline | torch | 8 | " in text


def test_the_settings_line_leaves_out_a_setting_no_row_has() -> None:
    # compare's budget rows have no device, precision or shape: the line read "All rows: device - · batch - ..."
    line = settings_line({"device": "cpu", "precision_mode": "-", "batch_size": "1"})
    assert line == "All rows: device cpu · batch 1"
    assert settings_line({"device": "-", "seq_len": "-"}) is None


def test_a_table_without_rows_says_no_setting_once_and_keeps_its_columns() -> None:
    columns = ["variant", "device", "batch_size"]
    assert said_once(pd.DataFrame(columns=columns), columns) == (None, columns)


def test_a_setting_some_rows_lack_stays_a_column_and_one_the_table_lacks_is_not_said() -> None:
    rows = pd.DataFrame({"variant": ["a", "b"], "device": ["cpu", None], "batch_size": [1, 1]})
    assert said_once(rows, ["variant", "device", "batch_size"]) == ("All rows: batch 1", ["variant", "device"])


def test_markdown_says_each_runs_commit_and_machine_as_the_html_page_does() -> None:
    """A colleague's runs merged into one results folder: the Markdown headed each run by its recipe and id alone,
    so which machine and commit each table came from was in the CSV and on the HTML page only. A commit as git gives
    it reads as its first 12 characters, as `compare` names it."""
    mine = make_report()
    commit = "def4567890abcdef1234567890abcdef12345678"
    theirs = dataclasses.replace(
        make_report(run_id="20261201T000000Z-0000"),
        environment={"machine": "box-2", "git": {"commit": commit, "dirty": True}},
    )
    lines = render(to_frame([mine, theirs]), "md").splitlines()
    assert lines[lines.index("### demo · run 20261130T031500Z-3f9a") + 2] == (
        "created 2026-11-30T03:15:00+00:00 · commit abc123 · machine box-1 · 2 threads · 10 test rows"
    )
    assert lines[lines.index("### demo · run 20261201T000000Z-0000") + 2] == (
        "created 2026-11-30T03:15:00+00:00 · commit def4567890ab (dirty) · machine box-2 · 2 threads · 10 test rows"
    )


def test_the_line_under_a_run_spread_over_machines_names_each_machine_once() -> None:
    """A Ray run's jobs ran on several nodes: the line named the first row's machine alone."""
    rows = [
        dataclasses.replace(make_report(steps), environment={"machine": machine, "git": {"commit": "abc123"}})
        for machine in ("node-a", "node-b")
        for steps in ((), ("onnx",))
    ]
    lines = render(to_frame(rows), "md").splitlines()
    assert lines[lines.index("### demo · run 20261130T031500Z-3f9a") + 2] == (
        "created 2026-11-30T03:15:00+00:00 · commit abc123 · machines node-a, node-b · 2 threads · 10 test rows"
    )


def test_a_run_outside_git_alone_says_its_commit_is_unknown() -> None:
    environment = {"machine": "box-2", "git": {"commit": None, "dirty": None}}
    outside = dataclasses.replace(make_report(), environment=environment)
    assert " · commit unknown · machine box-2 · " in render(to_frame([outside]), "md")


def test_a_commit_and_dirty_flag_missing_as_none_or_as_a_frames_nan_read_unknown_and_clean() -> None:
    assert commit_label(None, None) == commit_label(float("nan"), float("nan")) == "unknown"
    assert commit_label("def4567890abcdef", float("nan")) == "def4567890ab"


def test_a_run_outside_git_beside_runs_in_git_says_its_commit_is_unknown() -> None:
    """Alone, a run outside git (commit and dirty None) read "commit unknown"; merged with a run that has a commit,
    pandas holds its commit as NaN, and its line read "commit nan"."""
    outside = dataclasses.replace(
        make_report(run_id="20261201T000000Z-0000"),
        environment={"machine": "box-2", "git": {"commit": None, "dirty": None}},
    )
    lines = render(to_frame([make_report(), outside]), "md").splitlines()
    assert lines[lines.index("### demo · run 20261201T000000Z-0000") + 2] == (
        "created 2026-11-30T03:15:00+00:00 · commit unknown · machine box-2 · 2 threads · 10 test rows"
    )


def test_the_line_under_a_run_without_a_machine_key_says_its_machine_is_unknown() -> None:
    """Reports written before environments had a machine key: the line would join a None."""
    older = dataclasses.replace(make_report(), environment={"git": {"commit": "abc123", "dirty": False}})
    assert " · commit abc123 · machine unknown · 2 threads · " in render(to_frame([older]), "md")


def test_markdown_lists_a_runs_failed_jobs_under_its_own_table() -> None:
    # they went to stderr only, after every run's table: `report -o table.md` kept no word of a variant left out
    first, second = make_report(), make_report(run_id="20261201T000000Z-0000")
    failed = [FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed", run_id=first.run_id)]
    text = render(to_frame([first, second]), "md", failed)
    ours, other = text.split("### demo · run 20261201T000000Z-0000")
    assert "- **failed**: baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed" in ours
    assert "failed" not in other


@pytest.mark.parametrize(
    ("drop", "cell"),
    [
        ((-0.004, -0.15, 0.14), "-0.004 [-0.15, +0.14]"),  # one row in 25,000 more right: it read -0.00
        ((0.0, -0.003, 0.003), "+0.00 [-0.003, +0.003]"),
        ((-0.0, -0.0, -0.0), "+0.00"),  # zero has no sign
        ((1.234, 0.5, 2.0), "+1.23 [+0.50, +2.00]"),
    ],
)
def test_an_accuracy_drop_near_zero_is_not_written_as_a_signed_zero(drop: tuple, cell: str) -> None:
    frame = to_frame([make_report(), with_drop(make_report(("onnx",), shapes=((1, 128),)), *drop)])
    assert frame["accuracy_drop"].map(type).eq(float).all()
    (line,) = [line for line in render(frame, "md").splitlines() if line.startswith("| baseline+onnx ")]
    assert f"| {cell} |" in line


def test_a_drop_without_an_interval_is_written_alone() -> None:
    row = pd.Series({"accuracy_drop": 1.5, "accuracy_drop_ci_low": float("nan"), "accuracy_drop_ci_high": float("nan")})
    assert format_cell("accuracy_drop", row) == "+1.50"


def test_a_variant_whose_row_has_no_peer_flag_is_not_marked_a_peer() -> None:
    """A row without the flag, or with NaN where frames without it were merged with frames that have it."""
    assert format_cell("variant", pd.Series({"variant": "ours"})) == "ours"
    assert format_cell("variant", pd.Series({"variant": "ours", "peer": float("nan")})) == "ours"


def test_a_drop_switches_to_one_significant_digit_below_half_a_hundredth() -> None:
    assert format_points(0.005) == "+0.01"  # two decimals tell it from zero
    assert format_points(-0.00497) == "-0.005"  # two decimals would round it to -0.00
    assert format_points(-0.0034) == "-0.003"


def test_figures_change_their_digits_at_100_and_1_by_size_whatever_their_sign() -> None:
    """One decimal from 100, two from 1, three significant digits below 1, trailing zeros kept (0.500, not 0.5)."""
    assert [format_number(v) for v in (100.0, 99.5, 1.0, 0.5, 0.0)] == ["100.0", "99.50", "1.00", "0.500", "0.00"]
    assert [format_number(v) for v in (-150.0, -50.0, -0.5)] == ["-150.0", "-50.00", "-0.500"]


def test_sub_millisecond_figures_keep_three_significant_digits() -> None:
    # two decimals read a GPU's 0.0847 and 0.0761 ms p50s as 0.08: differences of 10% rounded away
    reports = [
        with_figures(make_report(steps, shapes=((1, 128),)), p50_ms=p50)
        for steps, p50 in [((), 0.0847), (("onnx",), 0.0761)]
    ]
    text = render(to_frame(reports), "md")
    assert "| 0.0847 |" in text and "| 0.0761 |" in text
    assert "| 512.5 | 86.60 | 22.70 |" in text  # from 1 on, as before: two decimals, one from 100


def test_the_line_under_a_run_gives_each_machines_gemm_calibration() -> None:
    """The calibration (a plain matmul's GFLOP/s, taken as the run ends) tells a busy machine's run from a quiet
    one's; it was only in the report JSON. A machine whose reports read two (a resumed run) gives both, one without
    (an older report) none."""

    def on(machine: str, gflops: float | None, steps: tuple[str, ...] = ()) -> Report:
        environment = {"machine": machine, "git": {"commit": "abc123"}, "calibration_gflops": gflops}
        return dataclasses.replace(make_report(steps), environment=environment)

    line = run_facts(to_frame([on("node-a", 167.46), on("node-a", 167.46, ("onnx",)), on("node-b", 11.2)]))
    assert " · machines node-a (GEMM 167.5 GFLOP/s), node-b (GEMM 11.2 GFLOP/s) · 2 threads · " in line
    assert " · machine node-a (GEMM 90.0, 120.0 GFLOP/s) · " in run_facts(
        to_frame([on("node-a", 90.0), on("node-a", 120.0, ("onnx",))])
    )
    assert " · machines node-a, node-b (GEMM 11.2 GFLOP/s) · " in run_facts(
        to_frame([on("node-a", None), on("node-b", 11.2, ("onnx",))])
    )
    assert gemm_words([float("nan"), None]) == ""
