"""Reports: built by hand, written and read back, found in folders, and refused when wrong."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import deny_permission
from report_fixtures import gpu_report, make_report

from optbench.accuracy import Drop
from optbench.errors import OptbenchError
from optbench.failures import FAILURES_FILE, load_failures
from optbench.report import (
    SCHEMA,
    SCHEMA_VERSION,
    distinct,
    load_reports,
    read_report,
    report_files,
    workload_fingerprint,
    write_report,
)
from optbench.runtimes import RuntimeSpec
from optbench.table import to_frame

RESULTS = Path(__file__).resolve().parents[1] / "results"


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


def test_version_1_reports_read_as_the_one_round_they_ran(tmp_path: Path) -> None:
    # version 1 recorded no rounds: its runs measured one, and its fingerprints hashed the settings without it
    report = make_report(shapes=((1, 128),))
    path = write_report(report, tmp_path)

    def as_version_1(data: dict[str, Any]) -> None:
        data["schema_version"] = 1
        data["measurements"][0]["workload_fingerprint"] = workload_fingerprint(data["workload"], 1, 128)

    _rewrite(path, as_version_1)
    old = read_report(path)
    assert old is not None and old.workload == {**report.workload, "rounds": 1}
    assert old.measurements[0].workload_fingerprint == workload_fingerprint(old.workload, 1, 128)
    # a fingerprint that is not the hash of the stored settings stood for something unknown: it is kept
    _rewrite(path, lambda d: d["measurements"][0].update(workload_fingerprint="written-elsewhere"))
    kept = read_report(path)
    assert kept is not None and kept.measurements[0].workload_fingerprint == "written-elsewhere"


def test_committed_reports_of_versions_1_and_3_read_as_one_workload_per_shape() -> None:
    # export-onnx ran twice on one machine with the same settings, before and after reports recorded rounds
    runs = [RESULTS / "export-onnx" / run for run in ("20261130T033448Z-8570", "20261130T214428Z-6a6f")]
    assert [json.loads(next(run.glob("*.json")).read_text())["schema_version"] for run in runs] == [1, 3]
    frame = to_frame([report for run in runs for report in load_reports(run)])
    assert len(frame) == 16 and frame.groupby(["batch_size", "seq_len"])["workload"].nunique().eq(1).all()


def test_the_workload_fingerprint_of_a_workload_and_shape_stays_the_one_reports_on_disk_hold() -> None:
    """Runs compare only where their fingerprints agree: a change to the hash (the shape left out of it, another
    length) made every run written before it not comparable with the runs after it, with no setting changed.
    Changing it needs a migration in `_with_implied_workload`, as reports written before `workload_identity` got."""
    workload = {
        "dataset": "rotten-tomatoes",
        "data_fingerprint": "1ecb15b5d0943002",
        "split": "test",
        "rows": 1246,
        "max_length": 128,
        "threads": 2,
        "timing": {"warmup": 5, "min_iters": 20, "min_seconds": 1.5, "max_seconds": 60.0},
        "max_batches": 64,
        "rounds": 3,
    }
    assert workload_fingerprint(workload, 1, 128) == "2dedab49effc"
    assert workload_fingerprint(workload, 1, "data") == "c6b4a0f72324"


def test_a_reference_that_got_every_test_text_wrong_reads_back(tmp_path: Path) -> None:
    """Accuracy 0 is a fraction (a broken checkpoint on a small test split scores it): the run's own report must
    read back, and the reference's accuracy as a percentage of its own 0 is unknown, not a division by zero."""
    report = dataclasses.replace(make_report(flip=10), drop=Drop.of_reference())
    assert report.metrics.accuracy == 0
    assert read_report(write_report(report, tmp_path)) == report
    assert {row["relative_accuracy_pct"] for row in report.rows()} == {None}


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


