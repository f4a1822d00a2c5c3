"""Where a set of results is: a folder or report file, or `REV:PATH`, results committed in git at a revision
(so `optbench compare HEAD~1:results/all results/all` compares a run with the one committed before)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from optbench.errors import OptbenchError


@contextlib.contextmanager
def results_at(spec: str) -> Iterator[Path]:
    """The results `spec` names, as a path that exists while the context is open."""
    path = Path(spec)
    if path.exists():
        yield path
        return
    revision, sep, inside = spec.partition(":")
    if not sep or not revision:
        raise OptbenchError(f"{spec} does not exist: give a results folder, a report file, or REV:PATH from git")
    archive = _git_archive(revision, inside or ".")
    with tempfile.TemporaryDirectory(prefix="optbench-results-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:  # a link out of the results, or to an absolute path
                raise _refused(revision, exc.tarinfo) from exc
        try:
            yield Path(tmp) / inside
        except OptbenchError as exc:  # name what it says as the user typed it, not the temporary folder
            message = str(exc).replace(f"{tmp}{os.sep}", f"{revision}:").replace(tmp, f"{revision}:")
            raise type(exc)(message) from exc


def _refused(revision: str, link: tarfile.TarInfo) -> OptbenchError:
    """Why the committed `link` was not unpacked: tar's "data" filter unpacks no link out of the results (git archives
    hold only files, folders and symbolic links, so a link is all it can refuse there)."""
    return OptbenchError(
        f"{revision}:{link.name} is a link to {link.linkname}, out of the committed results, and optbench does not "
        f"follow it: commit the file itself in its place, or check {revision} out (git worktree add DIR {revision}) "
        "and give that folder"
    )


def _git_archive(revision: str, inside: str) -> bytes:
    """`inside` as committed at `revision`, as a tar archive; a clear error when git cannot give it."""
    try:
        done = subprocess.run(
            ["git", "archive", "--format=tar", revision, "--", inside], capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise OptbenchError(f"{revision}:{inside} names a git revision, and git is not installed") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise OptbenchError(
            f"{revision}:{inside} is neither a path nor committed results "
            f"(git: {reason[-1] if reason else 'failed'}): check the revision and the path inside the repository"
        )
    return done.stdout
