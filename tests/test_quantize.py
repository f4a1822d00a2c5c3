"""INT8 quantization steps on a tiny exported BERT: dynamic, static with calibration, bad settings."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import _write_fp16_weights_only

from optbench import calibration
from optbench.artifact import ModelArtifact, content_hash
from optbench.data import DatasetConfig, load_dataset
from optbench.encoding import batches, load_tokenizer
from optbench.errors import OptbenchError
from optbench.runtimes import RuntimeSpec, load_runtime
from optbench.steps import parse_step, quantize
from optbench.steps.cache import run_step
from optbench.steps.onnx import OnnxConfig
from optbench.steps.quantize import DYNAMIC_OPS, DynamicQuantizeConfig, StaticQuantizeConfig, preflight
from optbench.steps.torch_int8 import AGREEMENT_ROWS


@pytest.fixture(scope="module")
def data(reviews_csv: Path):
    return load_dataset(DatasetConfig(source=str(reviews_csv), group_column="movie", max_length=64))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(tiny_classifier: Path) -> ModelArtifact:
    return ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))


@pytest.fixture(scope="module")
def fused(classifier: ModelArtifact, data, cache: Path) -> ModelArtifact:
    return run_step(OnnxConfig(exporter="torchscript"), classifier, data, cache)


@pytest.fixture(scope="module")
def unfused(classifier: ModelArtifact, data, cache: Path) -> ModelArtifact:
    return run_step(OnnxConfig(exporter="torchscript", fuse=False), classifier, data, cache)


def _agreement(artifact: ModelArtifact, reference: ModelArtifact, data) -> float:
    from transformers import AutoTokenizer

    batch = batches(
        AutoTokenizer.from_pretrained(artifact.path), data.test.texts[:32], batch_size=32, seq_len="data", max_length=32
    )[0]
    a = load_runtime(RuntimeSpec("onnxruntime"), artifact, threads=1).predict(batch)
    b = load_runtime(RuntimeSpec("onnxruntime"), reference, threads=1).predict(batch)
    return float((a.argmax(1) == b.argmax(1)).mean())


def test_dynamic_int8_measures_and_records_its_weight_type(fused: ModelArtifact, data, cache: Path) -> None:
    result = run_step(DynamicQuantizeConfig(), fused, data, cache)
    assert result.variant == "baseline+onnx+quantize-dynamic"
    details = result.details
    assert details["weight_type"] in ("int8", "uint8")
    assert set(details["weight_type_p50_ms"]) == {"int8", "uint8"}
    assert "preflight" in details and isinstance(details["reduce_range"], bool)
    assert details["precision"] == "fp32"  # of the float ops around the INT8 ones, which runtimes check against
    share = details["matmul_quantized"]
    assert share["quantized"] > 0 and share["quantized"] == share["total"], share
    source = Counter(node.op_type for node in onnx.load(str(fused.path / "model.onnx")).graph.node)
    assert source["Gemm"] > 0 and "Gemm" not in DynamicQuantizeConfig().op_types
    # the quantizer rewrites Gemm (pooler, classifier) as MatMul + Add: "MatMul" quantizes them
    assert share["int8_operators"]["MatMulInteger"] == source["MatMul"] + source["Gemm"], share
    # the fused Attention nodes become QAttention, counted among the INT8 ones (left out, the share still read 100%)
    assert share["int8_operators"]["QAttention"] == source["Attention"] > 0, share
    assert share["total"] == source["MatMul"] + source["Gemm"] + source["Attention"], share
    assert [p.name for p in result.path.glob("*.onnx")] == ["model.onnx"]
    assert _agreement(result, fused, data) >= 0.9
    assert all(n > 1 for n in _weight_scale_sizes(result)), "the default quantizes weights per output channel"


def test_dynamic_int8_with_a_fixed_weight_type_skips_the_measurement(fused: ModelArtifact, data, cache: Path) -> None:
    result = run_step(DynamicQuantizeConfig(weight_type="uint8", per_channel=False), fused, data, cache)
    assert result.details["weight_type"] == "uint8" and "weight_type_p50_ms" not in result.details
    assert set(_weight_scale_sizes(result)) == {1}, "per_channel = false keeps one scale per weight tensor"


def _quantized_weights(artifact: ModelArtifact) -> dict[str, np.ndarray]:
    """Each quantized weight by its name (onnxruntime names them <weight>_quantized)."""
    graph = onnx.load(str(artifact.path / "model.onnx")).graph
    weights = {t.name.removesuffix("_quantized"): t for t in graph.initializer if t.name.endswith("_quantized")}
    assert weights, "no quantized weights found"
    return {name: onnx.numpy_helper.to_array(t) for name, t in weights.items()}


def _weight_scale_sizes(artifact: ModelArtifact) -> list[int]:
    """How many scales each quantized weight carries (onnxruntime names them <weight>_scale)."""
    scales = {t.name: t for t in onnx.load(str(artifact.path / "model.onnx")).graph.initializer}
    return [int(np.prod(scales[f"{name}_scale"].dims)) for name in _quantized_weights(artifact)]


def test_dynamic_int8_takes_the_reduce_range_asked_for(fused: ModelArtifact, data, cache: Path) -> None:
    """reduce_range = true gives 7-bit weights: a step that took the machine's choice (off on every CPU) instead
    wrote 8-bit ones, and its manifest said reduce_range false."""
    seven_bit = run_step(DynamicQuantizeConfig(weight_type="int8", reduce_range=True), fused, data, cache)
    eight_bit = run_step(DynamicQuantizeConfig(weight_type="int8"), fused, data, cache)
    assert seven_bit.details["reduce_range"] is True and eight_bit.details["reduce_range"] is False
    assert max(int(np.abs(w).max()) for w in _quantized_weights(seven_bit).values()) <= 64
    assert max(int(np.abs(w).max()) for w in _quantized_weights(eight_bit).values()) == 127


@pytest.mark.parametrize("faster", ["int8", "uint8"])
def test_dynamic_int8_keeps_the_weight_type_timed_faster(
    faster: str, fused: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model kept is the faster candidate, the one the manifest names: a slip to the slower one, or to the
    first built, would ship a slower model under the faster one's figures."""
    timings = {"int8": 2.0, "uint8": 2.0} | {faster: 1.0}
    monkeypatch.setattr(quantize, "_time_models", lambda paths, model_dir, data: timings)
    result = run_step(DynamicQuantizeConfig(), fused, data, tmp_path)
    assert result.details["weight_type"] == faster and result.details["weight_type_p50_ms"] == timings
    assert {w.dtype.name for w in _quantized_weights(result).values()} == {faster}
    assert [p.name for p in result.path.glob("*.onnx")] == ["model.onnx"]


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_calibrates_on_train_samples(method: str, unfused: ModelArtifact, data, cache: Path) -> None:
    """10 samples in batches of 4: MinMax takes a short last batch; the histogram methods, which stack the batches
    into one array, get batches of 2 (numpy refused the ragged stack with a ValueError traceback)."""
    config = StaticQuantizeConfig(calibration_method=method, calibration_samples=10, calibration_batch_size=4)
    result = run_step(config, unfused, data, cache)
    calibration = result.details["calibration"]
    batch_size = 4 if method == "minmax" else 2
    assert calibration == {**calibration, "method": method, "samples": 10, "split": "train", "batch_size": batch_size}
    # MinMax pads each batch to its own longest text; the histogram methods pad every batch to one length
    assert calibration["seq_len"] == "data" if method == "minmax" else 0 < calibration["seq_len"] <= data.max_length
    assert [p.name for p in result.path.glob("*.onnx")] == ["model.onnx"]  # the pre-processed model is deleted
    share = result.details["matmul_quantized"]
    assert 0 < share["quantized"] < share["total"]  # weight MatMuls in INT8, attention MatMuls kept in FP32
    assert result.details["excluded_nodes"] >= 4  # two attention MatMuls per layer
    assert _agreement(result, unfused, data) >= 0.9


def test_static_int8_takes_the_weight_type_scales_and_range_asked_for(
    unfused: ModelArtifact, data, cache: Path
) -> None:
    """uint8 weights, one scale per output channel, 7 bits: a step that took the pre-flight's int8 weights, one
    scale per tensor or 8 bits instead wrote another model than the manifest's settings say. MatMul outputs stay
    FP32: without OpTypesToExcludeOutputQuantization QDQ quantizes them again for the next op."""
    config = StaticQuantizeConfig(calibration_samples=8, weight_type="uint8", per_channel=True, reduce_range=True)
    result = run_step(config, unfused, data, cache)
    assert (result.details["weight_type"], result.details["reduce_range"]) == ("uint8", True)
    weights = _quantized_weights(result).values()
    assert {w.dtype.name for w in weights} == {"uint8"} and max(int(w.max()) for w in weights) <= 128
    assert all(n > 1 for n in _weight_scale_sizes(result))
    graph = onnx.load(str(result.path / "model.onnx")).graph
    quantizers = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    matmul_outputs = {out for node in graph.node if node.op_type == "MatMul" for out in node.output}
    assert not any(node.input[0] in matmul_outputs for node in quantizers)


def test_static_int8_quantizes_the_op_types_asked_for(unfused: ModelArtifact, data, cache: Path) -> None:
    """op_types = ["Gemm"]: the pooler's and classifier's Gemm weights are INT8 and every MatMul stays FP32; a step
    that passed its default ["MatMul"] instead quantized the other nodes under the same manifest settings. The
    activations are the type asked for, not the weights' (onnxruntime refuses int8 activations with uint8 weights)."""
    config = StaticQuantizeConfig(
        calibration_samples=8, op_types=("Gemm",), activation_type="uint8", weight_type="int8"
    )
    result = run_step(config, unfused, data, cache)
    assert (result.details["activation_type"], result.details["weight_type"]) == ("uint8", "int8")
    graph = onnx.load(str(result.path / "model.onnx")).graph
    zero_points = {t.name: t.data_type for t in graph.initializer}
    quantizers = [node for node in graph.node if node.op_type == "QuantizeLinear"]  # activations: weights are stored
    assert quantizers and {zero_points[node.input[2]] for node in quantizers} == {onnx.TensorProto.UINT8}
    assert {w.dtype.name for w in _quantized_weights(result).values()} == {"int8", "int32"}  # Gemm biases: int32
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    int8 = {node.op_type: set() for node in graph.node if node.op_type in ("MatMul", "Gemm")}
    for node in graph.node:
        if node.op_type in int8:
            int8[node.op_type].add(node.input[1] in dequantized)
    assert int8 == {"MatMul": {False}, "Gemm": {True}}
    share = result.details["matmul_quantized"]
    assert share["quantized"] == sum(node.op_type == "Gemm" for node in graph.node) > 0, share


def _calibration_rows(reader: calibration.CalibrationReader) -> set[tuple[int, ...]]:
    """The token ids of each row `reader` feeds, without its padding."""
    return {
        tuple(row[mask.astype(bool)])
        for batch in iter(reader.get_next, None)
        for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    }


