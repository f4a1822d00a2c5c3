"""A static HTML page of a report table: per run, a latency-versus-accuracy plot (matplotlib PNG) with each
point's 95% intervals and the Pareto front highlighted, and the table with the Pareto variants marked. Where
matplotlib does not import (a GPU machine without a package index may lack it), the page has the tables and says
why no plot."""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from optbench.atomic import write_all_atomic
from optbench.encoding import Shape
from optbench.errors import OptbenchError
from optbench.failures import FailedJob
from optbench.peers.speedup import DEFAULT_BUDGET_POINTS
from optbench.table import format_cell, no_rows, run_facts, run_layout, run_notes

log = logging.getLogger(__name__)

DEFAULT_SHAPE: Shape = (1, 128)
_SHAPE = re.compile(r"([0-9]+)x([0-9]+|data)", re.IGNORECASE)  # ASCII digits: int() refuses "²"


def parse_shape(text: str) -> Shape:
    """`1x128` or `32xdata` -> (1, 128) / (32, "data"): a batch size and a sequence length of 1 or more, as a recipe
    and a budget take them."""
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise OptbenchError(f"shape {text!r}: write BATCHxSEQ, e.g. 1x128 or 32xdata")
    batch, seq = int(match[1]), match[2].lower()
    if batch < 1 or (seq != "data" and int(seq) < 1):
        raise OptbenchError(
            f"shape {text!r}: a batch size and a sequence length are 1 or more: write BATCHxSEQ, e.g. 1x128 or 32xdata"
        )
    return batch, seq if seq == "data" else int(seq)


def shape_text(shape: Shape) -> str:
    """A shape as `parse_shape` reads it: `1x128`, `32xdata`."""
    return f"{shape[0]}x{shape[1]}"


def at_shape(run: pd.DataFrame, shape: Shape) -> pd.DataFrame:
    """The rows of a report table measured at `shape`."""
    return run[(run["batch_size"] == shape[0]) & (run["seq_len"] == shape[1])]


