"""Recipe files (TOML): the model, the dataset, the steps in order, and the benchmark matrix.

The steps form one chain (`[[steps]]`) or several (`[[chains]]`, each with its own `[[chains.steps]]`);
every chain starts from the baseline, and every step's output is a variant the benchmark measures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.bench import BenchConfig
from optbench.configs import (
    check_keys,
    config_from_dict,
    config_to_dict,
    read_toml,
    recipe_path,
    settings_of,
    toml_value,
)
from optbench.data import BUILTIN, RUN_OPTIONS, DatasetConfig, check_dataset_path
from optbench.data_files import READ_FIXES
from optbench.encoding import parse_seq_len
from optbench.errors import OptbenchError, listed
from optbench.formats import FORMAT_NAMES, in_words, step_input_refusal
from optbench.hf_config import check_model_folder
from optbench.measure import Timing
from optbench.runtimes import ENGINES, RuntimeSpec, declines_precision, runs
from optbench.steps import LABEL, LABEL_RULE, RecipeStep, parse_step
from optbench.steps.finetune import FinetuneConfig

if TYPE_CHECKING:
    from optbench.report import Report

DEFAULT_MODEL = "default"
TOP_LEVEL_KEYS = ["name", "description", "model", "dataset", "steps", "chains", "bench"]
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
    "rounds",
    "aa_check",
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
    chains: tuple[tuple[RecipeStep, ...], ...]
    bench: BenchConfig

    def steps(self) -> list[RecipeStep]:
        """Every step of every chain, in order."""
        return [step for chain in self.chains for step in chain]


def load_recipe(path: Path) -> Recipe:
    """Parse and check a recipe file; relative paths in it are taken from the recipe's folder."""
    _check_recipe_path(path)
    table = read_toml(path, "recipe")
    if "budget" in table:
        raise OptbenchError(
            f"{path} is a budget file ([[budget]] tables), not a recipe: check a run against it with "
            f"`optbench gate --budget {path} RESULTS`; `optbench run` takes a recipe (e.g. recipes/baseline.toml)"
        )
    return parse_recipe(table, base=path.parent, default_name=path.stem)


def _check_recipe_path(path: Path) -> None:
    """Refuse, with what to give instead, a model folder, a dataset file or a folder of recipes given as the recipe:
    what a user new to recipes tries first (`optbench run ./my-model`). Read as TOML, each was "Is a directory; check
    the path" or "not valid TOML", which said nothing of --model, --dataset or recipes."""
    example = "recipes/export-onnx.toml"
    if (path / "config.json").is_file():
        raise OptbenchError(
            f"{path} is a model folder, not a recipe: run a recipe on it with `optbench run RECIPE --model {path}` "
            f"(e.g. {example})"
        )
    report = _a_report_in(path)
    if report is not None:
        raise OptbenchError(
            f"{path} holds optbench results (recipe {report.recipe!r}, run {report.run_id}), not a recipe: read them "
            f"with `optbench report {path}`, or give the recipe that made them (e.g. recipes/{report.recipe}.toml)"
        )
    if path.is_dir():
        recipes = sorted(p.name for p in path.glob("*.toml") if not _is_budget_file(p))
        choice = f"a recipe file (.toml), e.g. {example}"
        if recipes:
            choice = f"one of its recipe files, {listed(recipes, most=5)}"
        raise OptbenchError(f"recipe {path} is a folder: give {choice}")
    if path.is_file() and path.suffix.lower() in READ_FIXES:
        raise OptbenchError(
            f"{path} is a dataset file, not a recipe: run a recipe on it with `optbench run RECIPE --dataset {path}` "
            f"(e.g. {example}; --text-column and --label-column name its columns)"
        )


def _a_report_in(path: Path) -> Report | None:
    """The report `path` is, or the first of a run folder's; None for anything else (or a report it cannot read)."""
    from optbench.report import read_report

    files = sorted(path.glob("*.json")) if path.is_dir() else [path] if path.suffix.lower() == ".json" else []
    for file in files:
        try:
            report = read_report(file)
        except OptbenchError:
            continue
        if report is not None:
            return report
    return None


def _is_budget_file(path: Path) -> bool:
    """Whether a .toml file holds [[budget]] tables (optbench gate's), not a recipe; False where it cannot be read."""
    try:
        return "budget" in read_toml(path, "recipe")
    except OptbenchError:
        return False


def parse_recipe(table: dict[str, Any], *, base: Path, default_name: str) -> Recipe:
    check_keys(table, TOP_LEVEL_KEYS, "the recipe")
    name = table.get("name", default_name)
    if not isinstance(name, str) or not LABEL.fullmatch(name):
        raise _bad_name(name, named="name" in table)
    description = table.get("description", "")
    if not isinstance(description, str):  # it was turned into one: description = 3 read as "3"
        raise OptbenchError(
            f"recipe description = {toml_value(description)} has the wrong type: expected a string, e.g. "
            'description = "..."'
        )
    model = _table(table, "model")
    check_keys(model, MODEL_KEYS, "[model]")
    checkpoint = model.get("checkpoint", DEFAULT_MODEL)
    if not isinstance(checkpoint, str):
        raise OptbenchError(f'[model] checkpoint = {toml_value(checkpoint)}: give "default" or a folder path')
    if checkpoint != DEFAULT_MODEL:
        checkpoint = recipe_path(base, checkpoint, "[model] checkpoint")
    finetune = config_from_dict(FinetuneConfig, _table(model, "finetune", "model.finetune"), "[model.finetune]")
    dataset_table = _table(table, "dataset")
    source = dataset_table.get("source", BUILTIN)
    if isinstance(source, str) and source != BUILTIN:
        dataset_table = {**dataset_table, "source": recipe_path(base, source, "[dataset] source")}
    dataset = config_from_dict(DatasetConfig, dataset_table, "[dataset]")
    bench = parse_bench(_table(table, "bench"))
    bench = replace(
        bench,
        runtimes=tuple(ENGINES[s.name].for_bench(s, bench.shapes(), dataset.max_length) for s in bench.runtimes),
    )
    chains = tuple(
        tuple(_for_bench(_resolved(step, base), bench, dataset.max_length) for step in chain)
        for chain in _chains(table)
    )
    _check_step_order(chains)
    _check_variant_names(chains)
    formats = {"hf", *(step.config.output_format for chain in chains for step in chain)}
    for spec in bench.runtimes:
        if not formats & set(ENGINES[spec.name].formats):
            raise OptbenchError(
                f"runtime {spec.name} runs {in_words(ENGINES[spec.name].formats)} and this recipe makes none: "
                "add the step that makes one (e.g. an onnx step for onnxruntime), or drop the runtime"
            )
    _check_chain_ends_run(chains, bench)
    return Recipe(
        name=name,
        description=description,
        checkpoint=checkpoint,
        finetune=finetune,
        dataset=dataset,
        chains=chains,
        bench=bench,
    )


def _check_step_order(chains: tuple[tuple[RecipeStep, ...], ...]) -> None:
    """Refuse a step whose input is not the format its place in the chain gives it (the chain starts from the
    Hugging Face checkpoint), a model that is not FP32 when it quantizes (`quantizes`: it would refuse it;
    see `_output_precision`), or a model an earlier step's settings make that the step's `refuse_after` rules out,
    when the recipe is read rather than after the steps before it have run."""
    for chain in chains:
        made, reduced_by = "hf", None  # reduced_by: the step that made the model INT8 or FP16, if one did
        for index, (before, step) in enumerate(zip((None, *chain), chain, strict=False)):
            if before is not None and getattr(before.config, "ends_chain", False):
                raise OptbenchError(
                    f"the chain {chain_name(chain)}: nothing may follow {before.shown} ({before.config.ends_chain}): "
                    f"start another chain for {step.shown}"
                )
            refusal = step_input_refusal(step.config, made, step.shown)
            if refusal is not None:
                raise OptbenchError(f"the chain {chain_name(chain)}: {refusal}")
            refuse_after = getattr(step.config, "refuse_after", None)  # what an earlier step's settings rule out
            for earlier in chain[:index] if refuse_after is not None else ():
                if (why := refuse_after(earlier.config)) is not None:
                    raise OptbenchError(
                        f"the chain {chain_name(chain)}: {step.shown} cannot follow {earlier.shown}: {why}"
                    )
            if getattr(step.config, "quantizes", False) and reduced_by is not None:
                precision = _output_precision(reduced_by.config)
                raise OptbenchError(
                    f"the chain {chain_name(chain)}: {step.shown} quantizes an FP32 model and {reduced_by.shown} "
                    f"made this one {precision.upper()} already: quantize the FP32 export instead "
                    + (
                        "(one quantize step per chain)"
                        if precision == "int8"
                        else f'(precision = "fp32"), in a chain of its own to keep the {precision.upper()} one'
                    )
                )
            made = step.config.output_format
            reduced_by = step if _output_precision(step.config) != "fp32" else reduced_by


def _output_precision(config: Any) -> str:
    """The precision of a step's model: INT8 for one that `quantizes`, else its `output_precision` (FP32 for a
    step that names none)."""
    return "int8" if getattr(config, "quantizes", False) else getattr(config, "output_precision", "fp32")


def _bad_name(name: object, *, named: bool) -> OptbenchError:
    """The refusal of a recipe name that cannot name a results folder, with one that can; a recipe without `name`
    takes its file's, which the user never wrote as a name: the error says so ("my recipe.toml" was refused as
    recipe name 'my recipe', with no word of where that came from)."""
    fixed = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).lstrip("._-").rstrip("-") or "my-recipe"
    where = f"recipe name {name!r}" if named else f"the recipe sets no name, and its file's, {name!r},"
    return OptbenchError(
        f'{where} cannot name its results folder: {LABEL_RULE}; set name = "{fixed}" in the recipe'
        f"{'' if named else ', or rename the file'}"
    )


def _check_variant_names(chains: tuple[tuple[RecipeStep, ...], ...]) -> None:
    """Refuse two different step sequences that would get one variant name (their reports would collide)."""
    seen: dict[str, tuple[Any, ...]] = {}
    for chain in chains:
        for end in range(1, len(chain) + 1):
            steps = chain[:end]
            name = "+".join(step.shown for step in steps)
            configs = tuple((step.config.name, config_to_dict(step.config)) for step in steps)
            other = seen.setdefault(name, configs)
            if other != configs:
                # the shorter sequences were checked first: only the last steps can differ
                difference = _difference(other[-1], configs[-1], steps[-1].shown)
                raise OptbenchError(
                    f"two different chains make a variant named baseline+{name} ({difference}): "
                    'give the steps that differ a label, e.g. label = "student-l3"'
                )


def _difference(first: tuple[str, dict[str, Any]], second: tuple[str, dict[str, Any]], label: str) -> str:
    """How two steps labelled `label`, each a step name and its settings, differ: `their distill steps differ in
    layers`, or `one chain's x is a finetune step, the other's a distill step`."""
    (name, one), (other, two) = first, second
    if name != other:
        return f"one chain's {label} is a {name} step, the other's a {other} step"
    keys = sorted(k for k in one.keys() | two.keys() if one.get(k) != two.get(k))
    return f"their {name} steps differ in {', '.join(keys)}"


def chain_name(chain: tuple[RecipeStep, ...]) -> str:
    return " -> ".join(step.shown for step in chain)


