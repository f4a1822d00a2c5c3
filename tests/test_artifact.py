"""ModelArtifact, checkpoint checks, content hashes, manifests, and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from optbench import atomic
from optbench.artifact import HF_FILES, MANIFEST, ModelArtifact, StepRecord, content_hash, weight_files
from optbench.atomic import write_json_atomic, write_text_atomic
from optbench.errors import OptbenchError
from optbench.hf_config import (
    BERT_FAMILY,
    DEFAULT_NUM_LABELS,
    VOCABULARY_FILES,
    has_classifier_head,
    hf_label_names,
    read_hf_config,
)

MIB = 2**20
BERT_CONFIG = b'{"model_type": "bert"}'


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    """Create `folder` holding `files` (relative name -> bytes)."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def fake_checkpoint(folder: Path, config: dict[str, Any] | None = None) -> Path:
    """A folder that looks like a Hugging Face checkpoint, with small fake weights."""
    return write_files(
        folder,
        {
            "config.json": json.dumps(config or {"architectures": ["BertModel"]}).encode(),
            "model.safetensors": b"weights" * 100,
            "tokenizer.json": b"{}",
        },
    )


# --- reading checkpoints ---------------------------------------------------------------------------------


def test_read_hf_config_of_real_checkpoints(tiny_encoder: Path, tiny_classifier: Path) -> None:
    encoder, classifier = read_hf_config(tiny_encoder), read_hf_config(tiny_classifier)
    assert encoder["hidden_size"] == classifier["hidden_size"] == 32
    assert has_classifier_head(classifier)
    assert not has_classifier_head(encoder)
    assert hf_label_names(classifier) == ("fresh", "rotten")


def test_read_hf_config_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"model folder .*absent does not exist"):
        read_hf_config(tmp_path / "absent")


def test_read_hf_config_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(OptbenchError, match=r"model\.safetensors is a file: give the checkpoint folder that holds"):
        read_hf_config(path)


def test_read_hf_config_without_config_json(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"model.safetensors": b"w"})
    with pytest.raises(OptbenchError, match=r"has no readable config\.json \(No such file or directory\)"):
        read_hf_config(folder)


def test_read_hf_config_with_invalid_json(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"config.json": b"{not json", "model.safetensors": b"w"})
    with pytest.raises(OptbenchError, match=r"config\.json is not valid JSON"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\xff\xfe{}", r"is not valid JSON \('utf-8' codec can't decode"), (b"[1]", r"holds a JSON list, not an object")],
)
def test_read_hf_config_that_is_not_a_json_object(tmp_path: Path, content: bytes, problem: str) -> None:
    folder = write_files(tmp_path / "m", {"config.json": content, "model.safetensors": b"w"})
    with pytest.raises(OptbenchError, match=problem):
        read_hf_config(folder)


def test_read_hf_config_without_weights(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"config.json": b"{}", "model.onnx": b"w", "vocab.txt": b"a"})
    with pytest.raises(OptbenchError, match=r"has no weights \(model\.safetensors or pytorch_model\.bin\)"):
        read_hf_config(folder)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", "model-00001-of-00002.safetensors"])
def test_read_hf_config_accepts_weight_names(tmp_path: Path, weights: str) -> None:
    folder = write_files(tmp_path / "m", {"config.json": BERT_CONFIG, weights: b"w", "vocab.txt": b"a"})
    assert read_hf_config(folder) == {"model_type": "bert"}


