"""Recipe files: a full recipe parses with paths taken from its folder; every bad input says what is wrong."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from optbench.bench import BenchConfig
from optbench.data import BUILTIN, DatasetConfig
from optbench.errors import OptbenchError
from optbench.measure import Timing
from optbench.recipe import DEFAULT_MODEL, chain_name, load_recipe, with_inputs
from optbench.runtimes import RuntimeSpec
from optbench.steps import RecipeStep
from optbench.steps.finetune import FinetuneConfig

FULL = """
name = "full-recipe"
description = "every knob set"

[model]
checkpoint = "../models/classifier"

[model.finetune]
epochs = 2
batch_size = 16
max_train_rows = 500
learning_rate = 5e-5

[dataset]
source = "data/reviews.csv"
text_column = "body"
label_column = "sentiment"
group_column = "movie"
validation_fraction = 0.2
test_fraction = 0.15
max_length = 64

[[steps]]
name = "finetune"
epochs = 0.5
seed = 7

[bench]
runtimes = ["torch", {name = "torch", device = "cuda", precision = "fp16", options = {compile = true}}]
batch_sizes = [1, 8]
seq_lens = [32, "data"]
threads = 2
warmup = 1
min_iters = 3
min_seconds = 0.5
max_seconds = 5
max_batches = 4
job_timeout_s = 120
"""


def write_recipe(folder: Path, text: str, name: str = "recipe.toml") -> Path:
    """Write a recipe file (dedented) into `folder`/recipes and return its path."""
    path = folder / "recipes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_full_recipe_parses(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, FULL))
    assert recipe.name == "full-recipe"
    assert recipe.description == "every knob set"
    assert recipe.checkpoint == str((tmp_path / "models" / "classifier").resolve())
    assert recipe.finetune == FinetuneConfig(epochs=2, batch_size=16, max_train_rows=500, learning_rate=5e-5)
    assert recipe.dataset == DatasetConfig(
        source=str((tmp_path / "recipes" / "data" / "reviews.csv").resolve()),
        text_column="body",
        label_column="sentiment",
        group_column="movie",
        validation_fraction=0.2,
        test_fraction=0.15,
        max_length=64,
    )
    assert recipe.chains == ((RecipeStep(FinetuneConfig(epochs=0.5, seed=7)),),)
    bench = recipe.bench
    assert bench.runtimes == (
        RuntimeSpec("torch"),
        RuntimeSpec("torch", "cuda", "fp16", {"compile": True}),
    )
    assert bench.batch_sizes == (1, 8)
    assert bench.seq_lens == (32, "data")
    assert bench.threads == 2
    assert bench.timing == Timing(warmup=1, min_iters=3, min_seconds=0.5, max_seconds=5)
    assert bench.max_batches == 4
    assert bench.job_timeout_s == 120
    assert bench.shapes() == [(1, 32), (1, "data"), (8, 32), (8, "data")]


def test_minimal_recipe_takes_the_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "", name="plain-one.toml"))
    assert recipe.name == "plain-one"  # from the file name
    assert recipe.description == ""
    assert recipe.checkpoint == DEFAULT_MODEL
    assert recipe.finetune == FinetuneConfig()
    assert recipe.dataset == DatasetConfig()
    assert recipe.dataset.source == BUILTIN
    assert recipe.chains == ()
    default = BenchConfig()
    assert recipe.bench.runtimes == (RuntimeSpec("torch"),)
    assert recipe.bench.batch_sizes == default.batch_sizes
    assert recipe.bench.seq_lens == default.seq_lens
    assert recipe.bench.timing == Timing()
    # an empty [[steps]] array is the baseline alone, not a chain of no steps (which has no last model to measure)
    assert load_recipe(write_recipe(tmp_path, "steps = []\n")).chains == ()


def test_chains_each_start_from_the_baseline(tmp_path: Path) -> None:
    text = """
    [[chains]]
    [[chains.steps]]
    name = "finetune"
    label = "short"
    epochs = 0.5

    [[chains]]
    [[chains.steps]]
    name = "finetune"
    [[chains.steps]]
    name = "finetune"
    label = "again"
    seed = 3
    """
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert recipe.chains == (
        (RecipeStep(FinetuneConfig(epochs=0.5), "short"),),
        (RecipeStep(FinetuneConfig()), RecipeStep(FinetuneConfig(seed=3), "again")),
    )
    assert len(recipe.steps()) == 3


def test_default_names_are_kept_as_they_are(tmp_path: Path) -> None:
    text = f"""
    [model]
    checkpoint = "{DEFAULT_MODEL}"
    [dataset]
    source = "{BUILTIN}"
    """
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert recipe.checkpoint == DEFAULT_MODEL
    assert recipe.dataset.source == BUILTIN


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    model, data = tmp_path / "elsewhere" / "model", tmp_path / "elsewhere" / "data.jsonl"
    text = f"""
    [model]
    checkpoint = "{model}"
    [dataset]
    source = "{data}"
    """
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert recipe.checkpoint == str(model.resolve())
    assert recipe.dataset.source == str(data.resolve())


def test_a_path_from_the_home_folder_is_taken_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/models/mine` was taken as a folder named `~` in the recipe's: "model folder RECIPES/~/models/mine does not
    exist"."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    text = """
    [model]
    checkpoint = "~/models/mine"
    [dataset]
    source = "~/data/reviews.csv"
    [[steps]]
    name = "distill"
    student = "~/models/student"
    """
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert recipe.checkpoint == str((home / "models" / "mine").resolve())
    assert recipe.dataset.source == str((home / "data" / "reviews.csv").resolve())
    assert recipe.steps()[0].config.student == str((home / "models" / "student").resolve())


def test_a_step_s_relative_path_is_taken_from_the_recipe_s_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As [model] checkpoint and [dataset] source are, wherever optbench runs from: taken from the working folder,
    the recipe would name another student on every machine it is run from (no test said so)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(write_recipe(tmp_path, '[[steps]]\nname = "distill"\nstudent = "students/l3"\n'))
    assert recipe.steps()[0].config.student == str((tmp_path / "recipes" / "students" / "l3").resolve())


@pytest.mark.parametrize("home", ["~", "~no-such-user-of-optbench"])
def test_a_path_from_a_home_folder_that_is_not_there_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: str
) -> None:
    """`~name` of no user, or `~` for a user with no HOME and no password-file entry (a container's bare uid):
    pathlib's RuntimeError ended the run in a traceback."""
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    recipe = write_recipe(tmp_path, f'[model]\ncheckpoint = "{home}/models/mine"\n')
    with pytest.raises(OptbenchError) as error:
        load_recipe(recipe)
    assert f'checkpoint = "{home}/models/mine": {home} names no home folder here (no such user, or HOME' in str(
        error.value
    )
    assert str(error.value).endswith("give the path without ~")


def test_runtime_table_defaults_device_and_precision(tmp_path: Path) -> None:
    text = """
    [bench]
    runtimes = [{name = "torch"}, {name = "torch", device = "cuda"}]
    """
    recipe = load_recipe(write_recipe(tmp_path, text))
    assert recipe.bench.runtimes == (RuntimeSpec("torch", "cpu", "fp32"), RuntimeSpec("torch", "cuda", "fp32"))


def test_timing_knobs_go_into_timing(tmp_path: Path) -> None:
    text = """
    [bench]
    warmup = 0
    max_seconds = 9.5
    """
    bench = load_recipe(write_recipe(tmp_path, text)).bench
    assert bench.timing == Timing(warmup=0, max_seconds=9.5)


def test_the_command_line_gives_the_model_the_dataset_and_its_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model and --dataset are taken from the current folder and kept absolute (the reports name the files the run
    read, wherever it ran from); --text-column and --label-column each replace that column alone; the recipe's other
    settings stay."""
    recipe = load_recipe(write_recipe(tmp_path, FULL))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine.csv").write_text("review,stars\n")
    mine = with_inputs(recipe, model=Path("mine"), dataset=Path("mine.csv"), label_column="stars")
    assert mine.checkpoint == str(tmp_path.resolve() / "mine")
    assert mine.dataset == replace(recipe.dataset, source=str(tmp_path.resolve() / "mine.csv"), label_column="stars")
    assert with_inputs(recipe, text_column="review").dataset == replace(recipe.dataset, text_column="review")
    assert replace(mine, checkpoint=recipe.checkpoint, dataset=recipe.dataset) == recipe
    assert with_inputs(recipe) == recipe
    with pytest.raises(OptbenchError, match=r"^--label-column '': an empty name is no column"):
        with_inputs(recipe, label_column="")  # --label-column "" was ignored: the recipe's column was read
    # both refused as recipe settings the user never wrote (label_column = '', text_column and label_column)
    with pytest.raises(OptbenchError, match=r"^--text-column sentiment and the recipe's label_column both name column"):
        with_inputs(recipe, text_column="sentiment")
    with pytest.raises(OptbenchError, match=r"^--text-column x and --label-column x both name column 'x'"):
        with_inputs(recipe, text_column="x", label_column="x")


def test_column_options_on_the_built_in_dataset_are_refused_naming_the_options(tmp_path: Path) -> None:
    """They were refused as the recipe's `[dataset] text_column`, settings the user never wrote."""
    recipe = load_recipe(write_recipe(tmp_path, ""))
    assert recipe.dataset.source == BUILTIN
    with pytest.raises(
        OptbenchError, match=r"^--text-column and --label-column name columns of a file, and the recipe"
    ):
        with_inputs(recipe, text_column="review", label_column="stars")
    (tmp_path / "mine.csv").write_text("review,stars\n")
    mine = with_inputs(recipe, dataset=tmp_path / "mine.csv", text_column="review")
    assert mine.dataset.text_column == "review"


def test_the_command_line_refuses_a_model_that_is_no_folder_and_a_dataset_that_is_no_file(tmp_path: Path) -> None:
    """Named by the option the user gave, before anything is read, saying what the path is: a weights file given as
    --model, a folder of data files given as --dataset, a path that names nothing (a typo). Both were "is not a
    folder" or "is not a file", which left a user looking at reviews.csv, misspelt, to wonder why a CSV is no file."""
    recipe = load_recipe(write_recipe(tmp_path, ""))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    message = f"--model {weights} is a file, not a folder: give the checkpoint folder that holds config.json and the"
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)} weights$"):
        with_inputs(recipe, model=weights)
    message = (
        f"--model {tmp_path / 'modle'} does not exist: give a Hugging Face checkpoint folder (optbench downloads "
        "nothing: save a Hub model into a folder first, with its tokenizer (from_pretrained(id), then "
        "save_pretrained(folder)))"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        with_inputs(recipe, model=tmp_path / "modle")
    message = (
        f"--dataset {tmp_path} is a folder, not a file: give a .csv, .jsonl or .json file (write a saved Hugging Face "
        "dataset out with its to_csv or to_json)"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        with_inputs(recipe, dataset=tmp_path)
    message = f"--dataset {tmp_path / 'reviws.csv'} does not exist: give a .csv, .jsonl or .json path"
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):  # not the built-in: --dataset takes files
        with_inputs(recipe, dataset=tmp_path / "reviws.csv")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"cannot read recipe .*nope\.toml: No such file"):
        load_recipe(tmp_path / "nope.toml")
    # a dataset's suffix on a path that names nothing is a missing file, not a dataset given as the recipe
    with pytest.raises(OptbenchError, match=r"cannot read recipe .*nope\.csv: No such file"):
        load_recipe(tmp_path / "nope.csv")


