"""Output files that must not land on the command's own inputs: `gate --junit recipes/budgets.toml` replaced the
budget file it had just read, and `report results/all -o results/all/RUN/report.html` a run's committed page,
without a word. Checked once the inputs are read (only then is it known which run folders they lie in), before
anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from optbench.errors import OptbenchError


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
                f"{option}: {output}{named} is a file this command reads: writing it would destroy its own input; "
                "choose another path"
            )
        folder = _identity(output.resolve().parent)
        if folder in folders:
            raise OptbenchError(
                f"{option}: {output} is a file of {folders[folder]}, a run folder this command reads: writing it "
                "would replace that run's file; choose a path outside the results read"
            )


def _identity(path: Path) -> tuple[int, int] | None:
    """The file or folder `path` names, through any symlink (device and inode); None where nothing is."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino
