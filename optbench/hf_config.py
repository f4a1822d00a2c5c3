"""A user's Hugging Face checkpoint read and checked: its config.json, weights and tokenizer vocabulary, the
encoder or classifier optbench takes, and the label names of its head."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optbench.artifact import HF_FILES, TORCH_WEIGHTS, safetensors_header, safetensors_size, weight_files
from optbench.errors import OptbenchError, listed, refused_reading

# the HF_FILES a tokenizer reads its vocabulary from; a checkpoint needs one: without it transformers builds a
# tokenizer of the special tokens alone, which reads every word as [UNK]
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "sentencepiece.model",  # RemBERT's, without its tokenizer.json
)
# the BERT family's members optbench exports, quantizes and runs (README, Recipes), by model_type
BERT_FAMILY = ("bert", "distilbert", "roberta", "xlm-roberta", "electra", "albert", "deberta-v2")
# the outputs of a classifier whose config.json names no labels (transformers' PreTrainedConfig default)
DEFAULT_NUM_LABELS = 2
# the problem_type of a head of one class per text, scored by cross-entropy: the head optbench trains and measures
SINGLE_LABEL = "single_label_classification"
# model classes of other tasks, by how their names end: heads a sequence classifier cannot load (`_check_task`)
OTHER_TASKS = {"ForTokenClassification": "token-classification", "ForMultipleChoice": "multiple-choice"}
# the weight of a sequence classifier's last layer, one row per output, as the BERT family's classifiers name it
# (BERT, DistilBERT, ALBERT, DeBERTa-v2; RoBERTa, XLM-RoBERTa, ELECTRA)
HEAD_WEIGHTS = ("classifier.weight", "classifier.out_proj.weight")
# how to write a label map transformers sizes the head by
LABEL_MAP_FIX = (
    'write id2label as {"0": "first label", "1": "second label", ...}, one entry per output of the classifier, and '
    "num_labels as their count (or leave it out)"
)
# what to do with a model hub id given where a folder goes (distilbert-base-uncased): optbench downloads nothing
SAVE_FROM_HUB = (
    "optbench downloads nothing: save a Hub model into a folder first, with its tokenizer (from_pretrained(id), then "
    "save_pretrained(folder))"
)
# how to give optbench the encoder of a model whose head it refuses: it fine-tunes a classifier from it
ENCODER_ALONE = (
    "save its encoder alone, AutoModel.from_pretrained(folder).save_pretrained(new_folder), with its tokenizer, and "
    "give that folder"
)
PRUNED_TYPE_PREFIX = "optbench-pruned-"  # what the model types prune makes start with (pruned_bert registers them)
# what DistilBERT's config.json calls the depth, heads and FFN width of BERT's (`config_key`)
DISTILBERT_KEYS = {"num_hidden_layers": "n_layers", "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim"}
# how a Git LFS pointer file starts: what a clone without git-lfs leaves in place of each large file
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
# the bytes of a file's start its checks read (`_starts`): an LFS pointer's first line, a page's first tag, a header
START_BYTES = 64
# how an HTML page starts, lower-cased: what a download that got a login or error page saves in place of a file
HTML_STARTS = (b"<!doctype html", b"<html")
UTF8_BOM = b"\xef\xbb\xbf"  # what some editors and servers write before a page's first character
# the longest header safetensors reads (its MAX_HEADER_SIZE): a longer "length" is another kind of file's first bytes
MAX_SAFETENSORS_HEADER = 100_000_000
# how the two formats torch.save writes start: a zip (since torch 1.6), a pickle of protocol 2 or later (before)
ZIP_START = b"PK\x03\x04"
PICKLE_START = b"\x80"
# the index of a sharded checkpoint's shards, by the whole file transformers loads in its place where there is one, in
# the order it looks: model.safetensors, its shards' index, pytorch_model.bin, its shards' index
SHARD_INDEXES = {
    "model.safetensors": "model.safetensors.index.json",
    "pytorch_model.bin": "pytorch_model.bin.index.json",
}
LOADED_NAMES = tuple(name for pair in SHARD_INDEXES.items() for name in pair)  # the names it loads weights by
STOPPED_PART_WAY = "(a download or copy stopped part way)"
NOT_ITS_HEADER = "is not safetensors: its header is not the JSON of its tensors"
# how to put whole weights in place of files that are not ({it}: "it", a file, or "them", a sharded checkpoint's shards)
FETCH_AGAIN = (
    "download {it} again (git lfs pull in a clone of the model, or huggingface-cli download), or copy {it} whole; or "
    "save the model again with save_pretrained()"
)
FETCH_WEIGHTS_AGAIN = FETCH_AGAIN.format(it="it")


def check_model_folder(folder: Path, option: str | None = None) -> None:
    """Refuse a checkpoint path that is a file or names nothing: the recipe's checkpoint, or the folder the command
    line's `option` (--model) names, which cannot be the built-in default."""
    named = option or "model folder"
    if folder.is_file():
        raise OptbenchError(
            f"{named} {folder} is a file{', not a folder' if option else ''}: give the checkpoint folder that holds "
            "config.json and the weights"
        )
    if not folder.is_dir():
        default = "" if option else ', or "default"'
        raise OptbenchError(
            f"{named} {folder} does not exist: give a Hugging Face checkpoint folder{default} ({SAVE_FROM_HUB})"
        )


