"""The report merged across machines: one row per cell, each machine's figures side by side."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from report_fixtures import SHAPE_GROUPED_ROWS, make_report, with_figures

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.machines import legend_labels, machines, merge_by_machine, render_merged, workloads
from optbench.report import Report, workload_fingerprint, write_report


def _on(report: Report, machine: str, cpu: str, run_id: str, created_at: str = "2026-11-30T03:15:00+00:00") -> Report:
    environment = {**report.environment, "machine": machine, "cpu": {"model": cpu, "logical_cores": 2}}
    return dataclasses.replace(report, environment=environment, run_id=run_id, created_at=created_at)


def _two_machines() -> list[Report]:
    base, onnx = make_report(shapes=((1, 128),)), make_report(("onnx",), shapes=((1, 128),))
    return [
        _on(with_figures(base, p50_ms=40, speedup=1.0), "aaa", "EPYC", "run-a"),
        _on(with_figures(onnx, p50_ms=20, speedup=2.0), "aaa", "EPYC", "run-a"),
        _on(with_figures(base, p50_ms=10, speedup=1.0), "bbb", "Xeon", "run-b"),
        # machine bbb measured onnx twice: the newer run counts
        _on(with_figures(onnx, p50_ms=8, speedup=1.25), "bbb", "Xeon", "run-b"),
        _on(with_figures(onnx, p50_ms=4, speedup=2.5), "bbb", "Xeon", "run-c", "2026-12-01T00:00:00+00:00"),
    ]


def test_each_machine_gets_its_columns_and_its_newest_figures() -> None:
    table = merge_by_machine(_two_machines())
    assert list(table.columns[6:]) == [
        "peer",
        "p50_ms@aaa",
        "p50_ms@bbb",
        "speedup_p50@aaa",
        "speedup_p50@bbb",
        "noise_floor_pct@aaa",
        "noise_floor_pct@bbb",
    ]
    rows = {row["variant"]: row for row in table.to_dict("records")}
    assert (rows["baseline"]["p50_ms@aaa"], rows["baseline"]["p50_ms@bbb"]) == (40, 10)
    assert (rows["baseline+onnx"]["speedup_p50@aaa"], rows["baseline+onnx"]["speedup_p50@bbb"]) == (2.0, 2.5)


def test_a_machine_s_newest_report_is_the_newest_by_time_whatever_its_recipe() -> None:
    """One machine's results hold results/baseline's run and a later results/all run of the same cell: a table
    ordered by recipe, then run id, would show the older run's p50 (baseline sorts after all) as the machine's."""
    base = make_report(shapes=((1, 128),))
    old = _on(
        dataclasses.replace(with_figures(base, p50_ms=40), recipe="baseline"), "aaa", "EPYC", "20261130T031500Z-0001"
    )
    new = _on(
        dataclasses.replace(with_figures(base, p50_ms=10), recipe="all"),
        "aaa",
        "EPYC",
        "20261201T000000Z-0002",
        "2026-12-01T00:00:00+00:00",
    )
    for reports in ([old, new], [new, old]):
        assert merge_by_machine(reports)["p50_ms@aaa"].tolist() == [10]


def test_the_legend_gives_each_run_its_gemm_calibration_on_that_machine() -> None:
    """Two machines' p50s side by side, or one machine's runs a day apart: the legend named the runs alone, while
    each report holds the GEMM calibration that says how busy its machine was. A run's reports that read two (a
    resumed run) give the lowest; a run without one (older reports) none."""

    def calibrated(report: Report, gflops: float | None) -> Report:
        return dataclasses.replace(report, environment={**report.environment, "calibration_gflops": gflops})

    a1, a2, b1, b2, c = _two_machines()
    reports = [
        calibrated(a1, 120.0),
        calibrated(a2, 97.34),
        calibrated(b1, None),
        calibrated(b2, None),
        calibrated(c, 150.0),
    ]
    text = render_merged(merge_by_machine(reports), "md")
    assert "- `aaa`: EPYC (2 cores); runs demo/run-a (GEMM 97.3 GFLOP/s)\n" in text
    assert "- `bbb`: Xeon (2 cores); runs demo/run-b, demo/run-c (GEMM 150.0 GFLOP/s)\n" in text


def test_a_cell_one_machine_did_not_measure_is_empty() -> None:
    reports = _two_machines()[:3]  # bbb has no onnx report
    table = merge_by_machine(reports)
    onnx = table[table["variant"] == "baseline+onnx"].iloc[0]
    assert onnx["p50_ms@aaa"] == 20 and onnx.isna()["p50_ms@bbb"]
    text = render_merged(table, "md")
    assert "All rows: device cpu · runtime precision fp32 · batch 1 · seq_len 128\n" in text  # said once
    assert "| baseline+onnx | torch | 20.00 | - | 2.00x | - | - | - |" in text
    assert "marked ~" not in text  # no floor measured: nothing to explain


def test_json_of_no_rows_is_an_empty_list() -> None:
    """Reports without measurements merge into no rows: pandas indented its empty list as "[\n\n]"."""
    reports = [dataclasses.replace(make_report(), measurements=())]
    assert render_merged(merge_by_machine(reports), "json") == "[]"


def test_markdown_of_no_rows_says_why_as_a_runs_table_does() -> None:
    """Reports without measurements: the legend and an empty table were printed, with no word of why."""
    reports = [dataclasses.replace(make_report(steps), measurements=()) for steps in [(), ("onnx",)]]
    text = render_merged(merge_by_machine(reports), "md")
    assert text == "2 reports found, none with a measurement (a latency at a batch shape)\n"


def _measured_with(report: Report, **settings: object) -> Report:
    """`report` measured under its workload with `settings` changed, with the fingerprints the benchmark writes."""
    workload = {**report.workload, **settings}
    measurements = tuple(
        dataclasses.replace(m, workload_fingerprint=workload_fingerprint(workload, m.batch_size, m.seq_len))
        for m in report.measurements
    )
    return dataclasses.replace(report, workload=workload, measurements=measurements)


def test_no_reports_are_refused_saying_what_to_give() -> None:
    with pytest.raises(OptbenchError, match=r"^no optbench reports to merge: give folders that recipe runs wrote$"):
        merge_by_machine([])


def test_of_two_runs_of_one_time_the_same_is_taken_whatever_their_recipes() -> None:
    """Two runs (of results/baseline and results/all) started in one second carry one created_at: the run id
    decides between them, as it does within a recipe, not the recipe's name or the order the folders were read in."""
    base = make_report(shapes=((1, 128),))
    one = _on(dataclasses.replace(with_figures(base, p50_ms=40), recipe="baseline"), "aaa", "EPYC", "20261130T0315Z-0a")
    two = _on(dataclasses.replace(with_figures(base, p50_ms=10), recipe="all"), "aaa", "EPYC", "20261130T0315Z-0b")
    for reports in ([one, two], [two, one]):
        assert merge_by_machine(reports)["p50_ms@aaa"].tolist() == [10]