@pytest.mark.parametrize(
    ("damage", "named"),
    [  # each of these passed the read and failed in report, compare or gate with a traceback
        (lambda d: d.update(run_id=[1]), "run_id = [1] is not text"),
        (lambda d: d.update(created_at=None), "created_at = None is not text"),
        (lambda d: d["environment"].update(machine={"cpu": "x"}), "machine = {'cpu': 'x'} is not text"),
        (lambda d: d["measurements"][0].update(seq_len=None), 'seq_len = None is not a whole number, 1 or more, or "'),
        (lambda d: d["measurements"][0].update(batch_size="8"), "batch_size = '8' is not a whole number, 1 or more"),
        (lambda d: d["measurements"][0].update(speedup_p50="fast"), "speedup_p50 = 'fast' is not a number"),
        (lambda d: d["artifact"].update(size_mb=[86]), "model_mb = [86] is not a number"),
        (lambda d: d["accuracy"]["metrics"].update(accuracy=-1), "accuracy = -1.0 is not a fraction, 0 to 1"),
        (lambda d: d["accuracy"]["metrics"].update(accuracy=1.5), "accuracy = 1.5 is not a fraction, 0 to 1"),
        (lambda d: d["measurements"][0].update(speedup_p50=True), "speedup_p50 = True is not a number"),
        (lambda d: d["measurements"][0]["latency"].update(n=0), "iterations = 0 is not a whole number, 1 or more"),
        # divided by: a speedup of -1 in the table's noise check (1 + speedup), a p50 of 0 in the gate's speedup
        (lambda d: d["measurements"][0].update(speedup_p50=-1), "speedup_p50 = -1 is not a number above 0"),
        (lambda d: d["measurements"][0]["latency"].update(p50_ms=0), "p50_ms = 0.0 is not a number above 0"),
    ],
)
def test_a_report_value_of_the_wrong_kind_is_refused_naming_it(tmp_path: Path, damage: Any, named: str) -> None:
    path = write_report(make_report(), tmp_path)
    _rewrite(path, damage)
    with pytest.raises(OptbenchError, match=rf"is a damaged report \({re.escape(named)}"):
        read_report(path)


def test_a_json_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(b'{"schema": "optbench.report", "note": "caf\xe9"}')
    with pytest.raises(OptbenchError, match=r"cannot read .*x\.json: 'utf-8' codec can't decode"):
        read_report(tmp_path / "x.json")


def test_a_report_or_failures_file_nested_past_the_recursion_limit_is_refused(tmp_path: Path) -> None:
    """Thousands of nested [ or {: Python's json recursed past its limit, and report, compare and gate stopped with a
    RecursionError traceback."""
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "x.json").write_text(f'{{"schema": "optbench.report", "note": {deep}}}')
    with pytest.raises(OptbenchError, match=r"cannot read .*x\.json: maximum recursion depth exceeded.*; delete or"):
        read_report(tmp_path / "x.json")
    (tmp_path / FAILURES_FILE).write_text(deep)
    with pytest.raises(OptbenchError, match=r"failures\.json is damaged \(maximum recursion depth exceeded"):
        load_failures(tmp_path)


def test_a_failures_file_that_is_not_utf8_is_named_as_damaged(tmp_path: Path) -> None:
    (tmp_path / FAILURES_FILE).write_bytes(b'[{"variant": "caf\xe9"}]')
    with pytest.raises(OptbenchError, match=r"failures\.json is damaged .*restore it or delete it"):
        load_failures(tmp_path)


def test_a_failures_file_whose_field_is_not_text_is_named_as_damaged(tmp_path: Path) -> None:
    # a list or an object passed the read, and `optbench report` ended in a traceback counting each failure once
    entry = {"variant": ["baseline"], "runtime": "torch-cpu-fp32", "job": "latency-1", "reason": "crashed"}
    (tmp_path / FAILURES_FILE).write_text(json.dumps([entry]))
    with pytest.raises(OptbenchError, match=r"failures\.json is damaged \(variant must be text\): restore it"):
        load_failures(tmp_path)


