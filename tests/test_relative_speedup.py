"""speedup_vs: each row against a row the reader chose, in the table and on the command line."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import UNKNOWN_ROW_NAMES, make_report, with_figures

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.measure import Latency
from optbench.relative_speedup import RowChoice, add_speedup_vs
from optbench.report import write_report
from optbench.runtimes import RuntimeSpec
from optbench.table import render, to_frame

CUDA_FP32 = RuntimeSpec("torch", "cuda", "fp32")
CUDA_FP16 = RuntimeSpec("torch", "cuda", "fp16")


def _gpu_run(run_id: str = "20261130T031500Z-3f9a") -> list:
    """A run as the GPU recipe writes one: the CPU reference, and the baseline on CUDA at FP32 and FP16."""
    return [
        with_figures(make_report(run_id=run_id), p50_ms=40.0),
        with_figures(make_report(runtime=CUDA_FP32, run_id=run_id), p50_ms=4.0),
        with_figures(make_report(runtime=CUDA_FP16, run_id=run_id), p50_ms=1.6),
    ]


def _by_precision(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["batch_size"] == 1].set_index(["device", "precision_mode"])


@pytest.mark.parametrize(
    ("text", "parts"),
    [("baseline", ("baseline",)), (" baseline+onnx / onnxruntime ", ("baseline+onnx", "onnxruntime"))],
)
def test_a_row_is_read_from_its_columns(text: str, parts: tuple[str, ...]) -> None:
    assert RowChoice.parse(text).parts == parts


@pytest.mark.parametrize("text", ["", "baseline//cuda", "a/b/c/d/e"])
def test_an_unreadable_row_says_how_to_write_one(text: str) -> None:
    with pytest.raises(OptbenchError, match=r"VARIANT\[/RUNTIME\[/DEVICE\[/PRECISION\]\]\]"):
        RowChoice.parse(text)


@pytest.mark.parametrize("text", ["torch", "torch/cpu/fp16", "onnxruntime-tensorrt/cuda", "torch-compile"])
def test_a_row_that_starts_with_a_runtime_is_told_to_start_with_its_variant(text: str) -> None:
    """`torch/cpu/fp16` read 'cpu' as the runtime ("'cpu' is no runtime"), `torch` as a variant no run has."""
    with pytest.raises(
        OptbenchError, match=rf"^cannot read the row '{text}': it starts with a runtime, .*baseline/{text}$"
    ):
        RowChoice.parse(text)


def test_every_row_is_measured_against_the_chosen_row_at_its_shape() -> None:
    frame = add_speedup_vs(to_frame(_gpu_run()), RowChoice.parse("baseline/torch/cuda/fp32"))
    rows = _by_precision(frame)
    assert rows.loc[("cuda", "fp16"), "speedup_vs"] == pytest.approx(2.5, rel=0.02)
    assert rows.loc[("cuda", "fp32"), "speedup_vs"] == 1.0
    assert rows.loc[("cpu", "fp32"), "speedup_vs"] == pytest.approx(0.1, rel=0.02)
    assert set(frame["speedup_vs_row"]) == {"baseline/torch/cuda/fp32"}
    table = render(frame, "md")
    assert "| speedup_vs |" in next(line for line in table.splitlines() if line.startswith("| variant"))
    assert "- **speedup_vs**: against baseline/torch/cuda/fp32 at the same shape" in table


def test_each_shape_is_measured_against_the_chosen_row_at_that_batch_size_and_length() -> None:
    """Shapes that share a batch size (1 x 16, 1 x 128) or a length (1 x 128, 8 x 128), the chosen row's p50 different
    at each: every row is divided into the chosen row's p50 at its own shape. The other tests' runs had no two shapes
    sharing either, so a group keyed without the batch size or the length passed them."""
    shapes = ((1, 16), (1, 128), (8, 128))
    p50s = {  # ms, by precision and shape; each row's calls all on its p50
        ("cpu", "fp32"): (20.0, 40.0, 320.0),
        ("cuda", "fp32"): (2.0, 4.0, 16.0),
        ("cuda", "fp16"): (1.0, 1.0, 2.0),
    }
    run = []
    for runtime in (None, CUDA_FP32, CUDA_FP16):
        report = make_report(runtime=runtime, shapes=shapes)
        key = (report.runtime["device"], report.runtime["precision"])
        latencies = [Latency.from_values([round(p50 * 1e6)] * 61) for p50 in p50s[key]]
        changed = [dataclasses.replace(m, latency=lat) for m, lat in zip(report.measurements, latencies, strict=True)]
        run.append(dataclasses.replace(report, measurements=tuple(changed)))
    frame = add_speedup_vs(to_frame(run), RowChoice.parse("baseline/torch/cuda/fp32"))
    got = frame.set_index(["device", "precision_mode", "batch_size", "seq_len"])["speedup_vs"].sort_index()
    assert got[("cuda", "fp16", 1, 16)] == 2.0 and got[("cuda", "fp16", 1, 128)] == 4.0
    assert got[("cuda", "fp16", 8, 128)] == 8.0
    assert got[("cpu", "fp32", 1, 16)] == got[("cpu", "fp32", 1, 128)] == 0.1 and got[("cpu", "fp32", 8, 128)] == 0.05
    assert (got[("cuda", "fp32")] == 1.0).all()


def test_the_chosen_row_is_exactly_as_fast_as_itself() -> None:
    """Its speedup over itself is one p50 over the same p50: 1 with no spread, not its p50 interval taken twice
    (which compare and the gate would read as 0.99x to 1.01x). Another row's runs from the chosen row's fastest p50
    over its own slowest to the chosen row's slowest over its own fastest: with the chosen row's ends swapped, a
    narrower interval still held the speedup and passed."""
    run = [with_figures(report, p50_ms=report.measurements[0].latency.p50_ms, spread_ms=0.4) for report in _gpu_run()]
    rows = _by_precision(add_speedup_vs(to_frame(run), RowChoice.parse("baseline/torch/cuda/fp32")))
    assert rows.loc[("cuda", "fp32"), ["speedup_vs", "speedup_vs_ci_low", "speedup_vs_ci_high"]].tolist() == [1, 1, 1]
    fp16, chosen = rows.loc[("cuda", "fp16")], rows.loc[("cuda", "fp32")]
    assert fp16["speedup_vs_ci_low"] < fp16["speedup_vs"] < fp16["speedup_vs_ci_high"]
    assert (fp16["speedup_vs_ci_low"], fp16["speedup_vs_ci_high"]) == pytest.approx(
        (chosen["p50_ci_low"] / fp16["p50_ci_high"], chosen["p50_ci_high"] / fp16["p50_ci_low"])
    )


def test_runs_without_the_chosen_row_get_none_and_the_table_hides_the_column() -> None:
    other_run = [with_figures(make_report(run_id="20261130T041500Z-aaaa"), p50_ms=40.0)]
    frame = add_speedup_vs(to_frame(_gpu_run() + other_run), RowChoice.parse("baseline/torch/cuda/fp32"))
    assert frame.loc[frame["run_id"] == "20261130T041500Z-aaaa", "speedup_vs"].isna().all()
    assert frame.loc[frame["run_id"] != "20261130T041500Z-aaaa", "speedup_vs"].notna().all()
    other_table = render(frame, "md").split("run 20261130T041500Z-aaaa")[1]
    assert "speedup_vs" not in other_table


def test_reports_without_a_machine_key_are_measured_against_the_chosen_row() -> None:
    """A report without a machine key (read as `unknown`, as report --by-machine and compare read it) is in a group
    of its run and shape like any other: grouping dropped the rows whose machine is missing, and their speedup_vs
    was left empty with no word."""
    run = [dataclasses.replace(r, environment={**r.environment, "machine": None}) for r in _gpu_run()]
    rows = _by_precision(add_speedup_vs(to_frame(run), RowChoice.parse("baseline/torch/cuda/fp32")))
    assert rows.loc[("cuda", "fp16"), "speedup_vs"] == pytest.approx(2.5, rel=0.02)
    assert rows["speedup_vs_row"].tolist() == ["baseline/torch/cuda/fp32"] * 3


def test_a_choice_that_names_two_rows_of_one_shape_is_refused() -> None:
    two_rows = r"names 2 rows .*baseline/torch/cuda/fp16.*baseline/torch/cuda/fp32.*; give more of VARIANT/RUNTIME/"
    with pytest.raises(OptbenchError, match=two_rows):
        add_speedup_vs(to_frame(_gpu_run()), RowChoice.parse("baseline/torch/cuda"))


def test_a_choice_that_names_one_row_by_its_first_parts_names_that_row_in_full() -> None:
    """`baseline/torch/cuda` in a run with one CUDA row: the table says which row that was (the one with its
    precision), not the words typed. The frame given is left as it was."""
    frame = to_frame(_gpu_run()[:2])
    rows = _by_precision(add_speedup_vs(frame, RowChoice.parse("baseline/torch/cuda")))
    assert rows["speedup_vs_row"].tolist() == ["baseline/torch/cuda/fp32"] * 2
    assert rows.loc[("cpu", "fp32"), "speedup_vs"] == pytest.approx(0.1, rel=0.02)
    assert "speedup_vs" not in frame.columns and "speedup_vs_row" not in frame.columns


def test_report_against_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for report in _gpu_run():
        write_report(report, tmp_path)
    assert main(["report", str(tmp_path), "--format", "csv", "--against", "baseline/torch/cuda/fp16"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert _by_precision(frame).loc[("cuda", "fp32"), "speedup_vs"] == pytest.approx(0.4, rel=0.02)

    assert main(["report", str(tmp_path), "--against", "baseline/onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "no row of these reports is that; give one of" in err and "'baseline/torch/cuda/fp16'" in err
    assert main(["report", str(tmp_path), "--against", "a/b/c/d/e"]) == 2
    assert main(["report", str(tmp_path), "--by-machine", "--against", "baseline"]) == 2
    assert "drop one of them" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("row", "message"),
    UNKNOWN_ROW_NAMES,
)
def test_report_against_a_runtime_device_or_precision_optbench_lacks_is_refused(
    row: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read as budget's speedup_against reads it: it said only that no row is that, with no word of the typo."""
    for report in _gpu_run():
        write_report(report, tmp_path)
    assert main(["report", str(tmp_path), "--against", row]) == 2
    assert re.search(f"--against: cannot read the row '{row}': {message}", capsys.readouterr().err)