@pytest.mark.parametrize(("method", "percentile"), [("minmax", 99.999), ("entropy", 99.999), ("percentile", 99.0)])
def test_static_int8_calibrates_with_the_method_and_percentile_asked_for(
    method: str, percentile: float, unfused: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What reaches onnxruntime's calibration: another method than the manifest names, the default percentile in
    place of the one asked for, or the default seed's draw of train rows, changes every INT8 range and nothing in
    the manifest."""
    from onnxruntime.quantization import CalibrationMethod

    class Called(Exception):
        pass

    def quantize_static(source, target, reader, **kwargs) -> None:  # type: ignore[no-untyped-def]
        raise Called(reader, kwargs)

    monkeypatch.setattr("onnxruntime.quantization.quantize_static", quantize_static)
    config = StaticQuantizeConfig(calibration_method=method, percentile=percentile, calibration_samples=4, seed=3)
    with pytest.raises(Called) as called:
        run_step(config, unfused, data, tmp_path)
    reader, kwargs = called.value.args
    seeded = calibration.CalibrationReader(unfused.path, data, samples=4, batch_size=4, seed=3, one_length=False)
    assert _calibration_rows(reader) == _calibration_rows(seeded)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    assert kwargs["calibrate_method"] == methods.get(method, CalibrationMethod.Percentile)
    assert kwargs["extra_options"]["CalibPercentile"] == percentile


@pytest.mark.parametrize(
    ("rows", "batch_size", "equal"),
    [(12, 4, 4), (10, 4, 2), (7, 4, 1), (3, 16, 3), (1, 16, 1)],  # a split of fewer rows than a batch: one batch
)
def test_equal_batches_are_the_largest_that_split_the_rows_whole(rows: int, batch_size: int, equal: int) -> None:
    assert calibration.equal_batch_size(rows, batch_size) == equal


def test_calibration_reads_the_train_split_only(unfused: ModelArtifact, data) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(unfused.path)

    def ids(texts: list[str]) -> set[tuple[int, ...]]:
        return {tuple(row) for row in tokenizer(texts, truncation=True, max_length=64)["input_ids"]}

    reader = calibration.CalibrationReader(
        unfused.path, data, samples=10, batch_size=4, seed=0, one_length=True, equal_batches=True
    )
    rows, sizes, lengths = set(), [], set()
    while (batch := reader.get_next()) is not None:
        sizes.append(len(batch["input_ids"]))
        lengths.add(batch["input_ids"].shape[1])
        rows |= {tuple(r[m.astype(bool)]) for r, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)}
    assert sizes == [2] * 5 and reader.rows == reader.batch_size * 5 == 10  # 4 would leave a short last batch
    assert lengths == {reader.seq_len}  # one shape: the histogram calibrators stack the batches
    per_batch = calibration.CalibrationReader(unfused.path, data, samples=10, batch_size=4, seed=0, one_length=False)
    assert per_batch.seq_len == "data"
    shapes = []
    while (batch := per_batch.get_next()) is not None:
        shapes.append(batch["input_ids"].shape)
    assert [rows for rows, _ in shapes] == [4, 4, 2]  # MinMax takes each batch on its own
    lengths = {length for _, length in shapes}
    assert max(lengths) == reader.seq_len and len(lengths) > 1  # each batch to its own longest text
    assert rows <= ids(data.train.texts) and not rows & ids(data.test.texts)


def test_calibration_feeds_the_rows_its_seed_draws_in_order_cut_at_max_length(unfused: ModelArtifact, data) -> None:
    """Each batch padded to its own longest text is still cut at the data's max_length, and the rows are the ones
    `calibration_texts` draws with the reader's seed: a reader that drew with another seed, or padded past
    max_length, passed the step's test, which compares the step's reader with another reader."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(unfused.path)
    short = replace(data, max_length=16)
    draws = {seed: calibration.calibration_texts(short, 6, seed) for seed in (0, 3)}
    assert draws[0] != draws[3]  # else the seed would not tell
    for seed, texts in draws.items():
        expected = tokenizer(texts, truncation=True, max_length=16)["input_ids"]
        assert max(len(tokenizer(text)["input_ids"]) for text in texts) > 16  # else the cut would not tell
        reader = calibration.CalibrationReader(
            unfused.path, short, samples=6, batch_size=4, seed=seed, one_length=False
        )
        fed = [
            list(row[mask.astype(bool)])
            for batch in iter(reader.get_next, None)
            for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
        assert fed == expected


def test_calibration_records_the_batch_size_it_used(unfused: ModelArtifact, data) -> None:
    """MinMax with fewer samples than calibration_batch_size: its one batch holds them all, and that is the size
    recorded (the manifest said 16 for a batch of 8)."""
    reader = calibration.CalibrationReader(unfused.path, data, samples=3, batch_size=16, seed=0, one_length=False)
    batch = reader.get_next()
    assert batch is not None and len(batch["input_ids"]) == reader.batch_size == reader.rows == 3
    assert reader.get_next() is None


def test_calibration_at_one_length_pads_to_the_longest_sample_cut_at_max_length(unfused: ModelArtifact, data) -> None:
    """Texts longer than max_length are cut there before the longest is taken: measured untruncated (or cut at the
    tokenizer's own limit), one length padded every batch past what the model is ever fed."""
    short = replace(data, max_length=8)
    texts = calibration.calibration_texts(short, 6, seed=0)
    assert max(len(text.split()) for text in texts) > 8  # else this test would not tell
    reader = calibration.CalibrationReader(unfused.path, short, samples=6, batch_size=3, seed=0, one_length=True)
    assert reader.seq_len == 8
    shapes = [batch["input_ids"].shape for batch in iter(reader.get_next, None)]
    assert shapes == [(3, 8), (3, 8)]


def test_calibration_feeds_only_the_inputs_the_model_takes(unfused: ModelArtifact, data) -> None:
    """onnxruntime refuses a feed naming an input its graph lacks (DistilBERT has no token_type_ids)."""
    reader = calibration.CalibrationReader(
        unfused.path, data, samples=4, batch_size=4, seed=0, one_length=False, inputs=("input_ids", "attention_mask")
    )
    batch = reader.get_next()
    assert batch is not None and list(batch) == ["input_ids", "attention_mask"]


def test_calibration_refuses_a_second_pass(unfused: ModelArtifact, data) -> None:
    reader = calibration.CalibrationReader(unfused.path, data, samples=2, batch_size=2, seed=0, one_length=False)
    with pytest.raises(OptbenchError, match="calibration needs a second pass, which optbench does not provide"):
        reader.rewind()


def test_calibration_samples_are_a_seeded_random_draw_of_the_train_split(data) -> None:
    """The train split keeps its file's order (the built-in data's is by movie): its first rows would be a few
    movies' reviews. The seed picks the draw, the same one on every run."""
    drawn = calibration.calibration_texts(data, 20, seed=0)
    assert len(set(drawn)) == 20 and set(drawn) <= set(data.train.texts)
    assert drawn != data.train.texts[:20]
    assert calibration.calibration_texts(data, 20, seed=0) == drawn
    assert calibration.calibration_texts(data, 20, seed=1) != drawn
    assert sorted(calibration.calibration_texts(data, 10**6, seed=0)) == sorted(data.train.texts)


def test_more_calibration_samples_than_the_train_split_has_is_a_warning(
    unfused: ModelArtifact, data, cache: Path, caplog
) -> None:
    """The step calibrated on every train row without a word in the log: only the manifest's count told."""
    rows = len(data.train)
    with caplog.at_level("WARNING", logger="optbench"):
        result = run_step(StaticQuantizeConfig(calibration_samples=rows + 100), unfused, data, cache)
    assert result.details["calibration"]["samples"] == rows
    message = f"calibration_samples = {rows + 100} is more than the train split's {rows} rows: calibration draws all "
    assert message + f"{rows} of them" in caplog.text  # the rows it draws, not the samples asked for
    caplog.clear()
    calibration.calibration_texts(data, rows, seed=0)
    assert "calibration_samples" not in caplog.text  # as many as it has: nothing to warn of


def test_excluded_nodes_must_exist(fused: ModelArtifact, data, cache: Path) -> None:
    """The message's examples are names of nodes with weights, the ones worth excluding (not the graph's first
    nodes, its Shape and Gather ones)."""
    with pytest.raises(OptbenchError, match=r"node\(s\) \['/no/such/MatMul'\] are not in the ONNX graph") as raised:
        run_step(DynamicQuantizeConfig(exclude_nodes=("/no/such/MatMul",)), fused, data, cache)
    graph = onnx.load(str(fused.path / "model.onnx")).graph
    examples = [node.name for node in graph.node if node.op_type in quantize.WEIGHT_OPS][:3]
    assert len(examples) == 3 and str(raised.value).endswith(f"exclude_nodes takes node names such as {examples}")


def test_dynamic_keeps_an_excluded_gemm_in_fp32(fused: ModelArtifact, data, cache: Path) -> None:
    """The quantizer rewrites Gemm as MatMul + Add before it reads the names to exclude: the Gemm's own name kept
    nothing in FP32."""
    gemm = next(node.name for node in onnx.load(str(fused.path / "model.onnx")).graph.node if node.op_type == "Gemm")
    result = run_step(DynamicQuantizeConfig(weight_type="int8", exclude_nodes=(gemm,)), fused, data, cache)
    graph = onnx.load(str(result.path / "model.onnx")).graph
    assert [node.op_type for node in graph.node if node.name.startswith(gemm)] == ["MatMul", "Add"]
    share = result.details["matmul_quantized"]
    assert share["total"] - share["quantized"] == 1, share


def test_attention_matmuls_are_the_ones_without_a_constant_input() -> None:
    """quantize-static keeps those in FP32; a MatMul whose weight a Constant node makes is a weight MatMul too (taken
    for an attention one, it stayed FP32 without a word)."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Constant", [], ["w_node"], value=numpy_helper.from_array(np.ones((2, 2), np.float32))),
        helper.make_node("MatMul", ["x", "w_node"], ["a"], name="weight_from_a_node"),
        helper.make_node("MatMul", ["x", "w"], ["b"], name="weight_from_an_initializer"),
        helper.make_node("MatMul", ["q", "k"], ["scores"], name="scores"),
    ]
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph(nodes, "g", [], [], initializer=[weight])
    assert quantize._activation_matmuls(graph) == {"scores"}


def _weight_matmuls(graph: onnx.GraphProto) -> list[str]:
    """The MatMuls of `graph` with a constant weight (the ones quantization may make INT8), in order."""
    constants = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in constants]


def test_dynamic_keeps_an_excluded_matmul_in_fp32(fused: ModelArtifact, data, cache: Path) -> None:
    """An excluded MatMul's name reaches the quantizer as given, beside the names made for excluded Gemms."""
    first, *others = _weight_matmuls(onnx.load(str(fused.path / "model.onnx")).graph)
    result = run_step(DynamicQuantizeConfig(weight_type="int8", exclude_nodes=(first,)), fused, data, cache)
    ops = {node.name: node.op_type for node in onnx.load(str(result.path / "model.onnx")).graph.node}
    assert ops[first] == "MatMul" and all(ops[f"{name}_quant"] == "MatMulInteger" for name in others)


def test_static_keeps_excluded_nodes_and_op_types_in_fp32(unfused: ModelArtifact, data, cache: Path) -> None:
    """A node named in exclude_nodes, and every node of a type in exclude_op_types, keeps its FP32 weight; the
    other weight MatMuls are INT8 (their weight comes from a DequantizeLinear)."""
    first, *others = _weight_matmuls(onnx.load(str(unfused.path / "model.onnx")).graph)
    config = StaticQuantizeConfig(
        calibration_samples=12,
        calibration_batch_size=2,
        op_types=("MatMul", "Gemm"),
        exclude_nodes=(first,),
        exclude_op_types=("Gemm",),
    )
    graph = onnx.load(str(run_step(config, unfused, data, cache).path / "model.onnx")).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    int8 = {node.name: node.input[1] in dequantized for node in graph.node if node.op_type in ("MatMul", "Gemm")}
    gemms = [name for name in int8 if name.endswith("Gemm")]
    assert gemms and not any(int8[name] for name in [first, *gemms])
    assert all(int8[name] for name in others)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (StaticQuantizeConfig(exclude_op_types=("matmul",)), r"op type\(s\) \['matmul'\] are spelt \['MatMul'\]"),
        (StaticQuantizeConfig(op_types=("gemm",)), r"op type\(s\) \['gemm'\] are spelt \['Gemm'\]"),
        (StaticQuantizeConfig(exclude_op_types=("Conv",)), r"exclude_op_types \['Conv'\] match no node: .*'MatMul'"),
        (DynamicQuantizeConfig(op_types=("Conv",), weight_type="int8"), r"op_types \['Conv'\] match no node"),
    ],
)
def test_op_types_that_name_nothing_in_the_graph_are_refused(config, message: str, unfused, data, cache) -> None:
    with pytest.raises(OptbenchError, match=message):
        run_step(config, unfused, data, cache)