def read_hf_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json, after checking the folder looks like a Hugging Face checkpoint (a config.json,
    weights and a tokenizer vocabulary, none of them a Git LFS pointer, its weight files whole, its shards all
    there)."""
    check_model_folder(folder)
    weights = weight_files(folder)
    starts = _starts([*weights, *(folder / name for name in HF_FILES if (folder / name).is_file())])
    _check_not_lfs_pointers(folder, starts)
    _check_weights(folder, {path: starts[path] for path in weights if path in starts})
    _check_shards(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise refused_reading(config_path, exc) from exc
    except OSError as exc:
        raise OptbenchError(
            f"model folder {folder} has no readable config.json ({exc.strerror}): "
            "save the model with save_pretrained() and point optbench at that folder"
        ) from exc
    # JSONDecodeError, UnicodeDecodeError for bytes that are not UTF-8, RecursionError for thousands of nested [ or {
    except (ValueError, RecursionError) as exc:
        raise OptbenchError(f"{config_path} is not valid JSON ({exc}): re-save the checkpoint") from exc
    if not isinstance(config, dict):
        raise OptbenchError(
            f"{config_path} holds a JSON {type(config).__name__}, not an object: re-save the checkpoint"
        )
    _check_label_map(config, config_path)
    _check_architectures(config, config_path)
    _check_weight_names(folder, weights)
    _check_model_type(config, config_path)  # before the vocabulary: an image model is told it is one, not to add one
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise OptbenchError(
            f"model folder {folder} has no tokenizer vocabulary ({', '.join(VOCABULARY_FILES)}): save the model's "
            "tokenizer into it too (tokenizer.save_pretrained(folder))"
        )
    _check_task(config, config_path)
    _check_head_outputs(config, config_path, weights)
    _check_single_label(config, config_path)
    return config


def _starts(paths: list[Path]) -> dict[Path, bytes]:
    """The first START_BYTES of each file at `paths`, read once for every check of how it starts; a file that cannot
    be read is left out, for the load that needs it to say why."""
    starts: dict[Path, bytes] = {}
    for path in paths:
        try:
            with path.open("rb") as handle:
                starts[path] = handle.read(START_BYTES)
        except OSError:
            continue
    return starts


def _check_not_lfs_pointers(folder: Path, starts: dict[Path, bytes]) -> None:
    """Refuse weights or tokenizer files that are Git LFS pointers (a Hub repository cloned without git-lfs): they
    pass every check by name, and the run failed only when a step or job loaded them, with safetensors' or the
    tokenizer's own error."""
    pointers = [path.name for path, start in starts.items() if start.startswith(LFS_POINTER)]
    if pointers:
        raise OptbenchError(
            f"model folder {folder} has Git LFS pointers in place of {', '.join(pointers)}: run "
            "`git lfs install && git lfs pull` in that folder (or download those files), then run again"
        )