def test_read_hf_config_without_a_vocabulary(tmp_path: Path) -> None:
    """Without one, transformers builds a tokenizer of the special tokens alone that reads every word as [UNK]."""
    files = {"config.json": b"{}", "model.safetensors": b"w", "tokenizer_config.json": b"{}"}
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(OptbenchError, match=r"has no tokenizer vocabulary \(tokenizer\.json, vocab\.txt, .*save the "):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("weights", "pointer"),
    [
        ("model.safetensors", "model.safetensors"),
        ("pytorch_model.bin", "pytorch_model.bin"),
        ("model.safetensors", "tokenizer.json"),
        ("model.safetensors", "config.json"),
    ],
)
def test_read_hf_config_refuses_git_lfs_pointers(tmp_path: Path, weights: str, pointer: str) -> None:
    """A Hub repository cloned without git-lfs: every file there by name, the large ones a few lines of text. It
    passed, and the run failed when a step or job loaded the weights, with safetensors' own error."""
    files = {"config.json": BERT_CONFIG, weights: b"w", "tokenizer.json": b"{}"}
    files[pointer] = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 90868376\n"
    folder = write_files(tmp_path / "m", files)
    message = rf"has Git LFS pointers in place of {pointer}: run `git lfs install && git lfs pull` in that folder"
    with pytest.raises(OptbenchError, match=message):
        read_hf_config(folder)


