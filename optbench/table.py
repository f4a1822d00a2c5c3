"""The result table: reports as one pandas frame (a row per variant, runtime, device, precision and shape), rendered
for people (Markdown, with the speedups marked against the A/A noise floor) or tools (CSV, JSON)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from optbench.errors import OptbenchError
from optbench.failures import FailedJob
from optbench.measure import gap_pct
from optbench.peers.speedup import DEFAULT_BUDGET_POINTS, add_speedup_vs_peers, budget_words
from optbench.report import COLUMNS, EXTRA_COLUMNS, Report

MARKDOWN_COLUMNS = [
    "variant",
    "runtime",
    "device",
    "precision_mode",
    "batch_size",
    "seq_len",
    "p50_ms",
    "p99_ms",
    "throughput_sps",
    "peak_rss_mb",
    "model_mb",
    "parameters_m",
    "accuracy",
    "accuracy_drop",
    "relative_accuracy_pct",
    "speedup_p50",
]
CSV_FLOATS = "%.10g"  # records_csv's float format
# Rows by shape (batch size, then sequence length), and at each shape by variant (the reference, "baseline",
# first) and runtime, so that the rows read against each other are together.
ROW_ORDER = ["batch_size", "seq_len", "variant", "runtime"]
# How a row was measured, not what it measured: where every row of a table holds one value of one of these, the
# table states it once above its rows (`settings_line`) instead of as a column; each with the name the line gives it
# (precision_mode is the runtime's: beside an INT8 model on a CPU runtime, a bare "fp32" reads as the model's).
SETTINGS = {"device": "device", "precision_mode": "runtime precision", "batch_size": "batch", "seq_len": "seq_len"}
# Shown when a run has them: GPU memory (runtimes on cuda), the startup times (reports before schema version 3
# lack them): the load, where onnxruntime's TensorRT provider builds its engine for its trt_profile (a recipe
# always fills one in) or reads it from its cache, and the first call, where torch.compile compiles; the speedup
# over the fastest peer within the accuracy budget (runs with peer variants), and the speedup over a row the
# reader chose (`optbench report --against`, optbench/relative_speedup.py).
OPTIONAL_MARKDOWN_COLUMNS = [
    "gpu_peak_reserved_mb",
    "gpu_process_mb",
    "load_s",
    "first_call_s",
    "speedup_vs_peer",
    "speedup_vs",
]


def to_frame(reports: list[Report], peer_budget_points: float = DEFAULT_BUDGET_POINTS) -> pd.DataFrame:
    """All reports as one table, one row per (variant, runtime, device, precision, batch size, sequence length),
    with each variant's speedup over the fastest peer within `peer_budget_points` of accuracy drop."""
    rows = [row for report in reports for row in report.rows()]
    frame = add_speedup_vs_peers(pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS), peer_budget_points)
    frame.attrs["peer_budget_points"] = peer_budget_points
    frame.attrs["reports"] = len(reports)  # a table without rows says whether it had any (`no_rows`)
    return frame.sort_values(["recipe", "run_id", *ROW_ORDER], kind="stable", key=sort_key)


def sort_key(column: pd.Series) -> pd.Series:
    """Table order: batch sizes and sequence lengths as numbers (`data`, the data's own lengths, after the fixed
    ones), everything else as text."""
    if column.name == "batch_size":
        return column
    if column.name == "seq_len":
        return column.map(lambda seq_len: math.inf if seq_len == "data" else float(seq_len))
    return column.astype(str)


def missing(value: Any) -> bool:
    """None or NaN: a figure the report does not have."""
    return value is None or (isinstance(value, float) and pd.isna(value))


def commit_label(commit: Any, dirty: Any) -> str:
    """A run's commit as people read it: its first 12 characters, then " (dirty)" where the tree had uncommitted
    changes; "unknown" where the run names none (outside git: None, or NaN in a frame beside runs in git)."""
    mark = " (dirty)" if not missing(dirty) and dirty else ""
    return f"{'unknown' if missing(commit) else commit[:12]}{mark}"


