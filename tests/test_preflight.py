"""The checks that refuse a recipe before any step runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from optbench.errors import OptbenchError
from optbench.preflight import check_lengths, check_steps_run_here, checked_folder
from optbench.recipe import Recipe, parse_recipe


def test_only_a_step_this_machine_cannot_run_refuses_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TensorRT, a recipe is refused for its first tensorrt step, the one its run would stop at; a recipe
    without one is not, CUDA runtimes included (their jobs fail as jobs, recorded), nor are steps keyed on this
    machine that it can run (quantize-static's INT8 types chosen here)."""

    def no_tensorrt() -> None:
        raise OptbenchError("TensorRT is missing")

    monkeypatch.setattr("optbench.tensorrt_engine.import_tensorrt", no_tensorrt)
    onnx, static = {"name": "onnx", "label": "unfused", "fuse": False}, {"name": "quantize-static"}
    fp16, int8 = {"name": "tensorrt"}, {"name": "tensorrt", "precision": "int8"}
    cuda = [{"name": "torch", "device": "cuda"}, {"name": "tensorrt", "device": "cuda"}]

    def recipe(*chains: list[dict], runtimes: list) -> Recipe:
        table = {"chains": [{"steps": chain} for chain in chains], "bench": {"runtimes": ["onnxruntime", *runtimes]}}
        return parse_recipe(table, base=Path("."), default_name="r")

    check_steps_run_here(recipe([onnx, static], [onnx], runtimes=cuda[:1]))
    refused = (
        r"^the chain unfused -> tensorrt-int8, step tensorrt-int8, cannot run on this machine: TensorRT is missing\."
    )
    with pytest.raises(OptbenchError, match=refused):
        check_steps_run_here(recipe([onnx, static], [onnx, int8], [onnx, fp16], runtimes=cuda))


def _benchmarked_at(seq_len: int) -> Recipe:
    """The default recipe, benchmarked at `seq_len` tokens (its other lengths are 128 and fewer)."""
    return parse_recipe({"bench": {"seq_lens": [seq_len]}}, base=Path("."), default_name="r")


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        *(  # transformers' RobertaEmbeddings and its copies, optbench's pruned ones too
            ({"model_type": kind, "max_position_embeddings": 514, "pad_token_id": 1}, 512)
            for kind in (
                "roberta",
                "xlm-roberta",
                "camembert",
                "data2vec-text",
                "optbench-pruned-roberta",
                "optbench-pruned-xlm-roberta",
            )
        ),
        ({"model_type": "roberta", "max_position_embeddings": 514}, 514),  # no pad token id: no offset to take
        ({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}, 512),
    ],
)
def test_a_length_past_the_models_positions_is_refused_and_one_at_them_not(config: dict[str, Any], limit: int) -> None:
    """RoBERTa's position ids start after its padding index: 514 positions take 512 tokens."""
    check_lengths(_benchmarked_at(limit), config, "the checkpoint")
    message = rf"^\[bench\] seq_len = {limit + 1} beyond the {limit} positions of the checkpoint: use at most {limit}"
    with pytest.raises(OptbenchError, match=message):
        check_lengths(_benchmarked_at(limit + 1), config, "the checkpoint")


@pytest.mark.parametrize("positions", [None, "512", 512.5])
def test_a_config_that_names_no_number_of_positions_refuses_no_length(positions: object) -> None:
    """Unknown, not zero: the model's own forward pass answers the lengths it cannot take."""
    config = {"model_type": "roberta", "pad_token_id": 1, "max_position_embeddings": positions}
    check_lengths(_benchmarked_at(4096), {k: v for k, v in config.items() if v is not None}, "the checkpoint")


def test_a_config_that_names_no_vocabulary_size_refuses_no_tokenizer(tiny_classifier: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["vocab_size"]
    (folder / "config.json").write_text(json.dumps(config))
    assert "vocab_size" not in checked_folder(folder, "the checkpoint")


@pytest.mark.parametrize("spare", [0, 1])
def test_a_tokenizer_one_token_past_the_embeddings_is_refused_and_one_that_fills_them_not(
    tiny_classifier: Path, tmp_path: Path, spare: int
) -> None:
    """The tokenizer's last id must have an embedding: one token past vocab_size failed the first text that held it
    with torch's bare "index out of range in self"; a tokenizer that fills the embeddings exactly is whole."""
    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    tokens = len(AutoTokenizer.from_pretrained(folder))
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = tokens - spare
    (folder / "config.json").write_text(json.dumps(config))
    if spare == 0:
        assert checked_folder(folder, "the checkpoint")["vocab_size"] == tokens
        return
    with pytest.raises(OptbenchError, match=rf"has {tokens} tokens and the model embeds {tokens - 1} \(vocab_size\): "):
        checked_folder(folder, "the checkpoint")


BERT_512 = {"model_type": "bert", "max_position_embeddings": 512}
TRT_PROVIDER = {"provider": "tensorrt", "trt_profile": {"min": [1, 1], "opt": [1, 128], "max": [64, 1024]}}


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"steps": [{"name": "distill", "max_length": 1024}]}, r"\[\[steps\]\] #1 \(distill\) max_length"),
        (
            {
                "steps": [{"name": "onnx", "fuse": False}, {"name": "tensorrt", "seq_lens": [1024]}],
                "bench": {"runtimes": [{"name": "tensorrt", "device": "cuda"}]},
            },
            r"\[\[steps\]\] #2 \(tensorrt\) seq_len",
        ),
        (
            {
                "steps": [{"name": "onnx", "fuse": False}],
                "bench": {"runtimes": [{"name": "onnxruntime", "device": "cuda", "options": TRT_PROVIDER}]},
            },
            r"runtime onnxruntime-cuda-fp32-tensorrt trt_profile max sequence",
        ),
    ],
    ids=["a step's max_length", "a tensorrt step's seq_lens", "a TensorRT provider's profile"],
)
def test_a_length_a_step_or_runtime_asks_of_the_checkpoint_is_held_to_its_positions(table: dict, where: str) -> None:
    """Not only [dataset] and [bench]: the step's training, or the engine built for that length, failed mid-run."""
    recipe = parse_recipe(table, base=Path("."), default_name="r")
    with pytest.raises(OptbenchError, match=rf"^{where} = 1024 beyond the 512 positions of the checkpoint"):
        check_lengths(recipe, BERT_512, "the checkpoint")


def test_the_fine_tunes_length_is_held_to_the_positions_only_of_a_checkpoint_it_fine_tunes() -> None:
    """An encoder is fine-tuned at [model.finetune]'s max_length; a classifier is the baseline as it is, unused."""
    recipe = parse_recipe({"model": {"finetune": {"max_length": 1024}}}, base=Path("."), default_name="r")
    message = r"^\[model.finetune\] max_length = 1024 beyond the 512 positions of the checkpoint"
    with pytest.raises(OptbenchError, match=message):
        check_lengths(recipe, BERT_512, "the checkpoint")
    check_lengths(recipe, {**BERT_512, "architectures": ["BertForSequenceClassification"]}, "the checkpoint")
