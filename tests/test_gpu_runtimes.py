"""The GPU half of the runtimes: torch options (compile, CUDA graphs), the TensorRT provider's settings,
CUDA-event timing. What a CPU can check runs everywhere; what needs a GPU says so in its skip reason."""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from conftest import _save_tiny_onnx

from optbench import bench
from optbench.artifact import ModelArtifact, content_hash
from optbench.encoding import encode
from optbench.errors import OptbenchError
from optbench.measure import CudaEventClock, HostClock, Timing, time_calls
from optbench.recipe import parse_recipe
from optbench.runtimes import RuntimeSpec, declines, declines_precision, load_runtime, onnxruntime_trt_cache
from optbench.runtimes import onnxruntime as ort_runtime
from optbench.runtimes.onnxruntime_options import (
    INTEGER_OPS,
    PROVIDERS,
    OrtOptions,
    TrtProfile,
    tensorrt_cannot_parse,
    trt_provider_options,
)
from optbench.runtimes.onnxruntime_trt_cache import trt_engine_cache_dir
from optbench.runtimes.torch_options import TorchOptions

NO_GPU = "needs a CUDA GPU (torch sees none)"
PROFILE = {"min": [1, 1], "opt": [1, 128], "max": [64, 128]}
EXAMPLE = re.escape("e.g. trt_profile = {min = [1, 1], opt = [1, 128], max = [64, 128]}")  # in a profile's refusals
TEXTS = ["a fine film", "a dull, lifeless execution of a fine idea", "fresh"]
OTHER_TEXTS = ["an unexpected delight from its first scene to its last", "rotten", "meh"]
GPU = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def _a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU whose name keys the TensorRT provider's engine cache: the sessions here are faked, and so is the
    driver that names it."""
    _fake_driver(monkeypatch, GPU)


@pytest.fixture
def gpu_sessions(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """Faked CUDA and TensorRT provider sessions (this onnxruntime has neither): the providers each one was opened
    with, in order."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(PROVIDERS.values()))
    opened: list[list] = []

    def open_session(path: Path, *, providers: list, threads: int | None, level: str = "all") -> SimpleNamespace:
        opened.append(providers)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        return SimpleNamespace(get_providers=lambda: names, get_inputs=lambda: [])

    monkeypatch.setattr(ort_runtime, "open_session", open_session)
    return opened


def _artifact(path: Path, fmt: str = "hf", **kwargs) -> ModelArtifact:
    return ModelArtifact(path, fmt, ("fresh", "rotten"), content_hash(path), **kwargs)


def _batch(path: Path, seq_len: int | str = "data", texts: list[str] = TEXTS) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    return encode(AutoTokenizer.from_pretrained(path), texts, seq_len=seq_len, max_length=32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device", "options", "message"),
    [
        (
            "cpu",
            {"compiled": True},
            r"no option\(s\) \['compiled'\]: its options are \['compile', 'cuda_graphs', 'freezing'\]$",
        ),
        (
            "cpu",
            {"compile": "fast"},
            r'compile = "fast": use true, false or a torch.compile mode '
            r"\['default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'\]$",
        ),
        ("cpu", {"cuda_graphs": True}, 'needs device = "cuda"'),
        ("cuda", {"cuda_graphs": "yes"}, 'cuda_graphs = "yes": use true or false$'),
        (
            "cuda",
            {"cuda_graphs": True, "compile": True},
            r'not both \(compile = "reduce-overhead" compiles and captures',
        ),
        ("cuda", {"cuda_graphs": True, "compile": "max-autotune"}, "not both"),  # any mode, not only true's
        ("cuda", {"cuda_graphs": 1}, "cuda_graphs = 1"),
        ("cpu", {"compile": ""}, 'compile = ""'),  # not taken as false: eager, measured as if asked for
        ("cpu", {"compile": 0}, "compile = 0"),
        ("cpu", {"compile": 1}, "compile = 1"),  # not taken as true, though 1 == True
        ("cpu", {"freezing": True}, "add compile = true"),
        ("cpu", {"compile": True, "freezing": "yes"}, 'freezing = "yes": use true or false$'),
    ],
)
def test_bad_torch_options_fail_when_the_recipe_is_read(device: str, options: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        RuntimeSpec("torch", device, "fp32", options)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_on_the_cpu_fails_when_the_recipe_is_read(precision: str) -> None:
    """Not in every job after the recipe's steps have run."""
    refused = rf"runs fp32 only \(asked {precision}\): reduced precision is a GPU option"
    with pytest.raises(OptbenchError, match=refused):
        RuntimeSpec("torch", "cpu", precision)
    assert RuntimeSpec("torch", "cuda", precision).label == f"torch-cuda-{precision}"


def test_torch_options_take_true_as_the_default_compile_mode() -> None:
    assert TorchOptions.parse("cpu", {"compile": True}) == TorchOptions("default", False)
    assert TorchOptions.parse("cuda", {"compile": "max-autotune"}).compile == "max-autotune"
    assert TorchOptions.parse("cuda", {"cuda_graphs": True}) == TorchOptions(None, True)
    assert TorchOptions.parse("cpu", {}) == TorchOptions()  # no options: the defaults, eager
    assert TorchOptions.parse("cpu", {"compile": True, "freezing": True}) == TorchOptions("default", False, True)


def test_compiled_model_gives_the_eager_logits_on_cpu(tiny_classifier: Path) -> None:
    batch = _batch(tiny_classifier, 16)
    eager = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1)
    compiled = load_runtime(RuntimeSpec("torch", options={"compile": True}), _artifact(tiny_classifier), threads=1)
    np.testing.assert_allclose(compiled.predict(batch), eager.predict(batch), atol=1e-4)
    assert compiled.describe(batch)["compile"] == "default"
    assert isinstance(compiled.clock(), HostClock)


