"""Where a command's output may go, checked before anything is written: a run's results and cache folders must be
folders this user can write on a file system with room; output files must not land on the command's own inputs
(`gate --junit recipes/budgets.toml` replaced the budget file it had just read, and `report results/all -o
results/all/RUN/report.html` a run's committed page, without a word), which is known once the inputs are read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from optbench.atomic import nearest_existing
from optbench.errors import NO_SPACE_FIX, READ_ONLY_FIX, OptbenchError

# the least free space a run's folders may start with: a run's reports, plot and sweep files take more, so a file
# system with less (full) failed at the run's first write there, after its steps had trained and exported for minutes
MIN_FREE_BYTES = 1 << 20


def check_folder_can_be_written(option: str, folder: Path) -> None:
    """Refuse, before any work, a folder that is a file, lies under a file, cannot be made or written, or is on a
    read-only or full file system."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OptbenchError(f"{option}: {existing} is a file, so {folder} cannot be a folder: give another path")
    space = os.statvfs(existing)
    if space.f_flag & os.ST_RDONLY:  # os.access says no for every user there: not this user's permissions
        raise OptbenchError(f"{option}: {existing} is on a read-only file system: {READ_ONLY_FIX}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptbenchError(f"{option}: {existing} is not writable by this user: give a folder you can write")
    if space.f_blocks == 0:  # /proc, /sys: files the kernel makes up, no room for any other (it read as "full")
        raise OptbenchError(
            f"{option}: {existing} is on a file system that stores no files (as /proc and /sys): give a folder on "
            "a disk"
        )
    free = space.f_frsize * (space.f_bfree if os.geteuid() == 0 else space.f_bavail)  # root may use the reserve
    if free < MIN_FREE_BYTES:
        raise OptbenchError(f"{option}: the file system of {existing} is full ({free >> 10} KiB free): {NO_SPACE_FIX}")


def refuse_overwriting_inputs(
    option: str, outputs: Iterable[Path], results: Iterable[Path], inputs: Iterable[Path] = ()
) -> None:
    """Raise when a file `option` would write (one of `outputs`) is one of the files the command reads (`results`,
    the report and failures files, and `inputs`, such as a budget file) or an existing file in the folder of one
    of `results` (a run folder: its reports, page and plot). The same file counts however it is named: relative,
    through a symlink, by a hard link. Any other existing file is overwritten, as an output option does."""
    results = list(results)  # a file no longer there (a git revision's, unpacked for the command) is left out
    read = {found: path for path in [*results, *inputs] if (found := _identity(path))}
    folders = {found: path.parent for path in results if (found := _identity(path.parent))}
    for output in outputs:
        if not output.is_file():  # a new file replaces nothing; a folder is refused where it is written
            continue
        same = read.get(_identity(output))
        if same is not None:
            named = "" if str(same) == str(output) else f" ({same})"
            raise OptbenchError(
                f"{option}: {output}{named} is a file this command reads: choose another path for what it writes"
            )
        folder = _identity(output.resolve().parent)
        if folder in folders:
            raise OptbenchError(
                f"{option}: {output} is a file of {folders[folder]}, a run folder this command reads: choose a path "
                "outside the results read"
            )


def _identity(path: Path) -> tuple[int, int] | None:
    """The file or folder `path` names, through any symlink (device and inode); None where nothing is."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino
