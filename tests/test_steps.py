"""The finetune step and the step cache, on a tiny random BERT and a slice of the built-in data."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from optbench.artifact import MANIFEST, ModelArtifact, StepRecord, content_hash
from optbench.data import DatasetConfig, align_labels, load_dataset
from optbench.errors import OptbenchError
from optbench.formats import in_words
from optbench.peers.optimum import PeerOptimumConfig
from optbench.peers.torchao import PeerTorchaoConfig
from optbench.steps import STEPS, RecipeStep, parse_step
from optbench.steps.cache import cache_key, run_step, step_folder
from optbench.steps.finetune import FinetuneConfig
from optbench.steps.onnx import OnnxConfig
from optbench.steps.prune import PruneConfig
from optbench.steps.quantize import DynamicQuantizeConfig, StaticQuantizeConfig
from optbench.steps.tensorrt import TensorRTConfig


@pytest.fixture(scope="module")
def data(reviews_csv: Path):
    return load_dataset(DatasetConfig(source=str(reviews_csv), group_column="movie", max_length=32))


def _encoder(path: Path) -> ModelArtifact:
    return ModelArtifact(path, "hf", (), content_hash(path), origin={"checkpoint": str(path)})


def test_finetune_makes_a_classifier_with_the_data_labels(tiny_encoder: Path, data, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    config = FinetuneConfig(max_train_rows=32, batch_size=16, max_length=32)
    result = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert result.label_names == ("fresh", "rotten")
    assert [s.name for s in result.lineage] == ["finetune"]
    assert result.lineage[0].config["max_train_rows"] == 32
    assert result.details["train_rows"] == 32
    assert (result.path / MANIFEST).is_file()
    assert result.sha256 == content_hash(result.path)
    model = AutoModelForSequenceClassification.from_pretrained(result.path)
    assert model.config.id2label == {0: "fresh", 1: "rotten"}
    original = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=2)
    changed = [
        name
        for name, p in model.bert.named_parameters()
        if not np.allclose(p.detach().numpy(), dict(original.bert.named_parameters())[name].detach().numpy())
    ]
    assert changed, "training left every encoder weight unchanged"


def test_finetune_names_its_outputs_in_the_datas_label_order(tiny_encoder: Path, data, tmp_path: Path) -> None:
    """Data whose label ids run rotten, fresh (as a finetune step in a chain gets them, aligned to a classifier
    baseline of that order): output 0 is trained on the rotten rows and must be named rotten. Named in sorted order,
    the saved classifier called every rotten prediction fresh, and the benchmark scored it so."""
    aligned = align_labels(data, ["rotten", "fresh"])
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    result = run_step(config, _encoder(tiny_encoder), aligned, tmp_path)
    assert result.label_names == ("rotten", "fresh")
    tuned = json.loads((result.path / "config.json").read_text())
    assert tuned["id2label"] == {"0": "rotten", "1": "fresh"} and tuned["label2id"] == {"rotten": 0, "fresh": 1}


def test_each_fine_tune_batch_is_trained_on_its_own_rows_labels(
    tiny_encoder: Path, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss of a batch of train rows must be against those rows' labels: the model would learn another text's
    label for each text, and nothing else would show it but a lower accuracy. The rows asked for here are ones whose
    labels are not the split's first ones."""
    from optbench.steps import finetune
    from optbench.training import TrainingRun

    labels = data.train.labels
    rows = np.array([*[i for i in range(len(labels)) if labels[i] != labels[0]][:3], 0])
    assert list(labels[rows]) != list(labels[: len(rows)]), "rows whose labels a positional slice would not give"
    seen: list[tuple[list[int], list[int]]] = []

    def one_batch(model, config, train_rows, batch_loss, *, desc):  # type: ignore[no-untyped-def]
        forward = model.forward

        @functools.wraps(forward)  # the inputs a batch holds are read from forward's signature
        def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((kwargs["input_ids"][:, 1].tolist(), kwargs["labels"].tolist()))
            return forward(*args, **kwargs)

        model.forward = recording
        batch_loss(rows)
        model.forward = forward
        return TrainingRun(rows=len(rows), seconds=1.5)

    monkeypatch.setattr(finetune, "train", one_batch)
    config = FinetuneConfig(max_train_rows=4, batch_size=4, max_length=32)
    result = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert (result.details["train_rows"], result.details["train_seconds"]) == (4, 1.5)  # the run's, as train gave them
    ((first_tokens, trained_labels),) = seen
    assert trained_labels == labels[rows].tolist()
    tokenizer = finetune.load_tokenizer(tiny_encoder)
    expected = [tokenizer(data.train.texts[i])["input_ids"][1] for i in rows]
    assert first_tokens == expected