def test_freezing_is_on_while_each_shape_is_traced_and_off_in_the_timed_calls(
    tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamo reads Inductor's freezing setting when it traces a shape, on its first call: set there and only
    there, or the weights are not frozen, or each timed call pays for patching Inductor's config (and other compiles
    in the process freeze too). torch.compile is faked: the compiled model records the setting at each call."""
    from torch._inductor import config

    seen: list[bool] = []

    def compile(model: torch.nn.Module, mode: str) -> Any:
        def compiled(**inputs: torch.Tensor) -> Any:
            seen.append(config.freezing)
            return model(**inputs)

        return compiled

    monkeypatch.setattr(torch, "compile", compile)
    frozen = RuntimeSpec("torch", options={"compile": True, "freezing": True})
    runtime = load_runtime(frozen, _artifact(tiny_classifier), threads=1)
    for seq_len in (16, 16, 24, 16, 24):
        runtime.predict(_batch(tiny_classifier, seq_len))
    assert seen == [True, False, True, False, False] and not config.freezing
    seen.clear()
    load_runtime(RuntimeSpec("torch", options={"compile": True}), _artifact(tiny_classifier), threads=1).predict(
        _batch(tiny_classifier, 16)
    )
    assert seen == [False]


def _torchao_copy(tiny_classifier: Path, folder: Path, scheme: str | None = None) -> ModelArtifact:
    """The tiny classifier with a torchao scheme beside it (optbench's unless given), as quantize-dynamic's torch
    backend writes it."""
    import json
    import shutil

    from optbench.artifact import QUANTIZATION_FILE
    from optbench.runtimes.torch import SCHEME

    shutil.copytree(tiny_classifier, folder)
    written = {"library": "torchao", "version": "0", "scheme": scheme or SCHEME}
    (folder / QUANTIZATION_FILE).write_text(json.dumps(written))
    return _artifact(folder)


def test_a_model_quantized_with_a_scheme_this_optbench_does_not_apply_is_refused(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    """One a newer optbench wrote, say: applying optbench's INT8 scheme instead would measure another model."""
    artifact = _torchao_copy(tiny_classifier, tmp_path / "int4", "int4-weight-only")
    with pytest.raises(OptbenchError, match="names scheme 'int4-weight-only'; this optbench applies 'int8-dynamic-"):
        load_runtime(RuntimeSpec("torch"), artifact, threads=1)


def _ran_op(runtime: Any, batch: dict[str, np.ndarray], op: str) -> bool:
    with torch.profiler.profile() as profile:
        runtime.predict(batch)
    return any(event.key == op for event in profile.key_averages())


def test_freezing_runs_torchao_s_int8_layers_in_onednn_with_the_ranges_torchao_advises(
    tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen, Inductor hands torchao's INT8 matmuls (torch._int_mm) to oneDNN, whose kernel on a CPU without VNNI
    overflows at full range: there the runtime quantizes with torchao's reduce_range. On a CPU with VNNI but no AMX
    torchao writes them as unsigned x signed 8-bit products (activations + 128), which Inductor keeps as
    torch._int_mm; with AMX, or without VNNI, as signed x signed ones, which oneDNN takes."""
    pytest.importorskip("torchao", minversion="0.18")  # reduce_range and should_reduce_range came in 0.18
    from torchao.utils import _cpu_is_amx_tile_supported, _cpu_is_vnni_supported, torch_version_at_least

    # torchao's own choice of matmul (torchao.kernel.intmm), from the real CPU whatever its ranges are told
    unsigned_products = (
        _cpu_is_vnni_supported() and not _cpu_is_amx_tile_supported() and torch_version_at_least("2.12.0.dev")
    )
    monkeypatch.setattr("torchao.utils.should_reduce_range", lambda device: True)  # torchao's ranges: as without
    artifact = _torchao_copy(tiny_classifier, tmp_path / "int8")
    batch = _batch(tiny_classifier, 16)
    eager = load_runtime(RuntimeSpec("torch"), artifact, threads=1)
    frozen = load_runtime(RuntimeSpec("torch", options={"compile": True, "freezing": True}), artifact, threads=1)
    fp32 = load_runtime(RuntimeSpec("torch"), _artifact(tiny_classifier), threads=1).predict(batch)
    np.testing.assert_allclose(frozen.predict(batch), fp32, atol=0.05)
    if unsigned_products:
        assert _ran_op(frozen, batch, "aten::_int_mm") and not _ran_op(frozen, batch, "onednn::qlinear_pointwise")
    else:
        assert _ran_op(frozen, batch, "onednn::qlinear_pointwise") and not _ran_op(frozen, batch, "aten::_int_mm")
    assert frozen.describe(batch)["freezing"] and frozen.describe(batch)["quantization"]["reduce_range"]
    assert {m.weight.reduce_range for m in frozen.model.modules() if isinstance(m, torch.nn.Linear)} == {True}
    assert eager.describe(batch)["quantization"]["reduce_range"] is False  # torch._int_mm keeps the full range
    assert not torch._inductor.config.freezing  # set for the frozen runtime's calls, not for the process


def test_torchao_s_int8_layers_keep_the_full_range_but_frozen_on_a_cpu_without_vnni(
    tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges cut to 7 bits lose precision: only oneDNN's kernel without VNNI needs them. The layers' own setting
    is checked, not only the one the report records. Nothing is compiled: the runtimes are loaded, never called."""
    pytest.importorskip("torchao", minversion="0.18")  # reduce_range and should_reduce_range came in 0.18
    artifact = _torchao_copy(tiny_classifier, tmp_path / "int8")

    def reduced(runtime: Any) -> set[bool]:
        return {m.weight.reduce_range for m in runtime.model.modules() if isinstance(m, torch.nn.Linear)}

    monkeypatch.setattr("torchao.utils.should_reduce_range", lambda device: False)  # a CPU with VNNI
    frozen = load_runtime(RuntimeSpec("torch", options={"compile": True, "freezing": True}), artifact, threads=1)
    assert reduced(frozen) == {False} and frozen.describe({})["quantization"]["reduce_range"] is False
    monkeypatch.setattr("torchao.utils.should_reduce_range", lambda device: True)  # one without: eager keeps it
    eager = load_runtime(RuntimeSpec("torch"), artifact, threads=1)
    assert reduced(eager) == {False} and eager.describe({})["quantization"]["reduce_range"] is False


def test_a_torchao_model_without_the_torchao_it_needs_names_the_install(
    tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torchao")
    artifact = _torchao_copy(tiny_classifier, tmp_path / "int8")
    monkeypatch.delattr("torchao.utils.should_reduce_range", raising=False)  # as in a torchao before 0.18
    frozen = RuntimeSpec("torch", options={"compile": True, "freezing": True})
    with pytest.raises(OptbenchError) as refused:
        load_runtime(frozen, artifact, threads=1)
    assert str(refused.value) == (
        "runtime torch freezing = true with a torchao model needs torchao 0.18 or later (its reduce_range keeps "
        "oneDNN's INT8 kernel from overflowing on CPUs without VNNI): pip install -U 'torchao>=0.18'"
    )
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # `import torchao.quantization` fails
    with pytest.raises(OptbenchError, match="this model is quantized with torchao: pip install torchao"):
        load_runtime(RuntimeSpec("torch"), artifact, threads=1)


def test_only_a_frozen_graph_on_the_cpu_quantizes_for_onednn(
    tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor hands INT8 Linear layers to oneDNN on the CPU alone: a frozen graph on a GPU keeps the full range.
    The choice is made before the model moves to the GPU, so a faked GPU and a stopped load tell it."""
    from optbench.runtimes import torch as torch_runtime

    class Stop(Exception):
        pass

    def quantize(model: torch.nn.Module, *, onednn: bool) -> bool:
        chosen.append(onednn)
        raise Stop

    chosen: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch_runtime, "_quantize", quantize)
    artifact = _torchao_copy(tiny_classifier, tmp_path / "int8")
    for device in ("cpu", "cuda"):
        with pytest.raises(Stop):
            load_runtime(RuntimeSpec("torch", device, options={"compile": True, "freezing": True}), artifact, threads=1)
    assert chosen == [True, False]


@pytest.mark.parametrize(
    ("device", "options", "precision", "message"),
    [
        (
            "cpu",
            {"provider": "tensorrt"},
            "fp32",
            "provider 'tensorrt' does not fit device 'cpu': "
            'use provider "cpu" on cpu, "cuda" or "tensorrt" on cuda',
        ),
        ("cuda", {"provider": "cuda", "trt_int8": True}, "fp32", 'options of provider = "tensorrt"'),
        ("cuda", {"provider": "tensorrt", "trt_int8": "on"}, "fp32", "take true or false"),
        ("cuda", {"provider": "tensorrt", "trt_engine_cache": "off"}, "fp32", "take true or false"),
        ("cuda", {"provider": "rocm"}, "fp32", "provider 'rocm' does not fit device 'cuda'"),
        ("cuda", {"provider": "tensorrt"}, "bf16", 'not "bf16"'),
        (
            "cpu",
            {"engine_cache": True},
            "fp32",
            r"no option\(s\) \['engine_cache'\]: its options are \['provider', 'graph_optimization_level', 'trt_int8', "
            r"'trt_engine_cache', 'trt_profile'\]",
        ),
        ("cuda", {"provider": "cuda", "trt_profile": PROFILE}, "fp32", "trt_profile are options of provider"),
        (
            "cuda",
            {"provider": "tensorrt", "trt_profile": {"min": [1, 1]}},
            "fp32",
            r"takes min, opt and max as \[batch, sequence\], " + EXAMPLE,
        ),
        ("cuda", {"provider": "tensorrt", "trt_profile": ["min", "opt", "max"]}, "fp32", "takes min, opt and max"),
        ("cuda", {"provider": "tensorrt", "trt_profile": {**PROFILE, "min": [0, 1]}}, "fp32", r"min = \[0, 1\]"),
        ("cuda", {"provider": "tensorrt", "trt_profile": {**PROFILE, "min": [1, 1, 1]}}, "fp32", r"min = \[1, 1, 1\]"),
        (
            "cuda",
            {"provider": "tensorrt", "trt_profile": {**PROFILE, "min": 1}},
            "fp32",
            r"min = 1: give \[batch, sequence\], " + EXAMPLE,
        ),
        ("cuda", {"provider": "tensorrt", "trt_profile": {**PROFILE, "min": [1.5, 1]}}, "fp32", r"min = \[1\.5, 1\]"),
        (  # the table as the recipe writes it
            "cuda",
            {"provider": "tensorrt", "trt_profile": {**PROFILE, "opt": [1, 256]}},
            "fp32",
            r"min <= opt <= max in batch and in sequence, not \{min = \[1, 1\], opt = \[1, 256\], max = \[64, 128\]\}",
        ),
        ("cuda", {"provider": "tensorrt", "trt_profile": {**PROFILE, "min": [8, 1]}}, "fp32", "min <= opt <= max"),
        ("cuda", {"provider": "tensorrt", "trt_profile": {**PROFILE, "max": [True, 128]}}, "fp32", r"max = \[true,"),
        ("cuda", {"provider": "cpu"}, "fp32", "provider 'cpu' does not fit device 'cuda'"),  # a CPU run labelled cuda
        ("cuda", {"provider": "cuda", "trt_engine_cache": False}, "fp32", "trt_profile are options of"),
        # true is its default, and still an option of the TensorRT provider alone
        ("cuda", {"provider": "cuda", "trt_engine_cache": True}, "fp32", "trt_profile are options of"),
        (
            "cpu",
            {"graph_optimization_level": "max"},
            "fp32",
            r"graph_optimization_level 'max' is unknown: use one of \['disable', 'basic', 'extended', 'all'\]",
        ),
    ],
)
def test_bad_onnxruntime_options_fail_when_the_recipe_is_read(
    device: str, options: dict, precision: str, message: str
) -> None:
    with pytest.raises(OptbenchError, match=message):
        RuntimeSpec("onnxruntime", device, precision, options)


def test_tensorrt_provider_options_cache_engines_by_model_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_classifier: Path
) -> None:
    import onnxruntime

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    artifact = _artifact(tiny_classifier, "onnx")
    plain = OrtOptions("tensorrt")
    fp16 = trt_engine_cache_dir(artifact, "fp16", plain)
    assert fp16.parent == tmp_path / "cache" / "ort-tensorrt"
    assert fp16.name.startswith(artifact.sha256[:16])
    int8 = trt_engine_cache_dir(artifact, "fp16", OrtOptions("tensorrt", trt_int8=True))
    assert int8 != fp16 != trt_engine_cache_dir(artifact, "fp32", plain)
    # engines of another onnxruntime or TensorRT are never loaded: the versions name the folder
    monkeypatch.setattr(onnxruntime_trt_cache, "tensorrt_version", lambda: "10.13.3")
    assert trt_engine_cache_dir(artifact, "fp16", plain).name.endswith("-trt10.13.3")
    monkeypatch.setattr(onnxruntime_trt_cache, "tensorrt_version", lambda: "10.14.1")
    assert trt_engine_cache_dir(artifact, "fp16", plain).name.endswith("-trt10.14.1")
    monkeypatch.setattr(onnxruntime, "__version__", "1.99.0")
    assert trt_engine_cache_dir(artifact, "fp16", plain).name.endswith("-ort1.99.0-trt10.14.1")
    monkeypatch.setattr(onnxruntime_trt_cache, "tensorrt_version", lambda: None)  # no TensorRT distribution installed
    assert trt_engine_cache_dir(artifact, "fp16", plain).name.endswith("-ort1.99.0-trtunknown")
    settings = trt_provider_options(fp16, "fp16", OrtOptions("tensorrt"), ["input_ids"])
    assert settings == {
        "trt_fp16_enable": True,
        "trt_int8_enable": False,
        "trt_engine_cache_enable": True,
        "trt_timing_cache_enable": True,
        "trt_engine_cache_path": str(fp16),
        "trt_timing_cache_path": str(fp16),
    }
    assert fp16.is_dir()
    uncached = trt_provider_options(
        None, "fp32", OrtOptions("tensorrt", trt_int8=True, trt_engine_cache=False), ["input_ids"]
    )
    assert uncached["trt_int8_enable"] and not uncached["trt_engine_cache_enable"]
    assert not uncached["trt_fp16_enable"]  # at fp32, TensorRT may not pick FP16 layers
    assert not uncached["trt_timing_cache_enable"]  # nor its timing cache: the provider keeps nothing on disk
    assert "trt_engine_cache_path" not in uncached and "trt_timing_cache_path" not in uncached


def test_tensorrt_provider_engines_built_without_tf32_are_cached_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_classifier: Path
) -> None:
    """The TensorRT provider has no TF32 option (microsoft/onnxruntime#26029); NVIDIA_TF32_OVERRIDE=0 is how README
    turns TF32 off. onnxruntime's engine file names do not carry it, so an engine cached with TF32 on would be
    loaded, and reported as FP32, under the override: the folder must differ."""
    import onnxruntime

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    artifact = _artifact(tiny_classifier, "onnx")
    default = trt_engine_cache_dir(artifact, "fp32", OrtOptions("tensorrt"))
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")  # TF32 allowed, as by default
    assert trt_engine_cache_dir(artifact, "fp32", OrtOptions("tensorrt")) == default
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    without_tf32 = trt_engine_cache_dir(artifact, "fp32", OrtOptions("tensorrt"))
    assert without_tf32 != default and without_tf32.name == default.name.replace("-fp32-", "-fp32-notf32-")
    # every setting, in its place: precision, INT8, TF32, profile, GPU, versions
    monkeypatch.setattr(onnxruntime, "__version__", "1.99.0")
    monkeypatch.setattr(onnxruntime_trt_cache, "tensorrt_version", lambda: "10.14.1")
    options = OrtOptions("tensorrt", trt_int8=True, trt_profile=TrtProfile.parse(PROFILE))
    assert trt_engine_cache_dir(artifact, "fp16", options).name == (
        f"{artifact.sha256[:16]}-fp16-int8-notf32-p1x1-1x128-64x128-NVIDIA-H100-80GB-HBM3-ort1.99.0-trt10.14.1"
    )


def test_tensorrt_provider_engines_of_each_profile_are_cached_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """onnxruntime names a cached engine by its graph, not by its trt_profile: two profiles shared one engine file,
    which it rebuilds over the other's whenever the profile differs from the `.profile` file written beside it
    (microsoft/onnxruntime#15546), so runtimes of two profiles took turns rebuilding, and processes running both
    could pair one's `.profile` with the other's engine. The session is faked: this onnxruntime has no TensorRT."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    plain = _save_tiny_onnx(tmp_path / "plain")
    wide = {**PROFILE, "max": [128, 128]}
    for profile in (PROFILE, wide, PROFILE):
        spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_profile": profile})
        load_runtime(spec, plain, threads=1)
    load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"}), plain, threads=1)
    folders = [providers[0][1]["trt_engine_cache_path"] for providers in gpu_sessions]
    assert folders[0] == folders[2] and len(set(folders)) == 3
    assert Path(folders[0]).name.startswith(f"{plain.sha256[:16]}-fp16-p1x1-1x128-64x128-NVIDIA-H100-80GB-HBM3-ort")
    assert Path(folders[1]).name.startswith(f"{plain.sha256[:16]}-fp16-p1x1-1x128-128x128-NVIDIA-H100-80GB-HBM3-ort")
    assert gpu_sessions[1][0][1]["trt_timing_cache_path"] == folders[1]


def test_tensorrt_provider_engines_of_each_gpu_model_are_cached_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """onnxruntime names a cached engine by the GPU's compute capability, which GPU models share (an L4 and an RTX
    4090 are both 8.9), while a TensorRT engine runs only on the GPU model it was built on: Ray nodes of two models
    sharing one cache volume loaded each other's engines. The GPU's name keys the folder; without a GPU to name,
    only an uncached engine is built. The sessions are faked: this onnxruntime has no TensorRT."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    plain = _save_tiny_onnx(tmp_path / "plain")
    folders = []
    for name in ("NVIDIA L4", "NVIDIA GeForce RTX 4090"):
        _fake_driver(monkeypatch, name)
        folders.append(trt_engine_cache_dir(plain, "fp16", OrtOptions("tensorrt")).name)
    assert folders[0].startswith(f"{plain.sha256[:16]}-fp16-NVIDIA-L4-ort")
    assert folders[1].startswith(f"{plain.sha256[:16]}-fp16-NVIDIA-GeForce-RTX-4090-ort")
    # whatever the name holds, one folder (a "/" would make two) without dashes at its ends; a MIG slice's dot kept
    for name, named in [
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
        (" GPU (2) / x ", "GPU-2-x"),
    ]:
        _fake_driver(monkeypatch, name)
        folder = trt_engine_cache_dir(plain, "fp16", OrtOptions("tensorrt"))
        assert folder.parent == tmp_path / "cache" / "ort-tensorrt" and f"-fp16-{named}-ort" in folder.name
    _fake_driver(monkeypatch, None)
    with pytest.raises(OptbenchError) as refused:
        trt_engine_cache_dir(plain, "fp16", OrtOptions("tensorrt"))
    assert str(refused.value) == (
        "the TensorRT provider's engines are cached per GPU model, and the CUDA driver names no GPU: check that the "
        "NVIDIA driver is installed and a GPU visible (nvidia-smi, CUDA_VISIBLE_DEVICES), or set "
        "trt_engine_cache = false"
    )
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_engine_cache": False})
    assert load_runtime(spec, plain, threads=1).engine_cache is None
    assert not gpu_sessions[0][0][1]["trt_engine_cache_enable"] and "trt_engine_cache_path" not in gpu_sessions[0][0][1]


def test_tensorrt_provider_names_the_gpu_without_importing_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """An onnxruntime job never loads torch, whose few hundred MiB would count in its peak RSS (job.execute): the
    engine cache's GPU name came from torch, imported in every TensorRT provider job. The driver names it."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    _fake_driver(monkeypatch, "NVIDIA L4")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails, as a job must never need it
    plain = _save_tiny_onnx(tmp_path / "plain")
    runtime = load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"}), plain, threads=1)
    assert runtime.engine_cache is not None and "-fp16-NVIDIA-L4-ort" in runtime.engine_cache.name


def _fake_driver(monkeypatch: pytest.MonkeyPatch, gpu: str | None, *, init: int = 0) -> None:
    """libcuda.so.1 as ctypes loads it: `gpu` its device 0 (None: no driver library), `init` what cuInit returns."""
    import ctypes

    real = ctypes.CDLL

    class Driver:
        def cuInit(self, flags: int) -> int:
            return init

        def cuDeviceGet(self, device: Any, ordinal: int) -> int:
            device._obj.value = ordinal
            return 0

        def cuDeviceGetName(self, name: Any, length: int, device: Any) -> int:
            name.value = gpu.encode()[: length - 1]
            return 0

    def load(library: str, *args: Any, **kwargs: Any) -> Any:
        if library != "libcuda.so.1":
            return real(library, *args, **kwargs)
        if gpu is None:
            raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")
        return Driver()

    monkeypatch.setattr(ctypes, "CDLL", load)


def test_the_driver_names_the_gpu_or_none() -> None:
    from optbench.environment import cuda_gpu_name

    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_driver(monkeypatch, "NVIDIA H200")
        assert cuda_gpu_name() == "NVIDIA H200"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_driver(monkeypatch, None)  # no NVIDIA driver
        assert cuda_gpu_name() is None
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_driver(monkeypatch, "NVIDIA H200", init=100)  # CUDA_ERROR_NO_DEVICE: none visible
        assert cuda_gpu_name() is None


def test_tensorrt_provider_profile_names_every_input(tmp_path: Path) -> None:
    options = OrtOptions.parse("cuda", "fp16", {"provider": "tensorrt", "trt_profile": PROFILE})
    assert options.trt_profile == TrtProfile((1, 1), (1, 128), (64, 128))
    assert TrtProfile.parse({key: tuple(shape) for key, shape in PROFILE.items()}) == options.trt_profile  # Python's
    settings = trt_provider_options(tmp_path, "fp16", options, ["input_ids", "attention_mask"])
    assert settings["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert settings["trt_profile_opt_shapes"] == "input_ids:1x128,attention_mask:1x128"
    assert settings["trt_profile_max_shapes"] == "input_ids:64x128,attention_mask:64x128"


def test_the_tensorrt_provider_profile_names_the_model_s_own_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """Read from its graph as the runtime loads it: a profile naming no input would hold none. The session is faked:
    this onnxruntime has no TensorRT."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_profile": PROFILE})
    load_runtime(spec, _save_tiny_onnx(tmp_path / "plain"), threads=1)
    assert gpu_sessions[0][0][1]["trt_profile_max_shapes"] == "input_ids:64x128,attention_mask:64x128"


def test_the_report_says_whether_the_tensorrt_provider_built_its_engine_or_loaded_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """The engine cache's files when the runtime loaded and now: a cache that fills while the job runs holds an
    engine built in it (in its first call, without a profile), one that was full a loaded engine. The sessions are
    faked (no profile to count nodes from): the test writes the file the provider would."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort_runtime.OnnxRuntime, "nodes_per_provider", lambda self, batch: {})
    plain = _save_tiny_onnx(tmp_path / "plain")
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"})
    built = load_runtime(spec, plain, threads=1)
    (built.engine_cache / "model.engine").write_bytes(b"")
    cache = {"path": str(built.engine_cache), "files_at_load": 0, "files_now": 1}
    assert built.describe({})["trt_engine_cache"] == cache
    loaded = load_runtime(spec, plain, threads=1)
    assert loaded.describe({})["trt_engine_cache"] == {**cache, "files_at_load": 1}
    shutil.rmtree(loaded.engine_cache)  # the folder deleted while the job runs (as a damaged engine's fix says)
    assert loaded.describe({})["trt_engine_cache"] == {**cache, "files_at_load": 1, "files_now": None}


def test_a_recipe_fills_in_the_tensorrt_provider_profile_from_its_shapes() -> None:
    assert TrtProfile.for_bench([(1, 128), (32, 128)], 128, 64) == TrtProfile((1, 1), (1, 128), (64, 128))
    assert TrtProfile.for_bench([(8, "data"), (128, 32)], 96, 64) == TrtProfile((1, 1), (8, 96), (128, 96))
    table = {
        "dataset": {"max_length": 64},
        "steps": [{"name": "onnx", "fuse": False}],
        "bench": {
            "batch_sizes": [4, 16],
            "seq_lens": [32],
            "runtimes": [
                {"name": "onnxruntime", "device": "cuda", "precision": "fp16", "options": {"provider": "tensorrt"}},
                {"name": "onnxruntime", "device": "cuda", "options": {"provider": "tensorrt", "trt_profile": PROFILE}},
                {"name": "onnxruntime", "device": "cuda", "options": {"provider": "cuda"}},
            ],
        },
    }
    filled, given, cuda = parse_recipe(table, base=Path("."), default_name="r").bench.runtimes
    assert filled.options["trt_profile"] == {"min": [1, 1], "opt": [4, 32], "max": [64, 64]}
    assert filled.label == "onnxruntime-cuda-fp16-tensorrt"  # the profile is recorded, not part of the name
    assert given.options["trt_profile"] == PROFILE and "trt_profile" not in cuda.options


@pytest.mark.parametrize(
    ("batch_sizes", "seq_lens", "profile", "message"),
    [
        ([1, 32], [128], {"min": [1, 128], "opt": [1, 128], "max": [64, 128]}, "accuracy pass's batches"),
        ([1, 32], [128], {"min": [1, 1], "opt": [1, 128], "max": [32, 128]}, r"accuracy pass's batches \(1 to 64 rows"),
        ([1, 32], ["data"], {"min": [1, 1], "opt": [1, 64], "max": [64, 64]}, "1 to 128 tokens"),
        ([1, 128], [128], PROFILE, r"\[bench\] shape 128 x 128"),
        ([1], [256], PROFILE, r"\[bench\] shape 1 x 256"),
        ([128], ["data"], PROFILE, r"\[bench\] shape 128 x data \(1 to 128 tokens\), which"),
        ([4], [128], {"min": [8, 1], "opt": [8, 128], "max": [64, 128]}, "accuracy pass's batches"),
        ([4], [128], {"min": [2, 1], "opt": [4, 128], "max": [64, 128]}, "accuracy pass's batches"),  # 1-row last
        ([4], [128], {"min": [1, 2], "opt": [4, 128], "max": [64, 128]}, "accuracy pass's batches"),  # a 1-token text
    ],
)
def test_a_given_tensorrt_provider_profile_must_hold_every_shape_the_run_feeds(
    batch_sizes: list, seq_lens: list, profile: dict, message: str
) -> None:
    """Not fail on the GPU, in the TensorRT provider, after the steps have run."""
    table = {
        "dataset": {"max_length": 128},
        "steps": [{"name": "onnx", "fuse": False}],
        "bench": {
            "batch_sizes": batch_sizes,
            "seq_lens": seq_lens,
            "runtimes": [
                {"name": "onnxruntime", "device": "cuda", "options": {"provider": "tensorrt", "trt_profile": profile}}
            ],
        },
    }
    with pytest.raises(OptbenchError, match=message) as error:
        parse_recipe(table, base=Path("."), default_name="r")
    assert "leave trt_profile out" in str(error.value)
    assert "trt_profile min = " in str(error.value)


def test_a_profile_that_leaves_out_a_shape_names_one_that_holds_them_all() -> None:
    """The fix gives min and max from the run's shapes (for_bench's), not the profile's own."""
    with pytest.raises(OptbenchError) as raised:
        TrtProfile((8, 1), (8, 128), (64, 128)).check_holds([(4, 128)], 128, 64)
    assert str(raised.value) == (
        "trt_profile min = [8, 1], max = [64, 128] does not hold the accuracy pass's batches (1 to 64 rows x 1 to 128 "
        "tokens), which the run feeds it: set min = [1, 1] and max to at least [64, 128] ([batch, sequence]), or "
        "leave trt_profile out to have it filled in from [bench] and max_length"
    )


def _with_fused_node(folder: Path) -> ModelArtifact:
    """The tiny ONNX classifier with one onnxruntime (com.microsoft) operator in its graph."""
    import onnx
    from onnx import helper

    artifact = _save_tiny_onnx(folder)
    model = onnx.load(str(folder / "model.onnx"))
    model.graph.node.append(helper.make_node("FastGelu", ["logits"], ["gelu"], domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(folder / "model.onnx"))
    return artifact


def test_the_tensorrt_provider_leaves_out_models_with_onnxruntime_operators(tmp_path: Path, caplog) -> None:
    fused, plain = _with_fused_node(tmp_path / "fused"), _save_tiny_onnx(tmp_path / "plain")
    tensorrt = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"})
    cuda = RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "cuda"})
    assert "onnxruntime's own operators ['FastGelu']" in (declines(tensorrt, fused) or "")
    assert declines(tensorrt, plain) is None and declines(cuda, fused) is None
    with pytest.raises(OptbenchError, match="fuse = false"):
        load_runtime(tensorrt, fused, threads=1)
    assert not bench._runs(tensorrt, fused) and bench._runs(cuda, fused) and bench._runs(tensorrt, plain)
    assert "onnxruntime-cuda-fp16-tensorrt does not run baseline: the TensorRT provider runs models" in caplog.text


def test_the_tensorrt_provider_names_at_most_four_operators_it_cannot_parse() -> None:
    """A fused model holds a dozen onnxruntime operators: four say what the model is, the rest only lengthen the log."""
    from onnx import helper

    custom = helper.make_graph([helper.make_node(op, [], [], domain="com.microsoft") for op in "EDCBA"], "g", [], [])
    assert "onnxruntime's own operators ['A', 'B', 'C', 'D']: give" in (tensorrt_cannot_parse(custom) or "")
    integer = helper.make_graph([helper.make_node(op, [], []) for op in INTEGER_OPS], "g", [], [])
    four = "['ConvInteger', 'DynamicQuantizeLinear', 'MatMulInteger', 'QLinearConv'] (quantize-dynamic's)"
    assert f"integer operators {four}" in (tensorrt_cannot_parse(integer) or "")


def test_the_tensorrt_provider_refuses_each_integer_operator_and_says_what_to_give_it() -> None:
    from onnx import helper

    for op in ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul", "QLinearConv"):
        alone = helper.make_graph([helper.make_node(op, [], [])], "g", [], [])
        assert tensorrt_cannot_parse(alone) == (
            f"the TensorRT provider runs models TensorRT parses whole, and this one holds integer operators ['{op}'] "
            "(quantize-dynamic's), which TensorRT's parser does not take: give it a quantize-static model with "
            'trt_int8 = true, or use provider = "cuda" for this model'
        )
    fused = helper.make_graph([helper.make_node("Attention", [], [], domain="com.microsoft")], "g", [], [])
    assert tensorrt_cannot_parse(fused) == (
        "the TensorRT provider runs models TensorRT parses whole, and this one holds onnxruntime's own operators "
        "['Attention']: give it an export with the onnx step's fuse = false (and no quantize-dynamic), or use "
        'provider = "cuda" for this model'
    )


def test_models_a_runtime_would_refuse_are_left_out_when_paired(tmp_path: Path) -> None:
    """Mismatches the runtime refuses at load are declined when the benchmark pairs models with runtimes,
    so a recipe of several chains and runtimes measures what fits instead of failing jobs."""
    import dataclasses

    import onnx
    from onnx import helper

    plain = _save_tiny_onnx(tmp_path / "plain")
    integer = _save_tiny_onnx(tmp_path / "integer")  # what quantize-dynamic writes on an unfused export
    model = onnx.load(str(integer.path / "model.onnx"))
    model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["logits"], ["q", "scale", "zero"]))
    onnx.save(model, str(integer.path / "model.onnx"))
    fp16 = dataclasses.replace(plain, details={**plain.details, "precision": "fp16"})
    tensorrt = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"})
    tensorrt_int8 = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_int8": True})
    assert "integer operators ['DynamicQuantizeLinear']" in (declines(tensorrt, integer) or "")
    assert declines(tensorrt_int8, plain) == (
        "trt_int8 runs the INT8 layers of a QDQ model, and this model has none: add a quantize-static step "
        '(activation_type = "int8") before it, or use the tensorrt step with precision = "int8", which calibrates'
    )
    assert "at fp32 cannot run this fp16 ONNX model" in (declines(RuntimeSpec("onnxruntime"), fp16) or "")
    cuda_fp16 = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "cuda"})
    assert declines(cuda_fp16, fp16) is None
    # only TensorRT runs an FP32 model's layers in FP16: the CUDA provider would run it in FP32, labelled fp16
    assert "at fp16 cannot run this fp32 ONNX model" in (declines(cuda_fp16, plain) or "")
    assert "at fp16 cannot run this fp32 ONNX model" in (declines_precision(cuda_fp16, "fp32", True) or "")
    assert declines(tensorrt, plain) is None  # TensorRT runs an FP32 model's layers in FP16
    tensorrt_fp32 = RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "tensorrt"})
    assert "at fp32 cannot run this fp16 ONNX model" in (declines(tensorrt_fp32, fp16) or "")  # not the other way


