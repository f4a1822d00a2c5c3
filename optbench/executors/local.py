"""The default executor: every job on this machine, one after another."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from optbench.job import Job, JobFailed
from optbench.sweep import PlannedJob


class LocalExecutor:
    """Runs each job on this machine when it is submitted, one at a time in plan order (a single lane):
    latency jobs never share the machine with another job."""

    runs_here = True

    def __init__(self, run: Callable[[Job, Path, float], dict[str, Any]]) -> None:
        self.run = run
        self.done: dict[Hashable, dict[str, Any] | JobFailed] = {}

    def lane(self, job: PlannedJob) -> Hashable:
        return "local"

    def submit(self, job: PlannedJob, spec: Job, timeout_s: float) -> Hashable:
        try:
            self.done[job.key] = self.run(spec, Path(spec.output).with_suffix(".job.json"), timeout_s)
        except JobFailed as exc:
            self.done[job.key] = exc
        return job.key

    def wait(self, handles: list[Hashable], timeout_s: float) -> tuple[Hashable, dict[str, Any] | JobFailed]:
        """The job `submit` ran: always finished."""
        return handles[0], self.done.pop(handles[0])

    def close(self) -> None:
        """Nothing to let go: each job's process has ended."""
