"""Reports: one JSON per measured (variant, runtime); written, found and read back, and flattened into table rows
(`Report.rows`; the table's columns, `COLUMNS` and `EXTRA_COLUMNS`, and their kinds, `KINDS`, are defined here).
optbench/table.py makes the rows one comparable table; optbench/failures.py reads the run's failed jobs beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.accuracy import Drop, Metrics
from optbench.atomic import write_json_atomic
from optbench.errors import READ_ACCESS_FIX, OptbenchError, unreadable_file
from optbench.measure import GpuMemory, Latency
from optbench.peers import is_peer
from optbench.runtimes import RuntimeSpec

log = logging.getLogger(__name__)

SCHEMA = "optbench.report"
SCHEMA_VERSION = 3
# Version 1 lacks the A/A noise floor, versions 1-2 the GPU memory and the runtime's startup times (all read
# as unknown), version 1 the workload's rounds (read as 1: see IMPLIED_WORKLOAD); everything else is the same. A
# latency record of any version may lack clock_resolution_ms (read as 0, unknown: its intervals stay as written),
# so adding it needed no new version.
READABLE_VERSIONS = (1, 2, 3)
# Each workload setting added since version 1: (name, the version that added it, the value every run before it
# had). A run before version 2 measured one round. An old report is read with these filled in and its workload
# fingerprints recomputed, so that it compares with a newer report of the same settings; one whose settings
# truly differ stays not comparable.
IMPLIED_WORKLOAD = (("rounds", 2, 1),)

COLUMNS = [
    "variant",
    "runtime",
    "device",
    "batch_size",
    "seq_len",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p50_ci_low",
    "p50_ci_high",
    "throughput_sps",
    "peak_rss_mb",
    "model_mb",
    "accuracy",
    "macro_f1",
    "accuracy_drop",
    "speedup_p50",
    "speedup_vs_peer",
]
EXTRA_COLUMNS = [
    "peer",
    "fastest_peer",
    "fastest_peer_p50_ms",
    "precision_mode",
    "parameters_m",
    "p95_ms",
    "mean_ms",
    "std_ms",
    "p99_ci_low",
    "p99_ci_high",
    "clock_resolution_ms",
    "iterations",
    "noise_floor_pct",
    "gpu_peak_allocated_mb",
    "gpu_peak_reserved_mb",
    "gpu_process_mb",
    "gpu_total_mb",
    "load_s",
    "first_call_s",
    "accuracy_drop_ci_low",
    "accuracy_drop_ci_high",
    "test_rows",
    "relative_accuracy_pct",
    "agreement",
    "precision",
    "recall",
    "roc_auc",
    "threads",
    "recipe",
    "run_id",
    "created_at",
    "git_commit",
    "git_dirty",
    "machine",
    "calibration_gflops",
    "workload",
    "warnings",
]


def settings_hash(settings: Mapping[str, Any], length: int) -> str:
    """The first `length` hex digits of the sha256 of `settings` as sorted JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:length]