def test_malformed_toml(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, '[bench\nruntimes = "torch"\n')
    with pytest.raises(OptbenchError, match=r"recipe .*recipe\.toml is not valid TOML"):
        load_recipe(path)


def test_toml_nested_past_the_recursion_limit_is_not_valid_toml(tmp_path: Path) -> None:
    """tomllib recurses once per nested array: a recipe or budget file of thousands stopped with a traceback."""
    path = write_recipe(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(OptbenchError, match=r"recipe .*recipe\.toml is not valid TOML: its arrays or tables nest too"):
        load_recipe(path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(OptbenchError, match="is not UTF-8 text"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[model.finetune]\nseed = 18446744073709551616\n", "model.finetune.seed = 18446744073709551616"),
        ("[bench]\nrounds = 99999999999999999999\n", "bench.rounds = 99999999999999999999"),
        ("[bench]\nrounds = 9223372036854775808\n", "bench.rounds = 9223372036854775808"),  # 2**63, one past
        ("[bench]\nbatch_sizes = [1, -9223372036854775809]\n", "bench.batch_sizes #2 = -9223372036854775809"),
        ('[[steps]]\nname = "prune"\nseed = 0x1_0000_0000_0000_0000\n', "steps #1.seed = 18446744073709551616"),
    ],
)
def test_integers_beyond_64_bits_are_not_toml(text: str, where: str, tmp_path: Path) -> None:
    """TOML's integers are 64-bit; tomllib reads any size: a seed past 2^64 failed in the step with a traceback,
    and 20 digits of rounds hung the dry run."""
    with pytest.raises(OptbenchError, match=rf"is not valid TOML: {re.escape(where)} is beyond TOML's 64-bit"):
        load_recipe(write_recipe(tmp_path, text))


def test_a_benchmark_of_more_latency_jobs_per_pair_than_the_limit_is_refused(tmp_path: Path) -> None:
    """rounds = 1000000000 hung the dry run as it planned its jobs (and filled the memory), and a long batch_sizes
    list stalled the check for repeats; a run of that many jobs would never end. 10000 per pair are planned, of
    every batch size at every sequence length in every round."""
    sizes = ", ".join(map(str, range(1, 20_002)))
    for bench, planned in (
        ("seq_lens = [16]\nrounds = 1000000000", "2 batch_sizes x 1 seq_lens x rounds=1000000000 plan 2000000000"),
        (f"seq_lens = [16]\nbatch_sizes = [{sizes}]", "20001 batch_sizes x 1 seq_lens x rounds=1 plan 20001"),
        ("seq_lens = [16, 32]\nrounds = 2501", "2 batch_sizes x 2 seq_lens x rounds=2501 plan 10004"),
    ):
        with pytest.raises(
            OptbenchError, match=rf"^\[bench\] {planned} latency jobs for each model and runtime, more than 10000 "
        ):
            load_recipe(write_recipe(tmp_path, f"[bench]\n{bench}\n"))
    recipe = load_recipe(write_recipe(tmp_path, "[bench]\nbatch_sizes = [1, 2]\nseq_lens = [16]\nrounds = 5000\n"))
    assert len(recipe.bench.shapes()) * recipe.bench.rounds == 10_000


def test_a_batch_size_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    """batch_sizes = [1000000000] passed the dry run, and a run built a list of 10**9 texts (the test split's,
    repeated) to tokenize after its steps; 65536 rows a call are allowed."""
    with pytest.raises(
        OptbenchError, match=r"^\[bench\] batch_sizes \[1000000000\] are more than 65536 rows a call: .* at most 65536$"
    ):
        load_recipe(write_recipe(tmp_path, "[bench]\nbatch_sizes = [1, 1000000000]\n"))
    assert load_recipe(write_recipe(tmp_path, "[bench]\nbatch_sizes = [65536]\n")).bench.batch_sizes == (65536,)


def test_the_largest_64_bit_integer_is_read(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "[model.finetune]\nseed = 9223372036854775807\n"))
    assert recipe.finetune.seed == 2**63 - 1


def test_the_smallest_64_bit_integer_is_read(tmp_path: Path) -> None:
    """It is TOML's too: the setting's own check answers it, not a claim that it lies beyond 64 bits."""
    with pytest.raises(OptbenchError, match=r"^\[model.finetune\] seed=-9223372036854775808: use 0 or more$"):
        load_recipe(write_recipe(tmp_path, "[model.finetune]\nseed = -9223372036854775808\n"))


def test_utf8_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "utf8.toml"
    path.write_bytes('description = "caf\u00e9 \u00b7 na\u00efve"\n'.encode())
    assert load_recipe(path).description == "caf\u00e9 \u00b7 na\u00efve"


def test_utf8_text_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Windows editors save UTF-8 with a BOM: tomllib read it as "Invalid statement (at line 1, column 1)"
    path = tmp_path / "bom.toml"
    path.write_bytes('description = "caf\u00e9"\n'.encode("utf-8-sig"))
    assert load_recipe(path).description == "caf\u00e9"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('modle = {checkpoint = "x"}', r"unknown key\(s\) \['modle'\] in the recipe: known keys are \['name',"),
        ("[bench]\nbatch_size = [1]", r"unknown key\(s\) \['batch_size'\] in \[bench\]: known keys are \['runtimes',"),
        # [bench] takes the timing knobs one by one; BenchConfig's own `timing` field is no recipe key
        ("[bench]\ntiming = {warmup = 0}", r"unknown key\(s\) \['timing'\] in \[bench\]: known keys are \[.*'warmup'"),
        ("[model]\nweights = 'x'", r"unknown key\(s\) \['weights'\] in \[model\]"),
        ("[dataset]\ncolumn = 'x'", r"unknown key\(s\) \['column'\] in \[dataset\]"),
        ("[model.finetune]\nepoch = 2", r"unknown key\(s\) \['epoch'\] in \[model.finetune\]"),
        ("[[steps]]\nname = 'finetune'\nepoch = 1", r"unknown key\(s\) \['epoch'\] in \[\[steps\]\] #1 \(finetune\)"),
        ("[bench]\nruntimes = [{name = 'torch', threads = 2}]", r"\['threads'\] in \[bench\] runtimes entry"),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))


def test_unknown_step_lists_the_known_steps(tmp_path: Path) -> None:
    text = """
    [[steps]]
    name = "finetune"
    [[steps]]
    name = "sparsify-magic"
    """
    message = r"unknown step 'sparsify-magic' in \[\[steps\]\] #2: known steps are \["
    with pytest.raises(OptbenchError, match=message) as info:
        load_recipe(write_recipe(tmp_path, text))
    assert "'finetune'" in str(info.value)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ('[[steps]]\nname = "quantise-dynamic"', "; did you mean 'quantize-dynamic'?"),
        ('[[steps]]\nname = "ONNX"', "; did you mean 'onnx'?"),
        ('[[steps]]\nname = "quantize"', "; did you mean 'quantize-static' or 'quantize-dynamic'?"),
        ("[bench]\nbatchsizes = [1]", "; did you mean 'batch_sizes'?"),
        ("[bench]\nbatch_size = [1]\nseq_len = [16]", "; did you mean 'batch_sizes' or 'seq_lens'?"),
        ('[bench]\nruntimes = ["onnx-runtime"]', "; did you mean 'onnxruntime'?"),
        ('[[steps]]\nname = "sparsify-magic"', "known steps are ['distill', 'finetune', 'onnx', 'peer-optimum', "),
    ],
)
def test_a_misspelt_name_is_answered_with_the_one_meant(tmp_path: Path, text: str, suggestion: str) -> None:
    """Beside the list of what is known, the error names the likely intended name (none when nothing is close)."""
    with pytest.raises(OptbenchError) as info:
        load_recipe(write_recipe(tmp_path, text))
    assert str(info.value).endswith(suggestion if "did you" in suggestion else "]")
    assert suggestion in str(info.value)


def test_step_without_a_name(tmp_path: Path) -> None:
    # it was "unknown step None": neither the key missing nor the fix was named
    message = r"\[\[steps\]\] #1 has no name \(its keys: \['step'\]\): give the step's name, e.g. name = \"onnx\""
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, '[[steps]]\nstep = "onnx"\n'))


def test_step_name_that_is_not_a_string(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"unknown step \['onnx'\] in \[\[steps\]\] #1"):
        load_recipe(write_recipe(tmp_path, '[[steps]]\nname = ["onnx"]\n'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[bench]\nruntimes = ["tensorflow"]', r"unknown runtime 'tensorflow': known runtimes are \[.*'torch'"),
        ('[bench]\nruntimes = [{name = "jax"}]', "unknown runtime 'jax'"),
        ('[bench]\nruntimes = [{name = "torch", device = "tpu"}]', r"unknown device 'tpu'.*\['cpu', 'cuda'\]"),
        ('[bench]\nruntimes = [{name = "torch", precision = "int3"}]', "unknown precision 'int3'"),
        ('[bench]\nruntimes = [{device = "cuda"}]', "runtimes entry needs a name"),
        ('[bench]\nruntimes = [{name = ["torch"]}]', r"unknown runtime \['torch'\]: known runtimes are"),
        (
            '[bench]\nruntimes = [{name = "onnxruntime", options = {provider = ["cpu"]}}]',
            r"onnxruntime provider \['cpu'\] does not fit device 'cpu'",
        ),
        ("[bench]\nruntimes = [3]", "runtimes entry 3: give a name or a table"),
        ('[bench]\nruntimes = "torch"', "runtimes and seq_lens must be lists"),
        ('[bench]\nruntimes = [{name = "torch", options = "fast"}]', "options must be a table"),
        (
            '[bench]\nruntimes = ["torch", {name = "torch", options = {compile = false}}]',
            r'lists \["torch-cpu-fp32"\] more than once',
        ),
        ("[bench]\nruntimes = []", "needs at least one runtime"),
        (
            '[bench]\nruntimes = ["torch", "onnxruntime"]\n[[steps]]\nname = "onnx"\nfuse = false\n'
            '[[steps]]\nname = "tensorrt"',
            r"the chain onnx -> tensorrt-fp16 makes a TensorRT engine, which no runtime .* runs: add tensorrt, or drop",
        ),
    ],
)
def test_bad_runtimes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # which key: a recipe's tensorrt steps have seq_lens too
        ("[bench]\nseq_lens = [0]", r"^\[bench\] seq_lens: sequence length 0 is not valid: use a positive integer or "),
        ("[bench]\nseq_lens = [128, -1]", r"^\[bench\] seq_lens: sequence length -1 is not valid"),
        ('[bench]\nseq_lens = ["long"]', r"^\[bench\] seq_lens: sequence length 'long' is not valid"),
        ("[bench]\nseq_lens = [true]", r"^\[bench\] seq_lens: sequence length True is not valid"),
        ("[bench]\nseq_lens = 128", "runtimes and seq_lens must be lists"),
        ("[bench]\nbatch_sizes = [0]", r"batch_sizes \[0\] are not positive integers"),
        ("[bench]\nbatch_sizes = [1, -4]", r"batch_sizes \[-4\] are not positive integers"),
        # a repeated shape's jobs share one key: its stored timings would be pooled twice (intervals too narrow)
        ("[bench]\nbatch_sizes = [8, 1, 8]", r"\[bench\] batch_sizes lists \[8\] more than once: drop the repeats"),
        ('[bench]\nseq_lens = [16, "data", 16, "data"]', r'seq_lens lists \[16, "data"\] more than once'),
        ("[bench]\nbatch_sizes = [1.5]", r"batch_sizes = \[1\.5\] has the wrong type: expected a list of integers"),
        ('[bench]\nbatch_sizes = ["8"]', "batch_sizes .* has the wrong type"),
        ("[bench]\nthreads = 0", "threads=0"),
        ('[bench]\nthreads = "all"', r'\[bench\] threads = "all" has the wrong type: expected an integer'),
        ('[bench]\nwarmup = "x"', r'\[bench\] warmup = "x" has the wrong type: expected an integer'),
        ("[bench]\nmin_seconds = 10\nmax_seconds = 1", r"max_seconds \(1\) is below min_seconds \(10\)"),
    ],
)
def test_bad_bench_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("a/b", "a-b"),
        ("../up", "up"),
        ("", "my-recipe"),
        (".hidden", "hidden"),
        ("with space", "with-space"),
        ("-dash", "dash"),
    ],
)
def test_bad_recipe_name(tmp_path: Path, name: str, fixed: str) -> None:
    """The rule in full (".hidden" is letters and a '.', refused for its first one), and a name it takes."""
    message = (
        f"recipe name {name!r} cannot name its results folder: start with a letter or digit, then use letters, "
        f"digits, '.', '_' or '-'; set name = \"{fixed}\" in the recipe"
    )
    with pytest.raises(OptbenchError, match=re.escape(message) + "$"):
        load_recipe(write_recipe(tmp_path, f'name = "{name}"\n'))


