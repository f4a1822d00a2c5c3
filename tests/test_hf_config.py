"""Reading and checking a user's Hugging Face checkpoint: read_hf_config's checks, label names, classifier heads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_WEIGHTS, deny_permission, fake_checkpoint, write_files

from optbench.artifact import HF_FILES
from optbench.errors import OptbenchError
from optbench.hf_config import (
    BERT_FAMILY,
    DEFAULT_NUM_LABELS,
    VOCABULARY_FILES,
    has_classifier_head,
    hf_label_names,
    read_hf_config,
)

BERT_CONFIG = b'{"model_type": "bert"}'
# what a clone without git-lfs leaves in place of a large file
LFS_POINTER_TEXT = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 90868376\n"


def test_read_hf_config_of_real_checkpoints(tiny_encoder: Path, tiny_classifier: Path) -> None:
    encoder, classifier = read_hf_config(tiny_encoder), read_hf_config(tiny_classifier)
    assert encoder["hidden_size"] == classifier["hidden_size"] == 32
    assert has_classifier_head(classifier)
    assert not has_classifier_head(encoder)
    assert hf_label_names(classifier) == ("fresh", "rotten")


def test_read_hf_config_missing_folder(tmp_path: Path) -> None:
    """A model hub id given as the checkpoint (checkpoint = "distilbert-base-uncased") is a folder that does not exist:
    told that optbench downloads nothing, and how to save the model."""
    message = (
        f"model folder {tmp_path / 'distilbert-base-uncased'} does not exist: give a Hugging Face checkpoint folder, "
        'or "default" (optbench downloads nothing: save a Hub model into a folder first, with its tokenizer '
        "(from_pretrained(id), then save_pretrained(folder)))"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        read_hf_config(tmp_path / "distilbert-base-uncased")


def test_read_hf_config_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(OptbenchError, match=r"model\.safetensors is a file: give the checkpoint folder that holds"):
        read_hf_config(path)


def test_read_hf_config_without_config_json(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"model.safetensors": FAKE_WEIGHTS})
    with pytest.raises(OptbenchError, match=r"has no readable config\.json \(No such file or directory\)"):
        read_hf_config(folder)


def test_read_hf_config_with_invalid_json(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"config.json": b"{not json", "model.safetensors": FAKE_WEIGHTS})
    with pytest.raises(OptbenchError, match=r"config\.json is not valid JSON"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe{}", r"is not valid JSON \('utf-8' codec can't decode"),
        (b"[1]", r"holds a JSON list, not an object"),
        (b"[" * 100_000 + b"]" * 100_000, r"is not valid JSON \(maximum recursion depth exceeded"),
    ],
)
def test_read_hf_config_that_is_not_a_json_object(tmp_path: Path, content: bytes, problem: str) -> None:
    folder = write_files(tmp_path / "m", {"config.json": content, "model.safetensors": FAKE_WEIGHTS})
    with pytest.raises(OptbenchError, match=problem):
        read_hf_config(folder)


def test_read_hf_config_without_weights(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "m", {"config.json": b"{}", "model.onnx": b"w", "vocab.txt": b"a"})
    with pytest.raises(OptbenchError, match=r"has no weights \(model\.safetensors or pytorch_model\.bin\)"):
        read_hf_config(folder)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_read_hf_config_accepts_weight_names(tmp_path: Path, weights: str) -> None:
    content = _torch_weights() if weights.endswith(".bin") else FAKE_WEIGHTS
    folder = write_files(tmp_path / "m", {"config.json": BERT_CONFIG, weights: content, "vocab.txt": b"a"})
    assert read_hf_config(folder) == {"model_type": "bert"}


@pytest.mark.parametrize(
    ("weights", "said"),
    [
        (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], r"-of-00002.*; shards need the"),
        (
            ["my_model.safetensors"],
            r"\(\['my_model\.safetensors'\]\) under no name transformers loads \(model\.safetensors, ",
        ),
        (["model.bin"], r"\(\['model\.bin'\]\) under no name"),
    ],
    ids=["shards-without-index", "renamed", "renamed-bin"],
)
def test_read_hf_config_refuses_weights_under_no_name_transformers_loads(
    tmp_path: Path, weights: list[str], said: str
) -> None:
    """Shards copied without their index, or a weight file renamed: every check passed, and the first step failed
    with transformers' "no file named model.safetensors, or pytorch_model.bin"."""
    files = {"config.json": BERT_CONFIG, "vocab.txt": b"a", **dict.fromkeys(weights, FAKE_WEIGHTS)}
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(OptbenchError, match=f"^model folder .*{said}.*: copy that file into the folder, or save"):
        read_hf_config(folder)


