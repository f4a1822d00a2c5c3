"""Write files whole or not at all: a temporary file beside the target, fsync, then rename (or link, to
create a file only where none exists). `optbench.records` reads such files back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError, write_fix


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; a crash leaves the old file or the new one, never half of one. A device or a pipe
    (/dev/null, /dev/stdout, a shell's >(...)), through a link or not, is written to: it holds no file to replace,
    and renaming over it put a regular file in its place (`--junit /dev/null` run as root replaced /dev/null)."""
    write_all_atomic([(path, data)])


def write_all_atomic(files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace each path with its data as `write_bytes_atomic` does, all or none: each is written whole beside its
    path before any takes its name, so a refusal (a full disk, a folder that cannot be made, a read-only file)
    leaves every path as it was. `gate` wrote its JUnit, then failed on --json and exited 2, leaving CI a JUnit of
    passes. A file its user may not write is refused as the shell's `>` refuses it (root may write any)."""
    for path, _ in files:
        if path.is_dir():
            raise OptbenchError(f"cannot write {path}: it is a folder; give a file name")
        if path.is_file() and not os.access(path, os.W_OK):  # its folder's write access renamed over it regardless
            raise OptbenchError(
                f"cannot write {path}: it is read-only; make it writable (chmod u+w) or give another path"
            )
    with contextlib.ExitStack() as staging:
        staged = []
        for path, data in files:
            with _write_refusal(path):
                if path.exists() and not path.is_file():  # a device or a pipe: nothing to stage, written last
                    staged.append((path, None, data))
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                staged.append((path, staging.enter_context(_synced_beside(path, data)), data))
        for path, tmp, data in staged:
            with _write_refusal(path):
                if tmp is not None:
                    os.replace(tmp, path)
                    continue
                with path.open("wb") as stream:
                    stream.write(data)


@contextlib.contextmanager
def _write_refusal(path: Path) -> Iterator[None]:
    """A write of `path` the system refused, as one line with the fix."""
    try:
        yield
    except OSError as exc:
        existing = nearest_existing(path.parent)
        if not existing.is_dir():  # mkdir says only "File exists" or "Not a directory"
            raise OptbenchError(
                f"cannot write {path}: {existing} is a file, not a folder; give another path, or move {existing} away"
            ) from exc
        fix = write_fix(exc, "give a path in a folder you can write")
        raise OptbenchError(f"cannot write {path} ({exc.strerror or exc}): {fix}") from exc


def nearest_existing(path: Path) -> Path:
    """`path` if it exists, else its nearest parent that does."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def create_exclusive(path: Path, data: bytes) -> None:
    """Create `path` whole with `data`, or raise FileExistsError when it exists (link is atomic and exclusive):
    a lock file that names its holder, never seen empty or half-written."""
    with _synced_beside(path, data) as tmp:
        os.link(tmp, path)


def create_json_exclusive(path: Path, data: dict[str, Any]) -> None:
    """Create `path` whole with `data` as JSON, or raise FileExistsError when it exists."""
    create_exclusive(path, json.dumps(data).encode())


@contextlib.contextmanager
def _synced_beside(path: Path, data: bytes) -> Iterator[Path]:
    """`data` in a temporary file beside `path`, on disk (fsynced) before the caller gives it `path`'s name;
    the temporary name is gone afterwards. Unique per process and thread."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        yield tmp
    finally:
        with contextlib.suppress(OSError):  # gone after a rename; never made when the folder could not be
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())
