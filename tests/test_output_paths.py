"""report -o, compare -o and gate --junit and --json refuse a path that is one of their own inputs, or a file of a
run folder they read, before writing anything; any other existing file is overwritten as before. A run's results and
cache folders are checked before its first step: a folder this user can write, on a file system with room."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from report_fixtures import make_report

from optbench import output_paths
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.failures import FailedJob, write_failures
from optbench.output_paths import check_folder_can_be_written, refuse_overwriting_inputs
from optbench.report import write_report

BUDGET = '[[budget]]\nvariants = ["baseline"]\nmax_size = "1 GB"\n'


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run folder as `optbench run` leaves one: a report, failures.json, report.html and report.png."""
    report = make_report(shapes=((1, 128),))
    folder = tmp_path / "results" / report.recipe / report.run_id
    write_report(report, folder)
    write_failures([FailedJob("baseline+onnx", "", "step onnx", "no space")], folder, report.run_id)
    (folder / "report.html").write_text("<html>the run's page</html>\n")
    (folder / "report.png").write_bytes(b"\x89PNG the run's plot")
    return folder


@pytest.fixture
def budget(tmp_path: Path) -> Path:
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    return path


def _refused(argv: list[str], clobbered: Path, capsys, says: str) -> None:
    """`argv` exits 2 naming the clash and the fix, and leaves `clobbered` byte for byte as it was."""
    before = clobbered.read_bytes()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert says in err and "choose" in err, err
    assert out == ""  # nothing printed either: no gate verdict, no table
    assert clobbered.read_bytes() == before