def test_read_hf_config_without_a_vocabulary(tmp_path: Path) -> None:
    """Without one, transformers builds a tokenizer of the special tokens alone that reads every word as [UNK]."""
    files = {"config.json": BERT_CONFIG, "model.safetensors": FAKE_WEIGHTS, "tokenizer_config.json": b"{}"}
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
    files = {"config.json": BERT_CONFIG, weights: FAKE_WEIGHTS, "tokenizer.json": b"{}"}
    files[pointer] = LFS_POINTER_TEXT
    folder = write_files(tmp_path / "m", files)
    message = rf"has Git LFS pointers in place of {pointer}: run `git lfs install && git lfs pull` in that folder"
    with pytest.raises(OptbenchError, match=message):
        read_hf_config(folder)


FETCH_AGAIN = (
    "download it again (git lfs pull in a clone of the model, or huggingface-cli download), or copy it whole; or save "
    "the model again with save_pretrained()"
)
STOPPED = "(a download or copy stopped part way)"


@pytest.mark.parametrize("kept", [-1, -100, 20, 0])
def test_read_hf_config_refuses_weights_cut_short(tmp_path: Path, kept: int) -> None:
    """A download or copy stopped part way (in its tensors, in its header, or an empty file): every check by name
    passed, and the run's first step stopped in safetensors' SafetensorError traceback ("incomplete metadata, file not
    fully covered")."""
    import torch
    from safetensors.torch import save_file

    folder = write_files(tmp_path / "m", {"config.json": BERT_CONFIG, "tokenizer.json": b"{}"})
    weights = folder / "model.safetensors"
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(8, 4)}, str(weights))
    whole = weights.read_bytes()
    assert read_hf_config(folder) == {"model_type": "bert"}
    weights.write_bytes(whole[:kept])
    header_end = 8 + int.from_bytes(whole[:8], "little")
    size = {
        -1: f"is {len(whole) - 1} bytes where its header says {len(whole)}: cut short",
        -100: f"is {len(whole) - 100} bytes where its header says {len(whole)}: cut short",
        20: f"is 20 bytes where its header length says at least {header_end}: cut short",
        0: "is empty",
    }[kept]
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    assert str(refused.value) == f"model folder {folder}: model.safetensors {size} {STOPPED}: {FETCH_AGAIN}"


NOT_A_LENGTH = "is not safetensors: its first 8 bytes are not a safetensors header length"
AN_HTML_PAGE = "is an HTML page, not weights (a download that got a login or error page)"
NOT_ITS_HEADER = "is not safetensors: its header is not the JSON of its tensors"


