"""Budgets (a TOML file of `[[budget]]` tables): the limits a release must meet, every value with its unit.

```toml
[[budget]]
name = "accuracy, every variant"       # optional, shown in the gate's output
variants = ["*"]                       # glob patterns over variant names (default: every variant)
runtimes = ["*"]                       # globs, runtime names (torch-compile) or labels (onnxruntime-cpu-fp32);
                                       # a name or label optbench has no runtime for (options included) is refused
max_accuracy_drop = "1.0 points"       # against the run's reference, in percentage points
min_relative_accuracy = "99%"          # of the reference's accuracy, as MLPerf states its targets

[[budget]]
variants = ["baseline+*+quantize-dynamic"]
batch_size = 1                         # the shape the latency, speedup and memory limits hold at
seq_len = 128
max_p50 = "10 ms"                      # also max_p99; units ms, s, us
min_speedup = "6x"                     # against PyTorch eager FP32 on the CPU, same run
speedup_against = "baseline+onnx/onnxruntime"  # or against this row of the run (optbench report --against)
min_speedup_vs_peer = "1.05x"          # against the run's fastest peer (optimum, torchao) at this shape
peer_max_accuracy_drop = "1.0 points"  # peers that compete, and the most the variant may drop (default 1)
max_memory = "1.5 GB"                  # peak RSS of the benchmark process; KB, MB, GB, KiB, MiB, GiB
max_size = "40 MB"                     # weight files on disk
```
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.configs import check_keys, read_toml, toml_value
from optbench.errors import OptbenchError, did_you_mean
from optbench.peers.speedup import DEFAULT_BUDGET_POINTS
from optbench.relative_speedup import RowChoice
from optbench.runtimes import ENGINES, every_spec, names_of, runs_on, runtime_label


@dataclass(frozen=True)
class Limit:
    """One limit of a budget, in the unit reports use: `max` limits are upper bounds, `min` lower ones."""

    key: str  # the budget key, e.g. "max_p50"
    value: float  # in the report's unit: ms, points, MiB, x, or a fraction for relative accuracy
    text: str  # as the user wrote it, for messages

    @property
    def is_max(self) -> bool:
        return self.key.startswith("max_")


@dataclass(frozen=True)
class Budget:
    """Limits for the reports whose variant and runtime match the patterns, at one shape when needed."""

    name: str
    variants: tuple[str, ...]
    runtimes: tuple[str, ...]
    batch_size: int | None
    seq_len: int | str | None
    limits: tuple[Limit, ...]
    peer_budget_points: float = DEFAULT_BUDGET_POINTS  # the accuracy budget of min_speedup_vs_peer
    speedup_against: RowChoice | None = None  # min_speedup against this row of the run, not the reference


# unit (lower case) -> factor into the report's unit, per kind of quantity
TIME = {"ms": 1.0, "s": 1000.0, "us": 0.001}
SIZE = {"mib": 1.0, "mb": 1e6 / 2**20, "gib": 1024.0, "gb": 1e9 / 2**20, "kib": 1 / 1024, "kb": 1e3 / 2**20}
POINTS = {"points": 1.0, "point": 1.0, "pt": 1.0, "pp": 1.0}
TIMES = {"x": 1.0}
PERCENT = {"%": 0.01}
LIMIT_UNITS: dict[str, tuple[dict[str, float], str]] = {
    "max_accuracy_drop": (POINTS, '"1.0 points"'),
    "min_relative_accuracy": (PERCENT, '"99%"'),
    "max_p50": (TIME, '"10 ms"'),
    "max_p99": (TIME, '"20 ms"'),
    "min_speedup": (TIMES, '"6x"'),
    "min_speedup_vs_peer": (TIMES, '"1.05x"'),
    "max_memory": (SIZE, '"1.5 GB"'),
    "max_size": (SIZE, '"40 MB"'),
}
SHAPED = ("max_p50", "max_p99", "min_speedup", "min_speedup_vs_peer", "max_memory")
BUDGET_KEYS = [
    "name",
    "variants",
    "runtimes",
    "batch_size",
    "seq_len",
    "peer_max_accuracy_drop",
    "speedup_against",
    *LIMIT_UNITS,
]
_GLOB = re.compile(r"[*?[]")  # what makes fnmatch read a pattern as more than one name
_AMOUNT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*(.*?)\s*$")


def load_budgets(path: Path) -> list[Budget]:
    """Every `[[budget]]` of the file; any problem is an error naming the budget, the key and the fix."""
    table = read_toml(path, "budget file")
    if "budget" not in table and {"steps", "chains", "bench", "model", "dataset"} & table.keys():
        raise OptbenchError(
            f"{path} is a recipe, not a budget file: `optbench run {path}` measures it; `--budget` takes [[budget]] "
            "tables (e.g. recipes/budgets.toml)"
        )
    check_keys(table, ["budget"], f"budget file {path}")
    entries = table.get("budget")
    if isinstance(entries, dict):
        raise OptbenchError(
            f"budget file {path}: [budget] is one table, not a list of budgets: write [[budget]], with two brackets, "
            "above each budget"
        )
    if not isinstance(entries, list) or not entries:
        raise OptbenchError(f'budget file {path} has no budgets: add [[budget]] tables, e.g. max_p50 = "10 ms"')
    if not all(isinstance(entry, dict) for entry in entries):
        raise OptbenchError(f'budget file {path}: budget must be [[budget]] tables, e.g. [[budget]] max_p50 = "10 ms"')
    return [parse_budget(entry, _where(path, i, entry)) for i, entry in enumerate(entries)]


def _where(path: Path, index: int, entry: dict[str, Any]) -> str:
    """`budgets.toml [[budget]] #2 (latency)`: a budget in errors, by its place and, where it has one, its name (as a
    recipe's steps are), so that one of many is found without counting tables."""
    name = entry.get("name")
    named = f" ({name})" if isinstance(name, str) and name.strip() else ""
    return f"{path} [[budget]] #{index + 1}{named}"


def parse_budget(entry: dict[str, Any], where: str) -> Budget:
    """One `[[budget]]` table; `where` names it in errors."""
    check_keys(entry, BUDGET_KEYS, where)
    limits = tuple(parse_limit(key, entry[key], where) for key in LIMIT_UNITS if key in entry)
    if not limits:
        raise OptbenchError(f"{where} sets no limit: add one of {list(LIMIT_UNITS)}")
    name = entry.get("name", where.rsplit(" ", 1)[-1])
    if not isinstance(name, str) or not name.strip():  # name = 3 was shown as "3", name = ["a"] as "['a']"
        raise OptbenchError(
            f'{where} name = {toml_value(name)}: give the text the gate shows for it, e.g. name = "latency"'
        )
    batch_size, seq_len = entry.get("batch_size"), entry.get("seq_len")
    shaped = [limit.key for limit in limits if limit.key in SHAPED]
    if shaped and (batch_size is None or seq_len is None):
        raise OptbenchError(f'{where}: {shaped} hold at one shape: add batch_size = 1 and seq_len = 128 (or "data")')
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise OptbenchError(f"{where} batch_size = {toml_value(batch_size)}: give a positive integer")
    if (
        seq_len is not None
        and seq_len != "data"
        and (not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1)
    ):
        raise OptbenchError(f'{where} seq_len = {toml_value(seq_len)}: give a positive integer or "data"')
    peer_budget = entry.get("peer_max_accuracy_drop")
    if peer_budget is not None and "min_speedup_vs_peer" not in entry:  # alone it limits nothing, silently
        raise OptbenchError(
            f"{where} peer_max_accuracy_drop = {toml_value(peer_budget)}: it chooses the peers min_speedup_vs_peer "
            "is measured against, so it goes beside a min_speedup_vs_peer; to limit a variant's own drop, use "
            "max_accuracy_drop"
        )
    against = entry.get("speedup_against")
    if against is not None and (not isinstance(against, str) or "min_speedup" not in entry):
        raise OptbenchError(
            f"{where} speedup_against = {toml_value(against)}: it names the row min_speedup is measured against, as a "
            'string (speedup_against = "baseline/torch/cuda/fp32") beside a min_speedup'
        )
    return Budget(
        name=name,
        variants=_patterns(entry, "variants", where),
        runtimes=_runtimes(entry, where),
        batch_size=batch_size,
        seq_len=seq_len,
        limits=limits,
        peer_budget_points=DEFAULT_BUDGET_POINTS
        if peer_budget is None
        else parse_amount("peer_max_accuracy_drop", peer_budget, POINTS, '"1.0 points"', where),
        speedup_against=None if against is None else _row(against, where),
    )


def _row(text: str, where: str) -> RowChoice:
    """speedup_against's row; a runtime, device or precision optbench has none of is refused, since the row could
    name no row of a run and min_speedup would fail as if the model had regressed."""
    try:
        return RowChoice.parse(text)
    except OptbenchError as exc:
        raise OptbenchError(f"{where} speedup_against: {exc}") from exc


def _patterns(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, ["*"])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise OptbenchError(
            f'{where} {key} = {toml_value(value)}: give a list of names or patterns, e.g. ["baseline+*"]'
        )
    return tuple(value)


def _runtimes(entry: dict[str, Any], where: str) -> tuple[str, ...]:
    """The budget's runtime patterns; one that is no glob must be a runtime's name, its name with options as the
    report's runtime column shows it (`torch-compile`), or its label, options included, since it could match no
    report and its every check would fail as if the model had regressed."""
    patterns = _patterns(entry, "runtimes", where)
    labels = _labels()
    for pattern in patterns:
        parts = pattern.split("-", 3)  # runtime, device, precision, and the options' tag
        base = "-".join(parts[:3])
        if _GLOB.search(pattern) or pattern in _engines() or pattern in labels.get(base, ()):
            continue
        engine = names_of(pattern)[1]  # the runtime with those options, as RuntimeSpec.engine
        if base in labels and (places := runs_on(engine)):  # options it runs with on other devices or precisions
            elsewhere = [runtime_label(engine, *place) for place in places]
            raise OptbenchError(
                f"{where} runtimes: {pattern!r}: {engine} does not run on {'/'.join(parts[1:3])}, only on "
                f"{', '.join('/'.join(place) for place in places)}: give one of {elsewhere}, or one of {base}'s own "
                f"labels{did_you_mean([pattern], elsewhere)}"
            )
        if base in labels:  # a runtime optbench has, with options it does not run it with
            raise OptbenchError(
                f"{where} runtimes: {pattern!r}: {base} has no options {parts[3]!r}: give one of {labels[base]}, "
                f'or a glob such as "{base}-*"{did_you_mean([pattern], labels[base])}'
            )
        known = [*sorted(ENGINES), *("-".join([label, *parts[3:]]) for label in labels)]
        raise OptbenchError(
            f"{where} runtimes: {pattern!r} names no runtime: give one of {sorted(ENGINES)}, a label RUNTIME-DEVICE-"
            f"PRECISION[-OPTIONS] as the gate's lines show it (one of {list(labels)}, with the runtime's options after "
            f'it, e.g. torch-cpu-fp32-compile), or a glob such as "onnxruntime-*"'
            f"{did_you_mean([pattern], known)}"
        )
    return patterns


@functools.cache
def _engines() -> set[str]:
    """Every runtime as the report's runtime column names it: its engine, with its options' tag (`torch-compile`)."""
    return {spec.engine for spec in every_spec()}


@functools.cache
def _labels() -> dict[str, list[str]]:
    """Every runtime's labels (`onnxruntime-cpu-fp32-opt-basic`) by its label without options
    (`onnxruntime-cpu-fp32`): each engine on the devices and at the precisions it runs."""
    labels: dict[str, list[str]] = {}
    for spec in every_spec():
        labels.setdefault(runtime_label(spec.name, spec.device, spec.precision), []).append(spec.label)
    return labels


def parse_limit(key: str, value: Any, where: str) -> Limit:
    """A limit's value with its unit, converted to the unit reports use."""
    units, example = LIMIT_UNITS[key]
    return Limit(key, parse_amount(key, value, units, example, where), value)


def written_unit(text: str) -> str:
    """The unit a limit was written with (`"40 MB"` -> `"MB"`), as written."""
    match = _AMOUNT.match(text)
    return match.group(2) if match else ""


def parse_amount(key: str, value: Any, units: dict[str, float], example: str, where: str) -> float:
    """A number with one of `units` (`value` as written), in the unit reports use."""
    if not isinstance(value, str):
        raise OptbenchError(
            f"{where} {key} = {toml_value(value)} has no unit: write it with one, e.g. {key} = {example}"
        )
    match = _AMOUNT.match(value)
    if match is None:
        raise OptbenchError(f"{where} {key} = {toml_value(value)} is not a number with a unit: e.g. {key} = {example}")
    number, written, rest = float(match.group(1)), match.group(2), match.group(3)
    unit = written.lower()
    if not math.isfinite(number):  # 1e999 reads as infinity: a limit every figure passes (or none)
        raise OptbenchError(f"{where} {key} = {toml_value(value)} is not a finite number: e.g. {key} = {example}")
    if number < 0:
        raise OptbenchError(
            f"{where} {key} = {toml_value(value)} is negative: a limit is 0 or more, e.g. {key} = {example}"
        )
    if rest or unit not in units:
        raise OptbenchError(
            f"{where} {key} = {toml_value(value)}: the unit must be one of {sorted(units)}, e.g. {key} = {example}"
        )
    if units is SIZE and written.endswith("b"):  # SI writes bits with a small b: 40 Mb is 5 MB
        raise OptbenchError(
            f"{where} {key} = {toml_value(value)}: {written} reads as {written[:-1]}bits, and a size is in bytes: "
            f'write {key} = "{match.group(1)} {written[0].upper()}{written[1:-1]}B"'
        )
    return number * units[unit]
