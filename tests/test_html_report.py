"""The HTML page: Pareto front, the plot beside the page, shapes, and the command's bad inputs."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import make_report, with_drop, with_figures

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.failures import FailedJob
from optbench.html_report import (
    at_shape,
    html_files,
    latency_ticks,
    pareto_front,
    parse_shape,
    plot,
    plot_key,
    point_labels,
    run_shape,
    write_html,
)
from optbench.relative_speedup import RowChoice, add_speedup_vs
from optbench.report import write_report
from optbench.runtimes import RuntimeSpec
from optbench.table import to_frame

PNG = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes() -> None:
    latency = [10.0, 5.0, 7.0, 3.0, 5.0]
    accuracy = [0.90, 0.85, 0.80, 0.70, 0.85]
    assert pareto_front(latency, accuracy) == [3, 1, 4, 0]  # 2 is slower and less accurate than 1; ties both stay
    assert pareto_front([1.0], [0.5]) == [0]
    nan = float("nan")
    assert pareto_front([nan, 5.0, 4.0, 0.0], [0.9, nan, 0.8, 0.95]) == [2]  # unplottable points are on no front


def test_a_point_tied_on_one_axis_and_beaten_on_the_other_is_off_the_front() -> None:
    # an ONNX export often predicts exactly as its source (one accuracy), and a coarse clock reads two p50s alike:
    # the slower of two equally accurate variants, or the less accurate of two equally fast ones, is beaten
    assert pareto_front([5.0, 10.0, 5.0], [0.9, 0.9, 0.8]) == [0]


def test_points_missing_a_figure_get_no_label() -> None:
    assert point_labels([float("nan"), 0.0, 5.0], [0.9, 0.9, 0.8]) == [(5.0, 0.8, "3")]


def _run() -> list:
    fast = dataclasses.replace(make_report(("onnx",), flip=1), warnings=("INT8 is slower than its FP32 source",))
    return [
        with_figures(make_report(), p50_ms=20),
        with_figures(fast, p50_ms=5),
        with_figures(make_report(("prune",), flip=2), p50_ms=8),  # slower and less accurate than onnx
    ]


def test_points_that_would_overlap_share_one_label() -> None:
    labels = point_labels([10.0, 10.2, 20.0, 10.0], [0.80, 0.80, 0.80, 0.90])
    assert labels == [(10.0, 0.80, "1,2"), (20.0, 0.80, "3"), (10.0, 0.90, "4")]
    assert point_labels([5.0], [0.8]) == [(5.0, 0.8, "1")]  # one point: no accuracy range to divide by
    # every point of one accuracy (no range): those within 4% of latency still share a label, and only those
    assert point_labels([10.0, 10.1, 12.0], [0.8, 0.8, 0.8]) == [(10.0, 0.8, "1,2"), (12.0, 0.8, "3")]
    # 4% either way: a faster point is as far from a slower one as the slower is from it
    assert point_labels([10.0, 5.0], [0.8, 0.8]) == [(10.0, 0.8, "1"), (5.0, 0.8, "2")]
    # one latency, accuracies 5 points apart of a 55-point range (9%): apart on the plot, a label each
    assert point_labels([10.0, 10.0, 20.0], [0.80, 0.85, 0.30]) == [
        (10.0, 0.8, "1"),
        (10.0, 0.85, "2"),
        (20.0, 0.3, "3"),
    ]


def test_page_and_plot_mark_the_front(tmp_path: Path) -> None:
    written = write_html(to_frame(_run()), tmp_path / "page.html")
    assert written == [tmp_path / "page.html", tmp_path / "page.png"]
    assert (tmp_path / "page.png").read_bytes().startswith(PNG)
    page = (tmp_path / "page.html").read_text()
    assert '<img src="page.png"' in page
    front_rows = [line for line in page.splitlines() if line.startswith("<tr class=front>")]
    assert len(front_rows) == 2  # baseline and onnx at batch 1 x 128; prune is dominated
    assert all("baseline+prune" not in row for row in front_rows)
    starred = [line for line in page.splitlines() if "<td>★</td>" in line]
    assert starred == front_rows  # the ★ column marks the front alone, not every plotted row
    assert "INT8 is slower than its FP32 source" in page
    numbered = [line.split("<td>")[1] for line in page.splitlines() if line.startswith("<tr")]
    assert sorted(n.removesuffix("</td>") for n in numbered if n != "</td>") == ["1", "2", "3"]  # rows at 1 x 128


def test_the_plot_is_linked_as_a_url_whatever_the_page_is_called(tmp_path: Path) -> None:
    # the page's own name went into src as it is: "run #1.png" is the page "run " and a fragment, so no plot showed
    write_html(to_frame(_run()), tmp_path / "run #1?.html")
    assert (tmp_path / "run #1?.png").read_bytes().startswith(PNG)
    assert '<img src="run%20%231%3F.png"' in (tmp_path / "run #1?.html").read_text()
    # a name that is not UTF-8 (its byte 0xff, as Python holds it): quote refused it, after the plot was written
    write_html(to_frame(_run()), tmp_path / "caf\udcff.html")
    assert '<img src="caf%FF.png"' in (tmp_path / "caf\udcff.html").read_text()


def test_the_facts_of_a_run_outside_git_say_its_commit_is_unknown(tmp_path: Path, monkeypatch) -> None:
    # a run outside a git checkout (or without git) records no commit: the page read "commit None"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the facts line alone: no plot needed
    no_git = [
        dataclasses.replace(r, environment={**r.environment, "git": {"commit": None, "dirty": None}}) for r in _run()
    ]
    write_html(to_frame(no_git), tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert " · commit unknown · machine box-1 · " in page and "commit None" not in page
    write_html(to_frame(_run()), tmp_path / "page.html")
    assert " · commit abc123 · machine box-1 · " in (tmp_path / "page.html").read_text()


def _slow_and_inaccurate_lower_right() -> list:
    """Points whose bars are as tight as they are (no interval widens the axes): the slowest, least accurate sit in
    the plot's lower right corner."""
    points = [((), 0, 20), (("onnx",), 1, 5), (("prune",), 2, 8), (("distill",), 4, 60), (("quantize-dynamic",), 5, 45)]
    reports = [with_figures(make_report(steps, flip=flip), p50_ms=p50) for steps, flip, p50 in points]
    return [
        reports[0],
        *(with_drop(r, 10.0 * f, 10.0 * f, 10.0 * f) for r, (_, f, _) in zip(reports[1:], points[1:], strict=True)),
    ]


