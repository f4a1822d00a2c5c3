"""Progress on stderr: a bar on a terminal, log lines elsewhere (a CI log, `2>file`)."""

from __future__ import annotations

import io
import logging

import pytest

from optbench import progress as progress_module
from optbench.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_and_no_log_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with caplog.at_level(logging.INFO), Progress(2, "benchmark", "job", "jobs") as progress:
        progress.describe("latency baseline on torch-cpu-fp32")
        progress.advance()
        progress.advance()
    assert "latency baseline on torch-cpu-fp32" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert caplog.messages == []


def test_elsewhere_no_bar_is_drawn_and_log_lines_count_the_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A log file got every redrawn frame of the bar, joined by carriage returns into one line; it gets a line at
    most every LOG_EVERY_S seconds instead, with the latest figures, and one at the end."""
    file = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", file)
    clock = iter([0.0, 1.0, 31.0, 32.0, 33.0])  # made, then each advance
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO), Progress(4, "finetune", "batch", "batches") as progress:
        progress.describe("finetune")
        progress.advance(loss="0.693")
        progress.advance()
        progress.advance(loss="0.512")
        progress.advance()
    assert file.getvalue() == ""
    assert caplog.messages == ["finetune: 2 of 4 batches done, loss 0.693", "finetune: 4 of 4 batches done, loss 0.512"]


def test_a_terminal_bar_shows_its_name_units_and_latest_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training's bar is never described: its name is its label, and its loss is shown beside it."""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with Progress(2, "finetune", "batch", "batches") as progress:
        progress.advance(loss="0.693")
        progress.advance()
    drawn = terminal.getvalue()
    assert drawn.startswith("\rfinetune: ") and "batch/s" in drawn and "loss=0.693" in drawn


@pytest.mark.parametrize(("seconds", "logged"), [(29.9, False), (30.0, True)])
def test_a_log_line_comes_once_30_s_have_passed_since_the_last(
    seconds: float, logged: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    clock = iter([1000.0, 1000.0 + seconds])  # made, then the first of three units done
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO), Progress(3, "benchmark", "job", "jobs") as progress:
        progress.advance()
    assert caplog.messages == (["benchmark: 1 of 3 jobs done"] if logged else [])