@pytest.mark.parametrize("vocabulary", VOCABULARY_FILES)
def test_read_hf_config_accepts_every_kind_of_vocabulary(tmp_path: Path, vocabulary: str) -> None:
    assert vocabulary in HF_FILES  # carried along with the model by every step
    folder = write_files(tmp_path / "m", {"config.json": BERT_CONFIG, "model.safetensors": b"w", vocabulary: b"v"})
    assert read_hf_config(folder) == {"model_type": "bert"}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "has no model_type"),
        ({"model_type": "bert-custom"}, r"model_type = 'bert-custom' is not a model type transformers [0-9.]+ knows"),
        ({"model_type": 3}, r"model_type = 3 is not a model type transformers [0-9.]+ knows"),
    ],
)
def test_read_hf_config_refuses_a_model_type_transformers_cannot_build(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    """Found when the checkpoint is read; before, the benchmark's first job failed on transformers' upgrade hint."""
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": b"w", "vocab.txt": b"a"}
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(
        OptbenchError,
        match=rf'config\.json {problem}: optbench takes encoder \(BERT-family\) classifiers \(model_type "bert", ',
    ):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("model_type", "kind"),
    [("gpt2", "decoder-only"), ("llama", "decoder-only"), ("bart", "encoder-decoder"), ("t5", "encoder-decoder")],
)
def test_read_hf_config_refuses_a_model_that_is_no_encoder(tmp_path: Path, model_type: str, kind: str) -> None:
    """transformers knows these types, but they failed part way through a run: a GPT-2 tokenizer without a pad
    token on the first batch (a traceback), GPT-2's and T5's ONNX exports on onnxruntime's check (an error saying to
    re-run the onnx step), and torch INT8 left GPT-2's Conv1D layers FP32 while the report called the model INT8."""
    files = {"config.json": json.dumps({"model_type": model_type}).encode(), "model.safetensors": b"w"}
    folder = write_files(tmp_path / "m", {**files, "vocab.json": b"v"})
    family = ", ".join(f'"{name}"' for name in BERT_FAMILY)
    message = (
        f"{folder / 'config.json'} model_type = '{model_type}' is {kind}: optbench takes encoder (BERT-family) "
        f"classifiers (model_type {family}); give a checkpoint of one of those as save_pretrained() writes it"
    )
    with pytest.raises(OptbenchError) as raised:
        read_hf_config(folder)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "model_type",
    [*BERT_FAMILY, "optbench-pruned-bert", "optbench-pruned-distilbert", "mpnet", "camembert", "modernbert"],
)
def test_read_hf_config_takes_every_encoder(tmp_path: Path, model_type: str) -> None:
    """BERT's kin have a causal LM too (a BERT can be built as a decoder): they are encoders all the same."""
    config = {"model_type": model_type}
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": b"w", "vocab.txt": b"v"}
    assert read_hf_config(write_files(tmp_path / "m", files)) == config


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"architectures": "BertForSequenceClassification"},
            r'architectures = "BertForSequenceClassification" is not a list of class names: write it as '
            r'\["BertForSequenceClassification"\], a list as save_pretrained\(\) writes it',
        ),
        (
            {"architectures": [1]},
            r"architectures = \[1\] is not a list of class names: write it as the model's class names, e\.g\. \[",
        ),
    ],
)
def test_read_hf_config_refuses_architectures_that_are_not_a_list_of_names(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    """A string was read as no classifier head (a trained classifier fine-tuned again), a number as a traceback."""
    files = {"config.json": json.dumps({"model_type": "bert", **config}).encode(), "model.safetensors": b"w"}
    folder = write_files(tmp_path / "m", {**files, "vocab.txt": b"a"})
    with pytest.raises(OptbenchError, match=rf"config\.json: {problem}"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"id2label": ["neg", "pos"]}, r"id2label = \['neg', 'pos'\] is not an object of label ids 0 to 1"),
        (
            {"id2label": {"0": "neg", "2": "pos"}},
            r"id2label = \{'0': 'neg', '2': 'pos'\} is not an object of label ids",
        ),
        ({"id2label": {"0": "neg", "1": "pos"}, "num_labels": 3}, r"num_labels = 3 and id2label names 2 labels"),
        ({"id2label": 2}, r"id2label = 2 is not an object of label ids"),  # a traceback: an int has no len()
        ({"id2label": {"0": "neg", "1": "pos"}, "num_labels": "2"}, r"num_labels = '2' is not a count"),
    ],
)
def test_read_hf_config_refuses_a_label_map_transformers_cannot_size(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    """transformers fails to load these (a list, a gap) or sizes the head by num_labels: refused before any step."""
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": b"w", "vocab.txt": b"a"}
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(OptbenchError, match=rf"config\.json: {problem}.*: write id2label as"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("id2label", "repeated"),
    [
        ({"0": "pos", "1": "pos"}, "'pos' for ids 0, 1"),
        ({"2": "b", "0": "a", "1": "b", "3": "a"}, "'a' for ids 0, 3; 'b' for ids 1, 2"),
        ({"0": 1, "1": "1"}, "'1' for ids 0, 1"),  # one name as optbench reads it
    ],
)
def test_read_hf_config_refuses_a_label_named_for_two_ids(tmp_path: Path, id2label: dict, repeated: str) -> None:
    """align_labels mapped the name to the first id, so a prediction of the other counted as wrong."""
    files = {"config.json": json.dumps({"id2label": id2label}).encode(), "model.safetensors": b"w", "vocab.txt": b"a"}
    folder = write_files(tmp_path / "m", files)
    message = rf"config\.json: id2label names one label for several ids \({repeated}\): edit id2label in config\.json"
    with pytest.raises(OptbenchError, match=message):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("architecture", "task"),
    [
        ("BertForTokenClassification", "token-classification"),
        ("DistilBertForTokenClassification", "token-classification"),
        ("BertForMultipleChoice", "multiple-choice"),
    ],
)
def test_read_hf_config_refuses_a_model_of_another_task(tmp_path: Path, architecture: str, task: str) -> None:
    """Its head, named as a sequence classifier's, failed transformers' load in the fine-tune with a traceback."""
    folder = fake_checkpoint(tmp_path, {"model_type": "bert", "architectures": [architecture]})
    with pytest.raises(
        OptbenchError, match=rf'architectures = \["{architecture}"\] is a {task} model: .* encoder alone'
    ):
        read_hf_config(folder)