@pytest.mark.parametrize(
    "reports",
    [lambda: [*_run(), with_figures(make_report(("prune",), flip=4), p50_ms=60)], _slow_and_inaccurate_lower_right],
)
def test_the_plots_legend_covers_no_point(reports) -> None:
    # slow, inaccurate variants land lower right, where the legend sat and hid them
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    frame = to_frame(reports())
    figure = plot(frame, (1, 128), "demo")
    try:
        figure.canvas.draw()
        (axes,) = figure.axes
        legend = axes.get_legend().get_window_extent()
        points = axes.transData.transform(at_shape(frame, (1, 128))[["p50_ms", "accuracy"]].to_numpy(dtype=float))
        assert not any(legend.contains(x, y) for x, y in points)
    finally:
        plt.close(figure)


def test_the_page_marks_speedups_within_the_a_a_noise_floor(tmp_path: Path) -> None:
    shape = ((1, 128),)
    reports = [
        with_figures(make_report(steps, shapes=shape), speedup=speedup, noise_floor_pct=8.0)
        for steps, speedup in [((), 1.0), (("onnx",), 1.05)]
    ]
    write_html(to_frame(reports), tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert "<td>~1.05x</td>" in page and "<b>A/A noise floor</b>: the reference&#x27;s two p50s" in page


def test_a_run_without_the_plotted_shape_gets_no_plot(tmp_path: Path) -> None:
    other = [dataclasses.replace(make_report(shapes=((4, 64),)), run_id="20261201T000000Z-0000")]
    written = write_html(to_frame(_run() + other), tmp_path / "page.html", shape=(4, 64))
    assert written == [tmp_path / "page.html", tmp_path / "page-2.png"]  # the run measured at 4 x 64 is plotted
    assert "not measured at batch 4 x 64" in (tmp_path / "page.html").read_text()


def test_a_shape_no_run_measured_is_refused_naming_those_measured(tmp_path: Path) -> None:
    # a typo (64x512 for 64x128) wrote a page saying "No plot" for every run
    with pytest.raises(OptbenchError, match=r"--shape 4x64: no run shown was measured .* \(1x128, 8xdata\)"):
        write_html(to_frame(_run()), tmp_path / "page.html", shape=(4, 64))
    assert list(tmp_path.iterdir()) == []


def test_reports_without_measurements_are_refused_as_found_with_no_rows(tmp_path: Path) -> None:
    # "no reports to render: run a recipe first" of reports that were found, only without a measured shape
    frame = to_frame([dataclasses.replace(make_report(), measurements=())])
    with pytest.raises(OptbenchError, match=r"^1 report found, none with a measurement .*: no page to write"):
        write_html(frame, tmp_path / "page.html")
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_page_has_its_tables_and_says_why_no_plot(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with caplog.at_level("WARNING", logger="optbench.html_report"):
        written = write_html(to_frame(_run()), tmp_path / "page.html")
    assert written == [tmp_path / "page.html"]
    assert "page.html has no plots: matplotlib does not import" in caplog.text  # the user is told, not only the page
    page = (tmp_path / "page.html").read_text()
    assert "No plot: matplotlib does not import" in page and "pip install matplotlib" in page
    assert "baseline+prune" in page  # the table is all there


def test_several_runs_get_a_plot_each(tmp_path: Path) -> None:
    second = [dataclasses.replace(r, run_id="20261201T000000Z-0000") for r in _run()]
    written = write_html(to_frame(_run() + second), tmp_path / "page.html")
    assert [p.name for p in written] == ["page.html", "page-1.png", "page-2.png"]


def test_a_plot_that_fails_leaves_no_plot_written_before_it(tmp_path: Path, monkeypatch) -> None:
    # each plot was written as it was drawn: the second run's failing left the first's PNG, and no page
    from optbench import html_report

    drawn = html_report.plot_png

    def second_fails(run, shape, title: str) -> bytes:
        if "20261201T000000Z-0000" in title:
            raise OSError("matplotlib ran out of something")
        return drawn(run, shape, title)

    monkeypatch.setattr(html_report, "plot_png", second_fails)
    second = [dataclasses.replace(r, run_id="20261201T000000Z-0000") for r in _run()]
    with pytest.raises(OSError, match="ran out"):
        write_html(to_frame(_run() + second), tmp_path / "page.html")
    assert list(tmp_path.iterdir()) == []


def test_the_page_title_names_each_recipe_once(tmp_path: Path) -> None:
    # a recipe's name stood once per run: two runs of demo read "optbench · demo, demo"
    second = [dataclasses.replace(r, run_id="20261201T000000Z-0000") for r in _run()]
    other = [dataclasses.replace(r, recipe="prune") for r in _run()]
    write_html(to_frame(_run() + second + other), tmp_path / "page.html")
    assert "<title>optbench · demo, prune</title>" in (tmp_path / "page.html").read_text()


@pytest.mark.parametrize(
    ("text", "shape"), [("1x128", (1, 128)), ("32xdata", (32, "data")), ("8X64", (8, 64)), ("1xDATA", (1, "data"))]
)
def test_parse_shape(text: str, shape: tuple) -> None:
    assert parse_shape(text) == shape


@pytest.mark.parametrize(
    "text", ["1", "x128", "1x", "ax128", "1x-2", "-1x128", "0x128", "1x0", "00x8", "²x128", "1x128x4", "1x128 "]
)
def test_bad_shapes_are_refused(text: str) -> None:
    with pytest.raises(OptbenchError, match=r"write BATCHxSEQ, e\.g\. 1x128"):
        parse_shape(text)


def test_cli_html_needs_an_output_file(tmp_path: Path, capsys) -> None:
    for report in _run():
        write_report(report, tmp_path / "results")
    assert main(["report", str(tmp_path / "results"), "--format", "html"]) == 2
    assert "--format html needs -o PAGE.html" in capsys.readouterr().err
    out = tmp_path / "site" / "index.html"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(out), "--shape", "8xdata"]) == 0
    assert (tmp_path / "site" / "index.png").read_bytes().startswith(PNG)