def test_a_fine_tune_is_seeded_trains_at_its_own_length_and_records_its_validation_accuracy(
    tiny_encoder: Path, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same config twice gives the same weights (the new head is drawn from torch's generator: unseeded, it
    changed with whatever ran before); its batches are cut at [model.finetune]'s max_length, not the dataset's;
    and the manifest's validation_accuracy is the saved model's on the validation split."""
    from transformers import AutoModelForSequenceClassification

    from optbench.encoding import load_tokenizer
    from optbench.steps import finetune
    from optbench.training import accuracy

    widths: list[int] = []
    real = finetune.encode_rows

    def recorded(*args):  # type: ignore[no-untyped-def]
        inputs = real(*args)
        widths.append(inputs["input_ids"].shape[1])
        return inputs

    measured_at: list[int] = []
    real_accuracy = finetune.accuracy

    def measured(model, tokenizer, split, max_length):  # type: ignore[no-untyped-def]
        measured_at.append(max_length)
        return real_accuracy(model, tokenizer, split, max_length)

    monkeypatch.setattr(finetune, "encode_rows", recorded)
    monkeypatch.setattr(finetune, "accuracy", measured)
    config = FinetuneConfig(max_train_rows=16, batch_size=8, max_length=16)  # the data's max_length is 32
    first, second = (run_step(config, _encoder(tiny_encoder), data, tmp_path / n) for n in "ab")
    assert (first.path / "model.safetensors").read_bytes() == (second.path / "model.safetensors").read_bytes()
    assert max(widths) == 16
    assert measured_at == [16, 16]  # validated at the length it was trained at (the tiny model scores alike at 32)
    model = AutoModelForSequenceClassification.from_pretrained(first.path)
    expected = accuracy(model, load_tokenizer(first.path), data.validation, config.max_length)
    assert first.details["validation_accuracy"] == pytest.approx(expected)


def test_a_fine_tune_of_one_epoch_trains_on_every_train_row(tiny_encoder: Path, data, tmp_path: Path) -> None:
    """Without max_train_rows one epoch is the whole train split: every other test caps the rows, so a fine-tune
    that left a row out recorded its cap and passed."""
    config = FinetuneConfig(batch_size=64, max_length=16)
    result = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert result.details["train_rows"] == len(data.train)


def test_a_fine_tune_s_seed_draws_its_new_head(
    tiny_encoder: Path, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head a fine-tune adds to an encoder is drawn with the step's seed: drawn with a fixed one, every seed
    started from the same head and differed only in its rows' order, and every test passed."""
    from safetensors.numpy import load_file

    from optbench.steps import finetune
    from optbench.training import TrainingRun

    monkeypatch.setattr(finetune, "train", lambda *args, **kwargs: TrainingRun(rows=0, seconds=0.0))  # the new head

    def head(seed: int, folder: str) -> np.ndarray:
        config = FinetuneConfig(max_train_rows=16, max_length=16, seed=seed)
        result = run_step(config, _encoder(tiny_encoder), data, tmp_path / folder)
        return load_file(result.path / "model.safetensors")["classifier.weight"]

    assert np.array_equal(head(1, "a"), head(1, "b")) and not np.array_equal(head(0, "c"), head(1, "d"))


@pytest.mark.parametrize(
    "head",
    [
        {"problem_type": "regression", "id2label": {"0": "score"}},
        {"problem_type": "multi_label_classification"},
        {"id2label": {"0": "a", "1": "b", "2": "c"}, "label2id": {"a": 0, "b": 1, "c": 2}},
    ],
)
def test_finetune_trains_one_label_per_text_whatever_head_the_encoder_was_saved_without(
    tiny_encoder: Path, data, tmp_path: Path, head: dict
) -> None:
    """An encoder saved from a regression or multi-label model (AutoModel.from_pretrained(folder).save_pretrained())
    keeps its problem_type, which chose transformers' loss: MSE or BCE against class ids failed with a traceback. One
    saved from a classifier of other labels keeps their label2id, which the fine-tuned classifier must not."""
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, encoder)
    saved = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**saved, **head}))
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    result = run_step(config, _encoder(encoder), data, tmp_path)
    tuned = json.loads((result.path / "config.json").read_text())
    assert tuned["problem_type"] == "single_label_classification" and tuned["id2label"] == {"0": "fresh", "1": "rotten"}
    assert tuned["label2id"] == {"fresh": 0, "rotten": 1}