def _check_weights(folder: Path, starts: dict[Path, bytes]) -> None:
    """Refuse a weight file that cannot load, by its start (`starts`) and size: an HTML page (a download that got a
    login or error page); a safetensors file that is not one, whole (other bytes whose first 8 give no header
    length, a header that is not the JSON of its tensors, or a file empty, shorter or longer than its header says);
    a pytorch_model.bin that is empty, a zip without its end (a download or copy stopped part way), or neither of
    the formats torch.save writes. Each passed every check by name, and the first step or benchmark job that loaded
    it failed with safetensors' or torch's error. Every shard is checked; a file that cannot be read is left to the
    load that reads it."""
    for path, start in starts.items():
        try:
            problem = _weights_problem(path, start)
        except OSError:
            continue
        if problem is not None:
            raise OptbenchError(f"model folder {folder}: {path.name} {problem}: {FETCH_WEIGHTS_AGAIN}")


def _weights_problem(path: Path, start: bytes) -> str | None:
    """What keeps the weight file at `path`, which starts with `start`, from loading, as `_check_weights` tells it;
    None for none."""
    if start.removeprefix(UTF8_BOM).lstrip().lower().startswith(HTML_STARTS):
        return "is an HTML page, not weights (a download that got a login or error page)"
    torch_weights = path.suffix == ".bin" and path.name.startswith(TORCH_WEIGHTS)  # not training_args.bin, OpenVINO's
    if path.suffix != ".safetensors" and not torch_weights:
        return None
    size = path.stat().st_size
    if size == 0:
        return f"is empty {STOPPED_PART_WAY}"
    if torch_weights:
        return _torch_weights_problem(path, start, size)
    length = int.from_bytes(start[:8], "little")
    if size < 8 or length > MAX_SAFETENSORS_HEADER:
        return "is not safetensors: its first 8 bytes are not a safetensors header length"
    if start[8:9] not in (b"{", b""):  # safetensors' header is a JSON object, from the 9th byte
        return NOT_ITS_HEADER
    if 8 + length > size:
        return f"is {size} bytes where its header length says at least {8 + length}: cut short {STOPPED_PART_WAY}"
    try:
        whole = safetensors_size(path)
    # ValueError: not JSON, not UTF-8, not an object; RecursionError: deeply nested; the others: entries not tensors
    except (ValueError, RecursionError, KeyError, TypeError, IndexError):
        return NOT_ITS_HEADER
    if size < whole:
        return f"is {size} bytes where its header says {whole}: cut short {STOPPED_PART_WAY}"
    if size > whole:
        return f"is {size} bytes where its header says {whole}: other bytes follow its tensors"
    return None


def _torch_weights_problem(path: Path, start: bytes, size: int) -> str | None:
    """What keeps a pytorch_model.bin of `size` bytes, starting with `start`, from loading: a zip has its central
    directory at its end, so one cut short has none (torch's "failed finding central directory"); a file of neither
    format torch.save writes failed torch's unpickling. None for a whole zip or a pickle (torch's legacy format)."""
    if start.startswith(ZIP_START):
        if zipfile.is_zipfile(path):
            return None
        return f"is {size} bytes, a zip without the directory a whole one ends with: cut short {STOPPED_PART_WAY}"
    if start.startswith(PICKLE_START):
        return None
    return "is not PyTorch weights: neither a zip nor a pickle, the formats torch.save writes"


def _check_shards(folder: Path) -> None:
    """Refuse a sharded checkpoint whose index, the one transformers loads it by, is not JSON of a metadata object and
    a weight_map of tensor names to shard files, or names shards the folder lacks (a download or copy stopped part
    way): the folder passed every check, and the first step or benchmark job that loaded it failed with
    transformers' FileNotFoundError, JSONDecodeError or KeyError. An index that cannot be read is left to the load
    that reads it."""
    index = _shard_index(folder)
    if index is None:
        return
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
    except OSError:
        return
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested thousands deep
        content = None
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if (
        not isinstance(content, dict)
        or not isinstance(content.get("metadata"), dict)
        or not isinstance(weight_map, dict)
        or not all(isinstance(shard, str) for shard in weight_map.values())
    ):
        raise OptbenchError(
            f"model folder {folder}: {index.name} is not a shard index (a JSON object of a metadata object and a "
            f"weight_map of tensor names to shard files): {FETCH_WEIGHTS_AGAIN}"
        )
    missing = sorted({shard for shard in weight_map.values() if not (folder / shard).is_file()})
    if missing:
        raise OptbenchError(
            f"model folder {folder} lacks {', '.join(missing)}, shards its {index.name} names {STOPPED_PART_WAY}: "
            f"{FETCH_AGAIN.format(it='them')}"
        )