def test_cli_html_names_the_page_and_each_plot_it_wrote(tmp_path: Path, capsys) -> None:
    """The plots are written beside the page under names of their own: a user publishing the page needs them all."""
    for run_id in ("run-1", "run-2"):
        for report in _run():
            write_report(dataclasses.replace(report, run_id=run_id), tmp_path / "results" / run_id)
    page = tmp_path / "site" / "index.html"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page)]) == 0
    wrote = [line.removeprefix("wrote ") for line in capsys.readouterr().out.splitlines()]
    assert sorted(wrote) == sorted(str(p) for p in (tmp_path / "site").iterdir())
    assert str(page) in wrote and len(wrote) == 3  # the page and a plot per run


def test_cli_html_page_must_be_an_html_file(tmp_path: Path, capsys) -> None:
    for report in _run():
        write_report(report, tmp_path / "results")
    plot = tmp_path / "page.png"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(plot)]) == 2
    assert "needs a name ending in .html" in capsys.readouterr().err
    assert not plot.exists()


def test_cli_shape_no_run_measured_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    for report in _run():
        write_report(report, tmp_path / "results")
    page = tmp_path / "site" / "page.html"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page), "--shape", "64x512"]) == 2
    err = capsys.readouterr().err
    assert "--shape 64x512: no run shown was measured at batch 64 x 512" in err and "(1x128, 8xdata)" in err
    assert not (tmp_path / "site").exists()
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page), "--shape", "0x128"]) == 2
    assert "shape '0x128': a batch size and a sequence length are 1 or more" in capsys.readouterr().err