def test_runs_of_different_workloads_get_rows_of_their_own() -> None:
    """Rows were keyed without the workload: machine bbb's run on 500 rows stood beside aaa's on 10 as if alike, and
    its newer run of one workload replaced its run of the other. Runs of different workloads are never compared."""
    base = _measured_with(make_report(shapes=((1, 128),)), rounds=1)
    reports = [
        _on(with_figures(base, p50_ms=40), "aaa", "EPYC", "run-a"),
        _on(with_figures(_measured_with(base, rows=500), p50_ms=10), "bbb", "Xeon", "run-b"),
        _on(with_figures(base, p50_ms=12), "bbb", "Xeon", "run-c", "2026-12-01T00:00:00+00:00"),
        _on(with_figures(_measured_with(base, rows=500, rounds=3), p50_ms=11), "bbb", "Xeon", "run-d"),
    ]
    table = merge_by_machine(reports)
    keys = [workload.key for workload in workloads(reports)]
    assert len(set(keys)) == 3
    assert table[["workload", "p50_ms@aaa", "p50_ms@bbb"]].fillna("-").values.tolist() == [
        [keys[0], 40, 12],  # one workload: the two machines side by side
        [keys[1], "-", 10],
        [keys[2], "-", 11],
    ]
    text = render_merged(table, "md")
    assert "Workloads (the settings that tell them apart; runs of different workloads are never compared):" in text
    assert f"- `{keys[0]}`: rounds 1 · rows 10; runs demo/run-a, demo/run-c\n" in text
    assert f"- `{keys[2]}`: rounds 3 · rows 500; runs demo/run-d\n" in text
    assert f"| baseline | torch | {keys[1]} | - | 10.00 |" in text