def no_rows(frame: pd.DataFrame) -> str:
    """Why `frame`, a table without rows, has none: no reports, or reports without a measured shape (found and read:
    "no reports found" of them misled)."""
    count = frame.attrs.get("reports", 0)
    if not count:
        return "no reports found"
    return f"{count} report{'s' if count > 1 else ''} found, none with a measurement (a latency at a batch shape)"


def records_json(frame: pd.DataFrame) -> str:
    """`frame` as a JSON list of one object per row, for tools; with no rows `[]`, not the three lines (a bracket,
    a blank line, a bracket) pandas indents an empty list into."""
    return frame.to_json(orient="records", indent=2) if len(frame) else "[]"


def records_csv(frame: pd.DataFrame) -> str:
    """`frame` as CSV, for tools; floats to 10 significant digits, every digit a clock or count gives (latencies
    tick in nanoseconds), without binary noise (44.333232499999994 is written 44.3332325), those of a column that
    holds words too (compare's `a` and `b`) as well: pandas' float_format reaches only float columns."""
    frame = frame.copy()
    for column in [c for c in frame.columns if frame[c].dtype == object]:  # mixed columns; not pandas' str ones
        frame[column] = frame[column].map(lambda v: CSV_FLOATS % v if isinstance(v, float) and not math.isnan(v) else v)
    return frame.to_csv(index=False, float_format=CSV_FLOATS)


def render(frame: pd.DataFrame, fmt: str, failed: Sequence[FailedJob] = ()) -> str:
    """The table as Markdown (for people: each run's notes, and its jobs among `failed`, under its table), CSV or
    JSON (for tools)."""
    if fmt == "csv":
        return records_csv(frame)
    if fmt == "json":
        return records_json(frame)
    if fmt == "md":
        return _markdown(frame, failed)
    raise OptbenchError(f"unknown report format {fmt!r}: use md, csv or json")


def _markdown(frame: pd.DataFrame, failed: Sequence[FailedJob]) -> str:
    lines = []
    for (recipe, run_id), group in frame.groupby(["recipe", "run_id"], sort=False):
        shared, columns = run_layout(group)
        lines += [f"### {recipe} · run {run_id}", "", run_facts(group), "", *([shared, ""] if shared else [])]
        lines += [*markdown_table(group, columns), ""]
        notes = run_notes(group, frame.attrs.get("peer_budget_points", DEFAULT_BUDGET_POINTS), failed)
        lines += [*(f"- **{label}**: {text}" for label, text in notes), ""] if notes else []
    return "\n".join(lines) if lines else f"{no_rows(frame)}\n"


def run_facts(run: pd.DataFrame) -> str:
    """Where a run's table comes from, said above it (Markdown and HTML alike): when, from which commit, on which
    machines (each once: a Ray run's jobs ran on several), each with its GEMM calibration where the reports have
    one, with how many threads and test rows."""
    first = run.iloc[0]
    by_machine = run.groupby(run["machine"].fillna("unknown"), sort=False, dropna=False)["calibration_gflops"]
    machines = [f"{machine}{gemm_words(gflops, ' (', ')')}" for machine, gflops in by_machine]
    return (
        f"created {first['created_at']} · commit {commit_label(first['git_commit'], first['git_dirty'])} · "
        f"machine{'s' if len(machines) > 1 else ''} {', '.join(machines)} · {first['threads']} threads · "
        f"{first['test_rows']} test rows"
    )


def gemm_words(gflops: Iterable[Any], before: str = "", after: str = "") -> str:
    """A machine's GEMM calibrations as a report's reader sees them ("GEMM 167.5 GFLOP/s", each value once, between
    `before` and `after`), or "" where the reports have none (older reports, or a calibration that failed)."""
    figures = dict.fromkeys(f"{g:.1f}" for g in gflops if not missing(g))
    return f"{before}GEMM {', '.join(figures)} GFLOP/s{after}" if figures else ""