def _header(text: bytes) -> bytes:
    return len(text).to_bytes(8, "little") + text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'<!DOCTYPE html>\n<html lang="en"><title>Sign in</title>', AN_HTML_PAGE),  # a login page
        (b"\xef\xbb\xbf\n  <HTML><body>404</body></HTML>", AN_HTML_PAGE),  # an error page, with a BOM and space
        (b"not weights", NOT_A_LENGTH),
        (b"w", NOT_A_LENGTH),
        (b"PK\x03\x04\0\0\x08\x08" + b"\0" * 60, NOT_A_LENGTH),  # torch.save's zip (pytorch_model.bin), misnamed
        (b"PK\x03\x04\0\0\0\0" + b"\0" * 60, NOT_ITS_HEADER),  # a zip whose first 8 bytes could be a length
        (_header(b"[1, 2]"), NOT_ITS_HEADER),
        (_header(b"{not json"), NOT_ITS_HEADER),
        (_header(b'{"w": {"dtype": "F32", "shape": [1]}}'), NOT_ITS_HEADER),  # an entry without offsets
        (FAKE_WEIGHTS + b"\0" * 4, f"is {len(FAKE_WEIGHTS) + 4} bytes where its header says {len(FAKE_WEIGHTS)}"),
        # the longest header safetensors reads (100 MB) is a length, of a file cut short; one byte more is not one
        (
            (10**8).to_bytes(8, "little") + b"{}",
            "is 10 bytes where its header length says at least 100000008: cut short",
        ),
        ((10**8 + 1).to_bytes(8, "little") + b"{}", NOT_A_LENGTH),
    ],
)
def test_read_hf_config_refuses_weights_that_are_not_safetensors(tmp_path: Path, content: bytes, problem: str) -> None:
    """A download that got a login or error page, or any other bytes named model.safetensors: every check by name
    passed, and the run's first step stopped in safetensors' SafetensorError traceback ("header too large")."""
    folder = fake_checkpoint(tmp_path / "m", {"model_type": "bert"})
    (folder / "model.safetensors").write_bytes(content)
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    assert str(refused.value).startswith(f"model folder {folder}: model.safetensors {problem}")
    assert str(refused.value).endswith(f": {FETCH_AGAIN}")


def test_read_hf_config_checks_every_shard_is_safetensors(tmp_path: Path) -> None:
    """A sharded checkpoint's weights are each checked: one page among whole shards is named."""
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    folder = fake_checkpoint(tmp_path / "m", {"model_type": "bert"})
    (folder / "model.safetensors").unlink()
    write_files(folder, {shards[0]: FAKE_WEIGHTS, shards[1]: b"<!doctype html><html></html>"})
    with pytest.raises(OptbenchError, match=f"^model folder {re.escape(str(folder))}: {shards[1]} is an HTML page"):
        read_hf_config(folder)


def test_read_hf_config_refuses_an_html_page_saved_as_pytorch_model_bin(tmp_path: Path) -> None:
    """torch.load's unpickling error, in the first step, told it before: weights of any kind that are a page."""
    folder = fake_checkpoint(tmp_path / "m", {"model_type": "bert"})
    (folder / "model.safetensors").unlink()
    write_files(folder, {"pytorch_model.bin": b"\n  <HTML><body>404</body></HTML>"})
    with pytest.raises(OptbenchError, match=r": pytorch_model\.bin is an HTML page, not weights"):
        read_hf_config(folder)


def _torch_weights(legacy: bool = False) -> bytes:
    """A small pytorch_model.bin as torch.save writes it: a zip, or the pickle of torch before 1.6 (`legacy`)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"bert.pooler.dense.bias": torch.zeros(8)}, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "pytorch_model-00002-of-00002.bin"])
@pytest.mark.parametrize("kept", [-1, 0.5, 0])
def test_read_hf_config_refuses_pytorch_weights_cut_short(tmp_path: Path, name: str, kept: float) -> None:
    """A pytorch_model.bin (a zip, as torch has saved since 1.6) whose download or copy stopped part way has no
    central directory, which a zip ends with: every check passed, and the first step or job that loaded it failed
    with torch's "PytorchStreamReader failed reading zip archive: failed finding central directory"."""
    whole = _torch_weights()
    size = len(whole) - 1 if kept == -1 else int(len(whole) * kept)
    folder = _sharded(tmp_path / "m", "pytorch_model.bin.index.json", [name])
    write_files(folder, {name: whole})
    assert read_hf_config(folder) == {"model_type": "bert"}
    write_files(folder, {name: whole[:size]})
    problem = f"is {size} bytes, a zip without the directory a whole one ends with: cut short" if size else "is empty"
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    assert str(refused.value) == f"model folder {folder}: {name} {problem} {STOPPED}: {FETCH_AGAIN}"


NOT_TORCH_WEIGHTS = "is not PyTorch weights: neither a zip nor a pickle, the formats torch.save writes"