def _check_chain_ends_run(chains: tuple[tuple[RecipeStep, ...], ...], bench: BenchConfig) -> None:
    """Refuse a chain whose final model no listed runtime runs: its work would never be measured. That is its format
    (no runtime of it listed), or the precision it runs at (an FP16 ONNX export with onnxruntime at fp32 alone, an
    INT8 ONNX model with onnxruntime at fp16 alone), which every runtime of its format leaves out."""
    measured = {fmt for spec in bench.runtimes for fmt in ENGINES[spec.name].formats}
    for chain in chains:
        made = chain[-1].config.output_format
        if made not in measured:
            runners = [name for name, engine in ENGINES.items() if made in engine.formats]
            raise OptbenchError(
                f"the chain {chain_name(chain)} makes {FORMAT_NAMES[made]}, "
                f"which no runtime in [bench] runtimes runs: add {' or '.join(runners)}, or drop the chain"
            )
        last = chain[-1].config
        precision = runs_at(last)
        if precision is None:  # its model's precision is known once it exists
            continue
        exported = is_export(last)
        refusals = [declines_precision(spec, precision, exported) for spec in bench.runtimes if runs(spec, made)]
        if all(refusals):
            # the onnx step's refusal names its precision as the fix; another's model runs at fp32 alone
            fix = refusals[0] if exported else 'add {name = "onnxruntime"}'
            quantized = getattr(last, "quantizes", False)
            what = (
                "an INT8 ONNX model (FP32 in and out)" if quantized else f"{FORMAT_NAMES[made]} in {precision.upper()}"
            )
            raise OptbenchError(
                f"the chain {chain_name(chain)} makes {what}, which no runtime in "
                f"[bench] runtimes runs, so it would never be measured: {fix}, or drop the chain"
            )


def is_export(config: Any) -> bool:
    """Whether the step makes the ONNX export whose precision it chooses (the onnx step)."""
    return hasattr(config, "output_precision")


def runs_at(config: Any) -> str | None:
    """The precision runtimes run a step's model at, where the step decides it before the model exists: its
    `output_precision` (the onnx step's), else FP32 for an ONNX model (a quantized one takes and gives FP32, as its
    manifest records); None where the model's own weights tell (a checkpoint's)."""
    precision = getattr(config, "output_precision", None)
    return "fp32" if precision is None and config.output_format == "onnx" else precision