def test_settings_left_to_the_machine_key_the_cache_by_its_choices(
    unfused: ModelArtifact, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.steps.cache import cache_key

    def keys(flags: list[str], model: str) -> list[str]:
        monkeypatch.setattr(quantize, "cpu_flags", lambda: flags)
        monkeypatch.setattr(quantize, "cpu_model", lambda: model)
        configs = [
            StaticQuantizeConfig(),
            DynamicQuantizeConfig(),
            StaticQuantizeConfig(activation_type="int8", weight_type="int8", reduce_range=False),
            DynamicQuantizeConfig(weight_type="int8", reduce_range=False),
            StaticQuantizeConfig(reduce_range=False),
            DynamicQuantizeConfig(weight_type="uint8", reduce_range=False),
            DynamicQuantizeConfig(backend="torch"),  # torchao's scheme: nothing timed, no range reduction
        ]
        return [cache_key(config, unfused, data) for config in configs]

    x86, arm, other_x86 = keys(["avx2"], "EPYC"), keys(["asimd"], "Neoverse"), keys(["avx2"], "Xeon")
    assert x86[0] != arm[0] and x86[0] == other_x86[0]  # static: keyed by the preflight's choice, not the CPU
    assert x86[1] != other_x86[1]  # dynamic with weight_type "auto" is timed on this CPU
    assert x86[2:4] == arm[2:4] == other_x86[2:4]  # nothing left to the machine: one cache entry everywhere
    assert x86[5:] == arm[5:] == other_x86[5:]
    assert x86[4] != arm[4]  # reduce_range given, the types still the machine's: an ARM model is not an x86 one
    shorter = replace(data, max_length=16)
    assert cache_key(StaticQuantizeConfig(), unfused, shorter) != cache_key(StaticQuantizeConfig(), unfused, data)
    assert cache_key(OnnxConfig(), unfused, shorter) == cache_key(OnnxConfig(), unfused, data)


@pytest.mark.parametrize(
    ("config", "module", "writer", "written"),
    [
        (DynamicQuantizeConfig(), "onnxruntime.quantization", "quantize_dynamic", "int8.onnx"),
        (StaticQuantizeConfig(calibration_samples=4), "onnxruntime.quantization", "quantize_static", "model.onnx"),
        (
            StaticQuantizeConfig(calibration_samples=4),
            "onnxruntime.quantization.shape_inference",
            "quant_pre_process",
            "prepared.onnx",
        ),
    ],
)
def test_a_quantized_file_onnxruntime_refuses_names_the_quantizer(
    config,
    module: str,
    writer: str,
    written: str,
    unfused: ModelArtifact,
    data,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """onnx's checker passed these files. Before: the weight types' timing called a dynamic one damaged, to be
    deleted from the cache and made again (which writes it again); a static one was cached, to fail in every
    benchmark job; a pre-processed one stopped calibration with onnxruntime's traceback."""
    import importlib

    real = getattr(importlib.import_module(module), writer)

    def careless(source: str, output: str, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        real(source, output, *args, **kwargs)
        _write_fp16_weights_only(Path(output))

    monkeypatch.setattr(f"{module}.{writer}", careless)
    with pytest.raises(OptbenchError) as raised:
        run_step(config, unfused, data, tmp_path)
    message = str(raised.value)
    assert "onnxruntime cannot load" in message and f"/{written}, which onnxruntime's quantizer just wrote" in message
    assert "Type Error" in message and "delete" not in message
    assert message.endswith(f"try other settings of {config.name}, or leave it out for this model")
    assert list(tmp_path.iterdir()) == []


def test_an_int8_model_is_not_quantized_again(fused: ModelArtifact, unfused: ModelArtifact, data, cache: Path) -> None:
    dynamic = run_step(DynamicQuantizeConfig(weight_type="int8"), fused, data, cache)
    with pytest.raises(OptbenchError, match=r"is INT8 already \(MatMulInteger"):
        run_step(StaticQuantizeConfig(calibration_samples=8), dynamic, data, cache)
    static = run_step(StaticQuantizeConfig(calibration_samples=8), unfused, data, cache)
    with pytest.raises(OptbenchError, match=r"is INT8 already \(Q/DQ nodes\)"):
        run_step(DynamicQuantizeConfig(weight_type="int8"), static, data, cache)


def test_quantize_needs_an_fp32_onnx_model(classifier: ModelArtifact, data, cache: Path) -> None:
    with pytest.raises(OptbenchError, match="put an onnx step before it"):
        run_step(DynamicQuantizeConfig(), classifier, data, cache)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calibration_method": "kl"}, "calibration_method 'kl' is unknown"),
        ({"calibration_samples": 0}, "calibration_samples=0"),
        ({"calibration_batch_size": 0}, "calibration_batch_size=0"),
        ({"percentile": 50.0}, "percentile=50.0"),
        ({"calibration_method": "percentile", "percentile": 100.0}, r"percentile=100.0: use a value in \[90, 100\)"),
        # ignored by the other methods: the lineage recorded a percentile no calibration used
        ({"percentile": 99.9}, "percentile=99.9 is the percentile calibration's, and calibration_method is 'minmax'"),
        ({"calibration_method": "entropy", "percentile": 99.0}, "calibration_method is 'entropy': set calibration"),
    ],
)
def test_bad_static_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        StaticQuantizeConfig(**kwargs)


@pytest.mark.parametrize("config_type", [DynamicQuantizeConfig, StaticQuantizeConfig])
def test_an_empty_op_types_is_refused_when_the_recipe_is_read(config_type: type) -> None:
    """onnxruntime reads [] as every op type it quantizes; the step refused it only once applied, saying that
    nothing would be quantized."""
    with pytest.raises(OptbenchError, match=r"op_types = \[\]: onnxruntime reads an empty list as every op type"):
        config_type(op_types=())


S8U8 = "with weight_type uint8 is a format onnxruntime does not quantize to (S8U8): set weight_type = "


def test_int8_activations_with_uint8_weights_are_refused_when_the_recipe_is_read() -> None:
    """onnxruntime's static quantizer raises ValueError for S8U8, after the export and the graph's preparation."""
    with pytest.raises(OptbenchError, match=rf"^activation_type int8 {re.escape(S8U8)}"):
        StaticQuantizeConfig(activation_type="int8", weight_type="uint8")
    table = {"name": "quantize-static", "activation_type": "int8", "weight_type": "uint8"}
    where = re.escape("[[steps]] #2 (quantize-static)")
    with pytest.raises(OptbenchError, match=rf"^{where} activation_type int8 {re.escape(S8U8)}"):
        parse_step(table, "[[steps]] #2")


def test_int8_activations_auto_chose_with_uint8_weights_are_refused_before_quantizing(
    unfused: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On ARM "auto" makes activations int8: with weight_type uint8 set, the pair onnxruntime refuses."""
    monkeypatch.setattr(quantize, "cpu_flags", lambda: ["asimd"])
    config = StaticQuantizeConfig(calibration_samples=8, weight_type="uint8")
    message = rf"^activation_type int8 \(quantize-static: this machine's choice for \"auto\"\) {re.escape(S8U8)}"
    with pytest.raises(OptbenchError, match=message):
        quantize.apply_static(config, unfused, data, tmp_path)
    assert not (tmp_path / "prepared.onnx").exists()


@pytest.mark.parametrize("op_types", [("Gemm",), ("MatMul", "Gemm", "Attention"), ("Softmax",)])
def test_dynamic_refuses_op_types_its_quantizer_has_no_integer_operator_for(op_types: tuple[str, ...]) -> None:
    """onnxruntime's dynamic quantizer leaves such nodes FP32; it rewrites Gemm as MatMul + Add before it quantizes,
    so op_types = ["Gemm"] quantized nothing, silently."""
    with pytest.raises(
        OptbenchError, match=r"cannot quantize op type\(s\) \['(Gemm|Softmax)'\]: .*'MatMul'.*quantize-static"
    ):
        DynamicQuantizeConfig(op_types=op_types)
    with pytest.raises(OptbenchError, match=r'backend = "torch" takes none of op_types = \["MatMul"\]'):
        DynamicQuantizeConfig(backend="torch", op_types=("MatMul",))
    assert DynamicQuantizeConfig(backend="torch").op_types == DynamicQuantizeConfig().op_types


def test_torch_backend_takes_int8_weights_and_refuses_uint8() -> None:
    """torchao's weights are INT8, so weight_type = "int8" states its scheme (the README lets it through)."""
    assert DynamicQuantizeConfig(backend="torch", weight_type="int8").weight_type == "int8"
    with pytest.raises(OptbenchError, match=r'takes none of weight_type = "uint8": torchao'):
        DynamicQuantizeConfig(backend="torch", weight_type="uint8")


def test_the_default_op_types_are_read_without_importing_the_quantizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its registry was imported to check them (onnxruntime.quantization: 0.3-0.8 s on every command that reads a
    recipe, --dry-run included); they are op types it quantizes, which apply_dynamic checks against it."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    assert set(DYNAMIC_OPS) <= set(IntegerOpsRegistry)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization.registry", None)  # importing it now raises
    assert DynamicQuantizeConfig().op_types == DYNAMIC_OPS
    assert DynamicQuantizeConfig(op_types=("MatMul",)).op_types == ("MatMul",)


@pytest.mark.parametrize(
    ("flags", "types", "reason"),
    [
        (["avx2", "fma"], ("uint8", "int8"), "x86 without VNNI/AMX"),
        (["avx2", "avx512f", "avx512_vnni"], ("uint8", "int8"), "x86 with avx512_vnni"),
        (["avx2", "avx_vnni"], ("uint8", "int8"), "x86 with avx_vnni"),
        (["avx512f", "amx_int8", "amx_tile"], ("uint8", "int8"), "x86 with amx_int8"),
        (["fp", "asimd"], ("int8", "int8"), "ARM CPU"),
        (["sve"], ("int8", "int8"), "ARM CPU"),
    ],
)
def test_preflight_follows_the_hardware(flags: list[str], types: tuple[str, str], reason: str) -> None:
    """U8S8 on x86, S8S8 on ARM, never range reduction; the reason, which the manifest records, names the CPU."""
    chosen = preflight(flags)
    assert (chosen.activation_type, chosen.weight_type, chosen.reduce_range) == (*types, False)
    assert chosen.reason.startswith(reason)


def test_quantized_share_counts_int8_and_qdq_matmuls(fused: ModelArtifact, tmp_path: Path) -> None:
    share = quantize.quantized_share(fused.path / "model.onnx")
    assert share["quantized"] == 0 and share["total"] > 0 and share["share"] == 0.0
    # an integer MatMul, a MatMul whose weight is dequantized (Q/DQ), one whose activation alone is, a plain one
    nodes = [
        onnx.helper.make_node("MatMulInteger", ["x_q", "w_q"], ["int8"]),
        onnx.helper.make_node("DequantizeLinear", ["w_q", "scale"], ["w_dq"]),
        onnx.helper.make_node("MatMul", ["x", "w_dq"], ["qdq"]),
        onnx.helper.make_node("DequantizeLinear", ["x_q", "scale"], ["x_dq"]),
        onnx.helper.make_node("MatMul", ["x_dq", "w"], ["activation_dq"]),
        onnx.helper.make_node("MatMul", ["x", "w"], ["plain"]),
    ]
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [], [])), str(tmp_path / "model.onnx"))
    share = quantize.quantized_share(tmp_path / "model.onnx")
    assert (share["quantized"], share["total"], share["share"]) == (2, 4, 0.5)
    assert share["int8_operators"] == {"MatMulInteger": 1}


