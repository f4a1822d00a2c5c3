"""ModelArtifact: a model on disk, its format, labels, content hash and the steps that made it."""

from __future__ import annotations

import hashlib
import json
import math
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
# a checkpoint's config (architecture, labels) and tokenizer files, of the tokenizer kinds transformers saves for the
# encoders it has text classifiers of: they travel with every model optbench derives from it (an ONNX export carries
# them over), and the content hash reads them
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
    "bpe.codes",  # BERTweet and PhoBERT (model_type roberta): their merges, beside vocab.txt
    "sentencepiece.model",  # RemBERT
    "entity_vocab.json",  # LUKE, mLUKE
    "word_shape.json",  # RoCBert, with word_pronunciation.json
    "word_pronunciation.json",
)
# what decides a model's outputs besides its weights: its config and tokenizer, the quantization scheme
# applied when it loads, and its own code (*.py, as in a pruned checkpoint)
DEFINITION_FILES = (*HF_FILES, QUANTIZATION_FILE)


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


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file holds, by name (dtype, shape and offsets), read without its weights. A file
    whose first 8 bytes give a header longer than the file is no safetensors file (ValueError): reading that many
    bytes would ask for up to 16 EiB. So is one whose header is not a JSON object."""
    return _length_and_header(path)[1]


def safetensors_size(path: Path) -> int:
    """The bytes a whole safetensors file has by its header: the 8 giving the header's length, the header, and its
    tensors' data to the end of the last. Raises as `safetensors_header` does, and KeyError, TypeError or IndexError
    for a header whose entries are not tensors."""
    length, header = _length_and_header(path)
    return 8 + length + max((tensor["data_offsets"][1] for tensor in header.values()), default=0)


def _length_and_header(path: Path) -> tuple[int, dict[str, Any]]:
    """A safetensors file's header length (its first 8 bytes) and its tensors, as `safetensors_header` reads them."""
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length > path.stat().st_size - 8:
            raise ValueError(f"{path} is not a safetensors file: its header length {length} is past its end")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is a JSON {type(header).__name__}")
    return length, {name: tensor for name, tensor in header.items() if name != "__metadata__"}


def _parameters_in(path: Path) -> int:
    if path.suffix == ".safetensors":
        return sum(math.prod(t["shape"]) for t in safetensors_header(path).values())
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