def test_recipe_name_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match="recipe name 3"):
        load_recipe(write_recipe(tmp_path, "name = 3\n"))


@pytest.mark.parametrize(
    ("text", "shown"), [("description = 3", "3"), ('description = ["int8", "cpu"]', '["int8", "cpu"]')]
)
def test_a_description_that_is_not_a_string_is_refused(tmp_path: Path, text: str, shown: str) -> None:
    """It was turned into one, as no other key's value is."""
    message = f"recipe description = {shown} has the wrong type: expected a string"
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, text))


def test_bad_file_name_is_refused_as_recipe_name(tmp_path: Path) -> None:
    """The user wrote no name: the error says the file's was taken, and how to give one (it said only "recipe name
    'my recipe' must be letters, digits, ...")."""
    message = (
        "the recipe sets no name, and its file's, 'my recipe', cannot name its results folder: start with a letter or "
        "digit, then use letters, digits, '.', '_' or '-'; set name = \"my-recipe\" in the recipe, or rename the file"
    )
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, "", name="my recipe.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[model.finetune]\nepochs = "two"',
            r'\[model.finetune\] epochs = "two" has the wrong type: expected a number',
        ),
        (
            "[model.finetune]\nbatch_size = 8.0",
            r"\[model.finetune\] batch_size = 8.0 has the wrong type: expected an integer",
        ),
        (
            "[model.finetune]\nmax_train_rows = true",
            r"max_train_rows = true has the wrong type: expected an integer, or no value",
        ),
        ("[model.finetune]\nepochs = 0", r"^\[model.finetune\] needs epochs > 0"),
        ("[model]\ncheckpoint = 3", r"\[model\] checkpoint = 3: give \"default\" or a folder path"),
        ("model = 3", r"\[model\] must be a table"),
        ("[model]\nfinetune = 3", r"^\[model.finetune\] must be a table, not 3"),
        ("dataset = []", r"\[dataset\] must be a table"),
        ("[dataset]\nsource = 3", r"\[dataset\] source = 3 has the wrong type: expected a string"),
        # an empty path was the recipe's own folder: "model folder RECIPES has no readable config.json", "dataset
        # RECIPES is a folder", with no word of the "" written
        ('[model]\ncheckpoint = ""', r'^\[model\] checkpoint = "": an empty path names no file or folder: give one'),
        ('[dataset]\nsource = " "', r'^\[dataset\] source = " ": an empty path names no file or folder: give one'),
        ("[[steps]]\nname = 'distill'\nstudent = ''", r'^\[\[steps\]\] #1 \(distill\) student = "": an empty path'),
        ("[dataset]\ntest_fraction = 0", r"^\[dataset\] fractions .* out of range"),
        ('steps = ["finetune"]', "steps must be an array of tables"),
        ('steps = {name = "finetune"}', "steps must be an array of tables"),
        ("[[steps]]\nname = 'finetune'\nepochs = 'one'", r'\[\[steps\]\] #1 \(finetune\) epochs = "one" has the wrong'),
        (
            "[[steps]]\nname = 'finetune'\n[[chains]]\n[[chains.steps]]\nname = 'finetune'",
            "either \\[\\[steps\\]\\] .* or",
        ),
        ("chains = [1]", "chains must be an array of tables"),
        ("chains = 3", "chains must be an array of tables"),
        ("chains = [{steps = [{name = 'finetune'}]}, 1]", "chains must be an array of tables"),
        ("steps = 3", "steps must be an array of tables"),
        ("steps = [{name = 'finetune'}, 'onnx']", "steps must be an array of tables"),
        ("[[chains]]\nsteps = [{name = 'finetune'}, 'onnx']", "steps must be an array of tables"),
        ("[[chains]]", r"\[\[chains\]\] #1 has no steps"),
        ("[[chains]]\nsteps = []", r"\[\[chains\]\] #1 has no steps"),  # as a [[chains]] without steps is
        ("[[chains]]\nlabel = 'x'\n[[chains.steps]]\nname = 'finetune'", r"\['label'\] in \[\[chains\]\] #1"),
        ("[[chains]]\n[[chains.steps]]\nname = 'finetune'\nepoch = 1", r"\['epoch'\] in \[\[chains\]\] #1 step #1"),
    ],
)
def test_bad_model_dataset_and_steps(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))