def test_report_refuses_its_own_reports_and_run_files(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    results = str(tmp_path / "results")
    report = run / "baseline.torch-cpu-fp32.json"
    _refused(["report", results, "-o", str(report)], report, capsys, f"-o: {report} is a file this command reads")
    failures = run / "failures.json"  # the table lists the run's failures: read too
    _refused(["report", results, "-o", str(failures)], failures, capsys, f"{failures} is a file this command reads")
    page = run / "report.html"
    _refused(["report", results, "-o", str(page)], page, capsys, f"{page} is a file of {run}, a run folder this")
    _refused(["report", str(report), "-o", str(page)], page, capsys, "a run folder this")  # one report's folder
    _refused(["report", results, "--by-machine", "-o", str(page)], page, capsys, "a run folder this")
    # named another way: relative, through `..`, through a symlink
    monkeypatch.chdir(run)
    _refused(["report", results, "-o", "report.html"], page, capsys, "report.html is a file of")
    _refused(["report", results, "-o", f"../{run.name}/report.html"], page, capsys, "run folder")
    link = tmp_path / "table.md"
    link.symlink_to(report)
    _refused(["report", results, "-o", str(link)], report, capsys, f"{link} ({report}) is a file this command reads")
    link = tmp_path / "page.html"  # a link to a run's file, not one read
    link.symlink_to(page)
    _refused(["report", results, "-o", str(link)], page, capsys, f"{link} is a file of {run}, a run folder this")


def test_report_html_refuses_a_page_whose_plot_is_a_run_file(run: Path, tmp_path: Path, capsys) -> None:
    page = run / "report.htm"  # a new page, but its plot is report.png, the run's own
    _refused(["report", str(tmp_path / "results"), "--format", "html", "-o", str(page)], run / "report.png", capsys, "")
    assert not page.exists()  # refused before anything is written


def test_report_overwrites_an_unrelated_file(run: Path, tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    table.write_text("last week's table\n")
    assert main(["report", str(tmp_path / "results"), "-o", str(table)]) == 0
    assert "| baseline |" in table.read_text()
    assert main(["report", str(run), "-o", str(run / "new.md")]) == 0  # a new file in a run folder replaces nothing


def test_compare_refuses_its_budget_file_and_both_sides(run: Path, budget: Path, tmp_path: Path, capsys) -> None:
    results = str(tmp_path / "results")
    compare = ["compare", str(run), results, "--budget", str(budget)]
    _refused([*compare, "-o", str(budget)], budget, capsys, f"-o: {budget} is a file this command reads")
    _refused([*compare, "-o", str(run / "report.html")], run / "report.html", capsys, "a run folder this command")
    later = tmp_path / "later"  # a run of its own on each side: each side's run folder is refused
    write_report(make_report(run_id="later"), later)
    (later / "report.html").write_text("<html>the later run's page</html>\n")
    for side in (run, later):
        page = side / "report.html"
        _refused(["compare", str(run), str(later), "-o", str(page)], page, capsys, f"a file of {side}, a run folder")
    old = tmp_path / "compare.md"
    old.write_text("the previous comparison\n")
    assert main([*compare, "-o", str(old)]) == 0
    assert "| baseline |" in old.read_text()


def test_gate_junit_refuses_its_budget_file_and_run_files(run: Path, budget: Path, tmp_path: Path, capsys) -> None:
    gate = ["gate", "--budget", str(budget), str(tmp_path / "results")]
    _refused([*gate, "--junit", str(budget)], budget, capsys, f"--junit: {budget} is a file this command reads")
    _refused([*gate, "--junit", str(run / "report.html")], run / "report.html", capsys, "a run folder this command")
    junit = tmp_path / "gate.xml"
    junit.write_text("the previous build's XML\n")
    assert main([*gate, "--junit", str(junit)]) == 0
    assert "<testsuites" in junit.read_text()


@pytest.mark.parametrize(
    ("command", "option"),
    [("report", "--output OUTPUT"), ("compare", "--output OUTPUT"), ("gate", "--junit JUNIT"), ("gate", "--json JSON")],
)
def test_output_help_refuses_only_files_already_in_a_run_folder(command: str, option: str, capsys) -> None:
    # the help said a file "in a run folder it reads" is refused, but a new one there is written (it replaces
    # nothing, as the tests above have it): only an existing file of a run folder is refused
    with pytest.raises(SystemExit):
        main([command, "--help"])
    options = " ".join(capsys.readouterr().out.split("\noptions:\n", 1)[1].split())
    said = options.split(f"{option} ", 1)[1].split(" --", 1)[0]
    assert "nor a file already in a run folder it reads: refused, exit 2" in said


def test_a_new_file_in_a_run_folder_is_written(run: Path, budget: Path, tmp_path: Path) -> None:
    results = str(tmp_path / "results")
    assert main(["gate", "--budget", str(budget), results, "--junit", str(run / "gate.xml")]) == 0
    assert main(["compare", str(run), results, "-o", str(run / "compare.md")]) == 0
    assert "<testsuites" in (run / "gate.xml").read_text() and "| baseline |" in (run / "compare.md").read_text()


def test_a_pipe_or_device_output_is_written_to_not_replaced(run: Path, budget: Path, tmp_path: Path) -> None:
    """`-o /dev/stdout`, `--junit /dev/null`, a shell's >(...): a device or a pipe, named through a link or not, takes
    the output. Renamed over as a file is, it was replaced by a regular file, the link too (as root, /dev/null)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    link = tmp_path / "stdout"
    link.symlink_to(pipe)
    for argv, written in (
        (["report", str(run), "-o", str(link)], b"| baseline |"),
        (["gate", "--budget", str(budget), str(run), "--junit", str(pipe)], b"<testsuites"),
    ):
        reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # open first: the command's open then does not wait
        try:
            assert main(argv) == 0
            assert stat.S_ISFIFO(pipe.stat().st_mode) and link.is_symlink()
            assert written in os.read(reader, 1 << 16)
        finally:
            os.close(reader)


def test_the_files_read_may_be_given_as_any_iterable(run: Path) -> None:
    """A generator of the results read is read once: its run folders were lost after the files were taken."""
    report = run / "baseline.torch-cpu-fp32.json"
    with pytest.raises(OptbenchError) as refused:
        refuse_overwriting_inputs("-o", [run / "report.html"], (path for path in [report]))
    assert f"is a file of {run}, a run folder this command reads" in str(refused.value)


def test_a_folder_this_user_may_write_to_but_not_search_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Creating a file in a folder takes write and search (x) access: write alone is not enough."""
    monkeypatch.setattr(output_paths.os, "access", lambda path, mode: not mode & os.X_OK)
    with pytest.raises(OptbenchError) as refused:
        check_folder_can_be_written("--results", tmp_path / "results")
    assert str(refused.value) == f"--results: {tmp_path} is not writable by this user: give a folder you can write"


BLOCK = 4096
MIB_OF_BLOCKS = (1 << 20) // BLOCK


@pytest.mark.parametrize(
    ("euid", "free_blocks", "available_blocks", "refused"),
    [
        (0, MIB_OF_BLOCKS, 0, ""),  # root may use the blocks reserved for it; 1 MiB is enough
        (1000, 1 << 30, MIB_OF_BLOCKS, ""),
        (1000, 1 << 30, MIB_OF_BLOCKS - 1, "(1020 KiB free)"),  # another user may not use them
        (0, MIB_OF_BLOCKS - 1, 1 << 30, "(1020 KiB free)"),
    ],
)
def test_free_space_is_counted_in_fragments_and_only_what_this_user_may_use(
    euid: int, free_blocks: int, available_blocks: int, refused: str, tmp_path: Path, monkeypatch
) -> None:
    """statvfs counts blocks of f_frsize bytes (f_bsize is only the preferred I/O size, here 16 times larger)."""
    space = os.statvfs(tmp_path)
    sizes = [BLOCK * 16, BLOCK, space.f_blocks, free_blocks, available_blocks]
    monkeypatch.setattr(output_paths.os, "statvfs", lambda path: os.statvfs_result([*sizes, *space[5:8], 0, space[9]]))
    monkeypatch.setattr(output_paths.os, "geteuid", lambda: euid)
    if not refused:
        check_folder_can_be_written("--cache", tmp_path / "cache")
        return
    with pytest.raises(OptbenchError) as error:
        check_folder_can_be_written("--cache", tmp_path / "cache")
    assert str(error.value).startswith(f"--cache: the file system of {tmp_path} is full {refused}: free some space")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_under_proc_is_refused_as_storing_no_files_not_as_full() -> None:
    # statvfs gives /proc no blocks at all, so it read "the file system of /proc is full (0 KiB free)"
    with pytest.raises(OptbenchError, match=r"^--results: /proc is on a file system that stores no files .*on a disk$"):
        check_folder_can_be_written("--results", Path("/proc/optbench-results"))