def run_layout(run: pd.DataFrame) -> tuple[str | None, list[str]]:
    """A run's table as people read it (Markdown and HTML alike), by `said_once`: the line above it, and its columns:
    the standard ones but the settings that line states, and the optional ones the run has."""
    shared, standard = said_once(run, MARKDOWN_COLUMNS)
    return shared, standard + [c for c in OPTIONAL_MARKDOWN_COLUMNS if c in run and run[c].notna().any()]


def said_once(rows: pd.DataFrame, columns: Iterable[str]) -> tuple[str | None, list[str]]:
    """The `settings_line` of the SETTINGS every row of `rows` shares, and `columns` less those settings: a table
    (a run's, the by-machine one, compare's) says them once above its rows instead of as columns."""
    shared = _common_settings(rows)
    return settings_line(shared), [c for c in columns if c not in shared]


def _common_settings(rows: pd.DataFrame) -> dict[str, str]:
    """The SETTINGS columns of `rows` that hold one value on every row, each with that value as its cells write it."""
    if rows.empty:
        return {}
    first = rows.iloc[0]
    return {c: format_cell(c, first) for c in SETTINGS if c in rows and rows[c].nunique(dropna=False) == 1}


def settings_line(settings: dict[str, str]) -> str | None:
    """What every row of a table shares (`_common_settings`), said once above it: `All rows: device cpu · batch 1 ·
    seq_len 128`; None where its rows share none. A setting no row has (every cell `-`: compare's budget rows) is
    not said: `device -` tells nothing, and its column, as empty, is left out all the same."""
    said = " · ".join(f"{SETTINGS[c]} {value}" for c, value in settings.items() if value != "-")
    return f"All rows: {said}" if said else None


def run_notes(run: pd.DataFrame, peer_budget_points: float, failed: Sequence[FailedJob] = ()) -> list[tuple[str, str]]:
    """What a run's table needs said beside it, as (label, text), for the Markdown table and the HTML page alike:
    the peer each speedup_vs_peer is against, the row each speedup_vs is against, the A/A noise floor, each
    variant's warnings, and the run's failed jobs among `failed` (whose variants have no row)."""
    run_id = run["run_id"].iloc[0]
    note = noise_floor_note(run)
    warned = run.loc[run["warnings"] != "", ["variant", "warnings"]].drop_duplicates()
    return [
        *(("fastest peer", text) for text in _fastest_peers(run, peer_budget_points)),
        *(("speedup_vs", text) for text in _speedup_vs(run)),
        *([("A/A noise floor", note)] if note else []),
        *((f"warning ({variant})", text) for variant, text in warned.itertuples(index=False)),
        *(("failed", failure.describe()) for failure in failed if failure.run_id == run_id),
    ]


def _fastest_peers(group: pd.DataFrame, budget_points: float) -> list[str]:
    """At each shape, the peer every speedup_vs_peer is measured against, its p50 as the table writes it."""
    columns = ["batch_size", "seq_len", "device", "machine", "fastest_peer", "fastest_peer_p50_ms"]
    bars = group.loc[group["fastest_peer"].notna(), columns].drop_duplicates()
    several = bars[["device", "machine"]].drop_duplicates().shape[0] > 1  # say where, when it differs
    within = f"(within {budget_words(budget_points)} of accuracy drop)"
    return [
        f"{peer}, p50 {format_number(p50)} ms, at batch {b} x {s}"
        f"{f' on {device}, machine {machine}' if several else ''} {within}"
        for b, s, device, machine, peer, p50 in bars.itertuples(index=False)
    ]


def _speedup_vs(group: pd.DataFrame) -> list[str]:
    """The row every speedup_vs is measured against."""
    chosen = group["speedup_vs_row"].dropna().unique() if "speedup_vs_row" in group else []
    return [] if not len(chosen) else [f"against {', '.join(chosen)} at the same shape (its p50 over each row's)"]


