"""A run's failed jobs and steps: how each is described, and which failures files lie beside a run's reports."""

from __future__ import annotations

from pathlib import Path

from optbench.failures import FAILURES_FILE, FailedJob, failures_beside


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
