"""Reading back the JSON records optbench wrote (a sweep's job records, claims, its own meta): each field checked
for the kind it was written as, and a record that is not as written (hand-edited, cut short, another tool's) named
as damaged, with deleting it as the fix."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError
from optbench.measure import GpuMemory


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