def test_report_against_a_row_of_no_report_names_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for report in _gpu_run():
        write_report(report, tmp_path)
    assert main(["report", str(tmp_path), "--against", "basline/torch/cuda"]) == 2
    err = capsys.readouterr().err
    assert (
        "--against basline/torch/cuda: no row of these reports is that; give one of ['baseline/torch/cpu/fp32'" in err
    )
    assert err.rstrip().endswith("; did you mean 'baseline/torch/cuda'?")


def test_an_empty_against_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it was taken for no --against at all: the table came out without speedup_vs, and no word about it
    write_report(make_report(), tmp_path)
    assert main(["report", str(tmp_path), "--against", ""]) == 2
    assert "cannot read the row '': write VARIANT[/RUNTIME[/DEVICE[/PRECISION]]]" in capsys.readouterr().err


def test_each_machine_of_a_distributed_run_is_measured_against_its_own_chosen_row() -> None:
    """A Ray run measures every row on each of its machines under one run id: a machine's rows are divided into that
    machine's chosen row, not another's (the two chosen rows were one group's two rows, and refused)."""

    def on(machine: str, reports: list) -> list:
        return [dataclasses.replace(r, environment={**r.environment, "machine": machine}) for r in reports]

    fast = on("box-a", _gpu_run())
    slow = on("box-b", [with_figures(r, p50_ms=2 * r.measurements[0].latency.p50_ms) for r in _gpu_run()])
    slow[1] = with_figures(slow[1], p50_ms=16.0)  # box-b's CUDA FP32 row: 16 ms, so its FP16 row (3.2 ms) is 5x
    frame = add_speedup_vs(to_frame([*fast, *slow]), RowChoice.parse("baseline/torch/cuda/fp32"))
    rows = frame[frame["batch_size"] == 1].set_index(["machine", "device", "precision_mode"])["speedup_vs"]
    assert rows[("box-a", "cuda", "fp16")] == pytest.approx(2.5, rel=0.02)
    assert rows[("box-b", "cuda", "fp16")] == pytest.approx(5.0, rel=0.02)
    assert rows[("box-b", "cpu", "fp32")] == pytest.approx(0.2, rel=0.02)
