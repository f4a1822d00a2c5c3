"""ModelArtifact: a model on disk, its format, labels, content hash and the steps that made it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from optbench.atomic import write_json_atomic
from optbench.errors import OptbenchError
from optbench.onnx_graph import load_graph

MANIFEST = "optbench-manifest.json"
Format = Literal["hf", "onnx", "trt"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".data", ".engine", ".plan")
TORCH_WEIGHTS = "pytorch_model"  # transformers' .bin weights: pytorch_model.bin or its shards
QUANTIZATION_FILE = "optbench-quantization.json"  # a scheme applied when the model loads: part of the model
# a checkpoint's config (architecture, labels) and tokenizer files, of the tokenizer kinds transformers saves:
# they travel with every model optbench derives from it (an ONNX export carries them over)
HF_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
)
# the HF_FILES a tokenizer reads its vocabulary from; a checkpoint needs one: without it transformers builds a
# tokenizer of the special tokens alone, which reads every word as [UNK]
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "spm.model", "sentencepiece.bpe.model")
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
# how to give optbench the encoder of a model whose head it refuses: it fine-tunes a classifier from it
ENCODER_ALONE = (
    "save its encoder alone, AutoModel.from_pretrained(folder).save_pretrained(new_folder), with its tokenizer, and "
    "give that folder"
)
PRUNED_TYPE_PREFIX = "optbench-pruned-"  # what the model types prune makes start with (pruned_bert registers them)
# what decides a model's outputs besides its weights: its config and tokenizer, the quantization scheme
# applied when it loads, and its own code (*.py, as in a pruned checkpoint)
DEFINITION_FILES = (*HF_FILES, QUANTIZATION_FILE)
# how a Git LFS pointer file starts: what a clone without git-lfs leaves in place of each large file
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class StepRecord:
    """One step in an artifact's lineage: its name, the config it ran with, and the label it shows in
    variant names (the step's name unless the recipe gave one)."""

    name: str
    config: dict[str, Any]
    label: str | None = None

    @property
    def shown(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ModelArtifact:
    """A model folder and what optbench knows about it.

    `origin` says how the baseline came to be (the checkpoint, and the fine-tune config when optbench
    trained it); `lineage` lists the steps applied to the baseline since, in order.
    """

    path: Path
    format: Format
    label_names: tuple[str, ...]
    sha256: str
    origin: dict[str, Any] = field(default_factory=dict)
    lineage: tuple[StepRecord, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        """`baseline`, then each step's label joined with `+`: `baseline+onnx+quantize-static`."""
        return "+".join(["baseline", *(step.shown for step in self.lineage)])

    def size_mb(self) -> float:
        """Size on disk, in MiB, of the weight files the runtimes load (tokenizer and config files excluded)."""
        return sum(p.stat().st_size for p in weight_files(self.path)) / 2**20

    def parameters(self) -> int:
        """How many weights the loaded model files hold (safetensors headers or ONNX initializers; read
        without loading the model)."""
        return sum(_parameters_in(p) for p in weight_files(self.path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "label_names": list(self.label_names),
            "sha256": self.sha256,
            "origin": self.origin,
            "lineage": [{"name": s.name, "config": s.config, "label": s.label} for s in self.lineage],
            "details": self.details,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArtifact:
        if d["format"] not in get_args(Format):
            raise ValueError(f"format {d['format']!r} is none of {', '.join(get_args(Format))}")
        return cls(
            path=Path(d["path"]),
            format=d["format"],
            label_names=tuple(d["label_names"]),
            sha256=d["sha256"],
            origin=d.get("origin", {}),
            lineage=tuple(StepRecord(s["name"], s["config"], s.get("label")) for s in d.get("lineage", [])),
            details=d.get("details", {}),
        )

    def derive(
        self,
        out_dir: Path,
        *,
        step: str,
        config: dict[str, Any],
        format: Format,
        details: dict[str, Any],
        label_names: tuple[str, ...] | None = None,
    ) -> ModelArtifact:
        """The artifact a step wrote to `out_dir` from this one: same origin, one more lineage entry."""
        return ModelArtifact(
            path=out_dir,
            format=format,
            label_names=self.label_names if label_names is None else label_names,
            sha256=content_hash(out_dir),
            origin=self.origin,
            lineage=(*self.lineage, StepRecord(step, config)),
            details=details,
        )

    def save_manifest(self, folder: Path | None = None) -> None:
        """Write the manifest, atomically, beside the model or into `folder` (where it is being built before
        it moves to `path`)."""
        write_json_atomic((folder or self.path) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ModelArtifact:
        """An artifact optbench wrote (it has a manifest). A manifest that is missing, or damaged (not JSON, not an
        object, an entry missing or of the wrong kind), is refused: optbench makes the folder anew once it is gone."""
        manifest = path / MANIFEST
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            return cls.from_dict({**data, "path": str(path)})
        # OSError: missing; ValueError: not JSON or not UTF-8; TypeError, KeyError: not the manifest's entries
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reason = f"no {exc} entry" if isinstance(exc, KeyError) else " ".join(str(exc).split())
            raise OptbenchError(
                f"cannot read artifact manifest {manifest} ({reason}): delete the folder {path} and run again"
            ) from exc


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file holds, by name (dtype, shape and offsets), read without its weights. A file
    whose first 8 bytes give a header longer than the file is no safetensors file (ValueError): reading that many
    bytes would ask for up to 16 EiB."""
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > path.stat().st_size - 8:
            raise ValueError(f"{path} is not a safetensors file: its header length {length} is past its end")
        header = json.loads(handle.read(length))
    return {name: tensor for name, tensor in header.items() if name != "__metadata__"}


def _parameters_in(path: Path) -> int:
    if path.suffix == ".safetensors":
        return sum(math.prod(t["shape"]) for t in _safetensors_header(path).values())
    if path.suffix == ".onnx":
        return sum(math.prod(t.dims) for t in load_graph(path).initializer)
    return 0  # other weight formats (.bin, engines) are not counted


def weight_files(folder: Path) -> list[Path]:
    """The weight files the model loads, as transformers, onnxruntime and TensorRT read a folder: its own files
    (not subfolders, where the Hub keeps onnx/ and openvino/ exports); safetensors (one file or shards)
    rather than the pytorch_model.bin beside them; and without safetensors, pytorch_model*.bin rather than
    other .bin files (training_args.bin). A snapshot's spare copies would count the model two or three times."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if any(p.suffix == ".safetensors" for p in files):
        return [p for p in files if p.suffix != ".bin"]
    if any(p.name.startswith(TORCH_WEIGHTS) and p.suffix == ".bin" for p in files):
        return [p for p in files if p.suffix != ".bin" or p.name.startswith(TORCH_WEIGHTS)]
    return files


def content_hash(folder: Path) -> str:
    """sha256 over the names and bytes of the files that make the model (its weights and DEFINITION_FILES):
    equal hashes mean equal models. A README, or optbench's manifest, does not count."""
    definition = sorted(
        p for p in folder.iterdir() if p.is_file() and (p.name in DEFINITION_FILES or p.suffix == ".py")
    )
    return _files_hash(folder, [*weight_files(folder), *definition])


def tokenizer_hash(folder: Path) -> str | None:
    """sha256 over the names and bytes of the tokenizer files in `folder` (HF_FILES but config.json), None when it
    holds none: models of equal hashes read a text as the same token ids."""
    files = sorted(folder / name for name in HF_FILES if name != "config.json" and (folder / name).is_file())
    return _files_hash(folder, files) if files else None


def _files_hash(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_hf_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json, after checking the folder looks like a Hugging Face checkpoint (a config.json,
    weights and a tokenizer vocabulary, none of them a Git LFS pointer)."""
    if folder.is_file():
        raise OptbenchError(
            f"model folder {folder} is a file: give the checkpoint folder that holds config.json and the weights"
        )
    if not folder.is_dir():
        raise OptbenchError(
            f'model folder {folder} does not exist: give a Hugging Face checkpoint folder, or "default"'
        )
    weights = weight_files(folder)
    _check_not_lfs_pointers(folder, weights)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OptbenchError(
            f"model folder {folder} has no readable config.json ({exc.strerror}): "
            "save the model with save_pretrained() and point optbench at that folder"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise OptbenchError(f"{config_path} is not valid JSON ({exc}): re-save the checkpoint") from exc
    if not isinstance(config, dict):
        raise OptbenchError(
            f"{config_path} holds a JSON {type(config).__name__}, not an object: re-save the checkpoint"
        )
    _check_label_map(config, config_path)
    _check_architectures(config, config_path)
    if not any(p.suffix in (".safetensors", ".bin") for p in weights):
        raise OptbenchError(
            f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin): "
            "save the model with save_pretrained() and point optbench at that folder"
        )
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise OptbenchError(
            f"model folder {folder} has no tokenizer vocabulary ({', '.join(VOCABULARY_FILES)}): save the model's "
            "tokenizer into it too (tokenizer.save_pretrained(folder))"
        )
    _check_model_type(config, config_path)
    _check_task(config, config_path)
    _check_head_outputs(config, config_path, weights)
    _check_single_label(config, config_path)
    return config


def _check_not_lfs_pointers(folder: Path, weights: list[Path]) -> None:
    """Refuse weights or tokenizer files that are Git LFS pointers (a Hub repository cloned without git-lfs): they
    pass every check by name, and the run failed only when a step or job loaded them, with safetensors' or the
    tokenizer's own error."""
    files = [*weights, *(folder / name for name in HF_FILES if (folder / name).is_file())]
    pointers = [path.name for path in files if _is_lfs_pointer(path)]
    if pointers:
        raise OptbenchError(
            f"model folder {folder} has Git LFS pointers in place of {', '.join(pointers)}: run "
            "`git lfs install && git lfs pull` in that folder (or download those files), then run again"
        )


def _is_lfs_pointer(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(LFS_POINTER)) == LFS_POINTER
    except OSError:  # unreadable: not a pointer, and the load that needs it says why
        return False


def _check_model_type(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a config without a model_type this transformers builds (missing, unknown to its release, or custom
    code, which optbench never trusts), or of a type transformers knows as decoder-only or encoder-decoder (a GPT-2
    tokenizer without a pad token fails the first batch, GPT-2's and T5's ONNX exports fail onnxruntime's check,
    torch INT8 leaves GPT-2's Conv1D layers FP32): found when the checkpoint is read, not when a job loads it or
    part way through a run. transformers is imported only here, by callers that go on to load the model with it;
    optbench's pruned types are registered by importing optbench.pruned_bert."""
    import transformers

    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type.startswith(PRUNED_TYPE_PREFIX):
        import optbench.pruned_bert  # noqa: F401 (registers the pruned model types)
    fix = " (a model type newer than this transformers needs an upgrade)"
    if model_type is None:
        problem = "has no model_type"
    elif not isinstance(model_type, str) or model_type not in transformers.CONFIG_MAPPING:
        problem = f"model_type = {model_type!r} is not a model type transformers {transformers.__version__} knows"
    elif (kind := _generative_kind(model_type)) is not None:
        problem, fix = f"model_type = {model_type!r} is {kind}", ""
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
    """Refuse a classifier whose safetensors weights give its head another number of outputs than config.json has
    labels (id2label edited by hand, as optbench's error about unknown labels says to): transformers refuses to load
    it, and every job of the run failed with its "look at the above report", which the job's process kept."""
    if not has_classifier_head(config):
        return
    labels = hf_label_names(config)
    for path in (p for p in weights if p.suffix == ".safetensors"):
        try:
            header = _safetensors_header(path)
        except (OSError, ValueError):  # not safetensors after all: the load that reads it says why
            continue
        head = next((header[name] for name in HEAD_WEIGHTS if name in header), None)
        if head is not None and head["shape"][0] != len(labels):
            raise OptbenchError(
                f"{config_path}: the classifier in {path.name} has {head['shape'][0]} outputs and config.json names "
                f"{len(labels)} labels: {LABEL_MAP_FIX}"
            )


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
    count = config.get("num_labels") or len(id2label) or DEFAULT_NUM_LABELS
    if not id2label:
        return tuple(f"LABEL_{i}" for i in range(count))
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