@pytest.mark.parametrize("content", [b"not weights", FAKE_WEIGHTS])  # other bytes; safetensors, misnamed
def test_read_hf_config_refuses_a_pytorch_model_bin_that_is_not_torch_weights(tmp_path: Path, content: bytes) -> None:
    """torch.load's unpickling error ("invalid load key"), in the first step, told it before."""
    folder = fake_checkpoint(tmp_path / "m", {"model_type": "bert"})
    (folder / "model.safetensors").unlink()
    write_files(folder, {"pytorch_model.bin": content})
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    assert str(refused.value) == f"model folder {folder}: pytorch_model.bin {NOT_TORCH_WEIGHTS}: {FETCH_AGAIN}"


def test_read_hf_config_takes_pytorch_weights_in_either_format_and_other_bin_files_as_they_are(tmp_path: Path) -> None:
    """torch.load reads the pickle torch.save wrote before torch 1.6 as well as its zip; a .bin transformers does not
    load as weights (training_args.bin, an OpenVINO export's) is not checked as such."""
    folder = fake_checkpoint(tmp_path / "m", {"model_type": "bert"})
    (folder / "model.safetensors").unlink()
    write_files(folder, {"pytorch_model.bin": _torch_weights(legacy=True), "openvino_model.bin": b"\0\1"})
    assert read_hf_config(folder) == {"model_type": "bert"}
    (folder / "pytorch_model.bin").unlink()  # the OpenVINO export alone: no weights transformers loads
    with pytest.raises(OptbenchError, match=r"has weights \(\['openvino_model\.bin'\]\) under no name transformers"):
        read_hf_config(folder)


SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _sharded(folder: Path, index: str = "model.safetensors.index.json", shards: list[str] = SHARDS) -> Path:
    """A sharded checkpoint as save_pretrained() writes one: its shards, and the index naming each tensor's."""
    fake_checkpoint(folder, {"model_type": "bert"})
    (folder / "model.safetensors").unlink()
    weight_map = {f"bert.layer.{i}.weight": shard for i, shard in enumerate(shards)}
    content = json.dumps({"metadata": {"total_size": 512}, "weight_map": weight_map}).encode()
    return write_files(folder, {index: content, **dict.fromkeys(shards, FAKE_WEIGHTS)})


@pytest.mark.parametrize(
    ("index", "shards"),
    [
        ("model.safetensors.index.json", SHARDS),
        ("pytorch_model.bin.index.json", ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]),
    ],
)
def test_read_hf_config_refuses_a_sharded_checkpoint_without_every_shard(
    tmp_path: Path, index: str, shards: list[str]
) -> None:
    """A download or copy of a large checkpoint that stopped part way, before its last shards: every check passed,
    and the first step or job that loaded it failed with transformers' FileNotFoundError."""
    folder = _sharded(tmp_path / "m", index, shards)
    if index.startswith("pytorch"):
        write_files(folder, dict.fromkeys(shards, _torch_weights()))
    assert read_hf_config(folder) == {"model_type": "bert"}
    (folder / shards[1]).unlink()
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    fetch = FETCH_AGAIN.replace(" it ", " them ")
    assert str(refused.value) == f"model folder {folder} lacks {shards[1]}, shards its {index} names {STOPPED}: {fetch}"
    (folder / shards[0]).unlink()  # every shard: named, rather than "has no weights"
    with pytest.raises(OptbenchError, match=f"lacks {shards[0]}, {shards[1]}, shards its"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    "content",
    [
        b'{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safe',  # cut short
        b"[]",
        b'{"weight_map": {"a": "model-00001-of-00002.safetensors"}}',  # transformers reads its metadata
        b'{"metadata": {}, "weight_map": ["model-00001-of-00002.safetensors"]}',
        b'{"metadata": {}, "weight_map": {"a": 1}}',
        b"\xff\xfe",
    ],
)
def test_read_hf_config_refuses_a_shard_index_transformers_cannot_read(tmp_path: Path, content: bytes) -> None:
    """The first step or job that loaded it failed with transformers' JSONDecodeError, KeyError or TypeError."""
    folder = write_files(_sharded(tmp_path / "m"), {"model.safetensors.index.json": content})
    with pytest.raises(OptbenchError) as refused:
        read_hf_config(folder)
    assert str(refused.value) == (
        f"model folder {folder}: model.safetensors.index.json is not a shard index (a JSON object of a metadata object "
        f"and a weight_map of tensor names to shard files): {FETCH_AGAIN}"
    )