def _check_weight_names(folder: Path, weights: list[Path]) -> None:
    """Refuse a folder without torch weights (safetensors or .bin), or with them under no name transformers loads
    (one whole file or a shard index, SHARD_INDEXES): shards copied without their index, or a file renamed
    (my_model.safetensors). Every check passed, and the first step failed with transformers' "no file named
    model.safetensors, or pytorch_model.bin"."""
    names = [path.name for path in weights if path.suffix in (".safetensors", ".bin")]
    if not names:
        raise OptbenchError(
            f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin): "
            "save the model with save_pretrained() and point optbench at that folder"
        )
    if any((folder / name).is_file() for name in LOADED_NAMES):
        return
    shards = "; shards need the index saved with them" if any("-of-" in name for name in names) else ""
    raise OptbenchError(
        f"model folder {folder} has weights ({listed(names, 4)}) under no name transformers loads "
        f"({', '.join(LOADED_NAMES[:-1])} or {LOADED_NAMES[-1]}){shards}: copy that file into the folder, or save "
        "the model again with save_pretrained()"
    )


def _shard_index(folder: Path) -> Path | None:
    """The index of shards transformers loads the weights in `folder` by; None where it loads one whole file (or
    finds none, which the checks of weights tell)."""
    for whole, index in SHARD_INDEXES.items():
        if (folder / whole).is_file():
            return None
        if (folder / index).is_file():
            return folder / index
    return None