def test_a_report_or_failures_file_this_user_may_not_read_asks_for_access_not_deletion(
    tmp_path: Path, monkeypatch
) -> None:
    # it said "[Errno 13] Permission denied: '...'; delete or restore the file": someone's results, to be deleted
    report = write_report(make_report(), tmp_path)
    (tmp_path / FAILURES_FILE).write_text("[]")
    for path, read in ((report, read_report), (tmp_path / FAILURES_FILE, lambda _: load_failures(tmp_path))):
        deny_permission(monkeypatch, Path, "read_text", path)
        with pytest.raises(OptbenchError) as refused:
            read(path)
        assert str(refused.value) == (
            f"cannot read {path} (Permission denied): give this user read access to it, or name results that leave "
            "it out"
        )


def test_a_report_that_links_to_nothing_is_named(tmp_path: Path) -> None:
    (tmp_path / "gone.json").symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(
        OptbenchError, match=r"cannot read .*gone\.json \(No such file or directory\): delete or restore"
    ):
        load_reports(tmp_path)


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


def test_a_folder_this_user_may_not_read_is_an_error_not_skipped(tmp_path: Path, monkeypatch) -> None:
    # Path.rglob skipped it silently: the table lacked its runs, and a gate judged an older run as the newest
    write_report(make_report(run_id="old"), tmp_path / "a-old")
    write_report(make_report(run_id="new"), tmp_path / "b-new")
    deny_permission(monkeypatch, os, "scandir", tmp_path / "b-new")
    with pytest.raises(OptbenchError, match=r"cannot read the folder .*b-new \(Permission denied\): give this user"):
        load_reports(tmp_path)


def test_the_same_report_named_through_a_link_counts_once_without_a_note(tmp_path: Path, caplog) -> None:
    """`optbench report results latest`, latest a link to one of its runs: the run counts once, and no note calls
    its file a copy of itself (a note is for a copy in another folder)."""
    run = tmp_path / "results" / "demo" / "run-1"
    write_report(make_report(), run)
    (tmp_path / "latest").symlink_to(run)
    found = [*report_files(tmp_path / "results"), *report_files(tmp_path / "latest")]
    with caplog.at_level(logging.INFO, logger="optbench.report"):
        assert distinct(found) == [make_report()]
    assert "a copy of" not in caplog.text


def test_another_run_of_the_same_variant_is_a_row_of_its_own(tmp_path: Path) -> None:
    """Two runs of one recipe write the same file names; only the run id tells them apart, and both are listed."""
    first, second = make_report(run_id="20261130T031500Z-aaaa"), make_report(run_id="20261201T031500Z-bbbb")
    write_report(first, tmp_path / "demo" / first.run_id)
    write_report(second, tmp_path / "demo" / second.run_id)
    assert distinct(report_files(tmp_path)) == [first, second]


def test_a_node_of_a_distributed_run_names_its_report_after_its_machine() -> None:
    """A Ray run's nodes each write the same variant and runtime into one run folder: the machine keeps them apart."""
    report = make_report()
    on_node = dataclasses.replace(report, environment={**report.environment, "executor": "ray", "machine": "9ebf"})
    assert report.file_name == "baseline.torch-cpu-fp32.json"
    assert on_node.file_name == "baseline.torch-cpu-fp32@9ebf.json"


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


def test_gpu_memory_and_startup_round_trip_and_reach_the_table(tmp_path: Path) -> None:
    report = gpu_report()
    assert read_report(write_report(report, tmp_path)) == report
    row = to_frame([report]).iloc[0]
    gpu = ["gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "gpu_process_mb", "gpu_total_mb"]
    assert tuple(row[gpu]) == (210.0, 256.0, 900.0, 143771.0)  # each its own figure, none read for another
    assert (row["load_s"], row["first_call_s"]) == (1.25, 14.5)


def test_version_2_reports_read_with_unknown_gpu_memory_and_startup(tmp_path: Path) -> None:
    path = write_report(gpu_report(), tmp_path)

    def as_version_2(data: dict[str, Any]) -> None:
        data["schema_version"] = 2
        del data["runtime"]["startup"]
        for m in data["measurements"]:
            del m["gpu_memory"]

    _rewrite(path, as_version_2)
    old = read_report(path)
    assert old is not None and all(m.gpu_memory is None for m in old.measurements)
    assert to_frame([old])[["gpu_peak_reserved_mb", "first_call_s"]].isna().all().all()