def test_a_shard_index_beside_whole_weights_is_not_read(tmp_path: Path) -> None:
    """transformers loads a model.safetensors rather than the shards an index names: neither is checked."""
    folder = write_files(_sharded(tmp_path / "m"), {"model.safetensors": FAKE_WEIGHTS})
    (folder / SHARDS[1]).unlink()
    assert read_hf_config(folder) == {"model_type": "bert"}
    write_files(folder, {"model.safetensors.index.json": b"{not json"})
    assert read_hf_config(folder) == {"model_type": "bert"}


def test_read_hf_config_names_every_git_lfs_pointer(tmp_path: Path) -> None:
    """Each file `git lfs pull` must fetch is named, the weights first."""
    files = {"config.json": BERT_CONFIG, "model.safetensors": LFS_POINTER_TEXT, "tokenizer.json": LFS_POINTER_TEXT}
    folder = write_files(tmp_path / "m", files)
    with pytest.raises(OptbenchError, match=r"in place of model\.safetensors, tokenizer\.json: run `git lfs install"):
        read_hf_config(folder)


def test_a_file_that_cannot_be_read_is_not_taken_for_a_git_lfs_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There is nothing for git-lfs to fetch: the load that needs the file says why it cannot read it."""
    files = {"config.json": BERT_CONFIG, "model.safetensors": FAKE_WEIGHTS, "tokenizer.json": b"{}"}
    unreadable = write_files(tmp_path / "m", files) / "tokenizer.json"
    deny_permission(monkeypatch, Path, "open", unreadable)
    assert read_hf_config(unreadable.parent) == {"model_type": "bert"}


def test_a_config_this_user_may_not_read_asks_for_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's model (chmod 600): the fix is read access; it said to save the model with save_pretrained()."""
    files = {"config.json": BERT_CONFIG, "model.safetensors": FAKE_WEIGHTS, "tokenizer.json": b"{}"}
    config = write_files(tmp_path / "m", files) / "config.json"
    deny_permission(monkeypatch, Path, "open", config)
    with pytest.raises(OptbenchError) as error:
        read_hf_config(config.parent)
    assert str(error.value) == (
        f"cannot read {config} (Permission denied): give this user read access to it, or use a copy it can"
    )


@pytest.mark.parametrize("vocabulary", VOCABULARY_FILES)
def test_read_hf_config_accepts_every_kind_of_vocabulary(tmp_path: Path, vocabulary: str) -> None:
    assert vocabulary in HF_FILES  # carried along with the model by every step
    folder = write_files(
        tmp_path / "m", {"config.json": BERT_CONFIG, "model.safetensors": FAKE_WEIGHTS, vocabulary: b"v"}
    )
    assert read_hf_config(folder) == {"model_type": "bert"}