def test_step_output_is_cached_by_input_config_and_data(tiny_encoder: Path, data, tmp_path: Path, monkeypatch) -> None:
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    first = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    manifest = json.loads((first.path / MANIFEST).read_text())
    assert manifest["path"] == str(first.path)  # the cache folder, not the temporary one it was built in
    calls = []
    monkeypatch.setitem(STEPS, "finetune", STEPS["finetune"].__class__(FinetuneConfig, lambda *a: calls.append(a)))
    second = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert calls == [] and second.path == first.path and second.sha256 == first.sha256
    labelled = run_step(config, _encoder(tiny_encoder), data, tmp_path, label="short")
    assert (
        labelled.path == first.path and labelled.variant == "baseline+short" and second.variant == "baseline+finetune"
    )
    other = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32, seed=1)
    assert cache_key(other, _encoder(tiny_encoder), data) != cache_key(config, _encoder(tiny_encoder), data)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("error", [OptbenchError("boom"), KeyboardInterrupt("boom")])  # KeyboardInterrupt: Ctrl-C
def test_a_failing_step_leaves_no_output_behind(
    error: BaseException, tiny_encoder: Path, data, tmp_path: Path, monkeypatch
) -> None:
    def explode(config, artifact, data, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half-written weights")
        raise error

    monkeypatch.setitem(STEPS, "finetune", STEPS["finetune"].__class__(FinetuneConfig, explode))
    with pytest.raises(type(error), match="boom"):
        run_step(FinetuneConfig(max_train_rows=16), _encoder(tiny_encoder), data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_step_removes_the_work_folders_of_killed_runs_but_not_of_live_ones(
    tiny_encoder: Path, data, tmp_path: Path, monkeypatch
) -> None:
    """A run killed outright (kill -9) leaves its work folder and the lock file it held; the next step in that
    cache removes the folder, while one whose lock a live process holds (here an open file of this one) stays."""
    import fcntl
    import os

    def leftover(name: str) -> Path:
        (tmp_path / f".{name}.tmp").mkdir(parents=True)
        (tmp_path / f".{name}.tmp" / "model.safetensors").write_bytes(b"half-written weights")
        (tmp_path / f".{name}.lock").touch()
        return tmp_path / f".{name}.tmp"

    dead, live = leftover("finetune-0123456789abcdef.4242.aa11bb22"), leftover("onnx-fedcba9876543210.4243.cc33dd44")
    held = os.open(live.with_suffix(".lock"), os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        monkeypatch.setitem(
            STEPS,
            "finetune",
            STEPS["finetune"].__class__(
                FinetuneConfig,
                lambda config, artifact, data, out_dir: artifact.derive(
                    out_dir, step="finetune", config={}, format="hf", details={}
                ),
            ),
        )
        output = run_step(FinetuneConfig(max_train_rows=16), _encoder(tiny_encoder), data, tmp_path)
    finally:
        os.close(held)
    assert not dead.exists() and not dead.with_suffix(".lock").exists()
    assert (live / "model.safetensors").is_file() and live.with_suffix(".lock").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.path.name, live.name, f"{live.stem}.lock"])


def test_parse_step_refuses_unknown_names_and_keys() -> None:
    assert parse_step({"name": "finetune", "epochs": 2}, "[[steps]] #1") == RecipeStep(FinetuneConfig(epochs=2))
    labelled = parse_step({"name": "finetune", "label": "longer-2", "epochs": 2}, "[[steps]] #1")
    assert labelled.where == "[[steps]] #1 (finetune)"  # named by the errors about its settings
    assert labelled == RecipeStep(FinetuneConfig(epochs=2), "longer-2")
    for bad in ("two words", "a+b", 3, "", ".."):  # "..": letters and '.' alone, refused for its first character
        with pytest.raises(
            OptbenchError, match=r"\[\[steps\]\] #1 \(finetune\) label = .*: start with a letter or digit"
        ):
            parse_step({"name": "finetune", "label": bad}, "[[steps]] #1")
    with pytest.raises(OptbenchError, match=r"unknown step 'prune-everything'.*known steps are \[.*'finetune'.*\]"):
        parse_step({"name": "prune-everything"}, "[[steps]] #1")
    with pytest.raises(OptbenchError, match=r"unknown key\(s\) \['epoch'\]"):
        parse_step({"name": "finetune", "epoch": 2}, "[[steps]] #1")


BAD_FINETUNE = [
    {"epochs": 0},
    {"batch_size": 0},
    {"learning_rate": -1.0},
    {"learning_rate": 0.0},  # trained nothing, without a word
    {"max_train_rows": 0},
    {"warmup_fraction": 1.0},
    {"max_length": 4},
    {"max_length": 7},  # one below the least taken (test_training: 8 is)
]


@pytest.mark.parametrize("kwargs", BAD_FINETUNE)
def test_finetune_config_refuses_bad_values(kwargs: dict) -> None:
    with pytest.raises(OptbenchError, match=r"^\[\[steps\]\] #1 \(finetune\) "):
        parse_step({"name": "finetune", **kwargs}, "[[steps]] #1")


IN_WORDS = {"hf": "a Hugging Face checkpoint", "onnx": "an ONNX model", "trt": "a TensorRT engine"}
FIXES = {  # by the format the step takes, then the one it is given
    ("hf", "onnx"): "put it before the onnx step",
    ("onnx", "hf"): "put an onnx step before it",
    ("hf", "trt"): "nothing runs on a TensorRT engine: make tensorrt the chain's last step",
    ("onnx", "trt"): "nothing runs on a TensorRT engine: make tensorrt the chain's last step",
}
BACKEND_HINT = ', or choose its backend: "onnxruntime" quantizes ONNX models, "torch" checkpoints'


def test_formats_are_named_in_words_each_with_its_article() -> None:
    """As a refusal names what a runtime runs; several read as alternatives (every engine takes one format today, so
    no refusal showed the joining)."""
    assert [in_words([f]) for f in IN_WORDS] == list(IN_WORDS.values())
    assert in_words(["onnx", "trt"]) == "an ONNX model or a TensorRT engine"


@pytest.mark.parametrize("given", ["other", "trt"])
@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_refuses_a_format_it_does_not_take(name: str, given: str, data, tmp_path: Path) -> None:
    """Each step said it its own way ("not a onnx model", "not hf ones", some with no fix); now one message names
    what the step takes, what it was given and where it goes in its chain, before any work."""
    config = PruneConfig(heads=0.5) if name == "prune" else STEPS[name].config_type()
    needs = config.input_format
    given = {"hf": "onnx", "onnx": "hf"}[needs] if given == "other" else given
    model = ModelArtifact(tmp_path / "model", given, ("fresh", "rotten"), "0" * 64)
    fix = FIXES[needs, given] + (BACKEND_HINT if name == "quantize-dynamic" and given != "trt" else "")
    if config.output_format == given == "onnx":  # an exporter after another
        fix = "a chain makes an ONNX model once: drop one of the steps that make one, or start another chain"
    message = f"{name} takes {IN_WORDS[needs]}, not {IN_WORDS[given]}: {fix}"
    with pytest.raises(OptbenchError) as refused:
        STEPS[name].apply(config, model, data, tmp_path / "out")
    assert str(refused.value) == message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "config", [DynamicQuantizeConfig(), StaticQuantizeConfig(), TensorRTConfig()], ids=lambda c: c.name
)
def test_an_onnx_model_without_its_file_is_named_as_such(config: object, data, tmp_path: Path) -> None:
    """It was told to put an onnx step before the step, as if it were no ONNX model."""
    model = ModelArtifact(tmp_path / "model", "onnx", ("fresh", "rotten"), "0" * 64)
    with pytest.raises(OptbenchError, match=r"model\.onnx does not exist: the artifact has no ONNX model; delete"):
        STEPS[config.name].apply(config, model, data, tmp_path / "out")


