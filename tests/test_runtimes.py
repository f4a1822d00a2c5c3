"""Runtime specs and the PyTorch runtime on a tiny classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.artifact import ModelArtifact, content_hash
from optbench.encoding import encode
from optbench.errors import OptbenchError
from optbench.runtimes import (
    RuntimeSpec,
    every_spec,
    load_runtime,
    names_of,
    onnxruntime_options,
    runtime_label,
    torch_options,
)

TEXTS = ["a fine film", "a dull, lifeless execution of a fine idea"]


def _artifact(path: Path) -> ModelArtifact:
    return ModelArtifact(path, "hf", ("fresh", "rotten"), content_hash(path))


def _batch(path: Path, seq_len: int | str = "data") -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    return encode(AutoTokenizer.from_pretrained(path), TEXTS, seq_len=seq_len, max_length=32)  # type: ignore[arg-type]


def test_torch_runtime_matches_the_model_called_directly(tiny_classifier: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    runtime = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    batch = _batch(tiny_classifier)
    logits = runtime.predict(batch)
    assert logits.shape == (2, 2) and logits.dtype == np.float32
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert torch.get_num_threads() == 1


def test_torch_runtime_records_how_it_ran(tiny_classifier: Path) -> None:
    """The report's runtime details: the threads torch ran with, FP32, eager, no GPU, and the host clock's timer."""
    threads = torch.get_num_threads()
    try:
        described = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=2).describe({})
    finally:
        torch.set_num_threads(threads)
    assert described == {
        "torch_threads": 2,
        "dtype": "float32",
        "attention": "sdpa",  # transformers' default where torch has it
        "gpu": None,
        "quantization": None,
        "compile": None,
        "freezing": False,
        "cuda_graphs": False,
        "timer": "perf_counter",
    }


def test_torch_runtime_asks_for_one_inter_op_thread(tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BERT forward is a chain of ops: spare inter-op threads only add noise. torch takes the setting once per
    process, before any parallel work (as in a fresh job), so the call is recorded rather than read back."""
    asked: list[int] = []
    monkeypatch.setattr(torch, "set_num_interop_threads", asked.append)
    threads = torch.get_num_threads()
    try:
        load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    finally:
        torch.set_num_threads(threads)
    assert asked == [1]


def test_padding_to_a_fixed_length_keeps_the_logits(tiny_classifier: Path) -> None:
    runtime = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    np.testing.assert_allclose(
        runtime.predict(_batch(tiny_classifier, 24)), runtime.predict(_batch(tiny_classifier)), atol=1e-4
    )


@pytest.mark.parametrize(
    ("spec", "given", "message"),
    [
        (
            RuntimeSpec("torch"),
            "onnx",
            "runtime torch takes a Hugging Face checkpoint, not an ONNX model: measure it with runtime onnxruntime",
        ),
        (
            RuntimeSpec("onnxruntime"),
            "hf",
            "runtime onnxruntime takes an ONNX model, not a Hugging Face checkpoint: end its chain with an onnx step",
        ),
        (
            RuntimeSpec("onnxruntime"),
            "trt",
            "runtime onnxruntime takes an ONNX model, not a TensorRT engine: measure it with runtime tensorrt",
        ),
        (
            RuntimeSpec("tensorrt", "cuda"),
            "onnx",
            "runtime tensorrt takes a TensorRT engine, not an ONNX model: end its chain with a tensorrt step",
        ),
    ],
    ids=["torch-onnx", "onnxruntime-hf", "onnxruntime-trt", "tensorrt-onnx"],
)
def test_a_runtime_refuses_a_format_it_does_not_run(spec: RuntimeSpec, given: str, message: str, tmp_path) -> None:
    """Each runtime said it its own way ("not onnx models", torch's with no fix); one message names the fix."""
    model = ModelArtifact(tmp_path, given, ("fresh", "rotten"), "0" * 64)
    with pytest.raises(OptbenchError) as refused:
        load_runtime(spec, model, threads=1)
    assert str(refused.value) == message