CLASSIFIER = {"model_type": "bert", "architectures": ["BertForSequenceClassification"]}
ONE_LABEL_FIX = r'set problem_type = "single_label_classification" in config\.json; or, .* save its encoder alone'


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (
            {"problem_type": "multi_label_classification"},
            r'problem_type = "multi_label_classification": a multi-label head, a yes or no per class .*: if it was '
            rf"trained with one class per text, {ONE_LABEL_FIX}",
        ),
        (
            {"problem_type": "regression", "num_labels": 1},
            r'problem_type = "regression": a regression head, one score per text, not a class: give a classifier of '
            r"two or more classes, one per text; or, .* save its encoder alone",
        ),
        ({"num_labels": 1}, r"its head has one output: a regression head"),  # transformers' regression, unnamed
        ({"id2label": {"0": "similarity"}}, r"its head has one output: a regression head"),
        ({"problem_type": "single_label"}, rf'problem_type = "single_label" is not a problem type .*{ONE_LABEL_FIX}'),
    ],
)
def test_read_hf_config_refuses_a_classifier_accuracy_cannot_judge(
    tmp_path: Path, head: dict[str, Any], problem: str
) -> None:
    """Accuracy is the argmax over the logits against one label per text: over one output it is always the first,
    and a multi-label head's argmax was measured as if it were a classifier's, without a word."""
    folder = fake_checkpoint(tmp_path, {**CLASSIFIER, **head})
    with pytest.raises(OptbenchError, match=rf"config\.json: {problem}"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("weight", "labels", "outputs"),
    [
        ("classifier.weight", {"id2label": {"0": "neg", "1": "pos"}}, 3),  # BERT, DistilBERT, ALBERT, DeBERTa-v2
        ("classifier.out_proj.weight", {"id2label": {"0": "neg", "1": "pos"}}, 3),  # RoBERTa, XLM-RoBERTa, ELECTRA
        ("classifier.weight", {}, 5),  # no labels named: transformers' two
        ("classifier.weight", {"id2label": {"0": "neg", "1": "neutral", "2": "pos"}}, 2),  # a label added by hand
    ],
)
def test_read_hf_config_refuses_labels_the_classifier_has_no_outputs_for(
    tmp_path: Path, weight: str, labels: dict[str, Any], outputs: int
) -> None:
    """transformers refuses to load a head of another size than the labels (an id2label edited by hand): each job
    of the run failed with its "look at the above report", a report the job's process kept."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = fake_checkpoint(tmp_path, {**CLASSIFIER, **labels})
    save_file({weight: np.zeros((outputs, 8), np.float32)}, str(folder / "model.safetensors"))
    named = len(labels.get("id2label", {})) or DEFAULT_NUM_LABELS
    message = (
        rf"the classifier in model\.safetensors has {outputs} outputs and config\.json names {named} labels: write"
    )
    with pytest.raises(OptbenchError, match=rf"config\.json: {message} id2label as"):
        read_hf_config(folder)
    (folder / "config.json").write_text(json.dumps({**CLASSIFIER, "num_labels": outputs}))
    read_hf_config(folder)


@pytest.mark.parametrize(
    "config",
    [
        {**CLASSIFIER, "problem_type": "single_label_classification"},
        {**CLASSIFIER, "problem_type": None},
        # an encoder keeps the problem_type of the head it was saved without: the fine-tune trains a single-label one
        {"model_type": "bert", "architectures": ["BertModel"], "problem_type": "regression", "num_labels": 1},
    ],
)
def test_read_hf_config_takes_a_single_label_classifier_or_an_encoder(tmp_path: Path, config: dict[str, Any]) -> None:
    assert read_hf_config(fake_checkpoint(tmp_path, config)) == config


@pytest.mark.parametrize("architecture", ["BertModel", "BertForMaskedLM", "BertForQuestionAnswering"])
def test_read_hf_config_takes_an_encoder_with_a_head_a_classifier_leaves_out(tmp_path: Path, architecture: str) -> None:
    read_hf_config(fake_checkpoint(tmp_path, {"model_type": "bert", "architectures": [architecture]}))


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"id2label": {"0": "neg", "1": "pos"}}, ("neg", "pos")),
        ({"id2label": {"1": "pos", "0": "neg"}, "num_labels": 2}, ("neg", "pos")),
        ({"id2label": {0: "a", 1: "b", 2: "c"}}, ("a", "b", "c")),
        ({"num_labels": 3}, ("LABEL_0", "LABEL_1", "LABEL_2")),
        ({"id2label": {}, "num_labels": 2}, ("LABEL_0", "LABEL_1")),
    ],
)
def test_hf_label_names(config: dict[str, Any], names: tuple[str, ...]) -> None:
    assert hf_label_names(config) == names


def test_a_two_class_head_saved_without_label_names_has_transformers_generic_ones(tmp_path: Path) -> None:
    """save_pretrained() leaves out id2label and num_labels for a head of the default two generic labels (the
    usual classifier trained on integer labels): read as no labels at all, every dataset was refused."""
    from conftest import TINY
    from transformers import AutoConfig, BertConfig, BertForSequenceClassification

    BertForSequenceClassification(BertConfig(**TINY)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    loaded = AutoConfig.from_pretrained(tmp_path).id2label
    assert hf_label_names(config) == tuple(loaded[i] for i in range(len(loaded))) == ("LABEL_0", "LABEL_1")


@pytest.mark.parametrize(
    ("config", "head"),
    [
        ({"architectures": ["BertForSequenceClassification"]}, True),
        ({"architectures": ["RobertaForSequenceClassification"]}, True),
        ({"architectures": ["BertModel"]}, False),
        ({"architectures": ["BertForMaskedLM"]}, False),
        ({"architectures": None}, False),
        ({}, False),
    ],
)
def test_has_classifier_head(config: dict[str, Any], head: bool) -> None:
    assert has_classifier_head(config) is head


# --- content hash and size ------------------------------------------------------------------------------


def test_content_hash_is_stable_across_copies(tiny_classifier: Path, tmp_path: Path) -> None:
    first = content_hash(tiny_classifier)
    assert len(first) == 64
    assert content_hash(tiny_classifier) == first
    copy = shutil.copytree(tiny_classifier, tmp_path / "copy")
    assert content_hash(copy) == first


def test_content_hash_follows_what_makes_the_model(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path / "m")
    before = content_hash(folder)
    (folder / MANIFEST).write_text("{}")
    (folder / "README.md").write_text("notes")
    assert content_hash(folder) == before
    for name, text in [
        ("config.json", '{"architectures": ["Other"]}'),  # architecture and labels
        ("tokenizer.json", '{"changed": true}'),
        ("tokenizer_config.json", '{"do_lower_case": false}'),
        ("modeling_pruned_bert.py", "# the model's own code"),
    ]:
        (folder / name).write_text(text)
        assert content_hash(folder) != before, name
        before = content_hash(folder)
    (folder / "model.safetensors").write_bytes(b"weights" * 99 + b"weightZ")
    changed = content_hash(folder)
    assert changed != before
    (folder / "model.safetensors").rename(folder / "other.safetensors")
    renamed = content_hash(folder)
    assert renamed != changed  # file names count too
    (folder / "extra.onnx").write_bytes(b"")
    assert content_hash(folder) != renamed  # another weight file, even an empty one


@pytest.mark.parametrize("name", ["vocab.json", "merges.txt", "added_tokens.json", "spm.model"])
def test_content_hash_follows_every_tokenizer_file(tmp_path: Path, name: str) -> None:
    """RoBERTa's vocab.json beside its merges.txt, DeBERTa-v2/v3's spm.model, added tokens: the token ids."""
    folder = write_files(fake_checkpoint(tmp_path / "m"), {name: b"one"})
    before = content_hash(folder)
    (folder / name).write_bytes(b"two")
    assert content_hash(folder) != before


def test_content_hash_tells_models_apart(tiny_encoder: Path, tiny_classifier: Path) -> None:
    assert content_hash(tiny_encoder) != content_hash(tiny_classifier)


def test_size_mb_counts_weight_files_only(tmp_path: Path) -> None:
    folder = write_files(
        tmp_path / "m",
        {
            "model.safetensors": b"\0" * MIB,
            "extra.plan": b"\0" * (MIB // 2),
            "model.onnx_data": b"\0" * (MIB // 4),
            "config.json": b"\0" * (3 * MIB),
            "tokenizer.json": b"\0" * MIB,
            "vocab.txt": b"\0" * MIB,
        },
    )
    artifact = ModelArtifact(folder, "onnx", ("a", "b"), content_hash(folder))
    assert artifact.size_mb() == pytest.approx(1.75)
    assert [p.name for p in weight_files(folder)] == ["extra.plan", "model.onnx_data", "model.safetensors"]


def test_weights_are_the_files_the_model_loads(tmp_path: Path) -> None:
    """A checkpoint as the Hub ships it: transformers loads the top-level safetensors, not the pytorch_model.bin
    beside it nor the onnx/ and openvino/ exports below it; size, parameters and hash follow what it loads."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    folder = write_files(
        tmp_path / "m",
        {
            "config.json": b"{}",
            "model.safetensors": len(header).to_bytes(8, "little") + header + b"\0" * 64,
            "pytorch_model.bin": b"\0" * MIB,
            "onnx/model.onnx": b"\0" * MIB,
            "openvino/openvino_model.bin": b"\0" * MIB,
        },
    )
    artifact = ModelArtifact(folder, "hf", ("a", "b"), content_hash(folder))
    assert [p.name for p in weight_files(folder)] == ["model.safetensors"]
    assert artifact.size_mb() < 0.01 and artifact.parameters() == 16
    for extra in ("pytorch_model.bin", "onnx/model.onnx", "openvino/openvino_model.bin"):
        (folder / extra).write_bytes(b"changed")
    assert content_hash(folder) == artifact.sha256
    (folder / "model.safetensors").unlink()
    assert [p.name for p in weight_files(folder)] == ["pytorch_model.bin"]  # the weights when there is no other