SHIPPED = sorted(p for p in (Path(__file__).parents[1] / "recipes").glob("*.toml") if not p.name.startswith("budgets"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_parses(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.description


ORT = '[bench]\nruntimes = ["torch", "onnxruntime"]\n'


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["quantize-static"], r"the chain quantize-static: quantize-static takes an ONNX model, .* put an onnx step"),
        (["onnx", "prune"], r"the chain onnx -> prune: prune takes a Hugging Face .* put it before the onnx step"),
        (
            ["onnx", "onnx"],
            r"onnx takes a Hugging Face checkpoint, not an ONNX model: a chain makes an ONNX model once: drop",
        ),
        (["tensorrt"], r"^the chain tensorrt-fp16: tensorrt-fp16 takes an ONNX model, not a Hugging Face checkpoint"),
        (["onnx", "tensorrt", "quantize-static"], "nothing runs on a TensorRT engine: make tensorrt the chain's last"),
        (["quantize-dynamic"], r"put an onnx step before it, or choose its backend: \"onnxruntime\" quantizes ONNX"),
    ],
)
def test_steps_out_of_order_are_refused_when_read(tmp_path: Path, steps: list[str], message: str) -> None:
    text = ORT + "".join(
        f'[[steps]]\nname = "{step}"\n' + {"prune": "heads = 0.5\n", "onnx": "fuse = false\n"}.get(step, "")
        for step in steps
    )
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))
    ordered = (
        ORT + '[[steps]]\nname = "prune"\nheads = 0.5\n[[steps]]\nname = "onnx"\n[[steps]]\nname = "quantize-static"\n'
    )
    assert len(load_recipe(write_recipe(tmp_path, ordered)).steps()) == 3
    torch_int8 = '[[steps]]\nname = "quantize-dynamic"\nbackend = "torch"\n'
    assert load_recipe(write_recipe(tmp_path, torch_int8)).steps()[0].config.input_format == "hf"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            ['"onnx"', '"quantize-dynamic"', '"quantize-dynamic"\nlabel = "q2"'],
            "q2 quantizes an FP32 model and quantize-dynamic",
        ),
        (
            ['"onnx"', '"quantize-static"', '"quantize-dynamic"'],
            "quantize-dynamic quantizes an FP32 model and quantize-static",
        ),
        (
            ['"peer-optimum"\nquantization = "dynamic"', '"quantize-static"'],
            "and optimum-int8-dynamic made this one INT8",
        ),
    ],
)
def test_quantizing_an_int8_model_is_refused_when_read(tmp_path: Path, steps: list[str], message: str) -> None:
    # the quantize step refused it only when it ran, after the fine-tune, the export and the first quantization
    text = ORT + "".join(f"[[steps]]\nname = {step}\n" for step in steps)
    with pytest.raises(OptbenchError, match=rf"{message} .*: quantize the FP32 export instead \(one quantize step"):
        load_recipe(write_recipe(tmp_path, text))
    optimum_export = ORT + '[[steps]]\nname = "peer-optimum"\n[[steps]]\nname = "quantize-dynamic"\n'
    assert len(load_recipe(write_recipe(tmp_path, optimum_export)).steps()) == 2  # its FP32 ONNX: quantized once


@pytest.mark.parametrize("quantize", ["quantize-dynamic", "quantize-static"])
def test_quantizing_an_fp16_export_is_refused_when_read(tmp_path: Path, quantize: str) -> None:
    # the quantize step refused it ("needs an FP32 ONNX model") only when it ran, after the fine-tune and the export
    text = ORT + f'[[steps]]\nname = "onnx"\nprecision = "fp16"\n[[steps]]\nname = "{quantize}"\n'
    message = rf'{quantize} quantizes an FP32 model and onnx-fp16 made this one FP16 already: .*\(precision = "fp32"\)'
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, text))
    fp32 = text.replace('precision = "fp16"', 'precision = "fp32"')
    assert len(load_recipe(write_recipe(tmp_path, fp32)).steps()) == 2