def test_a_damaged_cached_output_is_refused(tiny_encoder: Path, data, tmp_path: Path) -> None:
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    first = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    weights = first.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(OptbenchError, match=r"is damaged .*delete that folder"):
        run_step(config, _encoder(tiny_encoder), data, tmp_path)


def test_a_cache_folder_emptied_by_hand_is_filled_anew(tiny_encoder: Path, data, tmp_path: Path) -> None:
    """A step's cache folder whose files were deleted (the folder left behind) holds no output: the step runs and
    stores it there, rather than failing on the manifest it lacks."""
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    step_folder(config, _encoder(tiny_encoder), data, tmp_path).mkdir()
    result = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert result.path == step_folder(config, _encoder(tiny_encoder), data, tmp_path)
    assert content_hash(result.path) == result.sha256


def test_a_cached_output_takes_its_history_from_the_current_input(tiny_encoder: Path, data, tmp_path: Path) -> None:
    from dataclasses import replace

    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    first = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    assert [s.name for s in first.lineage] == ["finetune"]
    other_history = replace(_encoder(tiny_encoder), origin={"checkpoint": "elsewhere"}, lineage=(StepRecord("x", {}),))
    again = run_step(config, other_history, data, tmp_path)
    assert again.path == first.path and again.origin == {"checkpoint": "elsewhere"}
    assert [s.name for s in again.lineage] == ["x", "finetune"]


