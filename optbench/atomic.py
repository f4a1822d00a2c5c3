"""Write files whole or not at all: a temporary file beside the target, fsync, then rename (or link, to
create a file only where none exists); and read such a JSON file back."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError, write_fix
from optbench.measure import GpuMemory


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; a crash leaves the old file or the new one, never half of one. A device or a pipe
    (/dev/null, /dev/stdout, a shell's >(...)), through a link or not, is written to: it holds no file to replace,
    and renaming over it put a regular file in its place (`--junit /dev/null` run as root replaced /dev/null)."""
    write_all_atomic([(path, data)])


def write_all_atomic(files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace each path with its data as `write_bytes_atomic` does, all or none: each is written whole beside its
    path before any takes its name, so a refusal (a full disk, a folder that cannot be made) leaves every path as
    it was. `gate` wrote its JUnit, then failed on --json and exited 2, leaving CI a JUnit of passes."""
    for path, _ in files:
        if path.is_dir():
            raise OptbenchError(f"cannot write {path}: it is a folder; give a file name")
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


def read_json(path: Path, required: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is no such file (a sweep's records and claims); one that is
    not an object, or lacks a `required` field or holds it as another kind (see `require_fields`), is named as
    damaged."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, and UnicodeDecodeError for bad bytes
        raise damaged(path, str(exc)) from exc
    if not isinstance(data, dict):
        raise damaged(path, "not a JSON object")
    require_fields(path, data, required or {})
    return data


def is_number(value: Any) -> bool:
    """Whether `value`, read from JSON, is a finite number (true and false are not, nor NaN and Infinity, which
    Python's json reads and every figure computed from them would be)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_durations(value: Any) -> bool:
    """Whether `value`, read from JSON, is a list of one or more numbers of 0 or more: a latency job's timed calls
    (none give no statistics, and a negative duration is not one)."""
    return isinstance(value, list) and bool(value) and all(is_number(v) and v >= 0 for v in value)


def _figures(*names: str) -> Callable[[Any], bool]:
    """The check of an object whose fields `names` are each a number of 0 or more where given: a job's startup times
    or GPU memory, which its report carries (a string there was published, and the report refused when read)."""
    return lambda value: (
        isinstance(value, dict)
        and all(value.get(name) is None or (is_number(value[name]) and value[name] >= 0) for name in names)
    )


def _is_folder_name(value: Any) -> bool:
    """Whether `value`, read from JSON, names one folder inside another (a sweep's run id): no path, nor . or .."""
    return isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\0" not in value


FIELD_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda value: isinstance(value, str),
    "a folder name": _is_folder_name,
    "an object": lambda value: isinstance(value, dict),
    "a number": is_number,
    "a non-empty list of durations (numbers, 0 or more)": _is_durations,
    "startup times (load_s and first_call_s: numbers of 0 or more, where given)": _figures("load_s", "first_call_s"),
    "GPU memory figures (numbers of 0 or more, where given)": _figures(*(f.name for f in fields(GpuMemory))),
}


def require_fields(
    path: Path, data: dict[str, Any], fields: Mapping[str, str], optional: Mapping[str, str] | None = None
) -> None:
    """Name `path` as damaged when `data`, the object read from it, lacks any of `fields`, or holds one of them or
    of the `optional` ones it has as another kind than the one named (a key of FIELD_KINDS): hand-edited, say."""
    if missing := [name for name in fields if name not in data]:
        raise damaged(path, f"no {', '.join(map(repr, missing))} field{'s' if len(missing) > 1 else ''}")
    for name, kind in {**fields, **(optional or {})}.items():
        if name in data and not FIELD_KINDS[kind](data[name]):
            raise damaged(path, f"{name!r} is not {kind}")


def damaged(path: Path, why: str) -> OptbenchError:
    """The error for a file optbench wrote that is not as it wrote it (`why`): its fix is to delete it."""
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
