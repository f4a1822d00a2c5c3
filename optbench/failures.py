"""A run's failed jobs and steps (their variants have no report): recorded in the failures.json beside the run's
reports, found and read back for the command's output, compare and the gate."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from optbench.atomic import write_json_atomic
from optbench.errors import OptbenchError, unreadable_file

if TYPE_CHECKING:
    from optbench.report import Report

FAILURES_FILE = "failures.json"


@dataclass(frozen=True)
class FailedJob:
    """A benchmark job, or a step, that failed in a run, and why; its variant (on that runtime) has no report."""

    variant: str
    runtime: str  # "" for a failed step: it ran before any runtime
    job: str
    reason: str
    run_id: str = ""  # the run it failed in ("" in files written before runs recorded it)

    def __post_init__(self) -> None:
        """Refuse a field that is not text (a damaged failures.json): a list or an object ended report in a
        traceback where it counted each failure once."""
        wrong = [f.name for f in fields(self) if not isinstance(getattr(self, f.name), str)]
        if wrong:
            raise TypeError(f"{', '.join(wrong)} must be text")

    @property
    def why(self) -> str:
        """Why its variant has no report, as the gate and compare say it: `its latency-1 failed: crashed`."""
        return f"its {self.job} failed: {self.reason}"

    def describe(self) -> str:
        """One line: `baseline+onnx on onnxruntime-cpu-fp32, accuracy-1: why`."""
        return f"{self.variant}{f' on {self.runtime}' if self.runtime else ''}, {self.job}: {self.reason}"


def write_failures(failed: list[FailedJob], folder: Path, run_id: str) -> list[FailedJob]:
    """Record the failed jobs of run `run_id` in `folder`'s failures.json, each stamped with the run id (which
    tells a run's failures from another's beside a copied report); returns them as recorded."""
    recorded = [replace(f, run_id=run_id) for f in failed]
    write_json_atomic(folder / FAILURES_FILE, [asdict(f) for f in recorded])
    return recorded


def load_failures(run: Path) -> list[FailedJob]:
    """The failed jobs and steps recorded in the run folder `run` (none where it has no failures.json)."""
    path = run / FAILURES_FILE
    return read_failures(path) if path.exists() else []


def read_failures(path: Path) -> list[FailedJob]:
    """The failed jobs one failures.json records."""
    try:
        return [FailedJob(**entry) for entry in json.loads(path.read_text())]
    except OSError as exc:
        raise unreadable_file(path, exc) from exc
    # ValueError: JSONDecodeError, UnicodeDecodeError; RecursionError: thousands of nested [ or {
    except (ValueError, TypeError, RecursionError) as exc:
        raise OptbenchError(f"{path} is damaged ({exc}): restore it or delete it") from exc


def failures_beside(paths: Iterable[Path]) -> list[Path]:
    """The failures files beside the report files `paths` (a run's failures.json lies beside its reports, whatever
    its folder is called); one that links to nothing is listed, so that reading it says so rather than the run
    seeming to have recorded no failure."""
    files = {path.parent / FAILURES_FILE for path in paths}
    return sorted(file for file in files if file.exists() or file.is_symlink())


def run_failures(found: Iterable[tuple[Path, Report]], run_id: str) -> list[FailedJob]:
    """The failed jobs of run `run_id` (its reports among `found`, the files they were read from), from the
    failures.json beside any of its report files: a run copied into two folders lists its failures once, even where
    only one copy kept its failures.json, and another run's failures beside a copied report are left out."""
    files = failures_beside(path for path, report in found if report.run_id == run_id)
    failed = [f for file in files for f in read_failures(file)]
    return [f for f in dict.fromkeys(failed) if f.run_id in ("", run_id)]