def with_inputs(
    recipe: Recipe,
    *,
    model: Path | None = None,
    dataset: Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> Recipe:
    """The recipe run on another checkpoint folder and/or dataset file (paths from the current directory), and/or
    with other text and label columns."""
    if model is not None:
        check_model_folder(model, "--model")
        recipe = replace(recipe, checkpoint=str(model.resolve()))
    if dataset is not None:
        check_dataset_path(dataset, "--dataset")
        recipe = replace(recipe, dataset=replace(recipe.dataset, source=str(dataset.resolve())))
    columns = {
        key: name for key, name in (("text_column", text_column), ("label_column", label_column)) if name is not None
    }
    if columns:
        if recipe.dataset.source == BUILTIN:  # else refused as the recipe's [dataset] settings
            raise OptbenchError(
                f"{' and '.join(RUN_OPTIONS[key] for key in columns)} name columns of a file, and the recipe reads the "
                f'built-in "{BUILTIN}" dataset: give your file with --dataset, or drop them'
            )
        _check_column_options(recipe.dataset, columns)
        recipe = replace(recipe, dataset=replace(recipe.dataset, **columns))
    return recipe


def _check_column_options(dataset: DatasetConfig, columns: dict[str, str]) -> None:
    """Refuse, in the terms of `optbench run`'s options, `columns` (text_column and/or label_column, as given on the
    command line) that DatasetConfig would refuse in the terms of recipe settings the user did not write."""
    if empty := [f"{RUN_OPTIONS[key]} ''" for key, name in columns.items() if name == ""]:
        raise OptbenchError(f"{' and '.join(empty)}: an empty name is no column: give the column's name")
    text, label = (columns.get(key, getattr(dataset, key)) for key in RUN_OPTIONS)
    if text == label:
        named = [
            f"{flag} {columns[key]}" if key in columns else f"the recipe's {key}" for key, flag in RUN_OPTIONS.items()
        ]
        raise OptbenchError(
            f"{' and '.join(named)} both name column {text!r}: name the texts' column with --text-column and the "
            "labels' with --label-column"
        )


def _resolved(step: RecipeStep, base: Path) -> RecipeStep:
    """Paths in a step's config (a step that takes one has `resolve_paths`) are taken from the recipe's folder."""
    resolve = getattr(step.config, "resolve_paths", None)
    if resolve is None:
        return step
    with settings_of(step.where):
        return replace(step, config=resolve(base))


def _for_bench(step: RecipeStep, bench: BenchConfig, max_length: int) -> RecipeStep:
    """A step that builds for the shapes it will be measured at (it has `for_bench`) takes the benchmark
    matrix and the dataset's max_length, so that its config, and its cache key, name concrete shapes."""
    fit = getattr(step.config, "for_bench", None)
    if fit is None:
        return step
    with settings_of(step.where):
        return replace(step, config=fit(bench, max_length))


def _chains(table: dict[str, Any]) -> tuple[tuple[RecipeStep, ...], ...]:
    """`[[steps]]` as one chain, or each `[[chains]]` entry's `[[chains.steps]]`; never both."""
    if "steps" in table and "chains" in table:
        raise OptbenchError(
            "give either [[steps]] (one chain) or [[chains]] (several), not both: move the steps into a chain"
        )
    if "chains" not in table:
        return (_steps(table.get("steps", []), "[[steps]]"),) if table.get("steps") else ()
    chains = table["chains"]
    if not isinstance(chains, list) or not all(isinstance(c, dict) for c in chains):
        raise OptbenchError('chains must be an array of tables: [[chains]] then [[chains.steps]] name = "..."')
    for i, chain in enumerate(chains):
        check_keys(chain, ["steps"], f"[[chains]] #{i + 1}")
        if not chain.get("steps"):
            raise OptbenchError(f'[[chains]] #{i + 1} has no steps: add [[chains.steps]] name = "..." under it')
    return tuple(_steps(c["steps"], f"[[chains]] #{i + 1} step") for i, c in enumerate(chains))


def _steps(steps: Any, where: str) -> tuple[RecipeStep, ...]:
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise OptbenchError('steps must be an array of tables: [[steps]] name = "..."')
    return tuple(parse_step(s, f"{where} #{i + 1}") for i, s in enumerate(steps))


def parse_bench(table: dict[str, Any]) -> BenchConfig:
    """The [bench] table: runtimes as names or tables, shapes, threads and timing knobs."""
    check_keys(table, BENCH_KEYS, "[bench]")
    timing_keys = ("warmup", "min_iters", "min_seconds", "max_seconds")
    timing = config_from_dict(Timing, {k: table[k] for k in timing_keys if k in table}, "[bench]")
    runtimes = table.get("runtimes", ["torch"])
    if not isinstance(runtimes, list) or not isinstance(table.get("seq_lens", []), list):
        raise OptbenchError(
            '[bench] runtimes and seq_lens must be lists, e.g. runtimes = ["torch"], seq_lens = [128, "data"]'
        )
    rest = {k: v for k, v in table.items() if k not in timing_keys}
    rest["runtimes"] = [_runtime(r) for r in runtimes]
    if "seq_lens" in rest:
        with settings_of("[bench] seq_lens:"):  # the tensorrt step's seq_lens take the same values
            rest["seq_lens"] = [parse_seq_len(s) for s in rest["seq_lens"]]
    # one config_from_dict: BenchConfig's checks (repeated runtimes or shapes, ...) name [bench] through it
    return config_from_dict(BenchConfig, {**rest, "timing": timing}, "[bench]")


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


def _table(table: dict[str, Any], key: str, name: str | None = None) -> dict[str, Any]:
    """The table `table[key]` (empty if absent); `name` is its name in errors (`model.finetune`), else `key`."""
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise OptbenchError(f"[{name or key}] must be a table, not {value!r}")
    return value