def workload_identity(workload: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that make two workloads one: all of them but the path of the data file (`dataset`) where the
    workload records the data's content (`data_fingerprint`). One file's rows read from two paths (two machines, two
    checkouts, a CSV and its JSON Lines copy) are one workload; runs of them were marked not comparable."""
    return {k: v for k, v in workload.items() if not (k == "dataset" and "data_fingerprint" in workload)}


def workload_fingerprint(workload: Mapping[str, Any], batch_size: int, seq_len: int | str) -> str:
    """A short hash of the workload's identity and the shape: measurements whose hashes differ are never compared."""
    return settings_hash({**workload_identity(workload), "batch_size": batch_size, "seq_len": seq_len}, 12)


def workloads_of(reports: list[Report]) -> dict[str, Mapping]:
    """Each measurement's workload fingerprint -> its report's workload (data, max_length, threads, timing, max_batches,
    rounds)."""
    return {m.workload_fingerprint: r.workload for r in reports for m in r.measurements}


def flat_workload(workload: Mapping) -> dict[str, object]:
    """A workload with its nested tables (timing) as dotted keys."""
    out: dict[str, object] = {}
    for key, value in workload.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Measurement:
    """Latency and memory of one model on one runtime at one batch shape."""

    batch_size: int
    seq_len: int | str
    latency: Latency
    throughput_sps: float
    peak_rss_mb: float
    speedup_p50: float | None
    workload_fingerprint: str
    noise_floor_pct: float | None = None  # the run's A/A p50 difference at this shape (bench.noise_floor_pct)
    gpu_memory: GpuMemory | None = None  # for runtimes on cuda

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "latency": self.latency.to_dict(),
            "throughput_sps": self.throughput_sps,
            "peak_rss_mb": self.peak_rss_mb,
            "speedup_p50": self.speedup_p50,
            "workload_fingerprint": self.workload_fingerprint,
            "noise_floor_pct": self.noise_floor_pct,
            "gpu_memory": self.gpu_memory.to_dict() if self.gpu_memory else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        gpu = GpuMemory.from_dict(d["gpu_memory"]) if d.get("gpu_memory") else None
        return cls(**{**d, "latency": Latency.from_dict(d["latency"]), "gpu_memory": gpu})


@dataclass(frozen=True)
class Report:
    """Everything measured about one artifact on one runtime in one run, and the context to trust it."""

    run_id: str
    recipe: str
    created_at: str
    artifact: dict[str, Any]
    runtime: dict[str, Any]
    workload: dict[str, Any]
    environment: dict[str, Any]
    metrics: Metrics
    drop: Drop
    measurements: tuple[Measurement, ...]
    warnings: tuple[str, ...] = ()

    @property
    def variant(self) -> str:
        return self.artifact["variant"]

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The row this report is in tables: variant, runtime (engine and options), device, precision."""
        return (
            self.variant,
            RuntimeSpec.from_dict(self.runtime).engine,
            self.runtime["device"],
            self.runtime["precision"],
        )

    @property
    def peer(self) -> bool:
        """Whether a peer's pipeline (optimum, torchao) made this variant."""
        return is_peer(step["name"] for step in self.artifact.get("lineage", []))

    @property
    def file_name(self) -> str:
        """`<variant>.<runtime label>.json` (`baseline.torch-cpu-fp32-compile.json`), with `@<machine>` before
        `.json` for reports measured on the nodes of a distributed executor (a run may then hold one per node)."""
        node = f"@{self.environment.get('machine')}" if self.environment.get("executor") else ""
        return f"{self.variant}.{RuntimeSpec.from_dict(self.runtime).label}{node}.json"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "recipe": self.recipe,
            "created_at": self.created_at,
            "variant": self.variant,
            "artifact": self.artifact,
            "runtime": self.runtime,
            "workload": self.workload,
            "environment": self.environment,
            "accuracy": {"metrics": self.metrics.to_dict(), "drop": self.drop.to_dict()},
            "measurements": [m.to_dict() for m in self.measurements],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(
            run_id=d["run_id"],
            recipe=d["recipe"],
            created_at=d["created_at"],
            artifact=d["artifact"],
            runtime=d["runtime"],
            workload=d["workload"],
            environment=d["environment"],
            metrics=Metrics.from_dict(d["accuracy"]["metrics"]),
            drop=Drop.from_dict(d["accuracy"]["drop"]),
            measurements=tuple(Measurement.from_dict(m) for m in d["measurements"]),
            warnings=tuple(d.get("warnings", [])),
        )

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per measured shape: the table's columns, then the extra context columns."""
        env, git = self.environment, self.environment.get("git") or {}
        startup = self.runtime.get("startup") or {}
        variant, runtime, device, precision = self.key
        common = {
            "variant": variant,
            "peer": self.peer,
            "fastest_peer": None,  # these three compare reports with each other: to_frame fills them in
            "fastest_peer_p50_ms": None,
            "speedup_vs_peer": None,
            "runtime": runtime,
            "device": device,
            "model_mb": self.artifact.get("size_mb"),
            "parameters_m": self.artifact["parameters"] / 1e6 if self.artifact.get("parameters") else None,
            "accuracy": self.metrics.accuracy,
            "macro_f1": self.metrics.macro_f1,
            "accuracy_drop": self.drop.points,
            "precision_mode": precision,
            "accuracy_drop_ci_low": self.drop.ci_low,
            "accuracy_drop_ci_high": self.drop.ci_high,
            "test_rows": self.workload.get("rows"),
            "relative_accuracy_pct": relative_accuracy_pct(self.metrics.accuracy, self.drop.points),
            "agreement": self.drop.agreement,
            "precision": self.metrics.precision,
            "recall": self.metrics.recall,
            "roc_auc": self.metrics.roc_auc,
            "threads": self.runtime.get("threads"),
            "load_s": startup.get("load_s"),
            "first_call_s": startup.get("first_call_s"),
            "recipe": self.recipe,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "machine": env.get("machine"),
            "calibration_gflops": env.get("calibration_gflops"),
            "warnings": "; ".join([*self.artifact.get("details", {}).get("warnings", []), *self.warnings]),
        }
        rows = []
        for m in self.measurements:
            lat, gpu = m.latency, m.gpu_memory or GpuMemory()
            rows.append(
                {
                    **common,
                    "batch_size": m.batch_size,
                    "seq_len": m.seq_len,
                    "p50_ms": lat.p50_ms,
                    "p90_ms": lat.p90_ms,
                    "p99_ms": lat.p99_ms,
                    "p50_ci_low": lat.p50_ci_low,
                    "p50_ci_high": lat.p50_ci_high,
                    "throughput_sps": m.throughput_sps,
                    "peak_rss_mb": m.peak_rss_mb,
                    "speedup_p50": m.speedup_p50,
                    "p95_ms": lat.p95_ms,
                    "mean_ms": lat.mean_ms,
                    "std_ms": lat.std_ms,
                    "p99_ci_low": lat.p99_ci_low,
                    "p99_ci_high": lat.p99_ci_high,
                    "clock_resolution_ms": lat.clock_resolution_ms,
                    "iterations": lat.n,
                    "noise_floor_pct": m.noise_floor_pct,
                    "gpu_peak_allocated_mb": gpu.peak_allocated_mb,
                    "gpu_peak_reserved_mb": gpu.peak_reserved_mb,
                    "gpu_process_mb": gpu.process_used_mb,
                    "gpu_total_mb": gpu.device_total_mb,
                    "workload": m.workload_fingerprint,
                }
            )
        return [{c: row[c] for c in COLUMNS + EXTRA_COLUMNS} for row in rows]


def relative_accuracy_pct(accuracy: float, drop_points: float) -> float | None:
    """The variant's accuracy as a percentage of the reference's (MLPerf states targets this way: 99%),
    from the variant's accuracy and its drop in points."""
    reference = accuracy + drop_points / 100
    return 100 * accuracy / reference if reference > 0 else None


def write_report(report: Report, folder: Path) -> Path:
    path = folder / report.file_name
    write_json_atomic(path, report.to_dict())
    return path


def read_report(path: Path) -> Report | None:
    """The report in `path`; None for JSON files that are not optbench reports."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise unreadable_file(path, exc) from exc
    # JSONDecodeError, UnicodeDecodeError for non-UTF-8 bytes; RecursionError for thousands of nested [ or {
    except (ValueError, RecursionError) as exc:
        raise OptbenchError(f"cannot read {path}: {exc}; delete or restore the file") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise OptbenchError(
            f"{path} has report schema_version {version!r}, but this optbench reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: "
            "use the optbench release that wrote it, or re-run the recipe"
        )
    try:
        report = Report.from_dict(_with_implied_workload(data, version))
        for row in report.rows():  # reads every section a table, compare or gate reads: one of the wrong shape fails
            _check_kinds(row)
    except (KeyError, TypeError, ValueError, AttributeError, OptbenchError) as exc:
        raise OptbenchError(f"{path} is a damaged report ({_damage(exc)}): re-run the recipe that wrote it") from exc
    return report


def _with_implied_workload(data: dict[str, Any], version: int) -> dict[str, Any]:
    """`data` with the workload settings its version predates set to the values it implied (IMPLIED_WORKLOAD), and
    each measurement's workload fingerprint recomputed from them, as `workload_fingerprint` hashes them now (a report
    written before `workload_identity` hashed its data file's path in too). A fingerprint that is the hash of neither
    (written some other way) is kept: what it stood for is unknown, so it stays apart."""
    old = data["workload"]
    implied = {name: value for name, added, value in IMPLIED_WORKLOAD if version < added and name not in old}
    new = {**old, **implied}

    def hashes(batch_size: int, seq_len: int | str) -> tuple[str, str]:
        shape = {"batch_size": batch_size, "seq_len": seq_len}
        return workload_fingerprint(old, batch_size, seq_len), settings_hash({**old, **shape}, 12)

    measurements = [
        {**m, "workload_fingerprint": workload_fingerprint(new, m["batch_size"], m["seq_len"])}
        if m["workload_fingerprint"] in hashes(m["batch_size"], m["seq_len"])
        else m
        for m in data["measurements"]
    ]
    return {**data, "workload": new, "measurements": measurements}


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _number(value: Any) -> bool:
    """A figure, or None where it is unknown (a bool is no figure, though Python counts it an int)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _fraction(value: Any) -> bool:
    return _number(value) and (value is None or math.isnan(value) or 0 <= value <= 1)


def _above_zero(value: Any) -> bool:
    """A figure above 0, or unknown (None, NaN): what a p50 and a speedup are, and what tables and gates divide by."""
    return _number(value) and (value is None or math.isnan(value) or value > 0)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# the kind of each table column (every column not named here is a number, or None): a value of another kind, in a
# report edited by hand or another tool's JSON under optbench's schema name, failed later in a sort, a sum or a
# format, with a traceback
KINDS = {
    **dict.fromkeys(
        ["variant", "runtime", "device", "precision_mode", "recipe", "run_id", "created_at", "workload", "warnings"],
        (_text, "text"),
    ),
    **dict.fromkeys(["machine", "git_commit"], (lambda v: v is None or _text(v), "text")),
    **dict.fromkeys(
        ["accuracy", "macro_f1", "precision", "recall", "roc_auc", "agreement"], (_fraction, "a fraction, 0 to 1")
    ),
    **dict.fromkeys(["batch_size", "iterations"], (_count, "a whole number, 1 or more")),
    "test_rows": (lambda v: v is None or _count(v), "a whole number, 1 or more"),
    "seq_len": (lambda v: v == "data" or _count(v), 'a whole number, 1 or more, or "data"'),
    **dict.fromkeys(["p50_ms", "speedup_p50"], (_above_zero, "a number above 0")),
    # computed by the table, or shown as given
    **dict.fromkeys(
        ["peer", "fastest_peer", "fastest_peer_p50_ms", "speedup_vs_peer", "git_dirty"], (lambda v: True, "anything")
    ),
}


def _check_kinds(row: dict[str, Any]) -> None:
    """Refuse a table row holding a value not of its column's kind (KINDS)."""
    for column, value in row.items():
        check, kind = KINDS.get(column, (_number, "a number"))
        if not check(value):
            raise OptbenchError(f"{column} = {reprlib.repr(value)} is not {kind}")


def _damage(exc: Exception) -> str:
    """What is wrong with a report, from the error reading it raised."""
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    if isinstance(exc, OptbenchError):  # a record's own check, which names the problem
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def load_reports(folder: Path) -> list[Report]:
    """Every report under `folder`, in a stable order; hidden (staging) folders are skipped."""
    return [report for _, report in report_files(folder)]


def report_files(folder: Path) -> list[tuple[Path, Report]]:
    """Every report under `folder` (a folder of runs, a run folder or one report file) with its file."""
    if not folder.exists():
        raise OptbenchError(f"results folder {folder} does not exist: run a recipe first (optbench run RECIPE)")
    if not folder.is_dir() and folder.suffix.lower() != ".json":
        raise _not_a_report(folder)
    paths = _json_files(folder) if folder.is_dir() else [folder]
    found = []
    for path in sorted(paths):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        report = read_report(path)
        if report is not None:
            found.append((path, report))
    if not found and not folder.is_dir():  # a JSON file, but not a report
        raise _not_a_report(folder)
    return found


def _json_files(folder: Path) -> list[Path]:
    """Every .json file under `folder`. A folder in it this user may not read is an error: Path.rglob skips it
    without a word, so a table lacked its runs and a gate judged an older run as the newest."""

    def refuse(exc: OSError) -> None:
        raise OptbenchError(f"cannot read the folder {exc.filename} ({exc.strerror}): {READ_ACCESS_FIX}")

    walked = os.walk(folder, onerror=refuse)
    return [Path(root) / name for root, _, names in walked for name in names if name.endswith(".json")]


def distinct(found: Iterable[tuple[Path, Report]]) -> list[Report]:
    """The reports of `found`, each measurement once: a run's report copied into another folder (the same run id
    and file name: variant, runtime, device, precision, node) is skipped with a note, the same file named twice
    silently."""
    first: dict[tuple[str, str], Path] = {}
    reports = []
    for path, report in found:
        key = (report.run_id, report.file_name)
        if key not in first:
            first[key] = path
            reports.append(report)
        elif path.resolve() != first[key].resolve():
            log.info("skipped %s: a copy of %s (run %s counts once)", path, first[key], report.run_id)
    return reports


def _not_a_report(path: Path) -> OptbenchError:
    return OptbenchError(
        f"{path} is not an optbench report (a run writes <variant>.<runtime>.json files): give a results "
        "folder, a run folder or one of its report files"
    )