def test_cli_shape_without_html_is_refused(tmp_path: Path, capsys) -> None:
    # the tables show every shape: a --shape that filtered nothing would pass silently for a filter
    for report in _run():
        write_report(report, tmp_path / "results")
    assert main(["report", str(tmp_path / "results"), "--shape", "1x128"]) == 2
    assert "--shape picks the shape of the HTML page's plots" in capsys.readouterr().err


def test_cli_empty_shape_is_refused(tmp_path: Path, capsys) -> None:
    # it was taken for no --shape: the page plotted the default shape, and a table went out, without a word
    for report in _run():
        write_report(report, tmp_path / "results")
    page = tmp_path / "index.html"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page), "--shape", ""]) == 2
    assert "shape '': write BATCHxSEQ" in capsys.readouterr().err and not page.exists()
    assert main(["report", str(tmp_path / "results"), "--shape", ""]) == 2
    assert "--shape picks the shape of the HTML page's plots" in capsys.readouterr().err


def test_cli_html_page_named_like_a_folder_writes_nothing(tmp_path: Path, capsys) -> None:
    for report in _run():
        write_report(report, tmp_path / "results")
    page = tmp_path / "site" / "page.html"
    page.mkdir(parents=True)
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page)]) == 2
    assert "page.html: it is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["page.html"]  # no plot left without its page


def test_cli_html_plots_a_run_not_measured_at_1x128_at_its_first_shape(tmp_path: Path) -> None:
    # a user's recipe with seq_lens = [32, "data"]: without --shape the page plots what the run measured, as
    # the run's own report.html does, rather than saying "No plot" for every run
    for steps in [(), ("onnx",)]:
        write_report(make_report(steps, shapes=((1, 32), (8, "data"))), tmp_path / "results")
    out = tmp_path / "page.html"
    assert main(["report", str(tmp_path / "results"), "--format", "html", "-o", str(out)]) == 0
    assert (tmp_path / "page.png").read_bytes().startswith(PNG)
    page = out.read_text()
    assert '<img src="page.png"' in page and "Pareto front at batch 1 x 32" in page


def test_a_run_measured_at_1x128_is_plotted_there_though_it_measured_smaller_shapes() -> None:
    shapes = ((1, 16), (1, 128), (8, 128))
    run = to_frame([make_report(steps, shapes=shapes) for steps in [(), ("onnx",)]])
    assert run_shape(run) == (1, 128)
    # the plot's rows are those of both the batch size and the length: not 1 x 16's, nor 8 x 128's
    plotted = at_shape(run, (1, 128))
    assert list(zip(plotted["batch_size"], plotted["seq_len"], strict=True)) == [(1, 128)] * 2


