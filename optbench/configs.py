"""Frozen dataclass configs from TOML/JSON tables, with clear errors for unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from optbench.errors import OptbenchError, did_you_mean

T = TypeVar("T")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # the integers TOML has


def toml_value(value: Any) -> str:
    """`value` as a recipe writes it in TOML (true, "fp16", [1, 2], {a = 1}), for the messages that quote a setting:
    Python's repr (True, 'fp16') is not what the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(key)} = {toml_value(item)}" for key, item in value.items()) + "}"
    if hasattr(value, "isoformat"):  # TOML's dates and times
        return value.isoformat()
    return str(value)


def _toml_key(key: str) -> str:
    """A table key as TOML writes it: bare when it may be, quoted otherwise."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def config_from_dict(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build `cls` from `table`; `where` names the table in error messages (e.g. `[dataset]`, or
    `[[steps]] #2 (distill)`), those of the config's own checks too (see `settings_of`)."""
    hints = typing.get_type_hints(cls)
    check_keys(table, [f.name for f in dataclasses.fields(cls) if f.init], where)  # type: ignore[arg-type]
    values = {}
    for key, value in table.items():
        expected = hints[key]
        if not _finite(value):
            raise OptbenchError(
                f"{where} {key} = {toml_value(value)}: give a finite number (nan and inf are not settings)"
            )
        if not _matches(value, expected):
            wanted = _describe(expected) + _as_list(value, expected)
            raise OptbenchError(f"{where} {key} = {toml_value(value)} {_problem(value, expected)}: expected {wanted}")
        values[key] = tuple(value) if isinstance(value, list) and _is_tuple(expected) else value
    try:
        with settings_of(where):
            return cls(**values)
    except TypeError as exc:
        raise OptbenchError(f"{where}: {exc}") from exc


@contextmanager
def settings_of(where: str) -> Iterator[None]:
    """Name `where`, the place a recipe wrote a config's settings, in the errors its checks raise within: the
    checks name the key and value only, since one config is written in several places (a step in [[steps]] or
    in [[chains]], a finetune step or [model.finetune])."""
    try:
        yield
    except OptbenchError as exc:
        raise OptbenchError(f"{where} {exc}") from exc


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML table in `path`; `what` names the file in errors (e.g. "recipe", "budget file")."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM, as Windows editors write, read
    except OSError as exc:
        raise OptbenchError(f"cannot read {what} {path}: {exc.strerror}; check the path") from exc
    except UnicodeDecodeError as exc:
        raise OptbenchError(f"{what} {path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OptbenchError(f"{what} {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per nested array or inline table
        raise OptbenchError(f"{what} {path} is not valid TOML: its arrays or tables nest too deeply to read") from exc
    for where, value in _integers(table, ""):
        if not INT64_MIN <= value <= INT64_MAX:
            raise OptbenchError(
                f"{what} {path} is not valid TOML: {where} = {value} is beyond TOML's 64-bit integers "
                f"({INT64_MIN} to {INT64_MAX}): give a number within them"
            )
    return table


def _integers(value: Any, where: str) -> Iterator[tuple[str, int]]:
    """Every integer in a TOML value, with where it is: `model.finetune.seed`, `bench.batch_sizes #2`. TOML's
    integers are 64-bit and a decoder must refuse others; tomllib reads any size, and a seed beyond 64 bits
    failed in the step with a traceback, a `rounds` of 20 digits hung the dry run."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _integers(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _integers(item, f"{where} #{i + 1}")
    elif isinstance(value, int) and not isinstance(value, bool):
        yield where, value


def recipe_path(base: Path, text: str, setting: str) -> str:
    """A path a recipe gives in `setting` (a checkpoint, a dataset, a distill student), absolute: a relative one taken
    from `base`, the recipe's folder, and a leading `~` as the user's home folder, as a shell reads it (it was taken as
    a folder named `~` in the recipe's); a `~` or `~name` that names no home folder here is refused (it was pathlib's
    RuntimeError). An empty one is refused, as the command line's are: it named the recipe's folder, refused as a
    model or a dataset with no word of the "" written."""
    if not text.strip():
        raise OptbenchError(
            f"{setting} = {toml_value(text)}: an empty path names no file or folder: give one "
            "(. for the recipe's folder)"
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError as exc:  # pathlib's traceback: "Could not determine home directory."
        home = Path(text).parts[0]
        raise OptbenchError(
            f"{setting} = {toml_value(text)}: {home} names no home folder here (no such user, or HOME unset for a user "
            "with no entry in the password file): give the path without ~"
        ) from exc
    return str((base / path).resolve())


def check_keys(table: dict[str, Any], known: list[str], where: str) -> None:
    """Refuse keys a table does not know, naming the ones it does (a typo must not pass silently)."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise OptbenchError(
            f"unknown key(s) {unknown} in {where}: known keys are {known}{did_you_mean(unknown, known)}"
        )


def check_seed(seed: int) -> None:
    """Refuse a negative seed when the config is built: numpy's generators take none, so the step that draws
    with it would fail only when it ran."""
    if seed < 0:
        raise OptbenchError(f"seed={seed}: use 0 or more")


def check_no_repeats(key: str, values: Sequence[Any]) -> None:
    """Refuse a list that names a value more than once, e.g. a shape listed twice: the repeat adds nothing, and
    would measure or build the same thing twice under another name."""
    repeated = [value for value, count in Counter(values).items() if count > 1]  # in one pass: lists may be long
    if repeated:
        raise OptbenchError(f"{key} lists {toml_value(repeated)} more than once: drop the repeats")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config's fields as plain JSON/TOML values (tuples become lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()
    }


def _finite(value: Any) -> bool:
    """No nan or inf in `value`, nor in the lists and tables it holds (TOML can write both)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if origin in (tuple, list):
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _problem(value: Any, expected: Any) -> str:
    """What is wrong with a value `_matches` refused: a string where the key takes strings from a fixed set (level
    = "O4") is not one of the choices, which "the wrong type" would have told as if a string were the mistake."""
    arms = (*typing.get_args(expected), expected)
    choices = [c for arm in arms if typing.get_origin(arm) is typing.Literal for c in typing.get_args(arm)]
    if any(type(choice) is type(value) for choice in choices):
        return "is not one of the choices"
    return "has the wrong type"


def _is_tuple(expected: Any) -> bool:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return any(_is_tuple(arm) for arm in typing.get_args(expected))
    return typing.get_origin(expected) is tuple


# the types a TOML value has, in TOML's words: a user who wrote fuse = "no" was told "expected bool"
TOML_WORDS = {
    bool: ("true or false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _describe(expected: Any, plural: bool = False) -> str:
    """The values `expected` takes, as a recipe writes them: "an integer", "a list of integers or 'data'"."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(expected)
        described = " or ".join(_describe(arm, plural) for arm in arms if arm is not type(None))
        return f"{described}, or no value (leave the key out)" if type(None) in arms else described
    if origin is typing.Literal:
        return " or ".join(toml_value(a) for a in typing.get_args(expected))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        return f"a list of {_describe(args[0], plural=True)}" if args else "a list"
    if expected in TOML_WORDS:
        return TOML_WORDS[expected][plural]
    return getattr(expected, "__name__", str(expected))


def _as_list(value: Any, expected: Any) -> str:
    """The fix for one value where a list is wanted (batch_sizes = 1): `[1]`, when that list would be taken."""
    lists = [arm for arm in (*typing.get_args(expected), expected) if typing.get_origin(arm) in (tuple, list)]
    if any(_matches([value], arm) for arm in lists):
        return f": write it as a list, [{json.dumps(value)}]"
    return ""