def pareto_front(latency: list[float], accuracy: list[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower latency, higher accuracy), by latency;
    a point that is not plotted (a figure missing) is on no front."""
    points = [(i, lat, acc) for i, (lat, acc) in enumerate(zip(latency, accuracy, strict=True)) if _plotted(lat, acc)]
    front = []
    for i, lat, acc in points:
        dominated = any(
            other_lat <= lat and other_acc >= acc and (other_lat < lat or other_acc > acc)
            for _, other_lat, other_acc in points
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: latency[i])


def _plotted(latency: float, accuracy: float) -> bool:
    """Whether a point has a place on the log-latency plot (NaN: a figure is missing)."""
    return math.isfinite(latency) and math.isfinite(accuracy) and latency > 0


def point_labels(latency: list[float], accuracy: list[float]) -> list[tuple[float, float, str]]:
    """Each point's number (1-based, the table's # column) at its place; points that would print on top of
    each other (within 4% of latency and 2% of the accuracy range) share one label, e.g. "3,4"."""
    plotted = [acc for lat, acc in zip(latency, accuracy, strict=True) if _plotted(lat, acc)]
    span = (max(plotted) - min(plotted)) if plotted else 1.0
    span = span or 1.0
    groups: list[list[int]] = []
    for i, (lat, acc) in enumerate(zip(latency, accuracy, strict=True)):
        if not _plotted(lat, acc):
            continue
        near = (
            g for g in groups if abs(math.log(lat / latency[g[0]])) < 0.04 and abs(acc - accuracy[g[0]]) < 0.02 * span
        )
        group = next(near, None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return [(latency[g[0]], accuracy[g[0]], ",".join(str(i + 1) for i in g)) for g in groups]


def plot_png(run: pd.DataFrame, shape: Shape, title: str) -> bytes:
    """The latency-versus-accuracy scatter of one run at `shape` (`plot`), as PNG."""
    import io

    import matplotlib.pyplot as plt

    figure = plot(run, shape, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.2)  # the key's long lines widen it
    plt.close(figure)
    return buffer.getvalue()


def accuracy_interval(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The 95% interval of each row's accuracy that its report holds: the paired interval of its drop against the
    reference, from the reference's accuracy as measured (the reference's own: none), kept within 0 and 1. It is
    how far the row may sit from the reference, not the test split's sampling error, which every row shares."""
    reference = rows["accuracy"] + rows["accuracy_drop"] / 100
    low, high = reference - rows["accuracy_drop_ci_high"] / 100, reference - rows["accuracy_drop_ci_low"] / 100
    return low.clip(0, 1), high.clip(0, 1)


def plot(run: pd.DataFrame, shape: Shape, title: str) -> Any:
    """The latency-versus-accuracy scatter of one run at `shape`, each point with light bars for its p50's and its
    accuracy's 95% intervals (a p50 timed on too few calls to bound has none, and its key says so), Pareto front
    joined and labelled, as a matplotlib Figure (the caller closes it)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = at_shape(run, shape).reset_index(drop=True)
    latency, accuracy = rows["p50_ms"].tolist(), rows["accuracy"].tolist()
    front = pareto_front(latency, accuracy)
    figure, axes = plt.subplots(figsize=(13, 5.5), dpi=110)
    bars = {"color": "#52606d", "alpha": 0.35, "linewidth": 1, "zorder": 1}  # light, under the points
    axes.hlines(
        rows["accuracy"], rows["p50_ci_low"], rows["p50_ci_high"], gid="p50 interval", label="95% intervals", **bars
    )
    axes.vlines(rows["p50_ms"], *accuracy_interval(rows), gid="accuracy interval", **bars)
    others = rows.drop(index=front)
    peers = others["peer"].astype(bool)
    axes.scatter(
        others.loc[~peers, "p50_ms"], others.loc[~peers, "accuracy"], color="#9aa5b1", label="variant", zorder=2
    )
    if peers.any():
        axes.scatter(
            others.loc[peers, "p50_ms"],
            others.loc[peers, "accuracy"],
            color="#e09f3e",
            marker="s",
            label="peer",
            zorder=2,
        )
    axes.plot(
        rows.loc[front, "p50_ms"], rows.loc[front, "accuracy"], "-o", color="#d1495b", label="Pareto front", zorder=3
    )
    for x, y, text in point_labels(latency, accuracy):
        axes.annotate(text, (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
    figure.text(0.6, 0.5, "\n".join(plot_key(rows)), fontsize=8, family="monospace", va="center")
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=latency_ticks(*axes.get_xlim())))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))  # 5, 7, 10, 15
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel(f"p50 latency, ms (batch {shape[0]}, sequence {shape[1]}; log scale)")
    axes.set_ylabel("accuracy (test split)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best")  # where it covers the fewest points: slow, inaccurate variants sit lower right
    figure.tight_layout(rect=(0, 0, 0.59, 1))
    return figure


def latency_ticks(low: float, high: float) -> tuple[float, ...]:
    """The labelled ticks of each decade of a latency axis from `low` to `high` ms, as LogLocator's subs: 1, 1.5, 2, 3,
    5 and 7 across up to 2 decades, 1, 2 and 5 up to 6, 1 beyond; denser, labels 0.125 decade apart ran into each
    other ('150200') across the 3 decades between a tiny model's ONNX variant and its PyTorch baseline."""
    decades = math.log10(high / low)
    if decades <= 2:
        return (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    return (1.0, 2.0, 5.0) if decades <= 6 else (1.0,)


def plot_key(rows: pd.DataFrame) -> list[str]:
    """The plot's key, a line per point: its number, variant and runtime, and its device and precision where the
    plotted rows differ in them (a GPU run's torch rows on cpu and cuda, in fp32, fp16 and bf16); peers marked, and
    so is a p50 whose interval the run's calls could not bound (no bar: it is not a certain figure)."""
    varying = [column for column in ("device", "precision_mode") if rows[column].nunique() > 1]
    lines = []
    for n, row in enumerate(rows.to_dict("records"), 1):
        unbounded = math.isinf(row["p50_ci_low"]) or math.isinf(row["p50_ci_high"])
        about = [
            row["runtime"],
            *(row[column] for column in varying),
            *(["peer"] if row["peer"] else []),
            *(["p50 interval unbounded"] if unbounded else []),
        ]
        lines.append(f"{n:>2}  {row['variant']} ({', '.join(about)})")
    return lines


def _shape_order(shape: Shape) -> tuple[int, bool, int]:
    """Smallest first: the smallest batch, at its shortest fixed length, `data` last."""
    return shape[0], shape[1] == "data", 0 if shape[1] == "data" else int(shape[1])


def measured_shapes(frame: pd.DataFrame) -> list[Shape]:
    """The shapes a report table holds, each once, smallest first (`_shape_order`)."""
    shapes = {
        (int(batch), seq if seq == "data" else int(seq))
        for batch, seq in zip(frame["batch_size"], frame["seq_len"], strict=True)
    }
    return sorted(shapes, key=_shape_order)


def run_shape(run: pd.DataFrame) -> Shape:
    """The shape a run's plot shows when none is asked for: batch 1 x 128 where the run measured it, else its
    smallest measured shape (a user's recipe measured only at other lengths still gets its plot). The run's own
    page and `optbench report --format html` both choose by this rule."""
    shapes = measured_shapes(run)
    return DEFAULT_SHAPE if DEFAULT_SHAPE in shapes else shapes[0]


def plots_missing() -> str | None:
    """None when matplotlib imports; otherwise why the page has no plots, and the fix."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"matplotlib does not import ({exc}): pip install matplotlib for the plots"
    return None


def write_html(
    frame: pd.DataFrame, path: Path, shape: Shape | None = None, failed: Sequence[FailedJob] = ()
) -> list[Path]:
    """Write the page to `path` and each run's plot beside it (`<stem>.png`, or `<stem>-<n>.png` for several
    runs); returns every file written. Each run is plotted at `shape`, or at `run_shape` when it is None; a run
    not measured at `shape` gets no plot and says so (a `shape` no run measured, a typo, is refused before anything
    is written, with the shapes measured), and so does every run where matplotlib does not import (a run's reports
    are not lost for a plot). Each run's notes (`table.run_notes`) stand above its table, with
    its jobs among `failed`."""
    if frame.empty:
        raise OptbenchError(f"{no_rows(frame)}: no page to write; give results a recipe measured (optbench run RECIPE)")
    if path.suffix.lower() not in (".html", ".htm"):
        raise OptbenchError(f"{path}: the HTML page needs a name ending in .html (its plots are written beside it)")
    if path.is_dir():  # refused before the plots are written: none is left without its page
        raise OptbenchError(f"cannot write {path}: it is a folder; give a file name")
    if shape is not None and at_shape(frame, shape).empty:
        measured = ", ".join(shape_text(s) for s in measured_shapes(frame))
        raise OptbenchError(
            f"--shape {shape_text(shape)}: no run shown was measured at batch {shape[0]} x {shape[1]}: give one of "
            f"the shapes measured ({measured}), or leave --shape out to plot each run at its own"
        )
    missing = plots_missing()
    if missing:
        log.warning("%s has no plots: %s", path.name, missing)
    runs = list(frame.groupby(["recipe", "run_id"], sort=False))
    sections, plots = [], []
    for n, ((recipe, run_id), run) in enumerate(runs):
        title = f"{recipe} · run {run_id}"
        plotted = shape or run_shape(run)
        image = None
        if not missing and not at_shape(run, plotted).empty:
            image = _plot_path(path, n, len(runs))
            plots.append((image, plot_png(run, plotted, title)))
        notes = run_notes(run, frame.attrs.get("peer_budget_points", DEFAULT_BUDGET_POINTS), failed)
        sections.append(_section(run, title, plotted, image, missing, notes))
    recipes = dict.fromkeys(str(recipe) for (recipe, _), _ in runs)  # each once, however many of its runs
    page = _PAGE.format(title=html.escape(f"optbench · {', '.join(recipes)}"), body="\n".join(sections))
    write_all_atomic([(path, page.encode("utf-8")), *plots])  # the page and its plots, all or none
    return [path, *(image for image, _ in plots)]


def html_files(frame: pd.DataFrame, path: Path) -> list[Path]:
    """Every file `write_html(frame, path)` may write: the page and a plot per run."""
    runs = frame.groupby(["recipe", "run_id"], sort=False).ngroups
    return [path, *(_plot_path(path, n, runs) for n in range(runs))]


def _plot_path(page: Path, n: int, runs: int) -> Path:
    """The plot of the page's run `n` (from 0) of `runs`: `<stem>.png`, or `<stem>-<n + 1>.png` for several."""
    return page.with_name(f"{page.stem}.png" if runs == 1 else f"{page.stem}-{n + 1}.png")


def _section(
    run: pd.DataFrame, title: str, shape: Shape, image: Path | None, no_plots: str | None, notes: list[tuple[str, str]]
) -> str:
    rows = at_shape(run, shape)
    front = set(rows.index[pareto_front(rows["p50_ms"].tolist(), rows["accuracy"].tolist())])
    numbers = {index: n for n, index in enumerate(rows.index, 1)}
    if image is not None:
        # a URL: the page's name as it is ("run #1.png") links the page "run " and a fragment; a name that is not
        # UTF-8 keeps its bytes (os.fsencode's), which is how the browser finds the file
        source = quote(image.name, errors="surrogateescape")
        figure = f'<img src="{source}" alt="latency versus accuracy, {html.escape(title)}">'
    elif no_plots:
        figure = f"<p>No plot: {html.escape(no_plots)}.</p>"
    else:
        figure = f"<p>No plot: this run was not measured at batch {shape[0]} x {shape[1]}.</p>"
    shared, columns = run_layout(run)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", "pareto", *columns])
    body = []
    for index, row in run.iterrows():
        on_front = index in front
        cells = "".join(f"<td>{html.escape(format_cell(c, row))}</td>" for c in columns)
        marks = f"<td>{numbers.get(index, '')}</td><td>{'★' if on_front else ''}</td>"
        body.append(f"<tr{' class=front' if on_front else ''}>{marks}{cells}</tr>")
    items = "".join(f"<li><b>{html.escape(label)}</b>: {html.escape(text)}</li>" for label, text in notes)
    return (
        f"<h2>{html.escape(title)}</h2>\n<p class=facts>{html.escape(run_facts(run))}</p>\n{figure}\n"
        f"<p># numbers the plot's points. ★ on the Pareto front at batch {shape[0]} x {shape[1]}: no other variant "
        f"is both faster and more accurate. The plot's light bars are each point's 95% intervals: horizontal, its "
        f"p50's; vertical, its accuracy's, from its drop's paired interval against the reference (which has none). "
        f"Accuracy drop in points against the reference, with its 95% interval.</p>\n"
        + (f"<ul class=notes>{items}</ul>\n" if items else "")
        + (f"<p class=settings>{html.escape(shared)}</p>\n" if shared else "")
        + f"<table><thead><tr>{header}</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table>\n"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f3f3f3; }} td:nth-child(3) {{ text-align: left; }}
tr.front td {{ background: #fde8eb; font-weight: 600; }}
.facts {{ color: #555; font-size: 13px; }} img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""