UPGRADE = r" \(a model type newer than this transformers needs an upgrade\)"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "has no model_type"),
        ({"model_type": "bert-custom"}, r"model_type = 'bert-custom' is not a model type transformers [0-9.]+ knows"),
        ({"model_type": 3}, r"model_type = 3 is not a model type transformers [0-9.]+ knows"),
        ({"model_type": ["bert"]}, r"model_type = \['bert'\] is not a model type transformers [0-9.]+ knows"),
    ],
)
def test_read_hf_config_refuses_a_model_type_transformers_cannot_build(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    """Found when the checkpoint is read; before, the benchmark's first job failed on transformers' upgrade hint. A
    type this transformers does not know may be newer than it, and is told so; a config without one is not: no
    upgrade gives it a model_type. A list was a TypeError (transformers' mapping hashes what it looks up)."""
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": FAKE_WEIGHTS, "vocab.txt": b"a"}
    folder = write_files(tmp_path / "m", files)
    upgrade = UPGRADE if "model_type" in config else ""
    with pytest.raises(
        OptbenchError,
        match=rf'config\.json {problem}: optbench takes encoder \(BERT-family\) classifiers \(model_type "bert", .*'
        rf"as save_pretrained\(\) writes it{upgrade}$",
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
    files = {"config.json": json.dumps({"model_type": model_type}).encode(), "model.safetensors": FAKE_WEIGHTS}
    folder = write_files(tmp_path / "m", {**files, "vocab.json": b"v"})
    family = ", ".join(f'"{name}"' for name in BERT_FAMILY)
    message = (
        f"{folder / 'config.json'} model_type = '{model_type}' is {kind}: optbench takes encoder (BERT-family) "
        f"classifiers (model_type {family}); give a checkpoint of one of those as save_pretrained() writes it"
    )
    with pytest.raises(OptbenchError) as raised:
        read_hf_config(folder)
    assert str(raised.value) == message


@pytest.mark.parametrize("model_type", ["vit", "swin", "wav2vec2"])
@pytest.mark.parametrize("vocabulary", [{"vocab.txt": b"v"}, {"preprocessor_config.json": b"{}"}])
def test_read_hf_config_refuses_a_model_with_no_text_classifier(
    tmp_path: Path, model_type: str, vocabulary: dict[str, bytes]
) -> None:
    """An image or audio model (a ViT classifier) passed as an encoder to fine-tune: the fine-tune's
    AutoModelForSequenceClassification failed with a traceback after the dry run passed. Without a vocabulary, as such
    a checkpoint comes, it was told to save its tokenizer into the folder."""
    files = {
        "config.json": json.dumps({"model_type": model_type}).encode(),
        "model.safetensors": FAKE_WEIGHTS,
        **vocabulary,
    }
    folder = write_files(tmp_path / "m", files)
    family = ", ".join(f'"{name}"' for name in BERT_FAMILY)
    message = (
        f"{folder / 'config.json'} model_type = '{model_type}' has no text classifier in transformers (an image or "
        f"audio model): optbench takes encoder (BERT-family) classifiers (model_type {family}); give a checkpoint of "
        "one of those as save_pretrained() writes it"
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
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": FAKE_WEIGHTS, "vocab.txt": b"v"}
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
    files = {"config.json": json.dumps({"model_type": "bert", **config}).encode(), "model.safetensors": FAKE_WEIGHTS}
    folder = write_files(tmp_path / "m", {**files, "vocab.txt": b"a"})
    with pytest.raises(OptbenchError, match=rf"config\.json: {problem}"):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"id2label": ["neg", "pos"]}, r"id2label = \['neg', 'pos'\] is not an object of label ids 0 to 1"),
        (
            {"id2label": {"0": "neg", "2": "pos"}},
            r"id2label = \{'0': 'neg', '2': 'pos'\} is not an object of label ids 0 to 1",
        ),
        ({"id2label": {"0": "neg", "1": "pos"}, "num_labels": 3}, r"num_labels = 3 and id2label names 2 labels"),
        ({"id2label": {"0": "a", "1": "b", "2": "c"}, "num_labels": 2}, r"num_labels = 2 and id2label names 3 labels"),
        ({"id2label": {"0": "neg", "1": "pos"}, "num_labels": True}, r"num_labels = True is not a count"),
        ({"id2label": 2}, r"id2label = 2 is not an object of label ids"),  # a traceback: an int has no len()
        ({"id2label": {"0": "neg", "1": "pos"}, "num_labels": "2"}, r"num_labels = '2' is not a count"),
    ],
)
def test_read_hf_config_refuses_a_label_map_transformers_cannot_size(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    """transformers fails to load these (a list, a gap) or sizes the head by num_labels: refused before any step."""
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": FAKE_WEIGHTS, "vocab.txt": b"a"}
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
    files = {
        "config.json": json.dumps({"id2label": id2label}).encode(),
        "model.safetensors": FAKE_WEIGHTS,
        "vocab.txt": b"a",
    }
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
@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_read_hf_config_refuses_labels_the_classifier_has_no_outputs_for(
    tmp_path: Path, weight: str, labels: dict[str, Any], outputs: int, weights_file: str
) -> None:
    """transformers refuses to load a head of another size than the labels (an id2label edited by hand): each job
    of the run failed with its "look at the above report", a report the job's process kept. A checkpoint saved
    with safe_serialization=False has only pytorch_model.bin: its head was not checked."""
    import torch
    from safetensors.torch import save_file

    folder = fake_checkpoint(tmp_path, {**CLASSIFIER, **labels})
    (folder / "model.safetensors").unlink()
    head = {weight: torch.zeros((outputs, 8)), "bert.pooler.dense.bias": torch.zeros(8)}
    save = save_file if weights_file.endswith(".safetensors") else torch.save
    save(head, str(folder / weights_file))
    named = len(labels.get("id2label", {})) or DEFAULT_NUM_LABELS
    message = (
        rf"the classifier in {re.escape(weights_file)} has {outputs} outputs and config\.json names {named} labels: "
        "write"
    )
    with pytest.raises(OptbenchError, match=rf"config\.json: {message} id2label as"):
        read_hf_config(folder)
    (folder / "config.json").write_text(json.dumps({**CLASSIFIER, "num_labels": outputs}))
    read_hf_config(folder)


@pytest.mark.parametrize("shard", [0, 1])
def test_read_hf_config_checks_the_head_in_whichever_shard_holds_it(tmp_path: Path, shard: int) -> None:
    """A large checkpoint's weights come in shards, its head in one of them (often the last)."""
    import torch
    from safetensors.torch import save_file

    folder = fake_checkpoint(tmp_path, CLASSIFIER)
    (folder / "model.safetensors").unlink()
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for index, name in enumerate(shards):
        layer = "classifier.weight" if index == shard else "bert.pooler.dense.weight"
        save_file({layer: torch.zeros((3, 8))}, str(folder / name))
        weight_map[layer] = name
    index_json = {"metadata": {"total_size": 192}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_json))
    message = rf"the classifier in {re.escape(shards[shard])} has 3 outputs and config\.json names 2 labels"
    with pytest.raises(OptbenchError, match=message):
        read_hf_config(folder)