def test_without_1x128_a_run_is_plotted_at_its_smallest_shape_whatever_the_row_order() -> None:
    shapes = ((8, "data"), (1, "data"), (1, 64), (1, 32))
    run = to_frame([make_report(shapes=shapes), make_report(("onnx",), shapes=shapes[::-1])])
    assert run_shape(run) == run_shape(run.iloc[::-1]) == (1, 32)
    assert run_shape(run[run["seq_len"] != 32]) == (1, 64)  # a fixed length before the data's own lengths


def test_the_plot_key_tells_apart_points_that_differ_in_device_or_precision() -> None:
    # gpu.toml's baseline on torch at cpu fp32, cuda fp32 and cuda fp16: each was keyed "baseline (torch)"
    specs = [RuntimeSpec("torch"), RuntimeSpec("torch", "cuda", "fp32"), RuntimeSpec("torch", "cuda", "fp16")]
    rows = to_frame([make_report(runtime=spec, shapes=((1, 128),)) for spec in specs])
    assert plot_key(rows) == [
        " 1  baseline (torch, cpu, fp32)",
        " 2  baseline (torch, cuda, fp32)",
        " 3  baseline (torch, cuda, fp16)",
    ]
    one_device = plot_key(at_shape(to_frame(_run()), (1, 128)))
    assert one_device == [" 1  baseline (torch)", " 2  baseline+onnx (torch)", " 3  baseline+prune (torch)"]


def test_the_page_says_what_the_markdown_says_under_a_run(tmp_path: Path) -> None:
    # the page had the noise floor and the warnings only: not which peer speedup_vs_peer is against, nor the row
    # speedup_vs is against, nor the jobs that failed (their variants simply missing from it)
    reports = [*_run(), with_figures(make_report(("peer-optimum",)), p50_ms=6)]
    frame = add_speedup_vs(to_frame(reports), RowChoice.parse("baseline+onnx"))
    failed = [FailedJob("baseline+prune", "onnxruntime-cpu-fp32", "latency-1", "crashed", run_id=reports[0].run_id)]
    write_html(frame, tmp_path / "page.html", failed=failed)
    page = (tmp_path / "page.html").read_text()
    assert "<li><b>fastest peer</b>: baseline+peer-optimum on torch, p50 6.00 ms, at batch 1 x 128 (within " in page
    assert "<li><b>speedup_vs</b>: against baseline+onnx/torch/cpu/fp32 at the same shape" in page
    assert "<li><b>failed</b>: baseline+prune on onnxruntime-cpu-fp32, latency-1: crashed</li>" in page
    assert "<li><b>warning (baseline+onnx)</b>: INT8 is slower than its FP32 source</li>" in page


def test_the_page_says_once_the_settings_every_row_shares(tmp_path: Path, monkeypatch) -> None:
    # as the Markdown table does: device, batch and length were columns of one value on every row
    monkeypatch.setattr("optbench.html_report.plots_missing", lambda: "not needed here")  # the table is the point
    one_shape = [make_report(steps, shapes=((1, 128),)) for steps in [(), ("onnx",)]]
    write_html(to_frame(one_shape), tmp_path / "one.html")
    page = (tmp_path / "one.html").read_text()
    assert "<p class=settings>All rows: device cpu · runtime precision fp32 · batch 1 · seq_len 128</p>" in page
    assert "<th>pareto</th><th>variant</th><th>runtime</th><th>p50_ms</th>" in page
    write_html(to_frame(_run()), tmp_path / "two.html")  # batch 1 x 128 and 8 x data: both stay columns
    page = (tmp_path / "two.html").read_text()
    assert "<p class=settings>All rows: device cpu · runtime precision fp32</p>" in page
    assert "<th>runtime</th><th>batch_size</th><th>seq_len</th><th>p50_ms</th>" in page


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_a_long_variant_name_widens_the_plot_rather_than_running_off_it(tmp_path: Path) -> None:
    # the key sits right of the axes on a fixed canvas: a long chain's line (all.toml's runs 75 characters) ran
    # past the image's edge and was cut
    long = with_figures(make_report(("student-l4", "prune-h50-f70", "onnx", "quantize-dynamic") * 3), p50_ms=5)
    write_html(to_frame(_run()), tmp_path / "short.html")
    write_html(to_frame([*_run(), long]), tmp_path / "long.html")
    assert _png_width(tmp_path / "long.png") > _png_width(tmp_path / "short.png")