def test_tensorrt_provider_int8_needs_a_qdq_model(tmp_path: Path) -> None:
    spec = RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "tensorrt", "trt_int8": True})
    with pytest.raises(OptbenchError, match="add a quantize-static step"):
        load_runtime(spec, _save_tiny_onnx(tmp_path / "plain"), threads=1)
    with pytest.raises(OptbenchError, match="does not exist: the artifact has no ONNX model"):
        load_runtime(spec, _artifact(tmp_path, "onnx"), threads=1)  # the folder holds no model.onnx


def test_tensorrt_provider_leaves_out_a_qdq_model_without_trt_int8(tmp_path: Path) -> None:
    """TensorRT refuses to build Q/DQ layers unless INT8 is enabled (onnxruntime issue #13381: "Int8 precision has
    been set for a layer or layer output, but int8 is not configured in the builder"), so the pairing declines it
    instead of a job failing on the GPU."""
    qdq = _save_tiny_onnx(tmp_path / "qdq", qdq=True)
    without = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"})
    with_int8 = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_int8": True})
    assert declines(without, qdq) == (
        "this QDQ model's Q/DQ layers build only with INT8 enabled (TensorRT refuses them otherwise): set trt_int8 = "
        'true in the runtime\'s options, or use provider = "cuda" for this model'
    )
    assert declines(with_int8, qdq) is None
    assert declines(RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "cuda"}), qdq) is None
    with pytest.raises(OptbenchError, match="set trt_int8 = true"):
        load_runtime(without, qdq, threads=1)


