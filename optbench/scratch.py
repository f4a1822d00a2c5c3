"""Hidden work folders beside where their content ends up (a step's output, a run's reports), gone however
their process ends: the block that used one removes it, and one left by a process killed outright (kill -9,
out of memory, power loss) is removed by the next process that makes one in the same folder.

A work folder `.<stem>.<pid>.<token>.tmp` has a lock file `.<stem>.<pid>.<token>.lock` beside it, which its
process holds (flock) from before the folder exists until after it is gone. The kernel lets go of a lock when
its process dies, however it dies, so a work folder whose lock can be taken has no live process writing it. A
pid cannot tell that: processes in containers sharing a cache volume share pids, and another machine's pids
mean nothing here. A cache shared between machines must be on a filesystem whose locks they all see (NFS's are;
one mounted with local locks is not), as the peers' environments' build lock needs too. Where the filesystem
refuses locks (optbench/locks.py), a work folder gets no lock file and is removed only by its own process.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optbench.locks import LocksRefused, take_lock, try_lock

log = logging.getLogger(__name__)

FOLDER_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"


@contextmanager
def work_folder(parent: Path, stem: str) -> Iterator[Path]:
    """A new empty folder `.<stem>.<pid>.<token>.tmp` in `parent` (made if need be), removed when the block ends
    unless the block renamed it away; leftovers of killed processes in `parent` are removed first."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(parent)
    name = f".{stem}.{os.getpid()}.{secrets.token_hex(4)}"  # unique: processes sharing a cache may share a pid
    lock = parent / f"{name}{LOCK_SUFFIX}"
    folder = parent / f"{name}{FOLDER_SUFFIX}"
    handle = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)  # for writing, as locks.py says
    try:
        try:
            take_lock(handle, lock)  # a new file: no one else holds it
        except LocksRefused:  # no lock file, so no process takes this folder for a leftover
            lock.unlink()
        try:
            folder.mkdir()
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)  # once the folder is gone: one left behind keeps its lock file for the next
    finally:
        os.close(handle)


def remove_leftovers(parent: Path) -> None:
    """Remove the work folders in `parent` that no live process holds (their process was killed)."""
    for folder in parent.glob(f".*{FOLDER_SUFFIX}"):
        lock = folder.with_name(folder.name.removesuffix(FOLDER_SUFFIX) + LOCK_SUFFIX)
        try:
            handle = os.open(lock, os.O_RDWR)  # for writing, as work_folder's: NFS locks need it
        except OSError:  # no lock file: its process is done with it, or it is not a work folder
            continue
        if not try_lock(handle):  # held: a live process writes it
            os.close(handle)
            continue
        try:
            log.info("removing %s, left by a process that was killed", folder)
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(handle)