def noise_floor_note(run: pd.DataFrame) -> str | None:
    """Under a run's table: its A/A noise floor at each shape and what a speedup marked ~ means; None for a run
    without one (aa_check off, reports before schema version 2)."""
    floors = run.loc[run["noise_floor_pct"].notna(), ["batch_size", "seq_len", "machine", "noise_floor_pct"]]
    floors = floors.drop_duplicates()
    if floors.empty:
        return None
    several = floors["machine"].nunique() > 1
    at = ", ".join(
        f"{floor:.1f}% at batch {b} x {s}{f' on machine {machine}' if several else ''}"
        for b, s, machine, floor in floors.itertuples(index=False)
    )
    return (
        f"the reference's two p50s in this run differ by {at}. A speedup marked ~ is within that: the p50s it "
        "compares differ by no more, so it is not told apart from noise."
    )


def within_noise(speedup: float, noise_floor_pct: float) -> bool:
    """Whether the two p50s a speedup compares differ, in percent of their mean (as the A/A noise floor is
    measured), by no more than the floor. A speedup of exactly 1 (a row against itself) is not marked."""
    return 0 < gap_pct(speedup, 1) <= noise_floor_pct


def format_speedup(speedup: float, noise_floor_pct: float | None) -> str:
    """A speedup as 2.10x, or ~1.05x when it is within the A/A noise floor (None or NaN: no floor measured); one that
    two decimals round to zero to one significant digit, as `format_points` writes a drop (0.003x, not 0.00x)."""
    within = not missing(noise_floor_pct) and within_noise(speedup, noise_floor_pct)
    number = f"{speedup:.2f}" if speedup >= 0.005 else f"{speedup:.1g}"
    return f"{'~' if within else ''}{number}x"


def markdown_table(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The rows of `frame` as Markdown table lines (header, rule, one line a row) of `columns`."""
    return markdown_lines(columns, ([format_cell(c, row) for c in columns] for _, row in frame.iterrows()))


def markdown_lines(columns: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    """Markdown table lines: the header of `columns`, its rule, then one line a row of cells already written."""
    columns = list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def format_cell(column: str, row: pd.Series) -> str:
    """One table cell as people read it: accuracy to 4 places, the drop with its interval, speedups as 2.10x
    (~1.05x within the run's A/A noise floor)."""
    value = row[column]
    if missing(value):
        return "-"
    if column == "variant" and not missing(row.get("peer")) and bool(row["peer"]):
        return f"{value} (peer)"
    if column == "accuracy":
        return f"{value:.4f}"
    if column == "accuracy_drop":
        low, high = row["accuracy_drop_ci_low"], row["accuracy_drop_ci_high"]
        interval = "" if missing(low) or (low == high == value) else f" [{format_points(low)}, {format_points(high)}]"
        return f"{format_points(value)}{interval}"
    if column == "relative_accuracy_pct":
        return f"{value:.1f}%"
    if column in ("speedup_p50", "speedup_vs_peer", "speedup_vs"):
        return format_speedup(value, row.get("noise_floor_pct"))
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def format_points(value: float) -> str:
    """An accuracy drop (or a bound of its interval) in points, signed, to two decimals; one that two decimals round
    to zero to one significant digit (one row in 25,000 more right is -0.004, not -0.00), and zero unsigned (+0.00)."""
    if value == 0:  # -0.0 too
        return "+0.00"
    return f"{value:+.2f}" if abs(value) >= 0.005 else f"{value:+.1g}"


def format_number(value: float) -> str:
    """A figure as people read it: one decimal from 100, two from 1, and three significant digits below 1, so that
    a GPU's sub-millisecond p50s (0.0847 and 0.0761 ms) are not rounded alike (0.08)."""
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:#.3g}"
