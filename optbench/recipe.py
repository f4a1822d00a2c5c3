"""Recipe files (TOML): the model, the dataset, the steps in order, and the benchmark matrix."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from optbench.bench import BenchConfig
from optbench.configs import check_keys, config_from_dict
from optbench.data import BUILTIN, DatasetConfig, parse_seq_len
from optbench.errors import OptbenchError
from optbench.measure import Timing
from optbench.runtimes import ENGINES, RuntimeSpec
from optbench.steps import parse_step
from optbench.steps.finetune import FinetuneConfig

DEFAULT_MODEL = "default"
TOP_LEVEL_KEYS = ["name", "description", "model", "dataset", "steps", "bench"]
MODEL_KEYS = ["checkpoint", "finetune"]
BENCH_KEYS = [
    "runtimes",
    "batch_sizes",
    "seq_lens",
    "threads",
    "warmup",
    "min_iters",
    "min_seconds",
    "max_seconds",
    "max_batches",
    "job_timeout_s",
]
RUNTIME_KEYS = ["name", "device", "precision", "options"]


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. `checkpoint` is `default` or a resolved folder path."""

    name: str
    description: str
    checkpoint: str
    finetune: FinetuneConfig
    dataset: DatasetConfig
    steps: tuple[Any, ...]
    bench: BenchConfig


def load_recipe(path: Path) -> Recipe:
    """Parse and check a recipe file; relative paths in it are taken from the recipe's folder."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OptbenchError(f"cannot read recipe {path}: {exc.strerror}; check the path") from exc
    except UnicodeDecodeError as exc:
        raise OptbenchError(f"recipe {path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OptbenchError(f"recipe {path} is not valid TOML: {exc}") from exc
    return parse_recipe(table, base=path.parent, default_name=path.stem)


def parse_recipe(table: dict[str, Any], *, base: Path, default_name: str) -> Recipe:
    check_keys(table, TOP_LEVEL_KEYS, "the recipe")
    name = table.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise OptbenchError(
            f"recipe name {name!r} must be letters, digits, '.', '_' or '-' (it names a results folder)"
        )
    model = _table(table, "model")
    check_keys(model, MODEL_KEYS, "[model]")
    checkpoint = model.get("checkpoint", DEFAULT_MODEL)
    if not isinstance(checkpoint, str):
        raise OptbenchError(f'[model] checkpoint = {checkpoint!r}: give "default" or a folder path')
    if checkpoint != DEFAULT_MODEL:
        checkpoint = str((base / checkpoint).resolve())
    finetune = config_from_dict(FinetuneConfig, _table(model, "finetune"), "[model.finetune]")
    dataset_table = _table(table, "dataset")
    source = dataset_table.get("source", BUILTIN)
    if isinstance(source, str) and source != BUILTIN:
        dataset_table = {**dataset_table, "source": str((base / source).resolve())}
    dataset = config_from_dict(DatasetConfig, dataset_table, "[dataset]")
    steps = table.get("steps", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise OptbenchError('steps must be an array of tables: [[steps]] name = "..."')
    configs = tuple(parse_step(s, f"[[steps]] #{i + 1}") for i, s in enumerate(steps))
    bench = parse_bench(_table(table, "bench"))
    formats = {"hf", *(c.output_format for c in configs)}
    for spec in bench.runtimes:
        if not formats & set(ENGINES[spec.name].formats):
            raise OptbenchError(
                f"runtime {spec.name} runs {list(ENGINES[spec.name].formats)} models and this recipe makes none: "
                "add the step that makes one (e.g. an onnx step for onnxruntime), or drop the runtime"
            )
    return Recipe(
        name=name,
        description=str(table.get("description", "")),
        checkpoint=checkpoint,
        finetune=finetune,
        dataset=dataset,
        steps=configs,
        bench=bench,
    )


def parse_bench(table: dict[str, Any]) -> BenchConfig:
    """The [bench] table: runtimes as names or tables, shapes, threads and timing knobs."""
    check_keys(table, BENCH_KEYS, "[bench]")
    timing_keys = ("warmup", "min_iters", "min_seconds", "max_seconds")
    timing = config_from_dict(Timing, {k: table[k] for k in timing_keys if k in table}, "[bench]")
    rest = {k: v for k, v in table.items() if k not in (*timing_keys, "runtimes", "seq_lens")}
    config = config_from_dict(BenchConfig, rest, "[bench]")
    runtimes = table.get("runtimes", ["torch"])
    seq_lens = table.get("seq_lens", list(config.seq_lens))
    if not isinstance(runtimes, list) or not isinstance(seq_lens, list):
        raise OptbenchError(
            '[bench] runtimes and seq_lens must be lists, e.g. runtimes = ["torch"], seq_lens = [128, "data"]'
        )
    return replace(
        config,
        runtimes=tuple(_runtime(r) for r in runtimes),
        seq_lens=tuple(parse_seq_len(s) for s in seq_lens),
        timing=timing,
    )


def _runtime(entry: Any) -> RuntimeSpec:
    if isinstance(entry, str):
        return RuntimeSpec(entry)
    if isinstance(entry, dict):
        check_keys(entry, RUNTIME_KEYS, "[bench] runtimes entry")
        if "name" not in entry:
            raise OptbenchError('a [bench] runtimes entry needs a name, e.g. {name = "torch", device = "cuda"}')
        if not isinstance(entry.get("options", {}), dict):
            raise OptbenchError(
                f"[bench] runtimes entry {entry['name']!r}: options must be a table, e.g. options = {{}}"
            )
        return RuntimeSpec.from_dict(entry)
    raise OptbenchError(f"[bench] runtimes entry {entry!r}: give a name or a table {{name = ..., device = ...}}")


def _table(table: dict[str, Any], key: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise OptbenchError(f"[{key}] must be a table, not {value!r}")
    return value