def test_reduced_precision_is_refused_on_cpu(tiny_classifier: Path) -> None:
    with pytest.raises(OptbenchError, match="fp32 only"):
        load_runtime(RuntimeSpec("torch", "cpu", "fp16"), _artifact(tiny_classifier), threads=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_classifier: Path) -> None:
    with pytest.raises(OptbenchError) as refused:
        load_runtime(RuntimeSpec("torch", "cuda", "fp16"), _artifact(tiny_classifier), threads=1)
    assert str(refused.value) == 'runtime torch on cuda: no CUDA GPU is visible; use device = "cpu"'


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_torch_runtime_loads_the_model_at_the_precision_asked(
    tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    """Reduced precision runs on a GPU only: its load is checked here without one, stopped where the model would
    move to it (the GPU test below checks the logits)."""
    import optbench.pruned_bert

    loaded: list[torch.dtype] = []

    def load_classifier(path: Path, dtype: torch.dtype) -> None:
        loaded.append(dtype)
        raise LookupError("stopped after the load")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(optbench.pruned_bert, "load_classifier", load_classifier)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(LookupError, match="stopped after the load"):
            load_runtime(RuntimeSpec("torch", "cuda", precision), _artifact(tiny_classifier), threads=1)
    finally:
        torch.set_num_threads(threads)
    assert loaded == [{"fp16": torch.float16, "bf16": torch.bfloat16}[precision]]


def test_torch_predict_feeds_the_model_its_inputs_and_gives_float32_logits(tiny_classifier: Path) -> None:
    """The model is fed the runtime's inputs alone (position_ids, which BERT would read, are left out), under
    torch.inference_mode; a model at reduced precision gives FP16/BF16 logits, which numpy cannot hold as BF16:
    predict gives float32."""
    runtime = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    batch = _batch(tiny_classifier)
    expected = runtime.predict(batch)
    backwards = np.ascontiguousarray(np.arange(batch["input_ids"].shape[1])[::-1][None].repeat(2, 0))
    np.testing.assert_array_equal(runtime.predict({**batch, "position_ids": backwards}), expected)
    inference_mode: list[bool] = []

    def bf16(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        inference_mode.append(torch.is_inference_mode_enabled())
        return runtime.model(**inputs).logits.to(torch.bfloat16)

    runtime.forward = bf16
    logits = runtime.predict(batch)
    assert logits.dtype == np.float32 and inference_mode == [True]
    np.testing.assert_allclose(logits, expected, rtol=1e-2, atol=1e-2)


def test_a_torch_runtime_on_cuda_names_its_gpu_and_times_with_cuda_events(
    tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's GPU and timer, and the clock the harness reads, of a runtime on a GPU: checked without one (a
    runtime loaded on the CPU, then said to be on CUDA, with torch's device name and events faked)."""
    from optbench.measure import CudaEventClock

    runtime = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    runtime.device = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Fake GPU on {device}")
    monkeypatch.setattr(torch.cuda, "Event", lambda enable_timing: object())
    described = runtime.describe({})
    assert (described["gpu"], described["timer"]) == ("Fake GPU on cuda", "cuda-events")
    assert isinstance(runtime.clock(), CudaEventClock)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_precisions_agree_with_cpu(tiny_classifier: Path, precision: str) -> None:
    batch = _batch(tiny_classifier)
    cpu = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1).predict(batch)
    gpu = load_runtime(RuntimeSpec("torch", "cuda", precision), _artifact(tiny_classifier), threads=1)
    logits = gpu.predict(batch)
    assert logits.dtype == np.float32
    # fp16 logits would pass for bf16's below
    assert gpu.describe(batch)["dtype"] == {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    np.testing.assert_allclose(logits, cpu, atol=5e-2 if precision != "fp32" else 1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "tensorflow"}, "unknown runtime 'tensorflow'"),
        ({"name": "torch", "device": "tpu"}, "unknown device 'tpu'"),
        ({"name": "torch", "precision": "int4"}, "unknown precision 'int4'"),
        # the engine holds its settings: an option given beside it would be recorded, and ignored
        ({"name": "tensorrt", "device": "cuda", "options": {"fp16": True}}, r"takes no options \(got \['fp16'\]\)"),
        ({"name": "tensorrt", "device": "cpu"}, 'runs on NVIDIA GPUs: set device = "cuda"'),  # a label no run can have
    ],
)
def test_runtime_spec_refuses_unknown_values(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        RuntimeSpec(**kwargs)


def test_runtime_spec_round_trips() -> None:
    spec = RuntimeSpec("torch", "cuda", "bf16", {"compile": True})
    assert RuntimeSpec.from_dict(spec.to_dict()) == spec
    assert spec.label == "torch-cuda-bf16-compile"


@pytest.mark.parametrize(
    ("spec", "engine", "label"),
    [
        (RuntimeSpec("torch"), "torch", "torch-cpu-fp32"),
        (
            RuntimeSpec("torch", options={"compile": "max-autotune"}),
            "torch-compile-max-autotune",
            "torch-cpu-fp32-compile-max-autotune",
        ),
        (
            RuntimeSpec("torch", "cuda", "fp16", {"cuda_graphs": True}),
            "torch-cuda-graphs",
            "torch-cuda-fp16-cuda-graphs",
        ),
        (RuntimeSpec("torch", options={"compile": False}), "torch", "torch-cpu-fp32"),
        (
            RuntimeSpec("torch", options={"compile": True, "freezing": True}),
            "torch-compile-freezing",
            "torch-cpu-fp32-compile-freezing",
        ),
        (RuntimeSpec("onnxruntime", "cuda", options={"provider": "cuda"}), "onnxruntime", "onnxruntime-cuda-fp32"),
        (
            RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_engine_cache": False}),
            "onnxruntime-tensorrt-no-engine-cache",
            "onnxruntime-cuda-fp16-tensorrt-no-engine-cache",
        ),
        (
            RuntimeSpec("onnxruntime", options={"graph_optimization_level": "basic"}),
            "onnxruntime-opt-basic",
            "onnxruntime-cpu-fp32-opt-basic",
        ),
        (RuntimeSpec("tensorrt", "cuda", "fp16"), "tensorrt", "tensorrt-cuda-fp16"),
    ],
)
def test_runtime_labels_name_the_options_that_change_how_a_model_runs(
    spec: RuntimeSpec, engine: str, label: str
) -> None:
    assert (spec.engine, spec.label) == (engine, label)
    assert spec.tag == engine.removeprefix(spec.name).removeprefix("-")  # a string, "" where no option shows


def test_a_label_gives_back_the_names_a_budget_may_use() -> None:
    """A budget names a runtime by its engine, its engine with options, or its label (`names_of`): read back wrong,
    a budget for `torch-compile` would match no report, or another runtime's."""
    for spec in every_spec():
        assert names_of(spec.label) == (spec.name, spec.engine, spec.label)
        assert runtime_label(spec.engine, spec.device, spec.precision) == spec.label


def test_every_spec_lists_the_labels_recipes_can_give() -> None:
    """Budgets and rows are checked against these labels: an option missing from LABELLED would refuse its labels."""
    assert set(torch_options.LABELLED) == set(torch_options.OPTIONS)
    # the profile shows in no label
    assert set(onnxruntime_options.LABELLED) == set(onnxruntime_options.OPTIONS) - {"trt_profile"}
    labels = {spec.label for spec in every_spec()}
    assert {
        "torch-cpu-fp32",
        "torch-cpu-fp32-compile-max-autotune-freezing",
        "torch-cuda-fp16-compile-reduce-overhead",
        "torch-cpu-fp32-compile-max-autotune-no-cudagraphs",
        "torch-cuda-bf16-cuda-graphs",
        "onnxruntime-cpu-fp32-opt-basic",
        "onnxruntime-cuda-fp16-tensorrt-opt-basic-trt-int8-no-engine-cache",
        "tensorrt-cuda-fp16",
    } <= labels
    assert not {"torch-cpu-fp16", "torch-cpu-fp32-cuda-graphs", "onnxruntime-cpu-fp32-tensorrt"} & labels


def test_an_fp32_model_left_out_at_fp16_is_told_to_export_at_fp16_only_where_the_onnx_step_made_it(
    tmp_path: Path,
) -> None:
    """A quantized ONNX model takes and gives FP32 whatever its export's precision: telling its user to export at
    fp16 sends them to a chain the recipe refuses (quantize steps need an FP32 export)."""
    import dataclasses

    from conftest import _save_tiny_onnx

    from optbench.artifact import StepRecord
    from optbench.runtimes import declines

    exported = _save_tiny_onnx(tmp_path / "onnx")
    exported = dataclasses.replace(exported, lineage=(StepRecord("onnx", {}),))
    quantized = dataclasses.replace(exported, lineage=(*exported.lineage, StepRecord("quantize-dynamic", {})))
    at_fp16 = RuntimeSpec("onnxruntime", "cpu", "fp16")
    fix = 'export with the onnx step\'s precision = "fp16"'
    assert fix in (declines(at_fp16, exported) or "")
    assert (
        declines(at_fp16, quantized)
        == 'runtime onnxruntime at fp16 cannot run this fp32 ONNX model: set precision = "fp32"'
    )
