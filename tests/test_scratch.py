"""Work folders: gone when their block ends, and removed by the next one when their process was killed."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.scratch import work_folder

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