def test_the_cuda_provider_computes_float32_matmuls_in_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """onnxruntime's CUDA provider uses TF32 for float32 MatMul/Gemm unless told not to (use_tf32 defaults to true),
    while PyTorch's CUDA fp32 row, which the GPU paths are read against, runs FP32 matmuls. Both the CUDA runtime and
    the TensorRT provider's CUDA fallback turn it off. The session is faked: this onnxruntime has no CUDA provider."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    plain = _save_tiny_onnx(tmp_path / "plain")
    load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "cuda"}), plain, threads=1)
    load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"}), plain, threads=1)
    cuda = ("CUDAExecutionProvider", {"use_tf32": False})
    assert gpu_sessions[0] == [cuda, "CPUExecutionProvider"]
    assert gpu_sessions[1][1:] == [cuda, "CPUExecutionProvider"]


def test_a_session_that_does_not_run_the_provider_asked_for_first_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_sessions: list[list]
) -> None:
    """onnxruntime leaves out a provider it fails to create (a TensorRT library missing) and opens the session on
    the others: its figures would be CUDA's, reported as the TensorRT provider's. The session is faked."""
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    opened_without = SimpleNamespace(get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort_runtime, "open_session", lambda path, **kwargs: opened_without)
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"})
    with pytest.raises(OptbenchError, match=r"did not register TensorrtExecutionProvider \(it runs \['CUDAExecution"):
        load_runtime(spec, _save_tiny_onnx(tmp_path / "plain"), threads=1)


def test_tensorrt_provider_takes_fp16_on_an_fp32_model_and_names_a_missing_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import onnxruntime

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    qdq = _save_tiny_onnx(tmp_path / "qdq", qdq=True)  # any Q/DQ graph: quantize-static's, or optimum's static INT8
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_int8": True})
    with pytest.raises(OptbenchError) as refused:
        load_runtime(spec, qdq, threads=1)
    assert str(refused.value) == (
        f"TensorrtExecutionProvider is not in this onnxruntime build (it has {onnxruntime.get_available_providers()}): "
        'install onnxruntime-gpu on an NVIDIA machine, or use device = "cpu"'
    )


TRT_BUILD_FAILED = (
    "[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP failed to create engine from network for fused node: "
    "TensorrtExecutionProvider_TRTKernel_graph_main_graph_0_0\nmore detail"
)


def _gpu_providers_fail(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """onnxruntime with every provider, whose sessions on a GPU provider fail with `error` while its CPU provider
    opens the file as ever; like onnxruntime's own InferenceSession, a session whose providers raise a RuntimeError or
    ValueError is opened again on the CPU alone unless enable_fallback=0."""
    import onnxruntime

    real = onnxruntime.InferenceSession

    def session(path: str, options: object = None, providers: list | None = None, **kwargs: Any) -> object:
        if [p if isinstance(p, str) else p[0] for p in providers or []] == ["CPUExecutionProvider"]:
            return real(path, options, providers=providers)
        if isinstance(error, RuntimeError | ValueError) and int(kwargs.get("enable_fallback", 1)) == 1:
            return real(path, options, providers=["CPUExecutionProvider"])
        raise error

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(PROVIDERS.values()))


def test_a_tensorrt_provider_failure_is_not_called_a_damaged_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The TensorRT provider builds its engine while the session opens (its profile given), and a failed build
    (onnxruntime's EPFail) read "the file is damaged or not an ONNX model; delete its folder": the advice for a
    file, given for a model the CPU provider loads. It now names the provider, its engine cache and what to try."""
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    _gpu_providers_fail(monkeypatch, EPFail(TRT_BUILD_FAILED))
    plain = _save_tiny_onnx(tmp_path / "plain")
    spec = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_profile": PROFILE})
    with pytest.raises(OptbenchError) as raised:
        load_runtime(spec, plain, threads=1)
    message = str(raised.value)
    cache = trt_engine_cache_dir(plain, "fp16", OrtOptions("tensorrt", trt_profile=TrtProfile.parse(PROFILE)))
    assert message.startswith("onnxruntime's TensorrtExecutionProvider failed to open")
    assert "(" + TRT_BUILD_FAILED.splitlines()[0] + ")" in message and "more detail" not in message
    assert f"engine cache {cache} holds a damaged engine, delete that folder" in message
    assert (
        'precision = "fp32"' in message and "trt_profile" in message and "damaged or not an ONNX model" not in message
    )
    uncached = RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt", "trt_engine_cache": False})
    with pytest.raises(OptbenchError, match=r"or GPU memory\)\. Try precision") as raised:
        load_runtime(uncached, plain, threads=1)
    assert "engine cache" not in str(raised.value)


