"""Write files whole or not at all: a temporary file beside the target, fsync, then rename."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; a crash leaves the old file or the new one, never half of one."""
    if path.is_dir():
        raise OptbenchError(f"cannot write {path}: it is a folder; give a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OptbenchError(
            f"cannot write {path} ({exc.strerror or exc}): give a path in a folder you can write"
        ) from exc
    finally:
        with contextlib.suppress(OSError):  # gone after the rename; never made when the folder could not be
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())
