"""Write files whole or not at all: a temporary file beside the target, fsync, then rename (or link, to
create a file only where none exists); and read such a JSON file back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; a crash leaves the old file or the new one, never half of one."""
    if path.is_dir():
        raise OptbenchError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _synced_beside(path, data) as tmp:
            os.replace(tmp, path)
    except OSError as exc:
        existing = nearest_existing(path.parent)
        if not existing.is_dir():  # mkdir says only "File exists" or "Not a directory"
            raise OptbenchError(
                f"cannot write {path}: {existing} is a file, not a folder; give another path, or move {existing} away"
            ) from exc
        raise OptbenchError(
            f"cannot write {path} ({exc.strerror or exc}): give a path in a folder you can write"
        ) from exc


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


def read_json(path: Path, required: Iterable[str] = ()) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is no such file (a sweep's records and claims); one that is
    not an object, or lacks a `required` field, is named as damaged."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, and UnicodeDecodeError for bad bytes
        raise _damaged(path, str(exc)) from exc
    if not isinstance(data, dict):
        raise _damaged(path, "not a JSON object")
    require_fields(path, data, required)
    return data


def require_fields(path: Path, data: dict[str, Any], fields: Iterable[str]) -> None:
    """Name `path` as damaged when `data`, the object read from it, lacks any of `fields` (hand-edited, say)."""
    if missing := [name for name in fields if name not in data]:
        raise _damaged(path, f"no {', '.join(map(repr, missing))} field")


def _damaged(path: Path, why: str) -> OptbenchError:
    return OptbenchError(f"{path} is damaged ({why}): delete it and run the recipe again")


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
