"""Work folders: gone when their block ends, and removed by the next one when their process was killed; and the
file locks that tell a live one."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from optbench.errors import OptbenchError
from optbench.locks import take_lock, try_lock
from optbench.scratch import remove_leftovers, work_folder

HOLDER = (
    "import sys, time; from pathlib import Path; from optbench.scratch import work_folder\n"
    "with work_folder(Path(sys.argv[1]), 'step') as folder:\n"
    "    (folder / 'weights').write_bytes(b'half-written')\n"
    "    print(folder, flush=True)\n"
    "    time.sleep(600)\n"
)


def _holding(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process inside a work folder in `parent`, and that folder."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_process_s_folder_is_removed_by_the_next_and_a_live_one_s_is_kept(tmp_path: Path) -> None:
    killed, left = _holding(tmp_path)
    live, kept = _holding(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)  # no finally runs
        killed.wait()
        assert (left / "weights").is_file()
        with work_folder(tmp_path, "step") as mine:
            assert not left.exists() and not left.with_suffix(".lock").exists()
            assert (kept / "weights").is_file()  # its process is alive, though its pid could be anyone's
            assert mine.is_dir()
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, kept.with_suffix(".lock").name])


def test_a_folder_renamed_away_is_kept_and_nothing_is_left(tmp_path: Path) -> None:
    with work_folder(tmp_path / "cache", "step") as folder:
        (folder / "weights").write_bytes(b"whole")
        folder.rename(tmp_path / "cache" / "step")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["step"]


def test_an_interrupted_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), work_folder(tmp_path, "step") as folder:
        (folder / "weights").write_bytes(b"half-written")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_on_a_filesystem_without_locks_the_folder_has_no_lock_file_for_another_process_to_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(*args) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("optbench.locks.fcntl.flock", no_locks)
    with work_folder(tmp_path, "step") as folder:
        assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    assert list(tmp_path.iterdir()) == []


def test_on_nfs_a_killed_process_s_folder_is_still_found_and_removed(tmp_path: Path, monkeypatch) -> None:
    """NFS emulates flock with a byte-range lock, whose exclusive form needs the file open for writing (flock(2),
    "NFS details"): a lock file opened read-only could never be locked there, so on the shared cache volume the
    docstring names, every work folder went without a lock file and a killed run's was never removed."""
    import fcntl
    import os

    real_flock = fcntl.flock

    def nfs_flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_flock(fd, operation)

    monkeypatch.setattr("optbench.locks.fcntl.flock", nfs_flock)
    left = tmp_path / ".step.4242.aa11bb22.tmp"  # what a process killed inside work_folder leaves
    (left / "weights").parent.mkdir()
    (left / "weights").write_bytes(b"half-written")
    left.with_suffix(".lock").touch()
    with work_folder(tmp_path, "step") as folder:
        assert not left.exists() and not left.with_suffix(".lock").exists()
        assert folder.with_suffix(".lock").is_file()  # its own lock held, so no other process takes it


def _leftover(parent: Path, name: str, *, lock: bool = True) -> Path:
    """A work folder `name` in `parent` as its process left it, with its lock file unless `lock` is false."""
    folder = parent / f".{name}.tmp"
    folder.mkdir(parents=True)
    (folder / "weights").write_bytes(b"half-written")
    if lock:
        folder.with_suffix(".lock").touch()
    return folder


def _held(folder: Path) -> int:
    """Hold `folder`'s lock as its live process would: a lock on another open file of it conflicts, even here."""
    handle = os.open(folder.with_suffix(".lock"), os.O_RDWR)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


class _Listed(type(Path())):  # type: ignore[misc]
    """A folder that lists its work folders in name order, which the filesystem's order need not be."""

    def glob(self, pattern: str):  # type: ignore[override]
        return iter(sorted(super().glob(pattern)))


def test_a_killed_process_s_folder_listed_after_a_live_one_and_a_folder_without_a_lock_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither a live process's work folder nor a folder that has no lock file ends the look for leftovers."""
    live = _leftover(tmp_path, "a-live.1.aa")
    plain = _leftover(tmp_path, "b-plain", lock=False)
    dead = _leftover(tmp_path, "c-dead.2.bb")
    handle = _held(live)
    try:
        with caplog.at_level(logging.INFO, logger="optbench.scratch"):
            remove_leftovers(_Listed(tmp_path))
    finally:
        os.close(handle)
    assert live.is_dir() and plain.is_dir()
    assert not dead.exists() and not dead.with_suffix(".lock").exists()
    assert caplog.messages == [f"removing {dead}, left by a process that was killed"]


def test_a_leftover_another_process_removed_first_is_passed_over(tmp_path: Path, monkeypatch) -> None:
    """Two processes may open a killed one's lock file at once: the first to take the lock removes the folder and
    its lock file, and the second, taking the lock then, finds neither."""
    import optbench.scratch

    dead = _leftover(tmp_path, "step.4242.aa11bb22")
    real_try_lock = optbench.scratch.try_lock

    def removed_by_another_first(handle: int) -> bool:
        (dead / "weights").unlink()
        dead.rmdir()
        dead.with_suffix(".lock").unlink()
        return real_try_lock(handle)

    monkeypatch.setattr(optbench.scratch, "try_lock", removed_by_another_first)
    remove_leftovers(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_work_folders_and_the_look_for_leftovers_leave_no_file_open(tmp_path: Path) -> None:
    """A sweep makes a work folder per step and per run: a lock file left open each time runs a long one out of
    file descriptors."""
    live, dead = _leftover(tmp_path, "a.1.aa"), _leftover(tmp_path, "b.2.bb")
    handle = _held(live)
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        with work_folder(tmp_path, "step"):
            pass
        assert not dead.exists() and live.is_dir()
        remove_leftovers(tmp_path)
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(handle)


def test_a_work_folder_s_parents_are_made_and_its_lock_file_is_one_the_cache_s_group_can_open(tmp_path: Path) -> None:
    """A shared cache's other users (umask 002) open a lock file for writing to test it, as remove_leftovers does."""
    umask = os.umask(0o002)
    try:
        with work_folder(tmp_path / "cache" / "steps", "step") as folder:
            assert folder.parent == tmp_path / "cache" / "steps"
            assert folder.with_suffix(".lock").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(umask)


def test_a_taken_lock_waits_for_its_holder_and_excludes_every_other(tmp_path: Path) -> None:
    """take_lock waits while another open file of the lock holds it, and then holds it alone; try_lock takes it only
    when no other holds it, shared or not."""
    lock = tmp_path / "x.lock"
    lock.touch()
    mine, other = os.open(lock, os.O_RDWR), os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        threading.Timer(0.5, fcntl.flock, (other, fcntl.LOCK_UN)).start()
        take_lock(mine, lock)  # a non-blocking take would be refused here, while `other` holds it
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert not try_lock(other)
        fcntl.flock(mine, fcntl.LOCK_UN)
        assert try_lock(other) and not try_lock(mine)
    finally:
        os.close(mine)
        os.close(other)


def test_a_lock_refused_names_the_folder_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = OSError(errno.ENOLCK, "No locks available")

    def no_locks(*args) -> None:
        raise refusal

    monkeypatch.setattr("optbench.locks.fcntl.flock", no_locks)
    folder = re.escape(str(tmp_path))
    with pytest.raises(OptbenchError, match=rf"^the filesystem of {folder} refuses file locks \(No locks av") as exc:
        take_lock(0, tmp_path / "x.lock")
    assert exc.value.__cause__ is refusal
