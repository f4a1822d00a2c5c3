"""Exclusive flocks on the cache's lock files, which the kernel lets go of when their process dies, however it
dies; telling a lock another process holds from a filesystem that refuses locks (ENOLCK: an NFS mount whose
lock service is not running, say), which a caller either does without (scratch.py's work folders) or cannot
(the peers' environment builds, optbench/peers/venv.py).

A lock file is opened for writing: NFS emulates flock with a byte-range lock, whose exclusive form needs a
file open for writing (flock(2)).
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from optbench.errors import OptbenchError


class LocksRefused(OptbenchError):
    """The filesystem of a lock file takes no locks: the message names the folder and the fix."""


def take_lock(handle: int, path: Path) -> None:
    """Take the exclusive lock of `handle` (the lock file `path`), waiting while another process holds it;
    LocksRefused where the filesystem refuses locks."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError as exc:
        raise LocksRefused(
            f"the filesystem of {path.parent} refuses file locks ({exc.strerror}): put the cache (--cache or "
            "$OPTBENCH_CACHE) on one that takes them, such as a local disk or an NFS mount whose lock service "
            "(rpc.statd) runs"
        ) from exc


def try_lock(handle: int) -> bool:
    """Take the exclusive lock of `handle` if it is free now: False when another process holds it, or when the
    filesystem refuses locks (then nothing can tell that no process holds it)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
