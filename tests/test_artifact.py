"""ModelArtifact, content hashes, manifests, and atomic writes."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fake_checkpoint, safetensors_bytes, write_files

from optbench import atomic
from optbench.artifact import MANIFEST, ModelArtifact, StepRecord, content_hash, safetensors_header, weight_files
from optbench.atomic import write_json_atomic, write_npy_atomic, write_text_atomic
from optbench.errors import OptbenchError

MIB = 2**20


# --- content hash and size ------------------------------------------------------------------------------


def test_content_hash_is_stable_across_copies(tiny_classifier: Path, tmp_path: Path) -> None:
    """A copy made without the files' times (cp -r, a download, a checkout) is the same model: its steps' cached
    outputs are reused."""
    first = content_hash(tiny_classifier)
    assert len(first) == 64
    assert content_hash(tiny_classifier) == first
    copy = shutil.copytree(tiny_classifier, tmp_path / "copy", copy_function=shutil.copy)
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
        ("optbench-quantization.json", '{"scheme": "int8"}'),  # applied when the model loads
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


@pytest.mark.parametrize(
    "name",
    [
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "special_tokens_map.json",
        "spm.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "bpe.codes",
        "sentencepiece.model",
        "entity_vocab.json",
        "word_shape.json",
        "word_pronunciation.json",
    ],
)
def test_content_hash_follows_every_tokenizer_file(tmp_path: Path, name: str) -> None:
    """BERT's vocab.txt, RoBERTa's vocab.json beside its merges.txt, the sentencepiece models of DeBERTa-v2/v3
    (spm.model), ALBERT and T5 (spiece.model), XLM-R (sentencepiece.bpe.model) and RemBERT (sentencepiece.model),
    BERTweet's and PhoBERT's merges (bpe.codes), LUKE's entities, RoCBert's shapes and pronunciations, added and
    special tokens: the token ids."""
    folder = write_files(fake_checkpoint(tmp_path / "m"), {name: b"one"})
    before = content_hash(folder)
    (folder / name).write_bytes(b"two")
    assert content_hash(folder) != before


@pytest.mark.parametrize(
    ("files", "edited"),
    [
        ({f"model-0000{i}-of-00002.safetensors": b"shard" for i in (1, 2)}, "model-00002-of-00002.safetensors"),
        ({"model.onnx": b"graph", "model.onnx_data": b"weights"}, "model.onnx_data"),
        ({"model.onnx": b"graph", "model.onnx.data": b"weights"}, "model.onnx.data"),
    ],
)
def test_content_hash_follows_every_weight_file(tmp_path: Path, files: dict[str, bytes], edited: str) -> None:
    """A checkpoint's later shard, or an ONNX model's external data file (optimum's .onnx_data, torch's .onnx.data),
    retrained or re-exported in place, is another model: a step's cached output of the old one must not be reused."""
    folder = write_files(tmp_path / "m", files)
    before = content_hash(folder)
    (folder / edited).write_bytes(b"other")
    assert content_hash(folder) != before


def test_content_hash_follows_every_byte_of_a_large_weight_file(tmp_path: Path) -> None:
    folder = write_files(fake_checkpoint(tmp_path / "m"), {"model.safetensors": b"\0" * (MIB + 10)})
    before = content_hash(folder)
    (folder / "model.safetensors").write_bytes(b"\0" * (MIB + 9) + b"\1")
    assert content_hash(folder) != before


