"""How an optbench command line runs as a process: the setting its work runs in (hub offline, log levels,
third-party noise dropped, SIGTERM as Ctrl-C) and how it ends (one line on stderr and an exit code for an error,
a path the system refused, a reader that left early, an interrupt). `optbench` (cli.py), the GPU check and the
GPU pack all run their work here."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from optbench.errors import OptbenchError, write_fix
from optbench.quiet import third_party_noise_dropped

log = logging.getLogger("optbench")  # the package's logger: command_process sets the level of all of optbench's

EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a tool its closed pipe stopped


def run_command(prog: str, work: Callable[[], int], verbose: bool, after_interrupt: str = "") -> int:
    """`work`'s exit code, run in `command_process`; what stops it, as one line on stderr and its exit code:
    `prog: error: ...` (2, or the error's own), a reader that left early (141, quietly), Ctrl-C or SIGTERM (130,
    saying `after_interrupt`, if anything). Every optbench command line (optbench, the GPU check, the GPU pack)
    ends here."""
    try:
        with command_process(verbose):
            code = work()
            sys.stdout.flush()  # here, not at exit: a reader that left is met below
            return code
    except OptbenchError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader left (`optbench report | head -1`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the exit's flush fails again
        return EXIT_PIPE_CLOSED
    except OSError as exc:  # a path the system refused where none was expected (too long a name, no permission)
        log.debug("where the system refused it", exc_info=True)  # -v: the traceback, should it be a fault of ours
        print(f"{prog}: error: {_os_error(exc)}", file=sys.stderr)
        return OptbenchError.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; {after_interrupt}" if after_interrupt else ""), file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    """One line for a file system error no check caught: the path, the system's reason and the fix. Path.exists()
    and friends raise for a name too long or a folder this user may not search, where they answer False for a
    missing file, so such a path failed with a traceback."""
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    where = f"{path}: {exc.strerror}" if path is not None and exc.strerror else str(exc)
    fix = write_fix(exc, "check the path, and that this user may read it (and write where optbench writes)")
    return f"{where}: {fix}"


@contextmanager
def command_process(verbose: bool) -> Iterator[None]:
    """The setting every optbench command line (optbench, the GPU check, the GPU pack) runs its work in: hub
    offline, optbench's own progress at INFO (DEBUG with `verbose`) and other libraries at WARNING, the third-party
    lines no user can act on dropped (optbench/quiet.py; `verbose` shows them), and SIGTERM unwinding as Ctrl-C
    does."""
    # Models and data are local: never ask a hub; keep transformers' load reports out of the output.
    # Set before transformers is imported, and inherited by the benchmark's job processes.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # transformers draws a "Loading weights" bar for every model it loads (a dozen a run); optbench's own bars stay
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # onnxruntime's fusion logs a line per pass at INFO
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    with (
        _sigterm_interrupts(),
        _stdout_written_whole(),
        _paths_printed_as_bytes(),  # of the stdout _stdout_written_whole may have put in place
        nullcontext() if verbose else third_party_noise_dropped(),
    ):
        yield


class _WholeWrites(io.RawIOBase):
    """A file descriptor that takes every byte of each write, or raises (BrokenPipeError for a reader that left)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        whole = left = memoryview(data).cast("B")
        while left:
            left = left[os.write(self._fd, left) :]
        return len(whole)


@contextmanager
def _stdout_written_whole() -> Iterator[None]:
    """stdout unbuffered (PYTHONUNBUFFERED, as optbench's Docker images set) writes straight to its file, and
    Python's text layer drops what a pipe does not take: a reader that left mid-write (`| head -1`, a table longer
    than the pipe holds) lost the rest without an error, and the command exited 0, not 141. While the block runs,
    stdout writes through a file that takes each write whole or raises."""
    before = sys.stdout
    if not isinstance(getattr(before, "buffer", None), io.RawIOBase):  # buffered: a short write is retried
        yield
        return
    sys.stdout = io.TextIOWrapper(
        _WholeWrites(before.fileno()), encoding=before.encoding, errors=before.errors, write_through=True
    )
    try:
        yield
    finally:
        sys.stdout = before


@contextmanager
def _paths_printed_as_bytes() -> Iterator[None]:
    """stdout writes a path that is not UTF-8 (its bytes, which Python holds as surrogates) as its bytes, as ls
    does, while the block runs. Python's stdout under a UTF-8 locale (en_US.UTF-8) is strict: the gate's heading
    naming such a budget file, report's `wrote PAGE` and a dry run's dataset raised UnicodeEncodeError. A stdout
    that cannot be reconfigured (replaced by a caller) is left as it is."""
    stdout = sys.stdout
    errors = getattr(stdout, "errors", None)
    if errors is None or not hasattr(stdout, "reconfigure"):
        yield
        return
    stdout.reconfigure(errors="surrogateescape")
    try:
        yield
    finally:
        stdout.reconfigure(errors=errors)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (docker stop, a CI cancel, kill) unwinds as Ctrl-C does while the block runs: the running job is
    stopped, its claim let go, no staging or cache work folder left. By default Python dies on the spot (and a
    container's PID 1 ignores it). Off the main thread no handler can be set, and none is."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)
