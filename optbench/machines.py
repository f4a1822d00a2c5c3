"""Results from several machines merged into one table, keyed by hardware fingerprint.

The same recipe run on different machines (or a sweep whose jobs ran on several nodes) gives reports
whose environments differ. Here each (variant, runtime, device, precision, shape) is one row (a peer's
marked as in a run's table) and each machine contributes its p50, speedup and A/A noise floor from its
newest report, so the machines read side by side; the legend says what each machine key is (the memory and CPU flags
that tell apart machines of one CPU model and core count too). Runs of different
workloads are never compared as if alike (as `compare` marks them not comparable): where the reports hold several,
each workload has its own rows, named in a `workload` column, and a second legend says what tells them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from optbench.environment import hardware
from optbench.errors import OptbenchError
from optbench.report import Report, flat_workload, settings_hash, workload_identity, workloads_of
from optbench.table import (
    ROW_ORDER,
    format_cell,
    format_number,
    format_speedup,
    gemm_words,
    markdown_lines,
    missing,
    no_rows,
    records_csv,
    records_json,
    said_once,
    sort_key,
    to_frame,
)

ROW_KEY = ["variant", "runtime", "device", "precision_mode", "batch_size", "seq_len"]
FIGURES = ("p50_ms", "speedup_p50", "noise_floor_pct")


@dataclass(frozen=True)
class Machine:
    """One hardware fingerprint and what it stands for."""

    key: str
    cpu: str
    cores: int | None
    gpus: tuple[str, ...]
    runs: tuple[str, ...]
    calibrations: tuple[float | None, ...]  # the GEMM calibration each of `runs` read here (None: none recorded)
    flags: tuple[str, ...] = ()
    memory_gib: int | None = None

    @property
    def label(self) -> str:
        return self.described()

    def described(self, memory: bool = False, flags: tuple[str, ...] = ()) -> str:
        """The CPU model, then in brackets its cores, its memory (where `memory`), its GPUs, and which of `flags` it
        has and lacks."""
        cores = "cores unknown" if self.cores is None else f"{self.cores} cores"
        gib = ["memory unknown" if self.memory_gib is None else f"{self.memory_gib} GiB"] if memory else []
        has, lacks = [f for f in flags if f in self.flags], [f for f in flags if f not in self.flags]
        told = [f"{word} {', '.join(some)}" for word, some in (("with", has), ("without", lacks)) if some]
        return f"{self.cpu} ({'; '.join([', '.join([cores, *gib, *self.gpus]), *told])})"

    @classmethod
    def of(
        cls, key: str, environment: Mapping, runs: tuple[str, ...], calibrations: tuple[float | None, ...]
    ) -> Machine:
        """The machine `key` as `environment` (a report's) describes it, and the runs measured on it."""
        parts = hardware(environment)
        gpus = tuple(name or "?" for name in parts["gpus"])
        cpu = parts["cpu_model"] or "unknown CPU"
        return cls(key, cpu, parts["cores"], gpus, runs, calibrations, tuple(parts["flags"]), parts["memory_gib"])

    def runs_described(self) -> str:
        """Its runs, each with its GEMM calibration on this machine where its reports have one."""
        pairs = zip(self.runs, self.calibrations, strict=True)
        return ", ".join(f"{run}{gemm_words([gflops], ' (', ')')}" for run, gflops in pairs)


def legend_labels(shown: list[Machine]) -> dict[str, str]:
    """Each machine's label; where machines share one (one CPU model, core count and GPUs), with what else their keys
    hash that tells them apart: the memory where it differs among them, the CPU flags that some of them lack."""
    out = {}
    for label in dict.fromkeys(m.label for m in shown):
        alike = [m for m in shown if m.label == label]
        every = set.intersection(*(set(m.flags) for m in alike))
        flags = tuple(sorted({f for m in alike for f in m.flags} - every))
        memory = len({m.memory_gib for m in alike}) > 1
        out.update((m.key, m.described(memory, flags)) for m in alike)
    return out


def machine_key_of(machine: object) -> str:
    """A report's machine key, "unknown" for a report without one (older reports)."""
    return machine if isinstance(machine, str) and machine else "unknown"


def _first_and_runs(reports: list[Report], key: Callable[[Report], str]) -> dict[str, tuple[Report, tuple[str, ...]]]:
    """Each `key` among `reports`, in order of first appearance: its first report and its runs (recipe/run id)."""
    found: dict[str, tuple[Report, tuple[str, ...]]] = {}
    for report in reports:
        at, run = key(report), _run_name(report)
        first, runs = found.get(at, (report, ()))
        found[at] = (first, runs if run in runs else (*runs, run))
    return found


def machines(reports: list[Report]) -> list[Machine]:
    """Every machine among `reports`, in order of first appearance, as its first report describes it, with the
    GEMM calibration each of its runs read there (the lowest, where a resumed run's reports read two)."""
    found = _first_and_runs(reports, _machine_of)
    readings: dict[tuple[str, str], list[float]] = {}
    for report in reports:
        gflops = report.environment.get("calibration_gflops")
        if gflops is not None:
            readings.setdefault((_machine_of(report), _run_name(report)), []).append(gflops)
    return [
        Machine.of(key, first.environment, runs, tuple(min(readings.get((key, run), []), default=None) for run in runs))
        for key, (first, runs) in found.items()
    ]


def _machine_of(report: Report) -> str:
    return machine_key_of(report.environment.get("machine"))


def _run_name(report: Report) -> str:
    """A run as the legends name it: recipe/run id."""
    return f"{report.recipe}/{report.run_id}"


@dataclass(frozen=True)
class Workload:
    """One workload's settings (data, max_length, threads, timing, max_batches, rounds) and the runs measured on it."""

    key: str
    settings: Mapping
    runs: tuple[str, ...]


def workload_key(settings: Mapping) -> str:
    """A short hash of a workload's settings: the same for every shape measured on it (its measurements' workload
    fingerprints hash the shape in too), of the settings that make it one (`workload_identity`)."""
    return settings_hash(workload_identity(settings), 8)


def workloads(reports: list[Report]) -> list[Workload]:
    """Every workload among `reports`, in order of first appearance."""
    found = _first_and_runs(reports, lambda report: workload_key(report.workload))
    return [Workload(key, first.workload, runs) for key, (first, runs) in found.items()]


def merge_by_machine(reports: list[Report]) -> pd.DataFrame:
    """One row per measured cell (its key, and `peer`: whether another tool's pipeline made the variant), with
    `p50_ms@<machine>`, `speedup_p50@<machine>` and `noise_floor_pct@<machine>` for every machine (its newest
    report of that cell; empty where a machine did not measure it, or ran without the A/A check). A cell is measured
    on one workload: where the reports hold several, a `workload` column (`workload_key`) tells their rows apart.
    The table carries its legends for `render_merged`: attrs["machines"] and attrs["workloads"], in order of first
    appearance (`machines`, `workloads`)."""
    if not reports:
        raise OptbenchError("no optbench reports to merge: give folders that recipe runs wrote")
    frame = to_frame(reports).sort_values(["created_at", "run_id"], kind="stable")
    # "unknown" for a report without a key, as machines() names it: pivot would drop a None column and its figures
    frame["machine"] = [machine_key_of(key) for key in frame["machine"]]
    known_machines, known_workloads = machines(reports), workloads(reports)
    # keyed by the workload fingerprint, as compare matches rows: two fingerprints are two workloads
    newest = frame.drop_duplicates([*ROW_KEY, "workload", "machine"], keep="last")
    wide = newest.pivot(index=[*ROW_KEY, "workload", "peer"], columns="machine", values=list(FIGURES))
    order = [m.key for m in known_machines]
    wide = wide.reindex(columns=pd.MultiIndex.from_product([FIGURES, order]))
    wide.columns = [f"{figure}@{machine}" for figure, machine in wide.columns]
    merged, settings = wide.reset_index(), workloads_of(reports)
    merged["workload"] = [workload_key(settings[fingerprint]) for fingerprint in merged["workload"]]
    legend = {workload.key: n for n, workload in enumerate(known_workloads)}  # a cell's rows in legend order
    merged = merged.sort_values("workload", kind="stable", key=lambda keys: keys.map(legend))
    merged = merged.sort_values(ROW_ORDER, kind="stable", key=sort_key)
    if merged["workload"].nunique() < 2:
        merged = merged.drop(columns="workload")
    merged.attrs["reports"] = frame.attrs["reports"]  # a table without rows says whether it had any (`no_rows`)
    merged.attrs.update(machines=known_machines, workloads=known_workloads)
    return merged


def render_merged(table: pd.DataFrame, fmt: str) -> str:
    """The merged table (`merge_by_machine`, whose attrs hold its legends) as Markdown (with the machine legend first,
    then the workload legend where rows are of several, the settings every row shares said once as in a run's table,
    peers marked after their variant, and a speedup within its machine's A/A noise floor marked ~; without rows, why:
    `table.no_rows`), CSV or JSON (whose legend, `merged_legend`, the command writes to stderr)."""
    if fmt == "csv":
        return records_csv(table)
    if fmt == "json":
        return records_json(table)
    if table.empty:
        return f"{no_rows(table)}\n"
    lines = merged_legend(table)
    line, columns = said_once(table, (column for column in table.columns if column != "peer"))  # peer: a mark
    lines += [*(["", line] if line else []), ""]
    lines += markdown_lines(columns, ([_cell(column, row) for column in columns] for _, row in table.iterrows()))
    if table.filter(like="noise_floor_pct@").notna().any(axis=None):
        lines += [
            "",
            "A speedup marked ~ is within its machine's A/A noise floor at that shape (noise_floor_pct: how "
            "far apart the reference's two p50s were in that machine's run), so it is not told apart from noise.",
        ]
    return "\n".join(lines) + "\n"


def merged_legend(table: pd.DataFrame) -> list[str]:
    """What the merged table's keys stand for: each machine's fingerprint (the `@` in its columns) with its hardware
    and runs, then each workload's hash (the `workload` column, where rows are of several) with its settings."""
    labels = legend_labels(table.attrs["machines"])
    lines = ["Machines (hardware fingerprints):", ""]
    lines += [f"- `{m.key}`: {labels[m.key]}; runs {m.runs_described()}" for m in table.attrs["machines"]]
    if "workload" in table:
        shown = set(table["workload"])
        lines += ["", *_workload_legend([w for w in table.attrs["workloads"] if w.key in shown])]
    return lines


def _workload_legend(shown: list[Workload]) -> list[str]:
    """Each workload of `shown` with the settings whose values differ among them, and its runs."""
    flat = [flat_workload(workload.settings) for workload in shown]
    differ = sorted({k for settings in flat for k in settings if any(s.get(k) != settings.get(k) for s in flat)})
    lines = ["Workloads (the settings that tell them apart; runs of different workloads are never compared):", ""]
    for workload, settings in zip(shown, flat, strict=True):
        told = " · ".join(f"{k} {settings.get(k)}" for k in differ)
        lines.append(f"- `{workload.key}`: {told}; runs {', '.join(workload.runs)}")
    return lines


def _cell(column: str, row: pd.Series) -> str:
    """A machine's figure in its own form; the row's key as a run's table writes it (`table.format_cell`)."""
    figure, _, machine = column.partition("@")
    value = row[column]
    if not machine or missing(value):
        return format_cell(column, row)
    if figure == "speedup_p50":
        return format_speedup(value, row.get(f"noise_floor_pct@{machine}"))
    if figure == "noise_floor_pct":
        return f"{value:.1f}%"
    return format_number(value)