def test_the_cache_key_follows_the_input_model_and_the_data(
    tiny_encoder: Path, data, reviews_csv: Path, tmp_path: Path
) -> None:
    """A checkpoint whose tokenizer was edited in place, or data split otherwise, makes another model: the step's
    cached output of the old input must not be handed back. A copy of the checkpoint in another folder, with a
    README beside it, is the same input: its cached output is reused."""
    config = FinetuneConfig(max_train_rows=16, batch_size=16, max_length=32)
    first = cache_key(config, _encoder(tiny_encoder), data)
    copy = shutil.copytree(tiny_encoder, tmp_path / "copy", copy_function=shutil.copy)
    (copy / "README.md").write_text("my notes")
    assert cache_key(config, _encoder(copy), data) == first
    tokenizer = json.loads((copy / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["normalizer"]["lowercase"] = False  # "Great" and "great" now read as other tokens
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    assert cache_key(config, _encoder(copy), data) != first
    resplit = DatasetConfig(source=str(reviews_csv), group_column="movie", max_length=32, test_fraction=0.2)
    assert cache_key(config, _encoder(tiny_encoder), load_dataset(resplit)) != first


@dataclass(frozen=True)
class Plain:
    """A step config with none of the optional members `cache_key` reads."""

    name: ClassVar[str] = "plain"
    level: int = 1


def test_the_cache_key_of_a_step_that_changed_nothing_stays_as_it_was() -> None:
    """A key made otherwise for the same step, input and data would silently re-run every user's cached steps
    (hours of fine-tuning): a step of version 1 that names no libraries, data length, input files or build target
    adds nothing for them. Change this value only with a deliberate CACHE_VERSION bump."""
    model, texts = SimpleNamespace(sha256="a" * 64), SimpleNamespace(fingerprint="f" * 16, max_length=128)
    assert cache_key(Plain(), model, texts) == "c1b10283d67be129"


def test_a_step_version_bump_invalidates_its_cache(tiny_encoder: Path, data, monkeypatch) -> None:
    config = FinetuneConfig()
    before = cache_key(config, _encoder(tiny_encoder), data)
    monkeypatch.setattr(FinetuneConfig, "version", 2, raising=False)
    assert cache_key(config, _encoder(tiny_encoder), data) != before


@pytest.mark.parametrize(
    ("config", "version"),
    [
        (OnnxConfig(), 2),
        (StaticQuantizeConfig(), 3),
        (TensorRTConfig(), 2),
        (PruneConfig(heads=0.5), 3),
        (PeerOptimumConfig(quantization="static"), 3),
    ],
)
def test_a_step_never_goes_back_to_a_version_whose_outputs_it_no_longer_makes(config, version: int) -> None:
    """Each bump left cached outputs behind that the step no longer makes (an ONNX export of DistilBERT without
    fused attention, calibration batches padded to max_length): a version lowered again would hand them back."""
    assert config.version >= version


@pytest.mark.parametrize(
    ("config", "library", "other"),
    [
        (FinetuneConfig(), "transformers", "onnxruntime"),
        (OnnxConfig(), "onnxruntime", "torchao"),
        (DynamicQuantizeConfig(), "onnxruntime", "torch"),
        (DynamicQuantizeConfig(backend="torch"), "torchao", "onnxruntime"),
        (DynamicQuantizeConfig(backend="torch"), "torch", "onnxruntime"),  # torchao's INT8 kernels are torch's
        (PeerTorchaoConfig(), "torchao", "onnxruntime"),
        (PeerTorchaoConfig(), "torch", "onnxruntime"),  # its INT8 matmuls are torch's kernels
        (StaticQuantizeConfig(reduce_range=False, activation_type="int8", weight_type="int8"), "onnx", "transformers"),
    ],
)
def test_a_new_release_of_a_library_that_makes_a_step_invalidates_its_cache(
    config, library: str, other: str, tiny_encoder: Path, data, monkeypatch
) -> None:
    """An upgraded exporter or quantizer may write other output from the same input: the cache must not hand
    back what the old release made. A library the step does not use leaves its cache alone."""
    from optbench.steps import cache as steps

    real = steps.installed_version
    before = cache_key(config, _encoder(tiny_encoder), data)
    monkeypatch.setattr(steps, "installed_version", lambda name: "99.0" if name == other else real(name))
    assert cache_key(config, _encoder(tiny_encoder), data) == before
    monkeypatch.setattr(steps, "installed_version", lambda name: "99.0" if name == library else real(name))
    assert cache_key(config, _encoder(tiny_encoder), data) != before


def test_a_fraction_of_an_epoch_that_trains_on_no_row_is_refused(tiny_encoder: Path, data, tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"^the finetune step's epochs = 1e-05 of \d+ train rows trains on none"):
        run_step(FinetuneConfig(epochs=0.00001), _encoder(tiny_encoder), data, tmp_path)


def test_lengths_beyond_the_models_positions_are_refused_before_any_step(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    from optbench.pipeline import make_baseline
    from optbench.recipe import parse_recipe

    table = {
        "model": {"checkpoint": str(tiny_classifier)},  # 128 positions
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 256},
        "bench": {"seq_lens": [512, "data"]},
    }
    recipe = parse_recipe(table, base=tmp_path, default_name="long")
    data = load_dataset(recipe.dataset)
    with pytest.raises(OptbenchError, match=r"\[dataset\] max_length = 256, \[bench\] seq_len = 512 beyond the 128"):
        make_baseline(recipe, data, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("head", [True, False])
def test_the_finetune_length_is_held_to_the_positions_only_of_a_model_it_fine_tunes(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path, head: bool
) -> None:
    """[model.finetune] is used only when the checkpoint has no classification head: its max_length (64 unless
    set) refused a classifier of 16 positions whose recipe asks 16 tokens everywhere else."""
    from conftest import TINY
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from optbench.pipeline import make_baseline
    from optbench.recipe import parse_recipe

    labels = {"id2label": {0: "fresh", 1: "rotten"}, "label2id": {"fresh": 0, "rotten": 1}}
    config = BertConfig(**TINY, max_position_embeddings=16, **labels)
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_classifier).save_pretrained(tmp_path / "model")
    table = {
        "model": {"checkpoint": str(tmp_path / "model")},
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 16},
        "bench": {"seq_lens": [16, "data"]},
    }
    recipe = parse_recipe(table, base=tmp_path, default_name="short")
    data = load_dataset(recipe.dataset)
    if head:
        assert make_baseline(recipe, data, tmp_path / "cache").path == tmp_path / "model"
    else:
        with pytest.raises(OptbenchError, match=r"^\[model.finetune\] max_length = 64 beyond the 16 positions"):
            make_baseline(recipe, data, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_tokenizer_with_more_tokens_than_the_model_embeds_is_refused_before_any_step(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    """The tokenizer of another model (30522 tokens) beside weights of 1000 embeddings: the run failed in its first
    job with torch's bare "index out of range in self"."""
    from conftest import TINY
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from optbench.pipeline import make_baseline
    from optbench.recipe import parse_recipe

    labels = {"id2label": {0: "fresh", 1: "rotten"}, "label2id": {"fresh": 0, "rotten": 1}}
    BertForSequenceClassification(BertConfig(**TINY, vocab_size=1000, **labels)).save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_classifier).save_pretrained(tmp_path / "model")
    table = {
        "model": {"checkpoint": str(tmp_path / "model")},
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 32},
    }
    recipe = parse_recipe(table, base=tmp_path, default_name="vocab")
    with pytest.raises(OptbenchError, match=r"has 30522 tokens and the model embeds 1000 \(vocab_size\): "):
        make_baseline(recipe, load_dataset(recipe.dataset), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_tensorrt_shapes_beyond_the_models_positions_are_refused_before_any_step(
    tiny_classifier: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    """The tensorrt step's own lengths and a TensorRT provider's profile: TensorRT failed on them on the GPU."""
    from optbench.pipeline import make_baseline
    from optbench.recipe import parse_recipe

    profile = {"min": [1, 1], "opt": [1, 64], "max": [64, 256]}
    table = {
        "model": {"checkpoint": str(tiny_classifier)},  # 128 positions
        "dataset": {"source": str(reviews_csv), "group_column": "movie", "max_length": 64},
        "steps": [{"name": "onnx", "fuse": False}, {"name": "tensorrt", "seq_lens": [32, 200, "data"]}],
        "bench": {
            "seq_lens": [32, "data"],
            "runtimes": [
                "torch",
                {"name": "tensorrt", "device": "cuda"},
                {"name": "onnxruntime", "device": "cuda", "options": {"provider": "tensorrt", "trt_profile": profile}},
            ],
        },
    }
    recipe = parse_recipe(table, base=tmp_path, default_name="long")
    data = load_dataset(recipe.dataset)
    with pytest.raises(
        OptbenchError,
        match=r"\[\[steps\]\] #2 \(tensorrt\) seq_len = 200, runtime onnxruntime-cuda-fp32-tensorrt trt_profile max "
        "sequence = 256 beyond the 128",
    ):
        make_baseline(recipe, data, tmp_path / "cache")


def test_two_runs_of_one_step_sharing_a_cache_keep_their_own_work(
    tiny_encoder: Path, data, tmp_path: Path, monkeypatch
) -> None:
    """Two processes with one pid (containers sharing a cache volume; here two threads) run the same step: neither
    deletes the other's work in progress, and the one that finishes second takes the first one's output."""
    import threading

    config = FinetuneConfig(max_train_rows=16)
    written, published = threading.Event(), threading.Event()

    def slow(config, artifact, data, out_dir: Path) -> ModelArtifact:
        (out_dir / "model.safetensors").write_bytes(b"slow weights")  # told apart from the output kept
        written.set()
        published.wait(timeout=60)  # the other run publishes meanwhile
        return artifact.derive(out_dir, step="finetune", config={}, format="hf", details={})

    def fast(config, artifact, data, out_dir: Path) -> ModelArtifact:
        (out_dir / "model.safetensors").write_bytes(b"fast weights")
        return artifact.derive(out_dir, step="finetune", config={}, format="hf", details={})

    outcome: list[object] = []

    def first_run() -> None:
        try:
            outcome.append(run_step(config, _encoder(tiny_encoder), data, tmp_path))
        except BaseException as exc:  # the test reports it
            outcome.append(exc)

    monkeypatch.setitem(STEPS, "finetune", STEPS["finetune"].__class__(FinetuneConfig, slow))
    thread = threading.Thread(target=first_run)
    thread.start()
    assert written.wait(timeout=60)
    monkeypatch.setitem(STEPS, "finetune", STEPS["finetune"].__class__(FinetuneConfig, fast))
    second = run_step(config, _encoder(tiny_encoder), data, tmp_path)
    published.set()
    thread.join(timeout=60)
    (first,) = outcome
    assert isinstance(first, ModelArtifact), first
    assert first.path == second.path and first.sha256 == second.sha256
    assert (second.path / "model.safetensors").read_bytes() == b"fast weights"  # the first one published stays
    assert [p.name for p in tmp_path.iterdir()] == [second.path.name]


def test_roberta_style_position_ids_leave_fewer_tokens_than_their_embeddings() -> None:
    from optbench.preflight import _token_limit

    # RoBERTa's position ids start after the padding index: 514 embeddings, pad 1 -> 512 tokens (513 crashes).
    assert _token_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert _token_limit({"model_type": "xlm-roberta", "max_position_embeddings": 20, "pad_token_id": 1}) == 18
    pruned = {"model_type": "optbench-pruned-roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    assert _token_limit(pruned) == 512  # a pruned RoBERTa keeps RoBERTa's embeddings
    assert _token_limit({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}) == 512
    assert _token_limit({"model_type": "bert"}) is None