def test_a_provider_failure_in_a_call_names_the_provider_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpu_sessions: list[list]
) -> None:
    """The TensorRT provider builds its engine on the first call when it has no profile, and runs it in every call:
    a failure there (onnxruntime's EPFail) reached the failed job's reason as onnxruntime's raw exception. Once the
    CPU provider runs the same batch, it names the provider, onnxruntime's first line and what to try, in `predict`
    and in `describe`'s profiled call; a batch the CPU provider refuses too keeps onnxruntime's own error. The GPU
    sessions are faked (this onnxruntime has no TensorRT); the CPU provider's is real."""
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    def fail(*args: object) -> None:
        raise EPFail(TRT_BUILD_FAILED)

    def open_session(path: Path, *, providers: list, threads: int | None, **kwargs: object) -> SimpleNamespace:
        names = [p if isinstance(p, str) else p[0] for p in providers]
        inputs = [SimpleNamespace(name=name) for name in ("input_ids", "attention_mask")]
        return SimpleNamespace(get_providers=lambda: names, get_inputs=lambda: inputs, run=fail)

    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort_runtime, "open_session", open_session)
    plain = _save_tiny_onnx(tmp_path / "plain")
    runtime = load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp16", {"provider": "tensorrt"}), plain, threads=1)
    batch = {"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((2, 3), np.int64)}
    for call in (runtime.predict, runtime.describe):
        with pytest.raises(OptbenchError) as raised:
            call(batch)
        message = str(raised.value)
        assert message.startswith(
            f"onnxruntime's TensorrtExecutionProvider failed to run {plain.path / 'model.onnx'} on a batch of 2 x 3, "
            f"which its CPU provider runs ({TRT_BUILD_FAILED.splitlines()[0]}): TensorRT could not build, load or run"
        )
        assert "more detail" not in message and f"engine cache {runtime.engine_cache} holds a damaged" in message
        assert 'precision = "fp32"' in message and 'provider = "cuda"' in message
    with pytest.raises(EPFail):  # int32 tokens: onnxruntime's CPU provider refuses them too
        runtime.predict({name: array.astype(np.int32) for name, array in batch.items()})


def test_a_cuda_provider_failure_names_the_gpu_and_a_damaged_file_stays_damaged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    cuda_failed = "CUDA failure 2: out of memory ; GPU=0 ; expr=cudaMalloc(&p, size);"
    _gpu_providers_fail(monkeypatch, Fail(cuda_failed))
    plain = _save_tiny_onnx(tmp_path / "plain")
    with pytest.raises(OptbenchError, match="CUDAExecutionProvider failed to open") as raised:
        load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "cuda"}), plain, threads=1)
    import onnxruntime

    assert str(raised.value) == (
        f"onnxruntime's CUDAExecutionProvider failed to open {plain.path / 'model.onnx'}, which its CPU provider loads "
        f"({cuda_failed}): the CUDA provider could not use the GPU. Check that it is visible and has free memory "
        f"(nvidia-smi), and that the driver, CUDA and cuDNN are those onnxruntime-gpu {onnxruntime.__version__} needs"
    )
    damaged = tmp_path / "damaged" / "model.onnx"
    damaged.parent.mkdir()
    damaged.write_bytes(b"\x0a\xff damaged")
    providers = [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]
    with pytest.raises(OptbenchError, match=r"cannot load .*model\.onnx \(.*\): the file is damaged") as raised:
        ort_runtime.open_session(damaged, providers=providers, threads=1)
    assert "CUDA failure" not in str(raised.value)  # the CPU provider's reason, which is the file's