def test_one_workload_needs_no_workload_column() -> None:
    reports = _two_machines()
    table = merge_by_machine(reports)
    assert "workload" not in table and "Workloads" not in render_merged(table, "md")


def test_one_data_file_at_two_paths_is_one_workload() -> None:
    """Each machine reads the user's file from its own path: they got a workload each, never side by side."""
    data = {"data_fingerprint": "1ecb15b5d0943002", "rounds": 1}
    base = make_report(shapes=((1, 128),))
    reports = [
        _on(with_figures(_measured_with(base, **data, dataset="/home/alice/r.csv"), p50_ms=40), "aaa", "EPYC", "a"),
        _on(with_figures(_measured_with(base, **data, dataset="/builds/42/r.csv"), p50_ms=12), "bbb", "Xeon", "b"),
    ]
    table = merge_by_machine(reports)
    assert "workload" not in table and table[["p50_ms@aaa", "p50_ms@bbb"]].values.tolist() == [[40, 12]]


def test_a_workload_read_at_two_paths_is_one_workload_of_the_legend_beside_another() -> None:
    """Where the table holds two workloads, the one each machine read from its own path is one row and one legend
    line with the runs of both paths; a workload whose reports hold no measurement has no row, so no legend line."""
    data = {"data_fingerprint": "1ecb15b5d0943002", "rounds": 1, "threads": 1, "max_length": 128, "max_batches": 20}
    base = make_report(shapes=((1, 128),))
    at_a, at_b = (
        _measured_with(base, **data, dataset="/home/alice/r.csv"),
        _measured_with(base, **data, dataset="/b/r.csv"),
    )
    other = {"rounds": 3, "threads": 4, "max_length": 64, "max_batches": 10}  # told in the legend in name order
    three = _measured_with(base, **{**data, **other}, dataset="/home/alice/r.csv")
    unmeasured = dataclasses.replace(_measured_with(base, **{**data, "rounds": 9}), measurements=())
    reports = [
        _on(with_figures(at_a, p50_ms=40), "aaa", "EPYC", "a"),
        _on(with_figures(at_b, p50_ms=12), "bbb", "Xeon", "b"),
        _on(with_figures(three, p50_ms=30), "aaa", "EPYC", "c"),
        _on(unmeasured, "aaa", "EPYC", "d"),
    ]
    keys = [workload.key for workload in workloads(reports)]
    assert len(keys) == 3
    table = merge_by_machine(reports)
    assert table[["workload", "p50_ms@aaa", "p50_ms@bbb"]].fillna("-").values.tolist() == [
        [keys[0], 40, 12],
        [keys[1], 30, "-"],
    ]
    text = render_merged(table, "md")
    assert f"- `{keys[0]}`: max_batches 20 · max_length 128 · rounds 1 · threads 1; runs demo/a, demo/b\n" in text
    assert f"- `{keys[1]}`: max_batches 10 · max_length 64 · rounds 3 · threads 4; runs demo/c\n" in text
    assert keys[2] not in text and "rounds 9" not in text


