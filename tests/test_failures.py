"""A run's failed jobs and steps: how each is described, and which failures files lie beside a run's reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from report_fixtures import make_report

from optbench.failures import FAILURES_FILE, FailedJob, failures_beside, run_failures, write_failures


def test_a_failed_step_is_described_without_a_runtime_and_a_failed_job_with_its_own() -> None:
    """A step fails before any runtime runs it: `baseline+prune on , prune: ...` read as if a runtime had no name."""
    assert FailedJob("baseline+prune", "", "prune", "killed").describe() == "baseline+prune, prune: killed"
    job = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")
    assert job.describe() == "baseline+onnx on onnxruntime-cpu-fp32, latency-1: crashed"
    assert job.why == "its latency-1 failed: crashed"


def test_the_failures_files_beside_reports_are_listed_once_each_in_the_order_of_their_folders(tmp_path: Path) -> None:
    """In path order, as the failures they hold are listed, whatever order the reports were found in: eight
    folders, so that the order of a set would be the same only by a chance of one in 40320."""
    folders = [tmp_path / f"copy-{n}" for n in range(8)]
    for folder in folders:
        folder.mkdir()
        (folder / FAILURES_FILE).write_text("[]")
    (tmp_path / "no-failures").mkdir()
    reports = [folder / name for folder in reversed(folders) for name in ("a.json", "b.json")]
    assert failures_beside([*reports, tmp_path / "no-failures" / "a.json"]) == [f / FAILURES_FILE for f in folders]


def test_a_run_s_failures_are_read_beside_its_own_reports_only(tmp_path: Path) -> None:
    """Another run's folder may hold a failures.json written before runs recorded their ids, or one since damaged:
    read too, its failures were listed as this run's and its damage stopped this run's gate."""
    mine, other = tmp_path / "run-1", tmp_path / "run-2"
    crashed = FailedJob("baseline+onnx", "onnxruntime-cpu-fp32", "latency-1", "crashed")
    write_failures([crashed], mine, "run-1")
    write_failures([FailedJob("baseline", "torch-cpu-fp32", "accuracy-1", "killed")], other, "")
    found = [(mine / "a.json", make_report(run_id="run-1")), (other / "a.json", make_report(run_id="run-2"))]
    assert run_failures(found, "run-1") == [replace(crashed, run_id="run-1")]
    (other / FAILURES_FILE).write_text("[{damaged")
    assert run_failures(found, "run-1") == [replace(crashed, run_id="run-1")]