def test_content_hash_does_not_depend_on_the_order_the_folder_lists_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of a folder may list its files in another order (as another file system does)."""
    shards = {f"model-0000{i}-of-00002.safetensors": bytes([i]) * 10 for i in (1, 2)}
    folder = write_files(fake_checkpoint(tmp_path / "m"), shards)
    before = content_hash(folder)
    iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: reversed(list(iterdir(self))))
    assert content_hash(folder) == before


def test_content_hash_tells_models_apart(tiny_encoder: Path, tiny_classifier: Path) -> None:
    assert content_hash(tiny_encoder) != content_hash(tiny_classifier)


def test_size_mb_counts_weight_files_only(tmp_path: Path) -> None:
    folder = write_files(
        tmp_path / "m",
        {
            "model.safetensors": b"\0" * MIB,
            "extra.plan": b"\0" * (MIB // 2),
            "model.onnx_data": b"\0" * (MIB // 4),
            "model.onnx.data": b"\0" * (MIB // 8),  # external data, as torch.onnx names it
            "model.engine": b"\0" * (MIB // 8),
            "config.json": b"\0" * (3 * MIB),
            "tokenizer.json": b"\0" * MIB,
            "vocab.txt": b"\0" * MIB,
        },
    )
    artifact = ModelArtifact(folder, "onnx", ("a", "b"), content_hash(folder))
    assert artifact.size_mb() == pytest.approx(2.0)
    assert [p.name for p in weight_files(folder)] == [
        "extra.plan",
        "model.engine",
        "model.onnx.data",
        "model.onnx_data",
        "model.safetensors",
    ]


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
            "old.safetensors/notes.txt": b"a folder, not weights",
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
    assert artifact.parameters() == 0  # .bin weights are not counted


@pytest.mark.parametrize(
    ("files", "loaded"),
    [
        # a hub snapshot: the safetensors run; the .bin copy and the ONNX exports beside them do not
        (["model.safetensors", "pytorch_model.bin", "onnx/model.onnx", "onnx/model_qint8.onnx"], 1),
        (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "pytorch_model.bin"], 2),
        (["pytorch_model.bin", "training_args.bin", "onnx/model.onnx"], 1),
        (["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "training_args.bin"], 2),
        (["model.onnx", "model.bin"], 2),  # an ONNX model's external data may take any name: no torch weights here
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


def test_parameters_add_up_every_shard(tmp_path: Path) -> None:
    shards = {
        "model-00001-of-00002.safetensors": safetensors_bytes({"a": [4, 4], "b": [3]}),
        "model-00002-of-00002.safetensors": safetensors_bytes({"c": [2, 5]}),
    }
    folder = write_files(tmp_path / "m", {"config.json": b"{}", **shards})
    assert ModelArtifact(folder, "hf", ("a", "b"), "x").parameters() == 16 + 3 + 10


def test_a_safetensors_header_longer_than_the_file_is_refused(tmp_path: Path) -> None:
    """Its header may fill the file to its end, not a byte past it: reading that many bytes could ask for 16 EiB."""
    whole = safetensors_bytes({})
    path = tmp_path / "model.safetensors"
    path.write_bytes(whole)
    assert safetensors_header(path) == {}
    for length in (len(whole) - 7, 2**64 - 1):
        path.write_bytes(length.to_bytes(8, "little") + whole[8:])
        with pytest.raises(ValueError, match=f"is not a safetensors file: its header length {length} is past its end"):
            safetensors_header(path)


# a quick TorchScript export of a tiny model, to count its initializers: the exporter's notes (deprecation, tracer,
# indexing) are not this test's concern
@pytest.mark.filterwarnings("ignore")
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
        lineage=(StepRecord("onnx", {"opset": 17}), StepRecord("quantize-static", {"calibration_rows": 64}, "q8")),
    )
    assert derived.variant == "baseline+onnx+q8"  # a step's label, where the recipe gave one
    assert derived.to_dict()["variant"] == "baseline+onnx+q8"


def test_a_derived_artifact_keeps_the_origin_and_adds_its_step(tmp_path: Path) -> None:
    """And its label names in the parent's order (a classifier's own, here not sorted): a step after it reads the
    same outputs as the same classes."""
    parent = ModelArtifact(
        Path("parent"),
        "hf",
        ("rotten", "fresh"),
        "parent's hash",
        origin={"checkpoint": "default"},
        lineage=(StepRecord("prune", {"heads": 2}, "p2"),),
        details={"train_seconds": 12.5},
    )
    folder = fake_checkpoint(tmp_path / "onnx")
    assert parent.derive(folder, step="onnx", config={"opset": 17}, format="onnx", details={"opset": 17}) == (
        ModelArtifact(
            folder,
            "onnx",
            ("rotten", "fresh"),
            content_hash(folder),
            origin={"checkpoint": "default"},
            lineage=(StepRecord("prune", {"heads": 2}, "p2"), StepRecord("onnx", {"opset": 17})),
            details={"opset": 17},
        )
    )
    relabelled = parent.derive(folder, step="distill", config={}, format="hf", details={}, label_names=("neg", "pos"))
    assert relabelled.label_names == ("neg", "pos")


def test_a_manifest_is_written_into_the_folder_being_built(tmp_path: Path) -> None:
    """A step builds its model in a work folder, then moves it to the artifact's path."""
    work = fake_checkpoint(tmp_path / "work")
    ModelArtifact(tmp_path / "final", "hf", ("a", "b"), content_hash(work)).save_manifest(work)
    assert (work / MANIFEST).is_file() and not (tmp_path / "final").exists()