@pytest.mark.parametrize(
    ("files", "loaded"),
    [
        # a hub snapshot: the safetensors run; the .bin copy and the ONNX exports beside them do not
        (["model.safetensors", "pytorch_model.bin", "onnx/model.onnx", "onnx/model_qint8.onnx"], 1),
        (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "pytorch_model.bin"], 2),
        (["pytorch_model.bin", "training_args.bin", "onnx/model.onnx"], 1),
    ],
)
def test_size_mb_of_a_checkpoint_counts_what_from_pretrained_loads(
    tmp_path: Path, files: list[str], loaded: int
) -> None:
    folder = write_files(tmp_path / "m", {"config.json": b"{}", **{name: b"\0" * MIB for name in files}})
    assert ModelArtifact(folder, "hf", ("a", "b"), "x").size_mb() == pytest.approx(loaded)


def test_size_mb_of_a_real_checkpoint(tiny_classifier: Path) -> None:
    artifact = ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), "x")
    weights = (tiny_classifier / "model.safetensors").stat().st_size
    assert artifact.size_mb() == pytest.approx(weights / MIB)


def test_parameters_of_a_checkpoint_and_its_onnx_export(tiny_classifier: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    expected = sum(p.numel() for p in model.parameters())
    assert ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), "x").parameters() == expected
    batch = {"input_ids": torch.tensor([[101, 2204, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    torch.onnx.export(model, (batch["input_ids"], batch["attention_mask"]), tmp_path / "model.onnx", dynamo=False)
    assert ModelArtifact(tmp_path, "onnx", ("fresh", "rotten"), "x").parameters() == pytest.approx(expected, rel=0.01)
    assert ModelArtifact(tmp_path / "nothing", "onnx", (), "x").parameters() == 0


# --- variants and manifests ------------------------------------------------------------------------------


def test_variant_names() -> None:
    base = ModelArtifact(Path("m"), "hf", ("a", "b"), "h")
    assert base.variant == "baseline"
    derived = ModelArtifact(
        Path("m"),
        "onnx",
        ("a", "b"),
        "h",
        lineage=(StepRecord("onnx", {"opset": 17}), StepRecord("quantize-static", {"calibration_rows": 64})),
    )
    assert derived.variant == "baseline+onnx+quantize-static"
    assert derived.to_dict()["variant"] == "baseline+onnx+quantize-static"


def test_manifest_round_trip(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path / "model")
    artifact = ModelArtifact(
        folder,
        "onnx",
        ("fresh", "rotten"),
        content_hash(folder),
        origin={"checkpoint": "default", "finetune": {"epochs": 1.0}},
        lineage=(StepRecord("onnx", {"opset": 17, "optimize": True}), StepRecord("quantize-dynamic", {})),
        details={"train_seconds": 12.5},
    )
    artifact.save_manifest()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, "config.json", "model.safetensors", "tokenizer.json"]
    )
    saved = json.loads((folder / MANIFEST).read_text())
    assert saved["variant"] == "baseline+onnx+quantize-dynamic"
    assert ModelArtifact.load(folder) == artifact


def test_manifest_load_takes_the_folder_it_is_in(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path / "model")
    ModelArtifact(folder, "hf", ("a", "b"), content_hash(folder)).save_manifest()
    moved = folder.rename(tmp_path / "moved")
    loaded = ModelArtifact.load(moved)
    assert loaded.path == moved
    assert loaded.label_names == ("a", "b")
    assert loaded.lineage == ()


def test_manifest_missing_or_broken(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path / "model")
    with pytest.raises(OptbenchError, match="cannot read artifact manifest"):
        ModelArtifact.load(folder)
    (folder / MANIFEST).write_text("{truncated")
    with pytest.raises(OptbenchError, match="cannot read artifact manifest"):
        ModelArtifact.load(folder)
    (folder / MANIFEST).write_bytes(b"\xff\xfe{}")
    with pytest.raises(OptbenchError, match="cannot read artifact manifest"):
        ModelArtifact.load(folder)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: [m], "not a mapping"),
        (lambda m: {k: v for k, v in m.items() if k != "sha256"}, "no 'sha256' entry"),
        (lambda m: {**m, "lineage": [{"config": {}}]}, "no 'name' entry"),
        (lambda m: {**m, "label_names": None}, "not iterable"),
        (lambda m: {**m, "format": "tflite"}, "format 'tflite' is none of hf, onnx, trt"),
    ],
)
def test_a_damaged_manifest_is_refused_naming_the_fix(
    tmp_path: Path, edit: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    """JSON that is not the manifest's object raised TypeError or KeyError, a traceback, from a cached step's folder."""
    folder = fake_checkpoint(tmp_path / "model")
    manifest = ModelArtifact(folder, "hf", ("a", "b"), content_hash(folder)).to_dict()
    (folder / MANIFEST).write_text(json.dumps(edit(manifest)))
    with pytest.raises(OptbenchError, match=rf"cannot read artifact manifest .*\(.*{problem}.*\): delete the folder"):
        ModelArtifact.load(folder)


# --- atomic writes --------------------------------------------------------------------------------------


def test_write_text_atomic_leaves_only_the_target(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "table.md"
    write_text_atomic(path, "first \u00b7 version\n")
    assert path.read_text(encoding="utf-8") == "first \u00b7 version\n"
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert os.listdir(path.parent) == ["table.md"]


def test_write_json_atomic_writes_json(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": [1, 2], "b": None})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": None}
    assert path.read_text().endswith("\n")
    assert os.listdir(tmp_path) == ["data.json"]


def _boom(*args: Any, **kwargs: Any) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    path = tmp_path / "report.json"
    path.write_text("old content\n")
    monkeypatch.setattr(atomic.os, target, _boom)
    with pytest.raises(OptbenchError, match=r"cannot write .*No space left"):
        write_text_atomic(path, "new content that never lands\n")
    monkeypatch.undo()
    assert path.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["report.json"]


def test_failed_json_encoding_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise TypeError("Object of type ndarray is not JSON serializable")

    monkeypatch.setattr(atomic.json, "dumps", refuse)
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": True})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_unserializable_data_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["manifest.json"]