def _intervals(figure) -> dict[str, list]:
    """The plot's interval bars by their gid: each bar's two ends, as drawn."""
    (axes,) = figure.axes
    return {c.get_gid(): [s.tolist() for s in c.get_segments()] for c in axes.collections if c.get_gid()}


def test_the_plot_draws_each_points_95_percent_intervals_from_its_report() -> None:
    """Across each point its p50's interval, along it the accuracy its drop's paired interval allows (the
    reference's accuracy as measured): the plot showed two points apart where the report could not tell them."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    reports = [
        with_figures(make_report(shapes=((1, 128),)), p50_ms=20, spread_ms=4),
        with_drop(with_figures(make_report(("onnx",), shapes=((1, 128),), flip=2), p50_ms=5, spread_ms=2), 10, -5, 30),
    ]
    rows = at_shape(to_frame(reports), (1, 128)).reset_index(drop=True)
    figure = plot(rows, (1, 128), "demo")
    try:
        bars = _intervals(figure)
        (axes,) = figure.axes
        assert "95% intervals" in [text.get_text() for text in axes.get_legend().get_texts()]
    finally:
        plt.close(figure)
    p50_low, p50_high, accuracy = rows["p50_ci_low"], rows["p50_ci_high"], rows["accuracy"]
    assert p50_low[0] < 20 < p50_high[0] and p50_low[1] < 5 < p50_high[1]
    assert bars["p50 interval"] == [[[p50_low[i], accuracy[i]], [p50_high[i], accuracy[i]]] for i in range(2)]
    reference = accuracy[1] + 0.10  # the onnx row's drop is 10 points, its interval -5 to +30
    assert bars["accuracy interval"][0] == [[20, accuracy[0]], [20, accuracy[0]]]  # the reference: none
    np.testing.assert_allclose(bars["accuracy interval"][1], [[5, reference - 0.30], [5, reference + 0.05]])


def test_accuracy_bars_stop_at_0_and_1_and_an_unbounded_p50_is_marked_in_the_key() -> None:
    """An accuracy bar stops at 0 and 1; a p50 timed on too few calls to bound draws no bar, and its key says so
    (a missing bar would read as a certain figure)."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    reports = [
        with_figures(make_report(shapes=((1, 128),)), p50_ms=20, calls=5),
        with_drop(with_figures(make_report(("onnx",), shapes=((1, 128),)), p50_ms=5), 0, -40, 40),
    ]
    rows = at_shape(to_frame(reports), (1, 128)).reset_index(drop=True)
    figure = plot(rows, (1, 128), "demo")
    try:
        bars = _intervals(figure)
    finally:
        plt.close(figure)
    assert len(bars["p50 interval"]) == 2 and bars["p50 interval"][0] == []  # matplotlib drops the unbounded one
    np.testing.assert_allclose(bars["accuracy interval"][1], [[5, 0.6], [5, 1.0]])
    assert plot_key(rows) == [" 1  baseline (torch, p50 interval unbounded)", " 2  baseline+onnx (torch)"]