def test_a_chain_ending_in_an_fp16_export_no_runtime_runs_at_fp16_is_refused_when_read(tmp_path: Path) -> None:
    """onnxruntime at fp32 alone: the run exported the FP16 model, left it unmeasured with a warning in its log, and
    exited 0; the dry run counted its jobs as maybe run."""
    text = ORT + '[[steps]]\nname = "onnx"\nprecision = "fp16"\nfuse = false\n'
    message = (
        "the chain onnx-fp16 makes an ONNX model in FP16, which no runtime in [bench] runtimes runs, so it would never "
        'be measured: runtime onnxruntime at fp32 cannot run this fp16 ONNX model: set precision = "fp16", or export '
        'with the onnx step\'s precision = "fp32", or drop the chain'
    )
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, text))
    for runtime in (
        '{name = "onnxruntime", precision = "fp16"}',
        '{name = "onnxruntime", device = "cuda", precision = "fp16", options = {provider = "tensorrt"}}',
    ):
        runs_it = text.replace('"onnxruntime"]', f'"onnxruntime", {runtime}]')
        assert len(load_recipe(write_recipe(tmp_path, runs_it)).steps()) == 1
    # a model in the middle of a chain may go unmeasured: the chain's last one is measured
    to_engine = text.replace('"onnxruntime"]', '"onnxruntime", {name = "tensorrt", device = "cuda"}]')
    assert len(load_recipe(write_recipe(tmp_path, to_engine + '[[steps]]\nname = "tensorrt"\n')).steps()) == 2


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        ('"onnx"\n[[steps]]\nname = "quantize-static"', "onnx -> quantize-static"),
        ('"onnx"\n[[steps]]\nname = "quantize-dynamic"', "onnx -> quantize-dynamic"),
        ('"peer-optimum"\nquantization = "dynamic"', "optimum-int8-dynamic"),
        ('"peer-optimum"', "optimum-export"),
    ],
)
def test_a_chain_ending_in_an_onnx_model_run_at_fp32_that_no_runtime_runs_is_refused_when_read(
    tmp_path: Path, steps: str, shown: str
) -> None:
    """A quantized ONNX model, or optimum's export, runs at fp32 (its manifest says so): with onnxruntime at fp16
    alone the run made it, left it unmeasured with a warning in its log, and exited 0, as it did an FP16 export at
    fp32."""
    fp16 = '{name = "onnxruntime", device = "cuda", precision = "fp16"}'
    text = f'[bench]\nruntimes = ["torch", {fp16}]\n[[steps]]\nname = {steps}\n'
    made = "an ONNX model in FP32" if shown == "optimum-export" else "an INT8 ONNX model (FP32 in and out)"
    message = (
        f"the chain {shown} makes {made}, which no runtime in [bench] runtimes runs, so it would never be "
        'measured: add {name = "onnxruntime"}, or drop the chain'
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        load_recipe(write_recipe(tmp_path, text))
    for runtime in ('"onnxruntime"', '{name = "onnxruntime", device = "cuda", options = {provider = "tensorrt"}}'):
        runs_it = text.replace(f"{fp16}]", f"{fp16}, {runtime}]")
        assert chain_name(load_recipe(write_recipe(tmp_path, runs_it)).chains[-1]) == shown
    # the TensorRT provider at fp16 runs an FP32 model: an INT8 one is left to its checks of the model
    trt_fp16 = text.replace('precision = "fp16"}', 'precision = "fp16", options = {provider = "tensorrt"}}')
    assert chain_name(load_recipe(write_recipe(tmp_path, trt_fp16)).chains[-1]) == shown


def test_two_chains_that_make_one_variant_name_differently_are_refused(tmp_path: Path) -> None:
    chain = '[[chains]]\n[[chains.steps]]\nname = "distill"\nlayers = [{}]\n[[chains.steps]]\nname = "onnx"\n'
    same = ORT + chain.format("0, 2") + chain.format("0, 2")  # shared prefixes: one model, one name
    assert len(load_recipe(write_recipe(tmp_path, same)).chains) == 2
    with pytest.raises(OptbenchError, match=r"named baseline\+distill \(their distill steps differ in layers\): give"):
        load_recipe(write_recipe(tmp_path, ORT + chain.format("0, 2") + chain.format("1, 3")))
    labelled = ORT + chain.format("0, 2") + chain.format("1, 3").replace('"distill"', '"distill"\nlabel = "odd"')
    assert [c[0].shown for c in load_recipe(write_recipe(tmp_path, labelled)).chains] == ["distill", "odd"]


def test_a_shared_first_step_is_passed_over_to_name_the_step_that_differs(tmp_path: Path) -> None:
    """Two chains that fine-tune alike, then distill differently under one name: the error names the distill steps,
    not the fine-tunes they share."""
    chain = '[[chains]]\n[[chains.steps]]\nname = "finetune"\n[[chains.steps]]\nname = "distill"\nlayers = [{}]\n'
    with pytest.raises(OptbenchError, match=r"baseline\+finetune\+distill \(their distill steps differ in layers\): "):
        load_recipe(write_recipe(tmp_path, chain.format("0") + chain.format("1")))


def test_steps_of_two_kinds_under_one_label_are_named_as_such(tmp_path: Path) -> None:
    """A fine-tune and a distill step both labelled `x`: the error said "their finetune steps differ in
    attention_weight, distill_weight, ...", the distill step's settings, as if both were fine-tunes."""
    chain = '[[chains]]\n[[chains.steps]]\nname = "finetune"\n[[chains.steps]]\nname = "{}"\nlabel = "x"\n'
    message = "baseline+finetune+x (one chain's x is a finetune step, the other's a distill step): give"
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, chain.format("finetune") + chain.format("distill")))


def test_chains_that_differ_in_their_last_step_under_one_variant_name_are_refused(tmp_path: Path) -> None:
    """Each chain's last step is checked too, not only the steps before it: two one-step distill chains keeping
    other layers would make two students named baseline+distill, which the run refuses only once it has trained both.
    The settings that differ are named in order, the same on every run."""
    chain = '[[chains]]\n[[chains.steps]]\nname = "distill"\nlayers = [{}]\n'
    text = chain.format("0, 2") + chain.format("1, 3") + "seed = 3\nepochs = 2.0\nlearning_rate = 1e-3\n"
    message = (
        "a variant named baseline+distill (their distill steps differ in epochs, layers, learning_rate, seed): give"
    )
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, text))


@pytest.mark.parametrize(
    ("later", "message"),
    [
        (
            '[[chains.steps]]\nname = "onnx"\nprecision = "fp16"\n',
            "the chain onnx-fp16 makes an ONNX model in FP16, which no runtime in [bench] runtimes runs",
        ),
        (
            '[[chains.steps]]\nname = "onnx"\nfuse = false\n[[chains.steps]]\nname = "tensorrt"\n',
            "the chain onnx -> tensorrt-fp16 makes a TensorRT engine, which no runtime in [bench] runtimes runs",
        ),
        (  # the precision of the chain's last model, not its first step's (a distill student names none)
            '[[chains.steps]]\nname = "distill"\n[[chains.steps]]\nname = "onnx"\nprecision = "fp16"\n',
            "the chain distill -> onnx-fp16 makes an ONNX model in FP16, which no runtime in [bench] runtimes runs",
        ),
    ],
)
def test_every_chain_needs_a_runtime_that_measures_its_last_model(tmp_path: Path, later: str, message: str) -> None:
    """Not only the first chain, nor only the chains before one whose last step names no precision (a distill
    student's): a later chain's model that no listed runtime runs would be made and never measured."""
    first = '[[chains]]\n[[chains.steps]]\nname = "distill"\n'
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(write_recipe(tmp_path, ORT + first + "[[chains]]\n" + later))


@pytest.mark.parametrize(
    "text",
    ["[bench]\njob_timeout_s = inf", "[bench]\nmax_seconds = nan", '[[steps]]\nname = "distill"\ntemperature = -inf'],
)
def test_nan_and_inf_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(OptbenchError, match=r"give a finite number \(nan and inf are not settings\)"):
        load_recipe(write_recipe(tmp_path, text))


def test_nothing_may_follow_torch_int8(tmp_path: Path) -> None:
    text = '[[steps]]\nname = "quantize-dynamic"\nbackend = "torch"\n[[steps]]\nname = "prune"\nheads = 0.5\n'
    with pytest.raises(OptbenchError, match=r"nothing may follow quantize-dynamic \(its INT8 scheme is applied only"):
        load_recipe(write_recipe(tmp_path, text))


