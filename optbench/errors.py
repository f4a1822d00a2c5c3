"""Errors that reach the user as one line and exit code 2."""

import difflib
import errno
import reprlib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

READ_ACCESS_FIX = "give this user read access to it, or name results that leave it out"
NO_SPACE_FIX = "free some space on its file system, or give a folder on another"
READ_ONLY_FIX = "give a folder on a file system that can be written (or remount it read-write)"


class OptbenchError(Exception):
    """A problem with the user's input: the message names the bad value and the fix."""

    exit_code = 2


class StepFailed(OptbenchError):
    """A step whose outside tool failed (a peer's pipeline, or the environment it runs in): the run records
    the failure with its reason and goes on with the other chains."""

    exit_code = 1


def require_package(package: str, *, needed_for: str, install: str) -> metadata.Distribution:
    """The installed distribution `package`; missing, an error that says what needs it and how to install it."""
    try:
        return metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise OptbenchError(f"{needed_for} needs the {package} package: {install}") from exc


def did_you_mean(names: Iterable[object], known: Iterable[str]) -> str:
    """`; did you mean 'quantize-dynamic'?`, to end an error that lists the known names: for each unknown name, the
    known ones closest to it (letter case aside; as close within 0.05 of similarity, so `quantize` gets both
    quantize steps); "" when none is close."""
    by_lower = {name.lower(): name for name in known}
    close = []
    for name in names:
        if not isinstance(name, str):
            continue
        similarity = {k: difflib.SequenceMatcher(None, name.lower(), k).ratio() for k in by_lower}
        best = max(similarity.values(), default=0.0)
        close += [
            by_lower[k]
            for k in sorted(similarity, key=similarity.get, reverse=True)
            if similarity[k] >= max(0.6, best - 0.05)
        ]
    return f"; did you mean {' or '.join(repr(name) for name in dict.fromkeys(close))}?" if close else ""


def unreadable_file(path: Path, exc: OSError) -> OptbenchError:
    """A results file the system would not open: one this user may not read is someone's results, not damage to
    delete (the fix is access); a link to nothing, or a loop of links, is."""
    if isinstance(exc, PermissionError):
        fix = READ_ACCESS_FIX
    else:
        fix = "delete or restore the file"
    return OptbenchError(f"cannot read {path} ({exc.strerror}): {fix}")


def refused_reading(path: Path, exc: PermissionError) -> OptbenchError:
    """An input this user may not read (a model's file, made by another user): its fix is access, not saving or
    fetching the file again, as a file that would not load is told."""
    return OptbenchError(f"cannot read {path} ({exc.strerror}): give this user read access to it, or use a copy it can")


def write_fix(exc: OSError, otherwise: str) -> str:
    """The fix of a write the system refused: a full file system (or quota) wants space, and a read-only one another
    file system, which `otherwise` (access, another path) did not say."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NO_SPACE_FIX
    return READ_ONLY_FIX if exc.errno == errno.EROFS else otherwise


def listed(names: list[str], most: int = 10) -> str:
    """`names` as a list for one line: the first `most`, each cut to 40 characters, and how many in all beyond
    that. A label column named by mistake (the text's, a movie's) holds a label per row: listed whole, its
    names made an error line of 100 kB."""
    shown = reprlib.Repr()
    shown.maxlist, shown.maxstring = most, 40
    return shown.repr(list(names)) + (f" ({len(names)} in all)" if len(names) > most else "")