@pytest.mark.parametrize(
    ("weights_file", "headless"),
    [("pytorch_model.bin", False), ("model.safetensors", True), ("pytorch_model.bin", True)],
)
def test_read_hf_config_leaves_a_head_it_cannot_find_to_the_load(
    tmp_path: Path, weights_file: str, headless: bool
) -> None:
    """A pytorch_model.bin that is a whole zip but not torch's, or weights that hold no classifier under the names the
    BERT family gives it: not refused as a head of no outputs, but left to transformers' load, which says what it
    finds (a model.safetensors that is not one, or a pytorch_model.bin that is neither a zip nor a pickle, is refused
    as such)."""
    import zipfile

    import torch
    from safetensors.torch import save_file

    folder = fake_checkpoint(tmp_path, CLASSIFIER)
    (folder / "model.safetensors").unlink()
    path = folder / weights_file
    if not headless:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not weights")
    elif weights_file.endswith(".safetensors"):
        save_file({"bert.pooler.dense.bias": torch.zeros(8)}, str(path))
    else:  # a .bin may hold more than tensors
        torch.save({"bert.pooler.dense.bias": torch.zeros(8), "epoch": 3}, path)
    assert read_hf_config(folder) == CLASSIFIER


def test_read_hf_config_takes_a_classifier_with_an_onnx_export_beside_its_weights(tmp_path: Path) -> None:
    """The folder's model.onnx is among its weight files: no weights transformers loads, and no head to size."""
    folder = fake_checkpoint(tmp_path, CLASSIFIER)
    (folder / "model.onnx").write_bytes(b"onnx")
    assert read_hf_config(folder) == CLASSIFIER


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
        # save_pretrained() writes the ids sorted as text ("10" before "2"): they are read in the order of their numbers
        ({"id2label": {str(i): f"c{i}" for i in sorted(range(12), key=str)}}, tuple(f"c{i}" for i in range(12))),
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