def _check_model_type(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a config without a model_type this transformers builds (missing, unknown to its release, or custom
    code, which optbench never trusts), of a type transformers knows as decoder-only or encoder-decoder (a GPT-2
    tokenizer without a pad token fails the first batch, GPT-2's and T5's ONNX exports fail onnxruntime's check,
    torch INT8 leaves GPT-2's Conv1D layers FP32), or of one with no text classifier (an image or audio model, which
    the fine-tune's AutoModelForSequenceClassification refused with a traceback): found when the checkpoint is read,
    not when a job loads it or part way through a run. transformers is imported only here, by callers that go on to
    load the model with it; optbench's pruned types are registered by importing optbench.pruned_bert."""
    import transformers

    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type.startswith(PRUNED_TYPE_PREFIX):
        import optbench.pruned_bert  # noqa: F401 (registers the pruned model types)
    fix = ""
    if model_type is None:  # no upgrade gives it one
        problem = "has no model_type"
    elif not isinstance(model_type, str) or model_type not in transformers.CONFIG_MAPPING:
        problem = f"model_type = {model_type!r} is not a model type transformers {transformers.__version__} knows"
        fix = " (a model type newer than this transformers needs an upgrade)"
    elif (kind := _generative_kind(model_type)) is not None:
        problem = f"model_type = {model_type!r} is {kind}"
    elif not _has_text_classifier(model_type):
        problem = f"model_type = {model_type!r} has no text classifier in transformers (an image or audio model)"
    else:
        return
    family = ", ".join(f'"{name}"' for name in BERT_FAMILY)
    raise OptbenchError(
        f"{config_path} {problem}: optbench takes encoder (BERT-family) classifiers (model_type {family}); give a "
        f"checkpoint of one of those as save_pretrained() writes it{fix}"
    )


def _generative_kind(model_type: str) -> str | None:
    """What transformers knows `model_type` as besides an encoder: "encoder-decoder" where it has a
    sequence-to-sequence LM of it, "decoder-only" where it has a causal LM but no masked LM of it (BERT's kin have
    both: a BERT can be built as a decoder); None otherwise."""
    from transformers.models.auto import modeling_auto as auto

    if model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "encoder-decoder"
    if (
        model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        return "decoder-only"
    return None


def _has_text_classifier(model_type: str) -> bool:
    """Whether transformers' AutoModelForSequenceClassification builds a classifier of `model_type` (optbench's pruned
    types register theirs when optbench.pruned_bert is imported)."""
    from transformers.models.auto import modeling_auto as auto

    return model_type in auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES or model_type.startswith(
        PRUNED_TYPE_PREFIX
    )


def _check_label_map(config: dict[str, Any], config_path: Path) -> None:
    """Refuse an id2label that is not an object of the ids 0..n-1 (transformers cannot load a list, and a gap
    leaves a label without an output), or that disagrees with num_labels (transformers sizes the head by one
    or the other, as its version decides)."""
    id2label, count = config.get("id2label"), config.get("num_labels")
    if not id2label:
        return
    if not isinstance(id2label, dict) or {str(k) for k in id2label} != {str(i) for i in range(len(id2label))}:
        ids = f" 0 to {len(id2label) - 1}" if isinstance(id2label, (dict, list)) else ""  # a number has no length
        problem = f"id2label = {id2label!r} is not an object of label ids{ids}"
    elif count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        problem = f"num_labels = {count!r} is not a count"
    elif count is not None and count != len(id2label):
        problem = f"num_labels = {count!r} and id2label names {len(id2label)} labels"
    else:
        _check_distinct_labels(config, config_path)
        return
    raise OptbenchError(f"{config_path}: {problem}: {LABEL_MAP_FIX}")


def _check_distinct_labels(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a label name given to two ids (`id2label` checked to hold ids 0..n-1): a dataset label of that name
    was scored against the first id alone, so every row of the other id's class counted as wrong."""
    ids: dict[str, list[int]] = {}
    for id_, name in enumerate(hf_label_names(config)):
        ids.setdefault(name, []).append(id_)
    repeated = [f"{name!r} for ids {', '.join(map(str, of))}" for name, of in ids.items() if len(of) > 1]
    if repeated:
        raise OptbenchError(
            f"{config_path}: id2label names one label for several ids ({'; '.join(repeated)}): edit id2label in "
            "config.json so each id has its own name, the class that output of the classifier scores"
        )


def _check_architectures(config: dict[str, Any], config_path: Path) -> None:
    """Refuse architectures that are not a list of class names: transformers declares a list and keeps whatever
    is written (its pipelines read a string letter by letter), and `has_classifier_head` would take a classifier
    named by a string for an encoder and fine-tune it again."""
    architectures = config.get("architectures")
    if architectures is None or (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        return
    as_list = (
        json.dumps([architectures])
        if isinstance(architectures, str)
        else 'the model\'s class names, e.g. ["BertModel"]'
    )
    raise OptbenchError(
        f"{config_path}: architectures = {json.dumps(architectures)} is not a list of class names: write it as "
        f"{as_list}, a list as save_pretrained() writes it"
    )


def _check_task(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a model with the head of another task that the sequence classifier optbench fine-tunes from it would
    load as its own: the same name (`classifier`), another size (a token classifier's labels, a multiple-choice
    model's one output), so transformers' load failed in the fine-tune with a traceback after the dry run passed.
    Heads under other names (masked LM, question answering) are left out of the load, as an encoder's pooler is."""
    if has_classifier_head(config):
        return
    tasks = [
        (a, task) for a in config.get("architectures") or [] for end, task in OTHER_TASKS.items() if a.endswith(end)
    ]
    if tasks:
        architecture, task = tasks[0]
        raise OptbenchError(
            f"{config_path}: architectures = [{json.dumps(architecture)}] is a {task} model: optbench takes a sequence "
            f"classifier as it is or an encoder it fine-tunes; {ENCODER_ALONE}"
        )


def _check_head_outputs(config: dict[str, Any], config_path: Path, weights: list[Path]) -> None:
    """Refuse a classifier whose weights give its head another number of outputs than config.json has labels
    (id2label edited by hand, as optbench's error about unknown labels says to): transformers refuses to load it,
    and every job of the run failed with its "look at the above report", which the job's process kept."""
    if not has_classifier_head(config):
        return
    labels = hf_label_names(config)
    for path in weights:
        outputs = _head_outputs(path)
        if outputs is not None and outputs != len(labels):
            raise OptbenchError(
                f"{config_path}: the classifier in {path.name} has {outputs} outputs and config.json names "
                f"{len(labels)} labels: {LABEL_MAP_FIX}"
            )


def _head_outputs(path: Path) -> int | None:
    """The rows of the classifier's weight in one weights file, read without loading the weights (the safetensors
    header; a `.bin` mapped from disk); None when the file has no head or is not what its suffix says (the load
    that reads it says why)."""
    if path.suffix == ".safetensors":
        try:
            shapes = {name: entry["shape"] for name, entry in safetensors_header(path).items()}
        except (OSError, ValueError):
            return None
    elif path.suffix == ".bin":
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # torch raises many kinds for a file it cannot map (RuntimeError, UnpicklingError, ...)
            return None
        shapes = {name: list(value.shape) for name, value in state.items() if isinstance(value, torch.Tensor)}
    else:
        return None
    return next((shapes[name][0] for name in HEAD_WEIGHTS if name in shapes), None)


def _check_single_label(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a classifier whose head accuracy cannot judge: optbench scores the argmax over the logits against one
    label per text. Over a regression head's one output the argmax is always 0 (refused only by the dataset's labels,
    in an error that said to fix them or id2label); a multi-label head scores each class on its own, and its argmax
    was measured as accuracy without a word. So is a problem_type transformers does not know (a typo)."""
    if not has_classifier_head(config):
        return
    problem_type, outputs = config.get("problem_type"), len(hf_label_names(config))
    if problem_type == "regression" or outputs == 1:
        said = 'problem_type = "regression"' if problem_type == "regression" else "its head has one output"
        problem = f"{said}: a regression head, one score per text, not a class"
        fix = "give a classifier of two or more classes, one per text"
    elif problem_type == "multi_label_classification":
        problem = (
            f'problem_type = "{problem_type}": a multi-label head, a yes or no per class (a sigmoid each), not the one '
            "class per text that optbench measures accuracy by"
        )
        fix = f'if it was trained with one class per text, set problem_type = "{SINGLE_LABEL}" in config.json'
    elif problem_type not in (None, SINGLE_LABEL):
        problem = f"problem_type = {json.dumps(problem_type)} is not a problem type transformers knows"
        fix = f'for a classifier of one class per text, set problem_type = "{SINGLE_LABEL}" in config.json'
    else:
        return
    raise OptbenchError(
        f"{config_path}: {problem}: {fix}; or, to fine-tune the model as a classifier of the dataset's labels, "
        f"{ENCODER_ALONE}"
    )


def hf_label_names(config: dict[str, Any]) -> tuple[str, ...]:
    """Label names of a classifier checkpoint, in label-id order. A config that names neither id2label nor
    num_labels has transformers' default of DEFAULT_NUM_LABELS: save_pretrained() leaves out the generic
    LABEL_0 and LABEL_1 of a two-class head, and transformers loads it with those two again."""
    id2label = config.get("id2label") or {}
    if not id2label:
        return tuple(f"LABEL_{i}" for i in range(config.get("num_labels") or DEFAULT_NUM_LABELS))
    return tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label)))


def head_config(labels: Sequence[str]) -> dict[str, Any]:
    """The config.json entries of the classification head optbench trains on `labels`: one output per label, and
    problem_type single-label, so that a problem_type an encoder's config.json keeps from the head it was saved
    without (regression, multi-label) does not choose the loss (transformers' MSE or BCE failed on class ids)."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": SINGLE_LABEL,
    }


def has_classifier_head(config: dict[str, Any]) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def config_key(config: dict[str, Any], name: str) -> str:
    """The key under which a config.json's contents state BERT's `name` (num_hidden_layers, num_attention_heads or
    intermediate_size): DistilBERT's own where the config is DistilBERT's (n_layers for num_hidden_layers)."""
    return DISTILBERT_KEYS[name] if "n_layers" in config else name
