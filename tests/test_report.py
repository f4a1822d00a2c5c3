"""Reports: built by hand, written and read back, flattened to one table, rendered, and refused when wrong."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import make_report, with_figures

from optbench.errors import OptbenchError
from optbench.report import (
    COLUMNS,
    EXTRA_COLUMNS,
    FAILURES_FILE,
    SCHEMA,
    SCHEMA_VERSION,
    load_failures,
    load_reports,
    read_report,
    render,
    to_frame,
    write_report,
)
from optbench.runtimes import RuntimeSpec


def _rewrite(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- writing and reading -----------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    report = make_report(("onnx", "quantize-static"), flip=2)
    path = write_report(report, tmp_path / "results")
    assert path == tmp_path / "results" / "baseline+onnx+quantize-static.torch-cpu-fp32.json"
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["variant"] == "baseline+onnx+quantize-static"
    assert read_report(path) == report


def test_file_name_names_variant_and_runtime() -> None:
    report = make_report(("prune",), runtime=RuntimeSpec("torch", "cuda", "fp16"))
    assert report.file_name == "baseline+prune.torch-cuda-fp16.json"
    compiled = make_report(("prune",), runtime=RuntimeSpec("torch", "cuda", "fp16", {"compile": True}))
    assert compiled.file_name == "baseline+prune.torch-cuda-fp16-compile.json"
    assert {row["runtime"] for row in [*report.rows(), *compiled.rows()]} == {"torch", "torch-compile"}


def test_other_schema_version_is_refused_naming_both(tmp_path: Path) -> None:
    path = write_report(make_report(), tmp_path)
    _rewrite(path, lambda d: d.update(schema_version=4))
    with pytest.raises(OptbenchError, match=r"schema_version 4, but this optbench reads versions 1, 2, 3"):
        read_report(path)
    _rewrite(path, lambda d: d.pop("schema_version"))
    with pytest.raises(OptbenchError, match=r"schema_version None, but this optbench reads versions 1, 2, 3"):
        read_report(path)


def test_version_1_reports_read_with_an_unknown_noise_floor(tmp_path: Path) -> None:
    report = make_report(noise_floor_pct=1.5)
    path = write_report(report, tmp_path)
    assert read_report(path) == report

    def as_version_1(data: dict[str, Any]) -> None:
        data["schema_version"] = 1
        for m in data["measurements"]:
            del m["noise_floor_pct"]

    _rewrite(path, as_version_1)
    old = read_report(path)
    assert old is not None and all(m.noise_floor_pct is None for m in old.measurements)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("measurements"),
        lambda d: d.pop("runtime"),
        lambda d: d["accuracy"].pop("drop"),
        lambda d: d["accuracy"]["metrics"].pop("accuracy"),
        lambda d: d["measurements"][0]["latency"].pop("p50_ms"),
        lambda d: d["measurements"][0].pop("batch_size"),
        lambda d: d["measurements"][0].update(unexpected=1),
        lambda d: d.update(accuracy=None),
        # sections of the wrong shape, read only when a table is made: refused when the file is read
        lambda d: d.update(artifact="baseline"),
        lambda d: d["artifact"].pop("variant"),
        lambda d: d["artifact"].update(lineage=["onnx"]),
        lambda d: d.update(runtime=["torch"]),
        lambda d: d["runtime"].pop("device"),
        lambda d: d["runtime"].update(name="jax"),
        lambda d: d.update(environment=None),
        lambda d: d.update(workload=None),
        lambda d: d.update(measurements="none"),
        lambda d: d.update(measurements=["none"]),
    ],
)
def test_damaged_report_is_refused(tmp_path: Path, damage: Any) -> None:
    path = write_report(make_report(), tmp_path)
    _rewrite(path, damage)
    with pytest.raises(OptbenchError, match=rf"{re.escape(str(path))} is a damaged report \(.*\): re-run the recipe"):
        read_report(path)


def test_a_json_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(b'{"schema": "optbench.report", "note": "caf\xe9"}')
    with pytest.raises(OptbenchError, match=r"cannot read .*x\.json: 'utf-8' codec can't decode"):
        read_report(tmp_path / "x.json")


def test_a_failures_file_that_is_not_utf8_is_named_as_damaged(tmp_path: Path) -> None:
    (tmp_path / FAILURES_FILE).write_bytes(b'[{"variant": "caf\xe9"}]')
    with pytest.raises(OptbenchError, match=r"failures\.json is damaged .*restore it or delete it"):
        load_failures(tmp_path)


def test_damaged_report_names_the_missing_key(tmp_path: Path) -> None:
    path = write_report(make_report(), tmp_path)
    _rewrite(path, lambda d: d.pop("measurements"))
    with pytest.raises(OptbenchError, match=r"is a damaged report \(missing 'measurements'\)"):
        read_report(path)


def test_invalid_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "half.json"
    path.write_text('{"schema": "optbench.rep')
    with pytest.raises(OptbenchError, match=r"cannot read .*half\.json"):
        read_report(path)


@pytest.mark.parametrize("content", ['{"name": "package"}', "[1, 2]", '"text"', '{"schema": "other.tool"}'])
def test_json_that_is_not_a_report_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(content)
    assert read_report(path) is None


def test_load_reports_skips_other_json_and_hidden_folders(tmp_path: Path) -> None:
    results = tmp_path / "results"
    kept = [make_report(), make_report(("onnx",))]
    for report in kept:
        write_report(report, results / "demo" / "run-1")
    (results / "demo" / "run-1" / "notes.json").write_text('{"comment": "not a report"}')
    (results / "demo" / "run-1" / "table.md").write_text("| not | json |")
    write_report(make_report(("staged",)), results / "demo" / ".run-2.tmp")
    write_report(make_report(("hidden",)), results / ".cache")
    loaded = load_reports(results)
    assert sorted(r.variant for r in loaded) == ["baseline", "baseline+onnx"]
    assert load_reports(results) == loaded  # stable order


def test_load_reports_of_one_file(tmp_path: Path) -> None:
    path = write_report(make_report(("onnx",)), tmp_path)
    assert [r.variant for r in load_reports(path)] == ["baseline+onnx"]


def test_load_reports_inside_a_hidden_parent(tmp_path: Path) -> None:
    results = tmp_path / ".hidden-home" / "results"
    write_report(make_report(), results)
    assert len(load_reports(results)) == 1


def test_load_reports_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"results folder .*nothing-here does not exist"):
        load_reports(tmp_path / "nothing-here")


def test_load_reports_of_a_file_that_is_no_report_names_what_to_give(tmp_path: Path) -> None:
    """A recipe or budget file given where reports go (optbench gate recipes/budgets.toml ...) is a wrong path, not a
    damaged report to delete."""
    (tmp_path / "budgets.toml").write_text('[[budget]]\nmax_size = "1 GB"\n')
    with pytest.raises(OptbenchError, match=r"budgets\.toml is not an optbench report.*results folder") as caught:
        load_reports(tmp_path / "budgets.toml")
    assert "delete" not in str(caught.value)
    (tmp_path / "data.json").write_text('{"rows": [1, 2]}')  # JSON too, yet no report: not "no reports under"
    with pytest.raises(OptbenchError, match=r"data\.json is not an optbench report.*results folder"):
        load_reports(tmp_path / "data.json")


def test_load_reports_refuses_a_damaged_file(tmp_path: Path) -> None:
    write_report(make_report(), tmp_path)
    path = write_report(make_report(("onnx",)), tmp_path)
    _rewrite(path, lambda d: d.update(schema_version=99))
    with pytest.raises(OptbenchError, match="schema_version 99"):
        load_reports(tmp_path)


# --- the table -------------------------------------------------------------------------------------------


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


def test_to_frame_of_no_reports() -> None:
    frame = to_frame([])
    assert list(frame.columns) == COLUMNS + EXTRA_COLUMNS
    assert frame.empty
    assert render(frame, "md") == "no reports found\n"


def test_render_csv_header() -> None:
    text = render(to_frame([make_report(), make_report(("onnx",))]), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == COLUMNS + EXTRA_COLUMNS
    assert len(rows) == 5


def test_render_markdown() -> None:
    text = render(to_frame([make_report(), make_report(("quantize-dynamic",), flip=1)]), "md")
    assert "### demo · run 20261130T031500Z-3f9a" in text
    assert "baseline+quantize-dynamic" in text
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert "p50_ms" in header and "accuracy_drop" in header and "relative_accuracy_pct" in header
    table = [line for line in text.splitlines() if line.startswith("| baseline")]
    assert len(table) == 4
    assert all(line.count("|") == header.count("|") for line in table)
    assert any("2.50x" in line for line in table)  # speedup_p50 of 1.5 + batch 1
    assert any("| - |" in line for line in table)  # the baseline has no speedup of its own
    drops = [line.split(" | ")[header.split(" | ").index("accuracy_drop")] for line in table]
    assert "+0.00" in drops  # the reference itself: no interval
    assert any(re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", d) for d in drops)


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


def test_render_json() -> None:
    frame = to_frame([make_report(), make_report(("onnx",))])
    records = json.loads(render(frame, "json"))
    assert len(records) == 4
    assert list(records[0]) == COLUMNS + EXTRA_COLUMNS
    assert {r["variant"] for r in records} == {"baseline", "baseline+onnx"}


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
    assert lines.count("- **warning** (baseline+onnx): no Attention was fused") == 1


def _gpu_report() -> Any:
    from optbench.measure import GpuMemory

    report = make_report(("onnx",), runtime=RuntimeSpec("torch", "cuda", "fp16"))
    gpu = GpuMemory(peak_allocated_mb=210.0, peak_reserved_mb=256.0, process_used_mb=900.0, device_total_mb=143771.0)
    measurements = tuple(dataclasses.replace(m, gpu_memory=gpu) for m in report.measurements)
    runtime = {**report.runtime, "startup": {"load_s": 1.25, "first_call_s": 14.5}}
    return dataclasses.replace(report, measurements=measurements, runtime=runtime)


def test_gpu_memory_and_startup_round_trip_and_reach_the_table(tmp_path: Path) -> None:
    report = _gpu_report()
    assert read_report(write_report(report, tmp_path)) == report
    row = to_frame([report]).iloc[0]
    assert (row["gpu_peak_reserved_mb"], row["gpu_process_mb"], row["gpu_total_mb"]) == (256.0, 900.0, 143771.0)
    assert (row["load_s"], row["first_call_s"]) == (1.25, 14.5)


def test_version_2_reports_read_with_unknown_gpu_memory_and_startup(tmp_path: Path) -> None:
    path = write_report(_gpu_report(), tmp_path)

    def as_version_2(data: dict[str, Any]) -> None:
        data["schema_version"] = 2
        del data["runtime"]["startup"]
        for m in data["measurements"]:
            del m["gpu_memory"]

    _rewrite(path, as_version_2)
    old = read_report(path)
    assert old is not None and all(m.gpu_memory is None for m in old.measurements)
    assert to_frame([old])[["gpu_peak_reserved_mb", "first_call_s"]].isna().all().all()


def test_markdown_shows_gpu_and_first_call_columns_only_for_runs_that_have_them() -> None:
    cpu = render(to_frame([make_report()]), "md")
    assert "gpu_peak_reserved_mb" not in cpu and "first_call_s" not in cpu
    gpu = render(to_frame([_gpu_report()]), "md")
    header = next(line for line in gpu.splitlines() if line.startswith("| variant"))
    assert header.endswith("| gpu_peak_reserved_mb | gpu_process_mb | first_call_s |")
    assert "| 256.0 | 900.0 | 14.50 |" in gpu