def test_a_speedup_within_its_machines_noise_floor_is_marked() -> None:
    """As in a run's own table, a speedup the machine's A/A noise floor cannot tell from noise is marked ~: the floor
    is each machine's own, from the run its figures came from."""
    base, onnx = make_report(shapes=((1, 128),)), make_report(("onnx",), shapes=((1, 128),))
    reports = [
        _on(with_figures(base, p50_ms=40, speedup=1.0, noise_floor_pct=3.0), "aaa", "EPYC", "run-a"),
        _on(with_figures(onnx, p50_ms=39, speedup=1.03, noise_floor_pct=3.0), "aaa", "EPYC", "run-a"),
        _on(with_figures(base, p50_ms=10, speedup=1.0, noise_floor_pct=1.0), "bbb", "Xeon", "run-b"),
        _on(with_figures(onnx, p50_ms=9.7, speedup=1.03, noise_floor_pct=1.0), "bbb", "Xeon", "run-b"),
    ]
    table = merge_by_machine(reports)
    onnx_row = table[table["variant"] == "baseline+onnx"].iloc[0]
    assert (onnx_row["noise_floor_pct@aaa"], onnx_row["noise_floor_pct@bbb"]) == (3.0, 1.0)
    text = render_merged(table, "md")
    assert "| baseline+onnx | torch | 39.00 | 9.70 | ~1.03x | 1.03x | 3.0% | 1.0% |" in text
    assert "| baseline | torch | 40.00 | 10.00 | 1.00x | 1.00x | 3.0% | 1.0% |" in text
    assert "A speedup marked ~ is within its machine's A/A noise floor" in text


def test_reports_without_a_machine_key_keep_their_figures_as_unknown() -> None:
    nameless = [_on(r, "", "EPYC", "run-x") for r in _two_machines()[:2]]  # an old report: no machine key
    table = merge_by_machine([*nameless, _two_machines()[2]])
    rows = {row["variant"]: row for row in table.to_dict("records")}
    assert (rows["baseline"]["p50_ms@unknown"], rows["baseline+onnx"]["p50_ms@unknown"]) == (40, 20)
    assert [m.key for m in machines([*nameless, _two_machines()[2]])] == ["unknown", "bbb"]


def test_the_legend_names_each_machine_and_its_runs() -> None:
    found = machines(_two_machines())
    assert [(m.key, m.label, m.runs) for m in found] == [
        ("aaa", "EPYC (2 cores)", ("demo/run-a",)),
        ("bbb", "Xeon (2 cores)", ("demo/run-b", "demo/run-c")),
    ]


def test_the_legend_tells_apart_machines_of_one_cpu_model_and_core_count() -> None:
    """The committed results come from two 2-core AMD EPYCs, one with AVX-512 VNNI: the legend read "AMD EPYC (2
    cores)" for both, so it could not say which column was the VNNI machine. Where labels are alike, it now adds
    the CPU flags that not all of them have and, where it differs, the memory."""
    base = make_report(shapes=((1, 128),))

    def on(machine: str, flags: list[str], memory_mib: int | None) -> Report:
        cpu = {"model": "AMD EPYC", "logical_cores": 2, "flags": flags}
        environment = {**base.environment, "machine": machine, "cpu": cpu, "memory_mib": memory_mib}
        return dataclasses.replace(base, environment=environment, run_id=f"run-{machine}")

    reports = [
        on("avx2", ["avx2", "fma"], 24 * 1024),
        on("vnni", ["avx2", "avx512_vnni", "avx512f", "fma"], 24 * 1024),
        on("big", ["avx2", "fma"], 64 * 1024),
        on("old", ["avx2", "fma"], None),  # a report that could not read the memory
    ]
    for order in (reports, reports[1:] + reports[:1]):  # the flags some machine lacks, whichever machine is first
        text = render_merged(merge_by_machine(order), "md")
        assert "- `avx2`: AMD EPYC (2 cores, 24 GiB; without avx512_vnni, avx512f); runs demo/run-avx2\n" in text
        assert "- `vnni`: AMD EPYC (2 cores, 24 GiB; with avx512_vnni, avx512f); runs demo/run-vnni\n" in text
        assert "- `big`: AMD EPYC (2 cores, 64 GiB; without avx512_vnni, avx512f); runs demo/run-big\n" in text
        assert "- `old`: AMD EPYC (2 cores, memory unknown; without avx512_vnni, avx512f); runs demo/run-old\n" in text
    apart = render_merged(merge_by_machine([reports[0], _two_machines()[2]]), "md")  # labels differ: nothing added
    assert "- `avx2`: AMD EPYC (2 cores); runs demo/run-avx2\n" in apart