def test_torch_backend_quantizes_linear_layers_with_torchao(
    classifier: ModelArtifact, data, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("torchao", reason="backend = torch needs the optional torchao extra")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with caplog.at_level("INFO", logger="optbench.steps.torch_int8"):
            result = run_step(DynamicQuantizeConfig(backend="torch"), classifier, data, cache)
        assert torch.get_num_threads() == 2  # later steps of the run keep the process's thread count
    finally:
        torch.set_num_threads(threads)
    assert result.format == "hf" and result.variant == "baseline+quantize-dynamic"
    assert (result.details["backend"], result.details["scheme"]) == ("torch", "int8-dynamic-activation-int8-weight")
    assert result.sha256 != classifier.sha256  # the scheme is part of the model
    assert 0.9 <= result.details["validation_agreement"] <= 1.0
    rows = len(data.validation.texts)
    assert rows < AGREEMENT_ROWS and result.details["validation_rows"] == rows  # all there are
    assert f"argmax agreement with FP32 on {rows} validation rows" in caplog.text  # it said 256
    runtime = load_runtime(RuntimeSpec("torch"), result, threads=1)
    assert runtime.describe({})["quantization"]["library"] == "torchao"
    from torchao.utils import TorchAOBaseTensor

    assert isinstance(runtime.model.classifier.weight, TorchAOBaseTensor)  # type: ignore[attr-defined]
    with pytest.raises(OptbenchError, match="scheme is applied only when the torch runtime loads it"):
        run_step(OnnxConfig(exporter="torchscript"), result, data, cache)  # would export the FP32 weights


def test_torch_backend_records_the_agreement_of_the_model_the_runtime_loads(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded agreement is FP32's against the model the torch runtime makes of the artifact, on the first
    AGREEMENT_ROWS validation rows, every batch of them, cut at the data's max_length. The tiny model's INT8 agrees
    everywhere and its data has fewer rows than the cap and than one batch, so an agreement of FP32 with itself, of
    every row, or of the last batch only, passed. Here the runtime's "quantization" moves the head's bias to the
    median of FP32's margins on those rows, so that half of them change their argmax."""
    pytest.importorskip("torchao", reason="backend = torch needs the optional torchao extra")
    import torch

    from optbench.runtimes import torch as torch_runtime
    from optbench.steps import torch_int8

    rows = 100  # two batches of the step's 64
    monkeypatch.setattr(torch_int8, "AGREEMENT_ROWS", rows)
    longer = replace(data, validation=data.train, max_length=8)  # more rows than the cap; cut shorter than its texts
    fp32 = load_runtime(RuntimeSpec("torch"), classifier, threads=1)
    tokenizer = load_tokenizer(classifier.path)
    one_by_one = [
        batches(tokenizer, [text], batch_size=1, seq_len="data", max_length=longer.max_length)[0]
        for text in longer.validation.texts[:rows]
    ]
    margins = np.array([np.diff(fp32.predict(batch)[0])[0] for batch in one_by_one])
    shift = float(np.median(margins))
    kept = margins > shift  # where FP32's argmax (1 on every row here) survives the shift
    assert (margins > 0).all() and kept[64:].mean() != 0.5  # else a last batch's agreement would not tell

    def shifted_head(model: torch.nn.Module, *, onednn: bool) -> bool:
        with torch.no_grad():
            model.classifier.bias[1] -= shift  # type: ignore[index,operator]
        return False

    monkeypatch.setattr(torch_runtime, "_quantize", shifted_head)
    result = run_step(DynamicQuantizeConfig(backend="torch"), classifier, longer, tmp_path)
    assert result.details["validation_rows"] == rows
    assert result.details["validation_agreement"] == pytest.approx(kept.mean()) == 0.5


def test_torch_backend_copies_the_checkpoint_s_files_and_records_the_torchao_it_used(
    classifier: ModelArtifact, data, tmp_path: Path
) -> None:
    """The artifact is the checkpoint's files, not its folders (a checkpoint folder may hold one, such as a trainer's
    runs/: copied as a file, it failed the step), with the scheme file beside them; the scheme file, the details and
    the lineage record the torchao version and the step's settings (nothing else says which torchao made it)."""
    pytest.importorskip("torchao", reason="backend = torch needs the optional torchao extra")
    from importlib import metadata

    from optbench.artifact import MANIFEST, QUANTIZATION_FILE
    from optbench.configs import config_to_dict

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(classifier.path, checkpoint)
    (checkpoint / "runs").mkdir()
    (checkpoint / "runs" / "events.out").write_text("a trainer's log")
    source = ModelArtifact(checkpoint, "hf", classifier.label_names, content_hash(checkpoint))
    config = DynamicQuantizeConfig(backend="torch")
    result = run_step(config, source, data, tmp_path / "cache")
    files = {p.name for p in checkpoint.iterdir() if p.is_file()}
    assert {p.name for p in result.path.iterdir()} == files | {QUANTIZATION_FILE, MANIFEST}
    version = metadata.version("torchao")
    assert json.loads((result.path / QUANTIZATION_FILE).read_text())["version"] == version
    assert result.details["torchao"] == version
    assert result.lineage[-1].config == config_to_dict(config)


def test_torch_backend_without_torchao_names_the_step_and_the_install(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench import errors

    real = errors.metadata.distribution

    def without_torchao(name: str):  # type: ignore[no-untyped-def]
        if name == "torchao":
            raise errors.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(errors.metadata, "distribution", without_torchao)
    with pytest.raises(
        OptbenchError, match=r'^quantize-dynamic with backend = "torch" needs the torchao package: pip install torchao$'
    ):
        run_step(DynamicQuantizeConfig(backend="torch"), classifier, data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_torch_backend_refuses_onnx_options_and_onnx_models(fused: ModelArtifact, classifier, data, cache) -> None:
    with pytest.raises(OptbenchError, match=r"takes none of per_channel = false: torchao"):
        run_step(DynamicQuantizeConfig(backend="torch", per_channel=False), classifier, data, cache)
    with pytest.raises(OptbenchError, match="quantize-dynamic takes a Hugging Face checkpoint, not an ONNX model: put"):
        run_step(DynamicQuantizeConfig(backend="torch"), fused, data, cache)
    assert DynamicQuantizeConfig(backend="torch").output_format == "hf"
    assert DynamicQuantizeConfig().output_format == "onnx"


def test_symmetric_int8_static_model_is_one_tensorrt_can_build(unfused: ModelArtifact, data, cache: Path) -> None:
    from optbench.steps.tensorrt import check_symmetric_int8

    asymmetric = run_step(StaticQuantizeConfig(calibration_samples=8, activation_type="int8"), unfused, data, cache)
    with pytest.raises(OptbenchError, match="activation_symmetric = true"):
        check_symmetric_int8(onnx.load(asymmetric.path / "model.onnx").graph)
    config = StaticQuantizeConfig(
        calibration_samples=8, activation_type="int8", weight_type="int8", activation_symmetric=True
    )
    symmetric = run_step(config, unfused, data, cache)
    check_symmetric_int8(onnx.load(symmetric.path / "model.onnx").graph)
    assert _agreement(symmetric, unfused, data) >= 0.9


def test_weight_type_timing_stays_within_the_datasets_length(
    fused: ModelArtifact, classifier: ModelArtifact, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint with fewer than 128 positions crashed here: the candidates were always timed at 128 tokens.
    # Its texts are the validation split's, never the test split's.
    lengths, texts = [], []

    def recording_batches(tokenizer, rows, **kwargs):
        lengths.append((kwargs["seq_len"], kwargs["max_length"]))
        texts.extend(rows)
        return batches(tokenizer, rows, **kwargs)

    monkeypatch.setattr(quantize, "batches", recording_batches)
    p50 = quantize._time_models({"fp32": fused.path / "model.onnx"}, classifier.path, data)
    assert lengths == [(data.max_length, data.max_length)] and data.max_length < quantize.TIMING_LENGTH
    assert texts and set(texts) <= set(data.validation.texts) and not set(texts) & set(data.test.texts)
    assert p50["fp32"] > 0


def test_torch_backend_takes_reduce_range_false_and_refuses_excluded_nodes() -> None:
    """torchao's weights use all 8 bits, so reduce_range = false states its scheme (7 bits it refuses); it quantizes
    every Linear layer, so a node named to exclude would have been quantized without a word."""
    assert DynamicQuantizeConfig(backend="torch", reduce_range=False).reduce_range is False
    with pytest.raises(OptbenchError, match=r"takes none of reduce_range = true: torchao"):
        DynamicQuantizeConfig(backend="torch", reduce_range=True)
    with pytest.raises(OptbenchError, match=r'takes none of exclude_nodes = \["/classifier/Gemm"\]: torchao'):
        DynamicQuantizeConfig(backend="torch", exclude_nodes=("/classifier/Gemm",))


def test_static_settings_at_the_edges_of_their_ranges_are_taken() -> None:
    """One calibration sample, batches of one and the 90th percentile are what the messages say is allowed."""
    config = StaticQuantizeConfig(calibration_samples=1, calibration_batch_size=1)
    assert (config.calibration_samples, config.calibration_batch_size) == (1, 1)
    assert StaticQuantizeConfig(calibration_method="percentile", percentile=90.0).percentile == 90.0


def test_dynamic_checks_its_default_op_types_against_the_installed_quantizer(
    fused: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults go unchecked when the recipe is read (the quantizer's import costs every command half a second):
    an onnxruntime whose dynamic quantizer has no integer operator for one would leave those nodes FP32 silently."""
    from onnxruntime.quantization import registry

    monkeypatch.delitem(registry.IntegerOpsRegistry, "Attention")
    with pytest.raises(OptbenchError, match=r"cannot quantize op type\(s\) \['Attention'\]"):
        quantize.apply_dynamic(DynamicQuantizeConfig(weight_type="int8"), fused, data, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("step", ["dynamic", "static"])
def test_quantize_refuses_an_artifact_its_manifest_says_is_not_fp32(
    step: str, fused: ModelArtifact, data, tmp_path: Path
) -> None:
    """The recipe refuses an FP16 export before it runs; an artifact handed to the step directly (a cached one, a
    recipe check gone) would have its FP16 weights quantized under an FP32 model's name."""
    fp16 = replace(fused, details={**fused.details, "precision": "fp16"})
    config = DynamicQuantizeConfig(weight_type="int8") if step == "dynamic" else StaticQuantizeConfig()
    apply = quantize.apply_dynamic if step == "dynamic" else quantize.apply_static
    with pytest.raises(OptbenchError, match=rf"^{config.name} needs an FP32 ONNX model, not fp16$"):
        apply(config, fp16, data, tmp_path)  # type: ignore[operator]
    assert list(tmp_path.iterdir()) == []


def test_weight_types_are_timed_in_interleaved_rounds_each_by_its_own_calls(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A B A B ...: a drift of the machine's speed spreads over every candidate rather than ranking the one timed
    first; and each candidate's p50 is of its own calls, on the model at its own path."""
    from types import SimpleNamespace

    from optbench import measure
    from optbench.runtimes import onnxruntime as onnxruntime_runtime

    order: list[str] = []

    class Session:
        def __init__(self, path: Path) -> None:
            self.name = path.stem

        def get_inputs(self) -> list[SimpleNamespace]:
            return [SimpleNamespace(name="input_ids"), SimpleNamespace(name="attention_mask")]

        def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> None:
            assert outputs == ["logits"] and list(feed) == ["input_ids", "attention_mask"]
            order.append(self.name)

    def time_calls(call, timing) -> list[int]:  # type: ignore[no-untyped-def]
        call()
        return [{"slow": 3_000_000, "fast": 1_000_000}[order[-1]]]

    monkeypatch.setattr(onnxruntime_runtime, "open_session", lambda path, **kwargs: Session(path))
    monkeypatch.setattr(measure, "time_calls", time_calls)
    paths = {"slow": tmp_path / "slow.onnx", "fast": tmp_path / "fast.onnx"}
    assert quantize._time_models(paths, classifier.path, data) == {"slow": 3.0, "fast": 1.0}
    assert order == ["slow", "fast"] * quantize.TIMING_ROUNDS


def test_quantized_share_rounds_to_four_places_and_reads_a_graph_without_weight_ops(tmp_path: Path) -> None:
    """The manifest's share keeps four places (one of three: 0.3333); a graph with no MatMul, Gemm or Attention
    (op_types naming other nodes) has a share of 0, not a ZeroDivisionError after the quantizer ran."""
    nodes = [
        onnx.helper.make_node("MatMulInteger", ["x_q", "w_q"], ["int8"]),
        onnx.helper.make_node("MatMul", ["x", "w"], ["plain"]),
        onnx.helper.make_node("Gemm", ["x", "w", "b"], ["gemm"]),
    ]
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [], [])), str(tmp_path / "third.onnx"))
    assert quantize.quantized_share(tmp_path / "third.onnx")["share"] == 0.3333
    relu = [onnx.helper.make_node("Relu", ["x"], ["y"])]
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(relu, "g", [], [])), str(tmp_path / "none.onnx"))
    share = quantize.quantized_share(tmp_path / "none.onnx")
    assert (share["quantized"], share["total"], share["share"]) == (0, 0, 0.0)


def test_dynamic_int8_keeps_the_preflight_s_int8_weights_on_a_tie(
    fused: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 is the weight type the pre-flight picks on every CPU: where the timing ranks neither faster, that one."""
    monkeypatch.setattr(quantize, "_time_models", lambda paths, model_dir, data: dict.fromkeys(paths, 2.0))
    result = run_step(DynamicQuantizeConfig(), fused, data, tmp_path)
    assert (
        result.details["weight_type"] == "int8" == preflight(["avx2"]).weight_type == preflight(["asimd"]).weight_type
    )
    assert {w.dtype.name for w in _quantized_weights(result).values()} == {"int8"}
