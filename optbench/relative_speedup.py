"""Each row's speedup over one chosen row of the same run, machine and shape.

`speedup_p50` is always against the run's reference, PyTorch eager FP32 on the CPU. To read a GPU run
against PyTorch on CUDA, or a quantized ONNX model against its FP32 export, choose that row instead:
`baseline/torch/cuda/fp32` or `baseline+onnx/onnxruntime` (VARIANT[/RUNTIME[/DEVICE[/PRECISION]]],
the table's variant, runtime, device and precision_mode columns; parts left out match anything).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from optbench.errors import OptbenchError, did_you_mean
from optbench.measure import ratio_interval
from optbench.runtimes import DEVICES, ENGINES, PRECISIONS, every_spec, runs_on

KEY_COLUMNS = ("variant", "runtime", "device", "precision_mode")
GROUP = ["recipe", "run_id", "machine", "batch_size", "seq_len"]
# a row's parts after RUNTIME, and the names each may take
_PART_NAMES = (("device", DEVICES), ("precision", PRECISIONS))


@dataclass(frozen=True)
class RowChoice:
    """Which row every other row is compared with: a variant, and optionally its runtime, device, precision."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RowChoice:
        """The row `text` names; a runtime (options included), device or precision optbench has none of is
        refused, since the row could name no row of any run."""
        parts = tuple(part.strip() for part in text.split("/"))
        if not 1 <= len(parts) <= len(KEY_COLUMNS) or not all(parts):
            raise OptbenchError(
                f"cannot read the row {text!r}: write VARIANT[/RUNTIME[/DEVICE[/PRECISION]]], "
                "e.g. baseline/torch/cuda/fp32"
            )
        if parts[0] in _runtime_labels():  # `--against torch/cpu/fp16` read 'cpu' as its runtime
            raise OptbenchError(
                f"cannot read the row {text!r}: it starts with a runtime, and a row starts with its variant: write "
                f"VARIANT/{text}, e.g. baseline/{text}"
            )
        rest = parts[1:]
        if rest:
            _check_runtime(text, rest[0])
        for part, (what, known) in zip(rest[1:], _PART_NAMES, strict=False):
            if part not in known:
                raise OptbenchError(
                    f"cannot read the row {text!r}: {part!r} is no {what}: give one of {sorted(known)}"
                    f"{did_you_mean([part], known)}"
                )
        if len(rest) > 1:
            _check_runs_on(text, rest[0], tuple(rest[1:]))
        return cls(parts)

    @property
    def text(self) -> str:
        return "/".join(self.parts)

    def names(self, key: tuple[str, ...]) -> bool:
        """Whether this choice names the row with this (variant, runtime, device, precision)."""
        return all(str(value) == part for value, part in zip(key, self.parts, strict=False))

    def matches(self, frame: pd.DataFrame) -> pd.Series:
        """Which rows of `frame` this choice names."""
        return pd.Series([self.names(key) for key in _keys(frame)], index=frame.index, dtype=bool)


def _runtime_labels() -> set[str]:
    """Every runtime's name and label as rows write them (torch, torch-compile, onnxruntime-trt, ...)."""
    return set(ENGINES) | {spec.engine for spec in every_spec()}


def _check_runtime(text: str, runtime: str) -> None:
    """Refuse a row's runtime that is no engine's name with options it runs with (the table's runtime column:
    `torch`, `torch-compile`), naming the known ones and the closest."""
    name = runtime.split("-")[0]
    if name not in ENGINES:
        raise OptbenchError(
            f"cannot read the row {text!r}: {runtime!r} is no runtime (a name, with its options after it: "
            f"torch-compile): give one of {sorted(ENGINES)}{did_you_mean([name], ENGINES)}"
        )
    known = list(dict.fromkeys(spec.engine for spec in every_spec() if spec.name == name))
    if runtime not in known:
        raise OptbenchError(
            f"cannot read the row {text!r}: {runtime!r} is no {name} runtime: give one of {known}"
            f"{did_you_mean([runtime], known)}"
        )


def _check_runs_on(text: str, runtime: str, where: tuple[str, ...]) -> None:
    """Refuse a runtime named with a device (and precision) it does not run on (`torch-cuda-graphs/cpu`): the row
    could name no row of any run."""
    places = sorted({place[: len(where)] for place in runs_on(runtime)})
    if where not in places:
        raise OptbenchError(
            f"cannot read the row {text!r}: {runtime} does not run on {'/'.join(where)}: it runs on "
            f"{', '.join('/'.join(place) for place in places)}"
        )


def _keys(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    return list(frame[list(KEY_COLUMNS)].itertuples(index=False, name=None))


def row_names(frame: pd.DataFrame) -> list[str]:
    """Every row of `frame` written the way a RowChoice reads it, once each."""
    return sorted({"/".join(str(v) for v in key) for key in _keys(frame)})


def require_row(frame: pd.DataFrame, choice: RowChoice, where: str) -> None:
    """Refuse a choice that names no row of `frame` (`where` says who gave it), naming the rows and the closest."""
    if choice.matches(frame).any():
        return
    written = {"/".join(str(v) for v in key[: len(choice.parts)]) for key in _keys(frame)}  # as much as it gave
    raise OptbenchError(
        f"{where} {choice.text}: no row of these reports is that; give one of {row_names(frame)}"
        f"{did_you_mean([choice.text], written)}"
    )


def add_speedup_vs(frame: pd.DataFrame, choice: RowChoice) -> pd.DataFrame:
    """`frame` with `speedup_vs` (the chosen row's p50 over each row's, in the same run, machine and shape),
    its 95% interval `speedup_vs_ci_low`/`_high` (what both p50 intervals allow; [1, 1] for the chosen row
    itself) and `speedup_vs_row` (the chosen row's full name), filled in where that group has the chosen row."""
    frame = frame.copy()
    for column in ("speedup_vs", "speedup_vs_ci_low", "speedup_vs_ci_high"):
        frame[column] = float("nan")
    frame["speedup_vs_row"] = pd.Series(None, index=frame.index, dtype=object)
    chosen = choice.matches(frame)
    for _, group in frame.groupby(GROUP, sort=False, dropna=False):
        bar = group[chosen[group.index]]
        if len(bar) > 1:
            raise OptbenchError(
                f"the row {choice.text!r} names {len(bar)} rows of one run and shape: {row_names(bar)}; "
                "give more of VARIANT/RUNTIME/DEVICE/PRECISION"
            )
        if len(bar) == 1:
            (theirs,) = bar.to_dict("records")
            frame.loc[group.index, "speedup_vs"] = theirs["p50_ms"] / group["p50_ms"]
            low, high = ratio_interval(
                (theirs["p50_ci_low"], theirs["p50_ci_high"]), (group["p50_ci_low"], group["p50_ci_high"])
            )
            frame.loc[group.index, "speedup_vs_ci_low"] = low
            frame.loc[group.index, "speedup_vs_ci_high"] = high
            # the chosen row over itself is one p50 over the same p50: 1 exactly, not its interval taken twice
            frame.loc[bar.index, ["speedup_vs_ci_low", "speedup_vs_ci_high"]] = 1.0
            frame.loc[group.index, "speedup_vs_row"] = row_names(bar)[0]
    return frame