def test_the_legend_names_a_machine_s_gpus_and_says_where_a_name_was_not_read() -> None:
    """GPU machines of one CPU are told apart by their GPUs; a report that could not read the CPU model or a GPU's
    name says so rather than None."""
    report = make_report()
    cpu = {"logical_cores": 16}
    environment = {**report.environment, "machine": "ggg", "cpu": cpu, "gpu": [{"name": "NVIDIA H200"}, {}]}
    found = machines([dataclasses.replace(report, environment=environment)])
    assert [m.label for m in found] == ["unknown CPU (16 cores, NVIDIA H200, ?)"]


def test_the_flags_that_tell_alike_machines_apart_are_named_in_order() -> None:
    base = make_report(shapes=((1, 128),))

    def on(machine: str, flags: list[str]) -> Report:
        environment = {
            **base.environment,
            "machine": machine,
            "cpu": {"model": "EPYC", "logical_cores": 2, "flags": flags},
        }
        return dataclasses.replace(base, environment=environment, run_id=machine)

    reports = [on("few", ["sse2"]), on("many", ["sse2", "fma", "avx512f", "amx_tile", "avx512_vnni", "avx2"])]
    assert legend_labels(machines(reports)) == {
        "few": "EPYC (2 cores; without amx_tile, avx2, avx512_vnni, avx512f, fma)",
        "many": "EPYC (2 cores; with amx_tile, avx2, avx512_vnni, avx512f, fma)",
    }


def test_the_legend_says_cores_unknown_rather_than_none() -> None:
    # an environment without a core count (os.cpu_count() may return None) read "EPYC (None cores)"
    report = _on(make_report(), "aaa", "EPYC", "run-a")
    unknown = dataclasses.replace(report, environment={**report.environment, "cpu": {"model": "EPYC"}})
    assert [m.label for m in machines([unknown])] == ["EPYC (cores unknown)"]