def test_a_provider_named_without_options_and_a_failure_without_words_are_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """onnxruntime takes a provider by name as well as by (name, options), and an exception may carry no message:
    the error still names the provider, and onnxruntime's exception by its type."""
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    _gpu_providers_fail(monkeypatch, EPFail(""))
    model = _save_tiny_onnx(tmp_path / "plain").path / "model.onnx"
    with pytest.raises(OptbenchError) as raised:
        ort_runtime.open_session(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], threads=1)
    assert str(raised.value).startswith(f"onnxruntime's CUDAExecutionProvider failed to open {model}, which its CPU")
    assert "which its CPU provider loads (EPFail): the CUDA provider" in str(raised.value)


@pytest.mark.parametrize("cpu", ["CPUExecutionProvider", ("CPUExecutionProvider", {})], ids=["name", "with-options"])
def test_a_file_the_cpu_provider_alone_refuses_is_opened_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu: Any
) -> None:
    """The CPU provider's second try tells a GPU provider's failure from the file's; on the CPU alone there is
    nothing to tell apart, and opening a large model again would only double the wait for the same error. The CPU
    provider given with its options is the CPU alone too."""
    damaged = tmp_path / "model.onnx"
    damaged.write_bytes(b"\x0a\xff damaged")
    opened = []
    real = ort_runtime.inference_session

    def counted(*args: Any) -> Any:
        opened.append(args[1])
        return real(*args)

    monkeypatch.setattr(ort_runtime, "inference_session", counted)
    with pytest.raises(OptbenchError, match="the file is damaged or not an ONNX model"):
        ort_runtime.open_session(damaged, providers=[cpu], threads=1)
    assert opened == [[cpu]]