def test_the_torch_int8_backend_refuses_onnxruntime_knobs_when_read(tmp_path: Path) -> None:
    # op_types was ignored silently by torchao, which quantizes every Linear layer; the others were refused only
    # when the step ran, after the fine-tune
    knobs = ('op_types = ["MatMul"]', "per_channel = false", "reduce_range = true", 'weight_type = "uint8"')
    for knob in (*knobs, 'exclude_nodes = ["n1"]'):
        text = f'[[steps]]\nname = "quantize-dynamic"\nbackend = "torch"\n{knob}\n'
        with pytest.raises(OptbenchError, match=rf'backend = "torch" takes none of {re.escape(knob)}: torchao'):
            load_recipe(write_recipe(tmp_path, text))
    # the message names every knob given, and not weight_type = "int8", which is torchao's scheme
    text = '[[steps]]\nname = "quantize-dynamic"\nbackend = "torch"\nweight_type = "int8"\n' + "\n".join(knobs[:2])
    with pytest.raises(OptbenchError, match=r'takes none of per_channel = false, op_types = \["MatMul"\]: torchao'):
        load_recipe(write_recipe(tmp_path, text))


def test_nothing_may_follow_the_torchao_peer(tmp_path: Path) -> None:
    # its artifact is quantize-dynamic's torch one: refused when read, not after the peer step has run
    text = '[[steps]]\nname = "peer-torchao"\n[[steps]]\nname = "onnx"\n'
    with pytest.raises(OptbenchError, match=r"nothing may follow torchao-int8 \(its INT8 scheme is applied only"):
        load_recipe(write_recipe(tmp_path, text))


def test_a_model_folder_a_dataset_or_a_folder_of_recipes_given_as_the_recipe_is_told_what_to_give(
    tmp_path: Path,
) -> None:
    """`optbench run ./my-model` or `optbench run reviews.csv`, what a user new to recipes tries: read as TOML, they
    were "Is a directory; check the path" and "not valid TOML"."""
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    message = (
        f"{model} is a model folder, not a recipe: run a recipe on it with `optbench run RECIPE --model {model}` "
        "(e.g. recipes/export-onnx.toml)"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        load_recipe(model)
    data = tmp_path / "reviews.CSV"
    data.write_text("text,label\na,pos\n")
    message = (
        f"{data} is a dataset file, not a recipe: run a recipe on it with `optbench run RECIPE --dataset {data}` "
        "(e.g. recipes/export-onnx.toml; --text-column and --label-column name its columns)"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        load_recipe(data)
    recipes = Path(__file__).parents[1] / "recipes"
    with pytest.raises(
        OptbenchError, match=rf"^recipe {re.escape(str(recipes))} is a folder: give one of its recipe "
    ) as info:
        load_recipe(recipes)
    assert "baseline.toml" in str(info.value) and "budgets.toml" not in str(info.value)  # gate's, not a recipe
    with pytest.raises(OptbenchError, match=r"is a folder: give a recipe file \(\.toml\), e\.g\. recipes/export-onnx"):
        load_recipe(tmp_path)
    (tmp_path / "broken.toml").write_text("[bench\n")  # a recipe, if a broken one: offered, and refused when read
    with pytest.raises(OptbenchError, match=r"is a folder: give one of its recipe files, \['broken\.toml'\]$"):
        load_recipe(tmp_path)


def test_a_report_or_run_folder_given_as_a_recipe_points_to_report(tmp_path: Path) -> None:
    # a report's .json was called "a dataset file" (run a recipe on it with --dataset), a run folder "a folder"
    from report_fixtures import make_report

    from optbench.report import write_report

    run = tmp_path / "results" / "demo" / "run-1"
    write_report(make_report(), run)
    (report,) = run.glob("*.json")
    for given in (report, run):
        message = (
            f"{given} holds optbench results (recipe 'demo', run 20261130T031500Z-3f9a), not a recipe: read them with "
            f"`optbench report {given}`, or give the recipe that made them (e.g. recipes/demo.toml)"
        )
        with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
            load_recipe(given)


def test_a_budget_file_given_as_a_recipe_points_to_gate() -> None:
    budgets = Path(__file__).parents[1] / "recipes" / "budgets.toml"
    with pytest.raises(OptbenchError, match=r"budgets.toml is a budget file.*optbench gate --budget"):
        load_recipe(budgets)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[steps]]\nname = 'distill'\ntemperature = 0", r"^\[\[steps\]\] #1 \(distill\) temperature = 0: use a value"),
        (
            "[[chains]]\n[[chains.steps]]\nname = 'distill'\n[[chains]]\n[[chains.steps]]\nname = 'prune'\nheads = 1.5",
            r"^\[\[chains\]\] #2 step #1 \(prune\) heads = 1.5: give the fraction to remove",
        ),
        ("[[steps]]\nname = 'finetune'\nepochs = 0", r"^\[\[steps\]\] #1 \(finetune\) needs epochs > 0"),
        (
            "[[steps]]\nname = 'onnx'\n[[steps]]\nname = 'quantize-static'\nseed = -1",
            r"^\[\[steps\]\] #2 \(quantize-static\) seed=-1",
        ),
        ("[model.finetune]\nseed = -1", r"^\[model.finetune\] seed=-1: use 0 or more"),
        ("[dataset]\nmax_length = 2", r"^\[dataset\] max_length=2 is too small"),
        ("[bench]\nwarmup = -1", r"^\[bench\] warmup must be 0 or more"),
        ("[bench]\nthreads = 0", r"^\[bench\] threads=0: must be 1 or more"),
        ("[bench]\nseq_lens = [16, 16]", r"^\[bench\] seq_lens lists \[16\] more than once"),
    ],
)
def test_a_settings_check_names_the_table_the_recipe_wrote_it_in(tmp_path: Path, text: str, message: str) -> None:
    """As a wrong type does: a step's checks named a table no recipe has ([distill], and [model.finetune] for a
    finetune step in [[steps]]), and [bench]'s timing checks none."""
    with pytest.raises(OptbenchError, match=message):
        load_recipe(write_recipe(tmp_path, ORT + text if "onnx" in text else text))