@pytest.mark.parametrize("p50s", [(0.229, 71.6, 175.0), (0.229, 1.36), (0.41, 0.44, 1.36), (3.0, 4000.0)])
def test_the_latency_axis_labels_never_run_into_each_other(p50s: tuple[float, ...]) -> None:
    """A tiny model's ONNX variant at 0.23 ms beside its PyTorch baseline at 175 ms (a prune run) labelled every
    1, 1.5, 2, 3, 5 and 7 of three decades: '150' and '200' printed as one '150200'. A narrow span keeps its labels."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    steps = [(), ("onnx",), ("prune",), ("distill",)]
    reports = [with_figures(make_report(steps[i], shapes=((1, 128),)), p50_ms=p50) for i, p50 in enumerate(p50s)]
    figure = plot(to_frame(reports), (1, 128), "demo")
    try:
        figure.canvas.draw()
        (axes,) = figure.axes
        low, high = axes.get_xlim()
        shown = [
            label.get_window_extent()
            for tick, label in zip(axes.get_xticks(), axes.get_xticklabels(), strict=True)
            if low <= tick <= high and label.get_text()
        ]
    finally:
        plt.close(figure)
    assert len(shown) >= 3  # enough to read a latency off
    gaps = [right.x0 - left.x1 for left, right in itertools.pairwise(shown)]
    assert min(gaps) >= 4, gaps


def test_the_latency_axis_labels_thin_out_as_its_decades_grow() -> None:
    """1, 1.5, 2, 3, 5 and 7 a decade across up to 2 decades, 1, 2 and 5 up to 6, then 1 alone."""
    dense, thin = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0, 2.0, 5.0)
    assert latency_ticks(3.0, 30.0) == latency_ticks(1.0, 100.0) == dense
    assert latency_ticks(1.0, 101.0) == latency_ticks(0.2, 200_000.0) == thin
    assert latency_ticks(1.0, 1_000_001.0) == (1.0,)


def test_a_peer_off_the_front_is_plotted_as_a_peer_and_keyed_so() -> None:
    # a peer is drawn apart from our variants; one the front leaves out must still be on the plot
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    peer = with_figures(make_report(("peer-optimum",), flip=3), p50_ms=30)  # slower and less accurate than all
    rows = at_shape(to_frame([*_run(), peer]), (1, 128)).reset_index(drop=True)
    figure = plot(rows, (1, 128), "demo")
    try:
        (axes,) = figure.axes
        drawn = {
            c.get_label(): c.get_offsets().tolist() for c in axes.collections if c.get_label() in ("peer", "variant")
        }
    finally:
        plt.close(figure)
    accuracy = dict(zip(rows["variant"], rows["accuracy"], strict=True))
    assert drawn["peer"] == [[30.0, accuracy["baseline+peer-optimum"]]]
    assert drawn["variant"] == [[8.0, accuracy["baseline+prune"]]]  # the one of ours the front leaves out
    assert "baseline+peer-optimum (torch, peer)" in "\n".join(plot_key(rows))


def test_the_plots_key_stands_beside_the_axes_not_on_them() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figure = plot(to_frame(_run()), (1, 128), "demo")
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (axes,) = figure.axes
        (key,) = figure.texts
        assert key.get_window_extent(renderer).x0 > axes.get_tightbbox(renderer).x1
    finally:
        plt.close(figure)


@pytest.mark.parametrize("name", ["page.htm", "PAGE.HTML"])
def test_a_page_named_htm_or_in_capitals_is_written(tmp_path: Path, name: str) -> None:
    written = write_html(to_frame(_run()), tmp_path / name)
    assert written == [tmp_path / name, tmp_path / f"{Path(name).stem}.png"]
    assert "baseline+prune" in (tmp_path / name).read_text()


def test_html_files_are_the_files_write_html_writes(tmp_path: Path) -> None:
    # the command refuses to overwrite its inputs with any of them: a plot left out could overwrite one
    one = to_frame(_run())
    two = to_frame(_run() + [dataclasses.replace(r, run_id="20261201T000000Z-0000") for r in _run()])
    for frame in (one, two):
        assert html_files(frame, tmp_path / "page.html") == write_html(frame, tmp_path / "page.html")
    assert [p.name for p in html_files(two, tmp_path / "page.html")] == ["page.html", "page-1.png", "page-2.png"]


def test_the_page_notes_the_peer_budget_its_table_was_made_with(tmp_path: Path, monkeypatch) -> None:
    # `optbench report --peer-budget 100` chose the fastest peer within 100 points: the page said within 1
    monkeypatch.setattr("optbench.html_report.plots_missing", lambda: "not needed here")
    reports = [*_run(), with_figures(make_report(("peer-optimum",), flip=5), p50_ms=6)]
    write_html(to_frame(reports, peer_budget_points=100.0), tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert "<li><b>fastest peer</b>: baseline+peer-optimum on torch, p50 6.00 ms, at batch 1 x 128 (within 100 " in page