def test_onnxruntime_never_falls_back_to_other_providers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """onnxruntime's InferenceSession opens a session again on the CPU (CUDA under TensorRT) when a provider raises a
    RuntimeError while it opens, and runs a call again on them when a provider fails in `run`, printing the error on
    stdout: the error was lost ("did not register ...: check the libraries"), and a TensorRT run could be timed on
    CUDA. The session is opened without that fallback."""
    from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

    class FailingRun:
        """onnxruntime's inner session, whose `run` (the call the session's own run makes) fails."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def run(self, *args: object) -> None:
            raise EPFail(TRT_BUILD_FAILED)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    plain = _save_tiny_onnx(tmp_path / "plain")
    session = ort_runtime.open_session(plain.path / "model.onnx", providers=["CPUExecutionProvider"], threads=1)
    session._sess = FailingRun(session._sess)
    with pytest.raises(EPFail, match="TensorRT EP failed"):
        session.run(["logits"], {"input_ids": np.ones((1, 2), np.int64), "attention_mask": np.ones((1, 2), np.int64)})
    cuda_failed = "CUDA failure 100: no CUDA-capable device is detected ; GPU=0 ; expr=cudaSetDevice(info_.device_id);"
    _gpu_providers_fail(monkeypatch, RuntimeError(cuda_failed))
    with pytest.raises(OptbenchError, match="CUDAExecutionProvider failed to open") as raised:
        load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp32", {"provider": "cuda"}), plain, threads=1)
    assert f"({cuda_failed})" in str(raised.value)


def test_time_calls_reads_the_runtime_clock() -> None:
    class TenMs:
        def start(self) -> None:
            self.started = True

        def stop(self) -> int:
            return 10_000_000

    times = time_calls(lambda: None, Timing(warmup=0, min_iters=3, min_seconds=0.05, max_seconds=10), TenMs())
    assert times == [10_000_000] * 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_cuda_events_time_device_work() -> None:
    x = torch.randn(2048, 2048, device="cuda")
    clock = CudaEventClock()
    clock.start()
    for _ in range(10):
        x = x @ x / 2048
    elapsed = clock.stop()
    assert elapsed > 0


class FakeCudaGraphs:
    """torch.cuda's capture API as CudaGraphs uses it, faked (no GPU here), and a model for it: a graph captures the
    model's call made under `torch.cuda.graph`, which its `replay` runs again on the same input buffers, into the
    same output; the pool each capture went into is kept."""

    def __init__(self) -> None:
        self.pools: list[object] = []
        self.capturing: Any = None
        self.events: list[str] = []  # the model's calls and the streams' waits, in order
        self.on = "current"  # the stream work is queued on

    def model(self, input_ids: torch.Tensor) -> SimpleNamespace:
        logits = input_ids.float().sum(1, keepdim=True)
        if self.capturing is not None:
            self.capturing.replay = lambda: logits.copy_(input_ids.float().sum(1, keepdim=True))
        self.events.append("capture" if self.capturing is not None else f"run on {self.on}")
        return SimpleNamespace(logits=logits)

    def stream_named(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(
            name=name, wait_stream=lambda other: self.events.append(f"{name} waits for {other.name}")
        )

    @contextlib.contextmanager
    def stream(self, stream: SimpleNamespace) -> Iterator[None]:
        self.on = stream.name
        yield
        self.on = "current"

    @contextlib.contextmanager
    def graph(self, graph: object, pool: object = None) -> Iterator[None]:
        self.pools.append(pool)
        self.capturing = graph
        yield
        self.capturing = None


@pytest.fixture
def fake_cuda_graphs(monkeypatch: pytest.MonkeyPatch) -> FakeCudaGraphs:
    fake = FakeCudaGraphs()
    current = fake.stream_named("current")
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool", 7))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: SimpleNamespace(replay=lambda: None))
    monkeypatch.setattr(torch.cuda, "graph", fake.graph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: fake.stream_named("side"))
    monkeypatch.setattr(torch.cuda, "stream", fake.stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: current)
    return fake


def test_cuda_graphs_of_every_length_share_one_memory_pool(fake_cuda_graphs: FakeCudaGraphs) -> None:
    """Batches padded to their longest text bring a graph per length: with a memory pool each, the GPU memory
    held (and reported as the peak) grew with the count of lengths. The GPU test below checks the logits of graphs
    that share the pool."""
    from optbench.runtimes.torch import CudaGraphs

    graphs = CudaGraphs(fake_cuda_graphs.model)
    for length in (8, 16, 8, 24):
        graphs({"input_ids": torch.ones(2, length, dtype=torch.long)})
    assert fake_cuda_graphs.pools == [("pool", 7)] * 3  # one capture per length, all into one pool


def test_a_replayed_cuda_graph_runs_on_the_batch_it_is_given(fake_cuda_graphs: FakeCudaGraphs) -> None:
    """A graph replays its kernels on the input buffers it captured: each call copies its batch into them, or every
    batch of a shape would get the logits of the first one."""
    from optbench.runtimes.torch import CudaGraphs

    graphs = CudaGraphs(fake_cuda_graphs.model)
    first = torch.full((2, 8), 1)
    for batch in (first, torch.full((2, 8), 2), torch.full((2, 8), 3)):
        assert graphs({"input_ids": batch}).tolist() == [[8.0 * batch[0, 0].item()]] * 2
    assert first.tolist() == [[1] * 8] * 2  # the graph's input buffers are its own, not the first caller's tensors


def test_a_cuda_graph_is_captured_after_warm_up_calls_on_a_side_stream(fake_cuda_graphs: FakeCudaGraphs) -> None:
    """PyTorch's whole-network recipe: warm-up calls (where cuBLAS handles and autotuning initialise lazily, which a
    capture cannot hold) on a side stream that waits for the current stream's work, which waits for theirs before
    the capture; a shape captured once is replayed, not warmed up again."""
    from optbench.runtimes.torch import CudaGraphs

    graphs = CudaGraphs(fake_cuda_graphs.model)
    for _ in range(2):
        graphs({"input_ids": torch.ones(2, 8, dtype=torch.long)})
    assert fake_cuda_graphs.events == [
        "side waits for current",
        *["run on side"] * 3,
        "current waits for side",
        "capture",
    ]


def test_the_cuda_graphs_option_runs_the_model_through_captured_graphs(fake_cuda_graphs: FakeCudaGraphs) -> None:
    """Which forward the option picks is logic, checked without a GPU (a runtime built around the faked capture
    API); the GPU test below checks the logits."""
    from optbench.runtimes.torch import TorchRuntime

    runtime = object.__new__(TorchRuntime)  # its loading moves the model to a GPU
    runtime.options, runtime.model = TorchOptions.parse("cuda", {"cuda_graphs": True}), fake_cuda_graphs.model
    forward = runtime._plan_forward()
    assert forward({"input_ids": torch.full((2, 8), 3)}).tolist() == [[24.0]] * 2
    assert fake_cuda_graphs.pools == [("pool", 7)]  # captured, then replayed


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
@pytest.mark.parametrize("options", [{"cuda_graphs": True}, {"compile": True}, {"compile": "reduce-overhead"}])
def test_cuda_graphs_and_compile_give_the_eager_logits(tiny_classifier: Path, options: dict) -> None:
    eager = load_runtime(RuntimeSpec("torch", "cuda"), _artifact(tiny_classifier), threads=1)
    fast = load_runtime(RuntimeSpec("torch", "cuda", "fp32", options), _artifact(tiny_classifier), threads=1)
    # a second length captures a second graph; the first is replayed with other texts (copied into its static
    # inputs), and a smaller batch is a shape of its own
    for seq_len, texts in ((16, TEXTS), (24, TEXTS), (16, OTHER_TEXTS), (16, TEXTS[:2])):
        batch = _batch(tiny_classifier, seq_len, texts)
        np.testing.assert_allclose(fast.predict(batch), eager.predict(batch), atol=1e-3)
    assert isinstance(fast.clock(), CudaEventClock)