def test_manifest_round_trip(tmp_path: Path) -> None:
    """Labels come back in the classifier's own order (here not sorted): class i's logit is label i's, and a cached
    step's labels read in another order would score every prediction against the wrong class."""
    folder = fake_checkpoint(tmp_path / "model")
    artifact = ModelArtifact(
        folder,
        "onnx",
        ("rotten", "fresh"),
        content_hash(folder),
        origin={"checkpoint": "default", "finetune": {"epochs": 1.0}},
        lineage=(StepRecord("onnx", {"opset": 17, "optimize": True}), StepRecord("quantize-dynamic", {}, "dyn")),
        details={"train_seconds": 12.5},
    )
    artifact.save_manifest()
    assert sorted(p.name for p in folder.iterdir()) == sorted(  # the name the folders cached on disk have
        ["optbench-manifest.json", "config.json", "model.safetensors", "tokenizer.json"]
    )
    saved = json.loads((folder / MANIFEST).read_text())
    assert saved["variant"] == "baseline+onnx+dyn"
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
        (lambda m: {**m, "lineage": [{"name": "onnx"}]}, "no 'config' entry"),
        (lambda m: {k: v for k, v in m.items() if k != "label_names"}, "no 'label_names' entry"),
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
    manifest_path = re.escape(str(folder / MANIFEST))
    with pytest.raises(
        OptbenchError, match=rf"cannot read artifact manifest {manifest_path} \(.*{problem}.*\): delete the"
    ):
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
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": null\n}\n'  # a line a value: diffs read well
    assert os.listdir(tmp_path) == ["data.json"]


def test_write_npy_atomic_writes_an_array_that_loads_without_pickle(tmp_path: Path) -> None:
    """An object array would be pickled, and loading a pickle runs code: it is refused, and nothing is written."""
    path = tmp_path / "logits.npy"
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    write_npy_atomic(path, logits)
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, logits)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        write_npy_atomic(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    assert os.listdir(tmp_path) == ["logits.npy"]


def test_the_whole_content_is_on_disk_before_the_file_takes_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync syncs what the kernel has: content still in Python's buffer when it runs would reach the disk later,
    after the rename, and a crash between the two would leave the file half-written."""
    synced: list[int] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    write_text_atomic(tmp_path / "table.md", "a row\n" * 100)
    assert synced == [600]


def test_two_writers_of_one_file_at_once_each_stage_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process or thread writing the same file between our staging and our rename (two sweeps sharing a
    results folder): a temporary name shared by both would have it rename our bytes, or half of them, and leave our
    rename nothing to take."""
    path = tmp_path / "claim.json"
    replace = os.replace

    def another_writer_meanwhile(src: Path, dst: Path) -> None:
        monkeypatch.setattr(atomic.os, "replace", replace)
        write_text_atomic(path, "theirs\n")
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", another_writer_meanwhile)
    write_text_atomic(path, "mine\n")
    assert path.read_text() == "mine\n"
    assert os.listdir(tmp_path) == ["claim.json"]


def _boom(*args: Any, **kwargs: Any) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    path = tmp_path / "report.json"
    path.write_text("old content\n")
    monkeypatch.setattr(atomic.os, target, _boom)
    # the fix is space, not access: it said "give a path in a folder you can write"
    with pytest.raises(OptbenchError, match=r"cannot write .*No space left on device\): free some space on its file"):
        write_text_atomic(path, "new content that never lands\n")
    monkeypatch.undo()
    assert path.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["report.json"]


@pytest.mark.parametrize(
    ("error", "said"),
    [(PermissionError(13, "Permission denied"), "Permission denied"), (OSError("disk gone"), "disk gone")],
    ids=["access", "no-errno"],
)
def test_a_refused_write_says_why_and_asks_for_a_folder_that_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, said: str
) -> None:
    def refuse(*args: Any) -> None:
        raise error

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OptbenchError) as refused:
        write_text_atomic(tmp_path / "table.md", "a row\n")
    assert str(refused.value) == f"cannot write {tmp_path / 'table.md'} ({said}): give a path in a folder you can write"


def test_a_folder_is_not_written_over(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError) as refused:
        write_text_atomic(tmp_path, "a row\n")
    assert str(refused.value) == f"cannot write {tmp_path}: it is a folder; give a file name"


def test_a_read_only_file_is_not_renamed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's read-only file (chmod 444: kept as it is) was replaced: its folder's write access is all a rename
    needs. Tests run as root, whom access() lets write any file: it answers as for another user here."""
    table, junit = tmp_path / "table.md", tmp_path / "junit.xml"
    table.write_text("kept\n")
    junit.write_text("kept too\n")
    os.chmod(junit, 0o444)
    access = os.access
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: Path(path) != junit and access(path, mode))
    with pytest.raises(OptbenchError) as refused:
        atomic.write_all_atomic([(table, b"new\n"), (junit, b"<testsuite/>\n")])
    fix = "make it writable (chmod u+w) or give another path"
    assert str(refused.value) == f"cannot write {junit}: it is read-only; {fix}"
    assert (table.read_text(), junit.read_text()) == ("kept\n", "kept too\n")
    assert sorted(os.listdir(tmp_path)) == ["junit.xml", "table.md"]


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
