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