def test_cli_merges_several_folders_by_machine(tmp_path: Path, capsys) -> None:
    for report in _two_machines():
        write_report(report, tmp_path / report.environment["machine"] / report.run_id)
    assert main(["report", str(tmp_path / "aaa"), str(tmp_path / "bbb"), "--by-machine", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith("speedup_p50@aaa,speedup_p50@bbb,noise_floor_pct@aaa,noise_floor_pct@bbb")
    # the columns' machine keys are told on stderr, as the Markdown table's legend tells them, the CSV kept clean
    assert err.startswith("Machines (hardware fingerprints):") and "- `bbb`: Xeon (2 cores); runs demo/run-b" in err
    assert "Machines" not in out
    assert main(["report", str(tmp_path), "--by-machine"]) == 0
    assert "- `bbb`: Xeon (2 cores); runs demo/run-b, demo/run-c" in capsys.readouterr().out
    page = tmp_path / "page.html"
    assert main(["report", str(tmp_path), "--by-machine", "--format", "html", "-o", str(page)]) == 2
    assert "--by-machine writes md, csv or json: drop --format html" in capsys.readouterr().err
    assert not page.exists()


def test_cli_by_machine_markdown_keeps_its_legend_on_stdout_alone(tmp_path: Path, capsys) -> None:
    """The Markdown table carries its legend: printing it on stderr too doubled it in a terminal."""
    for report in _two_machines():
        write_report(report, tmp_path / report.environment["machine"] / report.run_id)
    assert main(["report", str(tmp_path), "--by-machine"]) == 0
    out, err = capsys.readouterr()
    assert "Machines (hardware fingerprints):" in out and err == ""


def test_cli_by_machine_csv_of_no_rows_prints_no_legend(tmp_path: Path, capsys) -> None:
    """Reports without measurements: no column names a machine, so there is no key for a legend to explain."""
    write_report(dataclasses.replace(make_report(), measurements=()), tmp_path / "run-1")
    assert main(["report", str(tmp_path), "--by-machine", "--format", "csv"]) == 0
    assert capsys.readouterr().err == ""


def test_rows_are_grouped_by_shape_as_in_a_runs_table() -> None:
    shapes = ((1, "data"), (1, 128), (1, 16))
    reports = [_on(make_report(steps, shapes=shapes), "aaa", "EPYC", "run-a") for steps in [("onnx",), ()]]
    table = merge_by_machine(reports)
    assert list(zip(table["seq_len"], table["variant"], strict=True)) == SHAPE_GROUPED_ROWS
    text = render_merged(table, "md")  # the length differs: a column; the rest is said once
    assert "All rows: device cpu · runtime precision fp32 · batch 1\n" in text
    assert "| variant | runtime | seq_len | p50_ms@aaa |" in text


def test_figures_are_rounded_as_in_a_runs_table() -> None:
    # the merged table wrote every p50 to 2 decimals: 964.19 where the run's table said 964.2, and 0.08 for 0.0847
    reports = [
        _on(with_figures(make_report(shapes=((1, 128),)), p50_ms=p50), m, "EPYC", m)
        for m, p50 in [("aaa", 964.19), ("bbb", 0.0847)]
    ]
    text = render_merged(merge_by_machine(reports), "md")
    assert "| 964.2 | 0.0847 |" in text


def test_peer_rows_are_marked_as_in_a_runs_table() -> None:
    """A peer's row (another tool's pipeline, measured by optbench) reads `(peer)` after its variant, as in a run's
    table, so it is not taken for one of optbench's own variants; CSV and JSON keep it as the `peer` column."""
    base, peer = make_report(shapes=((1, 128),)), make_report(("peer-optimum",), shapes=((1, 128),))
    reports = [_on(with_figures(r, p50_ms=p50), "aaa", "EPYC", "run-a") for r, p50 in [(base, 40), (peer, 20)]]
    table = merge_by_machine(reports)
    text = render_merged(table, "md")
    assert "| baseline+peer-optimum (peer) | torch | 20.00 |" in text
    assert "| baseline | torch | 40.00 |" in text
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    assert "peer" not in header  # a mark on the variant, not a column, in Markdown
    assert dict(zip(table["variant"], table["peer"], strict=True)) == {"baseline": False, "baseline+peer-optimum": True}


def test_machine_columns_follow_the_legends_order() -> None:
    """The legend lists the machines in order of first appearance: the columns must stand in that order too, not
    by their keys (hashes that say nothing to a reader), or the first legend line names the second column."""
    base = make_report(shapes=((1, 128),))
    reports = [
        _on(with_figures(base, p50_ms=p50), m, cpu, m) for m, cpu, p50 in [("zzz", "EPYC", 40), ("aaa", "Xeon", 10)]
    ]
    table = merge_by_machine(reports)
    assert [m.key for m in table.attrs["machines"]] == ["zzz", "aaa"]
    assert list(table.filter(like="p50_ms@").columns) == ["p50_ms@zzz", "p50_ms@aaa"]
    assert "| variant | runtime | p50_ms@zzz | p50_ms@aaa |" in render_merged(table, "md")
