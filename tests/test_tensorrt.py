"""The tensorrt step and runtime: everything a CPU can check, and an end-to-end build where TensorRT and a GPU are."""

from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from optbench.artifact import ModelArtifact
from optbench.data import LabelledData, Split
from optbench.errors import OptbenchError
from optbench.onnx_graph import is_qdq
from optbench.recipe import load_recipe
from optbench.runtimes import ENGINES, RuntimeSpec, load_runtime
from optbench.steps import STEPS
from optbench.steps import tensorrt as trt_step
from optbench.steps.cache import cache_key, run_step
from optbench.steps.tensorrt import CalibrationFeed, TensorRTConfig, check_parsable, check_symmetric_int8, profiles
from optbench.tensorrt_engine import (
    INSTALL,
    SUPPORTED_MAJOR,
    Profile,
    check_target,
    detect_target,
    import_tensorrt,
    pick_profile,
)


def _has_tensorrt_and_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(
    not _has_tensorrt_and_gpu(), reason="needs TensorRT (import tensorrt failed) and a CUDA GPU"
)


def test_step_and_runtime_are_registered() -> None:
    assert STEPS["tensorrt"].config_type is TensorRTConfig
    assert ENGINES["tensorrt"].formats == ("trt",)
    assert TensorRTConfig().label == "tensorrt-fp16" and TensorRTConfig.output_format == "trt"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int4"}, 'precision = "int4"'),
        ({"batch_sizes": (1, 0)}, "batch_sizes [0] are not positive integers: give e.g. [1, 32], or leave them out"),
        (  # [bench]'s cap: an engine's profile for 10**9 rows passed, to be built on the GPU
            {"batch_sizes": (1, 10**9)},
            "batch_sizes [1000000000] are more than 65536 rows a call: each batch would hold that many texts, too "
            "many for any machine's memory in one call; give batch sizes of at most 65536, or leave them out to take "
            "the recipe's [bench] batch_sizes",
        ),
        ({"seq_lens": (128, "all")}, "seq_lens"),
        ({"seq_lens": (0,)}, "seq_lens"),
        # [bench] refuses these too: a repeat builds the same engine under another cache key
        ({"batch_sizes": (8, 1, 8)}, "batch_sizes lists [8] more than once: drop the repeats"),
        ({"seq_lens": (16, "data", 16)}, "seq_lens lists [16] more than once: drop the repeats"),
        ({"max_length": 0}, "max_length = 0"),
        ({"workspace_mib": 0}, "workspace_mib = 0"),
        ({"calibration_samples": 8, "calibration_batch_size": 16}, "calibration_batch_size <= calibration_samples"),
        ({"calibration_samples": 15, "calibration_batch_size": 16}, "calibration_samples = 15 and calibration_batch"),
        ({"calibration_batch_size": 0}, "calibration_batch_size = 0"),
        ({"calibration_method": "percentile"}, 'calibration_method = "percentile": use "minmax" or "entropy"'),
    ],
)
def test_bad_configs_name_the_value_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError) as error:
        TensorRTConfig(**kwargs)
    assert message in str(error.value)


def test_the_defaults_are_the_documented_ones() -> None:
    """The README states them, and a recipe that leaves a setting out builds (and caches) the engine they make; a
    batch as large as its samples is whole, so it is taken."""
    config = TensorRTConfig()
    assert (config.precision, config.workspace_mib, config.seed) == ("fp16", 4096, 0)
    assert (config.calibration_samples, config.calibration_batch_size, config.calibration_method) == (512, 16, "minmax")
    assert TensorRTConfig(calibration_samples=16, calibration_batch_size=16).calibration_samples == 16


def test_profiles_one_per_benchmark_shape_and_one_for_accuracy() -> None:
    shapes = profiles((32, 1), (128, "data"), max_length=64)
    assert [(p.min, p.opt, p.max) for p in shapes] == [
        ((1, 128), (1, 128), (1, 128)),
        ((1, 1), (1, 64), (1, 64)),
        ((1, 128), (32, 128), (32, 128)),
        ((1, 1), (32, 64), (32, 64)),
        ((1, 1), (64, 64), (64, 64)),
    ]
    assert shapes[-1].purpose == "accuracy pass"
    assert [Profile.from_dict(p.to_dict()) for p in shapes] == shapes
    tuned = Profile((1, 1), (8, 32), (64, 128), "x")  # each profile above is tuned for its max: this one is not
    assert Profile.from_dict(tuned.to_dict()) == tuned
    assert len(profiles((64,), ("data",), max_length=64)) == 1  # the benchmark profile is the accuracy one
    # 64 x 64 exactly reaches the accuracy pass's largest shape but not its shorter batches (64 x 10)
    assert [p.purpose for p in profiles((64,), (64,), max_length=64)] == ["batch 64 x 64", "accuracy pass"]
    assert [p.purpose for p in profiles((), (), max_length=32)] == ["accuracy pass"]


def test_pick_profile_takes_the_tightest_holder() -> None:
    shapes = profiles((1, 32), (128, "data"), max_length=64)
    assert pick_profile(shapes, (1, 128)) == 0
    assert pick_profile(shapes, (1, 17)) == 1
    assert pick_profile(shapes, (32, 128)) == 2
    assert pick_profile(shapes, (20, 128)) == 2  # a short last batch stays in its shape's profile
    assert pick_profile(shapes, (20, 40)) == 3
    assert pick_profile(shapes, (64, 50)) == 4  # the accuracy pass
    with pytest.raises(OptbenchError, match=r"batch 65 x sequence 10.*add the shape"):
        pick_profile(shapes, (65, 10))
    with pytest.raises(OptbenchError, match="batch 1 x sequence 100"):
        pick_profile(shapes, (1, 100))
    with pytest.raises(OptbenchError) as refused:
        pick_profile(profiles((1,), (16,), max_length=32), (2, 40))
    assert str(refused.value) == (
        "no optimization profile of this TensorRT engine holds batch 2 x sequence 40 (profiles: batch 1 x 16: "
        "[1, 16]..[1, 16]; accuracy pass: [1, 1]..[64, 32]): add the shape to the recipe's [bench] matrix or the "
        "tensorrt step's batch_sizes / seq_lens, and run the recipe again to rebuild the engine"
    )
    # batch 1's exact profile (one shape), not its `data` one (64 shapes) listed first
    assert pick_profile(profiles((1,), ("data", 16), max_length=64), (1, 16)) == 1
    # tightest by the shapes each admits: 100 x 1 = 100, not the accuracy pass's 64 x 2 = 128 (though 64 + 2 < 100 + 1)
    assert pick_profile(profiles((100,), (2,), max_length=2), (10, 2)) == 0
    # a profile of one sequence length admits its batches x 1 shapes, not none: 64 x 1 = 64, more than 2 x 16 = 32
    one_length, few_batches = Profile((1, 16), (64, 16), (64, 16), "a"), Profile((1, 1), (2, 16), (2, 16), "b")
    assert pick_profile([one_length, few_batches], (2, 16)) == 1
    # of two equally tight holders (2 x 64 = 128 x 1 shapes), the first
    short, long = Profile((1, 1), (2, 64), (2, 64), "a"), Profile((1, 64), (128, 64), (128, 64), "b")
    assert pick_profile([short, long], (2, 64)) == 0 and pick_profile([long, short], (2, 64)) == 0


RECIPE = """
[dataset]
max_length = 48

[[steps]]
name = "onnx"
fuse = false

[[steps]]
name = "tensorrt"
{extra}

[bench]
runtimes = ["torch", {{name = "tensorrt", device = "cuda"}}]
batch_sizes = [1, 8]
seq_lens = [32, "data"]
"""


def test_recipe_fills_shapes_from_bench(tmp_path: Path) -> None:
    path = tmp_path / "trt.toml"
    path.write_text(RECIPE.format(extra=""))
    config = load_recipe(path).steps()[1].config
    assert (config.batch_sizes, config.seq_lens, config.max_length) == ((1, 8), (32, "data"), 48)
    path.write_text(RECIPE.format(extra='precision = "int8"\nbatch_sizes = [4]\nseq_lens = [16]'))
    config = load_recipe(path).steps()[1].config
    assert (config.precision, config.batch_sizes, config.seq_lens, config.max_length) == ("int8", (4,), (16,), 48)


@pytest.mark.parametrize(
    ("bench", "step", "message"),
    [
        ({"batch_sizes": [1, 128], "seq_lens": [32]}, {"batch_sizes": [1]}, "shape 128 x 32.*add 128 to batch_sizes"),
        ({"batch_sizes": [1], "seq_lens": [64]}, {"seq_lens": [32]}, "shape 1 x 64.*add 1 to batch_sizes and 64"),
        ({"batch_sizes": [128], "seq_lens": ["data"]}, {"seq_lens": [32]}, 'shape 128 x data.*and "data" to seq_lens'),
        # 128 x 48 fits the step's 128 x 48 profile, but `data` pads shorter batches to fewer tokens
        ({"batch_sizes": [128], "seq_lens": ["data"]}, {"seq_lens": [48]}, 'shape 128 x data.*and "data" to seq_lens'),
        ({"batch_sizes": [1], "seq_lens": [32]}, {"max_length": 32}, "max_length = 32 is below the dataset's"),
    ],
)
def test_given_shapes_that_leave_out_a_bench_shape_are_refused_when_the_recipe_is_read(
    bench: dict, step: dict, message: str
) -> None:
    """Not by the tensorrt runtime on the GPU, after the engine was built."""
    from optbench.recipe import parse_recipe

    table = {
        "dataset": {"max_length": 48},
        "steps": [{"name": "onnx", "fuse": False}, {"name": "tensorrt", **step}],
        "bench": {"runtimes": ["torch", {"name": "tensorrt", "device": "cuda"}], **bench},
    }
    with pytest.raises(OptbenchError, match=rf"^\[\[steps\]\] #2 \(tensorrt\) .*{message}"):
        parse_recipe(table, base=Path("."), default_name="r")
    table["steps"][1] = {"name": "tensorrt"}
    parse_recipe(table, base=Path("."), default_name="r")  # left out, the shapes come from [bench]


def test_profiles_reach_the_step_s_own_max_length_when_the_recipe_is_read() -> None:
    """A step max_length above the dataset's builds `data` profiles up to it, which hold a fixed [bench] length
    past the dataset's (fixed lengths pad to themselves, not to the dataset's max_length)."""
    from optbench.bench import BenchConfig

    config = TensorRTConfig(batch_sizes=(8,), seq_lens=("data",), max_length=128)
    assert config.for_bench(BenchConfig(batch_sizes=(8,), seq_lens=(128,)), max_length=48) == config
    with pytest.raises(OptbenchError, match="shape 8 x 128"):
        replace(config, max_length=64).for_bench(BenchConfig(batch_sizes=(8,), seq_lens=(128,)), max_length=48)


SYMMETRIC_INT8 = {
    "name": "quantize-static",
    "activation_type": "int8",
    "weight_type": "int8",
    "activation_symmetric": True,
}


@pytest.mark.parametrize(
    ("before", "step", "message"),
    [
        ([{"name": "onnx"}], {}, r"onnx: it fuses \(fuse = true\).*give it fuse = false$"),
        ([{"name": "onnx", "fuse": True, "label": "x"}, SYMMETRIC_INT8], {"precision": "int8"}, "x: it fuses"),
        ([{"name": "onnx", "fuse": False}, {"name": "quantize-dynamic"}], {}, "onnxruntime integer operators"),
        ([{"name": "onnx", "fuse": False}, SYMMETRIC_INT8], {}, 'precision = "fp16": set precision = "int8"'),
        ([{"name": "onnx", "fuse": False}, SYMMETRIC_INT8], {"precision": "fp32"}, 'precision = "fp32": set precision'),
        (
            [{"name": "onnx", "fuse": False}, {**SYMMETRIC_INT8, "activation_symmetric": False}],
            {"precision": "int8"},
            "uint8 or asymmetric Q/DQ.*activation_symmetric = true",
        ),
        (
            [{"name": "onnx", "fuse": False}, {**SYMMETRIC_INT8, "activation_type": "uint8", "weight_type": "uint8"}],
            {"precision": "int8"},
            "uint8 or asymmetric",
        ),
        (  # uint8 weights alone: TensorRT takes signed INT8 weights only
            [{"name": "onnx", "fuse": False}, {**SYMMETRIC_INT8, "activation_type": "auto", "weight_type": "uint8"}],
            {"precision": "int8"},
            "uint8 or asymmetric",
        ),
        (
            [{"name": "onnx", "fuse": False}, {**SYMMETRIC_INT8, "op_types": ["MatMul", "Gemm"]}],
            {"precision": "int8"},
            "INT32 biases for Gemm nodes: .*leave Gemm out",
        ),
    ],
)
def test_a_chain_whose_earlier_steps_make_a_model_tensorrt_cannot_build_is_refused_when_read(
    before: list, step: dict, message: str
) -> None:
    """Not on the GPU machine after the export, fusion and quantization ran: their settings already say it."""
    from optbench.recipe import parse_recipe

    table = {
        "steps": [*before, {"name": "tensorrt", **step}],
        "bench": {"runtimes": ["torch", {"name": "tensorrt", "device": "cuda"}]},
    }
    with pytest.raises(OptbenchError, match=rf"^the chain .*: tensorrt-\w+ cannot follow .*{message}"):
        parse_recipe(table, base=Path("."), default_name="r")


def test_a_symmetric_int8_chain_and_auto_types_are_left_to_the_model_s_check() -> None:
    from optbench.recipe import parse_recipe

    for quantize in (SYMMETRIC_INT8, {"name": "quantize-static", "activation_symmetric": True}):  # auto: per machine
        steps = [{"name": "onnx", "fuse": False}, quantize, {"name": "tensorrt", "precision": "int8"}]
        parse_recipe(
            {"steps": steps, "bench": {"runtimes": ["torch", {"name": "tensorrt", "device": "cuda"}]}},
            base=Path("."),
            default_name="r",
        )


def _artifact(path: Path = Path("model"), fmt: str = "onnx", lineage: tuple = ()) -> ModelArtifact:
    return ModelArtifact(path, fmt, ("fresh", "rotten"), "0" * 64, lineage=lineage)  # type: ignore[arg-type]


def test_cache_key_changes_with_tensorrt_version_and_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TensorRTConfig(batch_sizes=(1,), seq_lens=(128,), max_length=128)
    data = SimpleNamespace(fingerprint="f", max_length=128)
    target = {"tensorrt": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}
    monkeypatch.setattr(trt_step, "detect_target", lambda: dict(target))
    first = cache_key(config, _artifact(), data)
    assert cache_key(config, _artifact(), data) == first
    target["tensorrt"] = "10.4.0"
    assert cache_key(config, _artifact(), data) != first
    target.update(tensorrt="10.3.0", gpu="NVIDIA L4", compute_capability="8.9")
    l4 = cache_key(config, _artifact(), data)
    assert l4 != first
    target["gpu"] = "NVIDIA GeForce RTX 4090"  # the L4's compute capability, another GPU model: its engines differ
    assert cache_key(config, _artifact(), data) != l4


def test_cache_key_of_an_engine_that_reads_the_datasets_max_length_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration cuts its train texts at the dataset's max_length, whatever the engine's own, and an engine
    without a max_length of its own is built for the dataset's: a changed [dataset] max_length must build
    anew. An FP16 engine of a given max_length reads the dataset's only to check it fits."""
    monkeypatch.setattr(trt_step, "detect_target", lambda: {"tensorrt": "10.3.0", "gpu": "NVIDIA H100"})
    short, long = SimpleNamespace(fingerprint="f", max_length=64), SimpleNamespace(fingerprint="f", max_length=128)
    calibrated = TensorRTConfig(precision="int8", batch_sizes=(1,), seq_lens=(128,), max_length=128)
    assert cache_key(calibrated, _artifact(), short) != cache_key(calibrated, _artifact(), long)
    unsized = TensorRTConfig(batch_sizes=(1,), seq_lens=(128,))
    assert cache_key(unsized, _artifact(), short) != cache_key(unsized, _artifact(), long)
    fp16 = TensorRTConfig(batch_sizes=(1,), seq_lens=(128,), max_length=128)
    assert cache_key(fp16, _artifact(), short) == cache_key(fp16, _artifact(), long)


def test_engine_for_another_target_is_refused() -> None:
    running = {"tensorrt": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}
    check_target({**running, "precision": "fp16"}, running)
    with pytest.raises(OptbenchError, match=r"tensorrt '10.2.0' \(running '10.3.0'\).*run the recipe again"):
        check_target({**running, "tensorrt": "10.2.0"}, running)
    with pytest.raises(OptbenchError, match=r"gpu 'NVIDIA L4'.*rebuild"):
        check_target({**running, "gpu": "NVIDIA L4"}, running)
    with pytest.raises(OptbenchError, match=r"gpu None \(running 'NVIDIA H100'\)"):  # a manifest that names none
        check_target({"tensorrt": "10.3.0", "compute_capability": "9.0", "precision": "fp16"}, running)
    with pytest.raises(OptbenchError, match=r": tensorrt '10.2.0' \(running '10.3.0'\), gpu 'NVIDIA L4' \(running"):
        check_target({**running, "tensorrt": "10.2.0", "gpu": "NVIDIA L4"}, running)  # each difference named


def test_non_onnx_artifact_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"^tensorrt takes an ONNX model, not a Hugging Face checkpoint: put an"):
        trt_step.apply(TensorRTConfig(), _artifact(tmp_path, "hf"), SimpleNamespace(), tmp_path / "out")


def test_missing_tensorrt_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt now fails, installed or not
    with pytest.raises(OptbenchError, match=r"need TensorRT .*import tensorrt failed.*container.*pypi.nvidia.com"):
        detect_target()
    with pytest.raises(OptbenchError, match="import tensorrt failed"):
        load_runtime(RuntimeSpec("tensorrt", "cuda"), _artifact(tmp_path, "trt"), threads=1)
    # a broken install (bindings without their libnvinfer) raises ImportError, not ModuleNotFoundError: the same
    # advice, with the loader's reason
    (tmp_path / "site" / "tensorrt").mkdir(parents=True)
    (tmp_path / "site" / "tensorrt" / "__init__.py").write_text('raise ImportError("libnvinfer.so.10: cannot open")')
    monkeypatch.syspath_prepend(tmp_path / "site")
    monkeypatch.delitem(sys.modules, "tensorrt")
    with pytest.raises(OptbenchError, match=r"\(import tensorrt failed: libnvinfer\.so\.10: cannot open\): run in"):
        import_tensorrt()


def test_the_install_advice_is_the_gpu_image_s_container_or_a_supported_tensorrt() -> None:
    """A container tag or TensorRT major changed in one place and not the other would advise a TensorRT that
    import_tensorrt refuses."""
    dockerfile = (Path(__file__).parents[1] / "docker" / "gpu.Dockerfile").read_text()
    tag = re.search(r"^ARG TRT_TAG=(\S+)$", dockerfile, re.MULTILINE)
    assert tag and f"nvcr.io/nvidia/tensorrt:{tag[1]}-py3" in INSTALL and "docker/ has an image" in INSTALL
    assert f"'tensorrt>={SUPPORTED_MAJOR},<{SUPPORTED_MAJOR + 1}'" in INSTALL


def test_the_target_is_the_tensorrt_version_and_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both key the step's cache and are checked by the runtime: an engine runs only with the TensorRT and GPU it
    was built with."""
    import torch

    from optbench import tensorrt_engine

    gpu = {"gpu": "NVIDIA H200", "compute_capability": "9.0"}
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(tensorrt_engine, "cuda_gpu", lambda: dict(gpu))
    assert detect_target() == {"tensorrt": "10.3.0", **gpu}
    monkeypatch.setattr(tensorrt_engine, "cuda_gpu", lambda: None)
    seen = rf"TensorRT needs a CUDA GPU and torch sees none \(torch {re.escape(torch.__version__)}\): run in NVIDIA"
    with pytest.raises(OptbenchError, match=seen):
        detect_target()


@pytest.mark.parametrize("version", ["11.0.0.1", "8.6.1"])
def test_a_tensorrt_other_than_10_is_refused(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__=version))
    with pytest.raises(OptbenchError, match=rf"TensorRT {version} is installed; .* written for TensorRT 10 .*26.04"):
        import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.16.0.72"))
    assert import_tensorrt().__version__ == "10.16.0.72"


def test_a_calibration_batch_that_fails_is_kept_for_the_build_not_read_as_the_end(tmp_path: Path) -> None:
    """TensorRT's wrapper prints an exception from get_batch and takes it as "no more batches"; the calibrator
    keeps it instead, for build_engine to raise once TensorRT returns."""

    class Base:  # stands in for trt.IInt8MinMaxCalibrator
        def __init__(self) -> None:
            pass

    class BrokenFeed(CalibrationFeed):
        def next_batch(self, names: list[str], dtypes: dict) -> list[np.ndarray] | None:
            raise MemoryError("out of memory copying the batch")

    fake_trt = SimpleNamespace(IInt8MinMaxCalibrator=Base)
    feed = BrokenFeed([{"input_ids": np.zeros((2, 8), dtype=np.int64)}], 8)
    calibrator = trt_step.make_calibrator(fake_trt, "minmax", feed, {"input_ids": np.int64}, tmp_path / "cache")
    assert calibrator.get_batch(["input_ids"]) is None
    assert isinstance(calibrator.error, MemoryError)
    finished = trt_step.make_calibrator(fake_trt, "minmax", CalibrationFeed([], 8), {}, tmp_path / "cache")
    assert finished.get_batch(["input_ids"]) is None and finished.error is None  # the end of the batches


def test_a_calibration_batch_is_on_the_gpu_and_synchronized_before_tensorrt_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_batch gives TensorRT device pointers it reads on its own stream: the copies, in the network's input order
    and types (int32 here, as TensorRT may make of the ONNX model's int64), must have landed (the current stream
    synchronized) and stay alive with the calibrator."""
    import torch

    synced: list[bool] = []
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self: self.clone())  # "the GPU": another buffer
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: SimpleNamespace(synchronize=lambda: synced.append(True)))
    rows = {"attention_mask": np.ones((2, 4), dtype=np.int64), "input_ids": np.arange(8).reshape(2, 4)}
    builder = _CalibratingBuilder([])
    builder.input_dtype = np.int32
    config = TensorRTConfig(precision="int8", batch_sizes=(8,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(builder))
    feed = CalibrationFeed([rows], 4)
    trt_step.build_engine(tmp_path / "model.onnx", config, profiles((8,), (16,), 32), feed, tmp_path / "cache")
    [built] = builder.configs
    on_device = built.int8_calibrator._on_device
    assert synced == [True] and builder.pointers == [[t.data_ptr() for t in on_device]]
    assert all(t.dtype == torch.int32 for t in on_device)
    assert np.array_equal(on_device[0].numpy(), rows["input_ids"])  # the network's first input
    assert built.int8_calibrator.get_batch(["input_ids"]) is None and synced == [True]  # the feed's one batch was given


def test_a_calibration_batch_that_failed_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT takes a get_batch that failed as the end of the batches and builds on, calibrated on fewer batches
    or none: build_engine raises the error the calibrator kept rather than return that engine."""

    class BrokenFeed(CalibrationFeed):
        def next_batch(self, names: list[str], dtypes: dict) -> list[np.ndarray] | None:
            raise MemoryError("out of memory copying the batch")

    feed = BrokenFeed([dict.fromkeys(("input_ids", "attention_mask"), np.zeros((4, 12), dtype=np.int64))], 12)
    config = TensorRTConfig(precision="int8", batch_sizes=(8,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_CalibratingBuilder([])))
    with pytest.raises(OptbenchError, match=r"calibration failed on a batch: MemoryError\('out of memory") as failed:
        trt_step.build_engine(tmp_path / "model.onnx", config, profiles((8,), (16,), 32), feed, tmp_path / "cache")
    assert isinstance(failed.value.__cause__, MemoryError)


@pytest.mark.parametrize(
    ("method", "base"), [("minmax", "IInt8MinMaxCalibrator"), ("entropy", "IInt8EntropyCalibrator2")]
)
def test_the_calibrator_is_tensorrts_class_for_the_method(method: str, base: str, tmp_path: Path) -> None:
    """calibration_method picks TensorRT's calibrator: the class decides how the INT8 scales are chosen."""
    bases = {name: type(name, (), {"__init__": lambda self: None}) for name in trt_step.CALIBRATORS.values()}
    calibrator = trt_step.make_calibrator(SimpleNamespace(**bases), method, CalibrationFeed([], 8), {}, tmp_path)
    assert isinstance(calibrator, bases[base])
    assert not isinstance(calibrator, tuple(b for name, b in bases.items() if name != base))


def test_runtime_refuses_an_engine_for_another_gpu_before_loading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.runtimes import tensorrt as trt_runtime

    built = {"tensorrt": "10.3.0", "gpu": "NVIDIA L4", "compute_capability": "8.9", "precision": "fp16"}
    loaded = []
    fake_trt = SimpleNamespace(Runtime=lambda *args: loaded.append(args), Logger=lambda *args: None)
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(trt_runtime, "detect_target", lambda: {**built, "gpu": "NVIDIA H200"})
    engine = ModelArtifact(tmp_path, "trt", ("fresh", "rotten"), "0" * 64, details=built)
    with pytest.raises(OptbenchError, match=r"gpu 'NVIDIA L4' \(running 'NVIDIA H200'\)"):
        trt_runtime.TensorRTRuntime(engine, precision="fp32")
    assert loaded == []  # refused before a TensorRT runtime was made or the engine read


class _FakeContext:
    """IExecutionContext as TensorRT 10 documents it: set_optimization_profile_async(profile_index, stream_handle)
    answers False, and logs why, when it does not switch; the input shapes set are kept in `shapes`, and the output
    (the logits) has the inputs' batch size."""

    def __init__(self, refused: set[int], strategy: str) -> None:
        self.refused = refused
        self.strategy = strategy  # how it allocates its activation memory
        self.shapes: dict[str, tuple[int, ...]] = {}

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        return profile_index not in self.refused

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, int]:
        return (self.shapes["input_ids"][0], 2)

    def execute_async_v3(self, stream_handle: int) -> bool:
        return True


class _FakeLogger:
    WARNING, INFO, VERBOSE = 2, 3, 4  # TensorRT's severities

    def __init__(self, severity: int) -> None:
        self.severity = severity


class _FakeEngine:
    """The ICudaEngine queries the tensorrt runtime makes: two inputs (int64 unless given) and float32 `outputs`
    (the logits unless given)."""

    def __init__(
        self, profiles: int, refused: set[int], input_dtype: type = np.int64, outputs: tuple[str, ...] = ("logits",)
    ) -> None:
        self.num_optimization_profiles = profiles
        self.names = ("input_ids", "attention_mask", *outputs)
        self.num_io_tensors = len(self.names)
        self.outputs = outputs
        self.refused = refused
        self.input_dtype = input_dtype

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "OUTPUT" if name in self.outputs else "INPUT"

    def get_tensor_dtype(self, name: str) -> type:
        return np.float32 if name in self.outputs else self.input_dtype

    def create_execution_context(self, strategy: str) -> _FakeContext:
        return _FakeContext(self.refused, strategy)


class _FakeProfile:
    """IOptimizationProfile: the (min, opt, max) set for each input, in `shapes`."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:
        self.shapes[input] = (min, opt, max)


class _FakeBuilderConfig:
    """IBuilderConfig's flags as TensorRT 10 documents them: TF32 is on in a new config ("Enabled by default").
    The profiles added go to `profiles` (TensorRT answers -1 for an invalid one, here those in `refused`), the
    calibration profile to `calibration_profile`."""

    def __init__(self, refused: tuple = ()) -> None:
        self.flags = {"TF32"}
        self.profiles: list[_FakeProfile] = []
        self.calibration_profile: _FakeProfile | None = None
        self.int8_calibrator = None
        self.refused = refused

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: str) -> None:
        self.flags.discard(flag)

    def set_memory_pool_limit(self, pool: str, pool_size: int) -> None:
        self.workspace = pool_size

    def add_optimization_profile(self, profile: _FakeProfile) -> int:
        if tuple(profile.shapes.values()) in self.refused:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: _FakeProfile) -> bool:
        self.calibration_profile = profile
        return tuple(profile.shapes.values()) not in self.refused


class _FakeBuilder:
    """trt.Builder: a network of two inputs (the parser's) of `input_dtype` (int64 unless set); the configs it makes
    go to `configs`, and it builds `engine` (None: the build fails)."""

    def __init__(
        self, configs: list[_FakeBuilderConfig], engine: bytes | None = b"engine", refused: tuple = ()
    ) -> None:
        self.configs = configs
        self.engine = engine
        self.refused = refused  # the profiles its configs refuse, each as the (min, opt, max) of every input
        self.logger: _FakeLogger | None = None  # the one trt.Builder was made with
        self.network_flags: int | None = None
        self.input_dtype: type = np.int64  # the network's inputs' type

    def made_with(self, logger: _FakeLogger) -> _FakeBuilder:
        self.logger = logger
        return self

    def create_network(self, flags: int = 0) -> SimpleNamespace:
        self.network_flags = flags
        names = ("input_ids", "attention_mask")
        return SimpleNamespace(num_inputs=2, get_input=lambda i: SimpleNamespace(name=names[i], dtype=self.input_dtype))

    def create_builder_config(self) -> _FakeBuilderConfig:
        self.configs.append(_FakeBuilderConfig(self.refused))
        return self.configs[-1]

    def create_optimization_profile(self) -> _FakeProfile:
        return _FakeProfile()

    def build_serialized_network(self, network: object, config: _FakeBuilderConfig) -> bytes | None:
        return self.engine


def _fake_tensorrt(builder: _FakeBuilder, parse_errors: tuple[str, ...] = ()) -> SimpleNamespace:
    """The tensorrt module as build_engine uses it, building with `builder`; its parser fails with `parse_errors`
    where there are any."""
    parser = SimpleNamespace(
        parse_from_file=lambda model: not parse_errors, num_errors=len(parse_errors), get_error=parse_errors.__getitem__
    )
    return SimpleNamespace(
        Logger=_FakeLogger,
        Builder=builder.made_with,
        OnnxParser=lambda network, logger: parser,
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32"),
        nptype=lambda dtype: dtype,
        **{name: type(name, (), {"__init__": lambda self: None}) for name in trt_step.CALIBRATORS.values()},
    )


class _CalibratingBuilder(_FakeBuilder):
    """A builder that, as TensorRT does while it builds, asks the calibrator for a batch of the network's inputs;
    what get_batch answered goes to `pointers`."""

    def build_serialized_network(self, network: object, config: _FakeBuilderConfig) -> bytes | None:
        assert config.int8_calibrator is not None
        self.pointers = [config.int8_calibrator.get_batch(["input_ids", "attention_mask"])]
        return self.engine


@pytest.mark.parametrize(
    ("precision", "flags"), [("fp32", set()), ("fp16", {"FP16", "TF32"}), ("int8", {"INT8", "FP16", "TF32"})]
)
def test_an_fp32_engine_computes_in_fp32_not_tf32(
    precision: str, flags: set, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT lets FP32 layers round their inputs to TF32's 10-bit mantissa unless the flag is cleared, which an
    engine built and reported as fp32 must do (PyTorch's CUDA matmuls, its reference, run in FP32)."""
    configs: list[_FakeBuilderConfig] = []
    builder = _FakeBuilder(configs)
    config = TensorRTConfig(precision=precision, batch_sizes=(1,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(builder))
    engine = trt_step.build_engine(tmp_path / "model.onnx", config, profiles((1,), (16,), 32), None, tmp_path)
    assert engine == b"engine"
    assert [c.flags for c in configs] == [flags]
    assert builder.network_flags == 0  # not STRONGLY_TYPED (1 << 1), which ignores the FP16 and INT8 flags


def test_the_builder_logs_warnings_not_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's errors point to "its log above": TensorRT's warnings and errors, not its INFO and VERBOSE
    progress lines, which would bury them."""
    builder = _FakeBuilder([])
    config = TensorRTConfig(batch_sizes=(1,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(builder))
    trt_step.build_engine(tmp_path / "model.onnx", config, profiles((1,), (16,), 32), None, tmp_path)
    assert builder.logger is not None and builder.logger.severity == _FakeLogger.WARNING


def test_a_model_tensorrt_cannot_parse_is_refused_with_the_parser_s_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parse_from_file answers False rather than raising: the parser's own errors say which node failed."""
    configs: list[_FakeBuilderConfig] = []
    errors = ("unsupported operator Foo", "bad shape for node 7")
    fake = _fake_tensorrt(_FakeBuilder(configs), parse_errors=errors)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: fake)
    config = TensorRTConfig(batch_sizes=(1,), seq_lens=(16,), max_length=32)
    seen = r"TensorRT cannot parse .*model\.onnx \(unsupported operator Foo; bad shape for node 7\): re-export it"
    with pytest.raises(OptbenchError, match=seen):
        trt_step.build_engine(tmp_path / "model.onnx", config, profiles((1,), (16,), 32), None, tmp_path)
    assert configs == []  # refused before any build was configured


def test_every_input_gets_each_profile_s_range_tuned_for_its_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT tunes its kernels for `opt` and holds min..max: swapped, a profile would be tuned for another shape
    or refused. The workspace is given in bytes."""
    configs: list[_FakeBuilderConfig] = []
    config = TensorRTConfig(batch_sizes=(1, 8), seq_lens=(16, "data"), max_length=32, workspace_mib=512)
    # profiles() tunes each for its max: one tuned below it tells opt from max
    shapes = [*profiles(config.batch_sizes, config.seq_lens, 32), Profile((1, 1), (4, 24), (16, 32), "tuned below")]
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_FakeBuilder(configs)))
    trt_step.build_engine(tmp_path / "model.onnx", config, shapes, None, tmp_path)
    [built] = configs
    assert [p.shapes for p in built.profiles] == [
        dict.fromkeys(("input_ids", "attention_mask"), (p.min, p.opt, p.max)) for p in shapes
    ]
    assert built.workspace == 512 * 2**20 and built.calibration_profile is None and built.int8_calibrator is None


def test_a_profile_tensorrt_refuses_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """add_optimization_profile answers -1 instead of raising: the engine would lack the profile its shape needs."""
    shapes = profiles((8,), (16,), 32)
    refused = (((shapes[1].min, shapes[1].opt, shapes[1].max),) * 2,)  # the accuracy pass's, for both inputs
    config = TensorRTConfig(batch_sizes=(8,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_FakeBuilder([], refused=refused)))
    with pytest.raises(OptbenchError, match=r"TensorRT refused the optimization profile \{'min': \[1, 1\], .*accuracy"):
        trt_step.build_engine(tmp_path / "model.onnx", config, shapes, None, tmp_path)


def test_a_calibrated_engine_calibrates_at_the_feed_s_shape_and_keeps_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The calibration profile is the feed's one shape (min = opt = max), the calibrator takes whole batches of
    the feed's rows, and the cache TensorRT writes lands where the step keeps it, beside the engine."""
    configs: list[_FakeBuilderConfig] = []
    rows = dict.fromkeys(("input_ids", "attention_mask"), np.zeros((4, 12), dtype=np.int64))
    feed = CalibrationFeed([rows, rows], 12)
    config = TensorRTConfig(
        precision="int8", batch_sizes=(8,), seq_lens=(16,), max_length=32, calibration_method="entropy"
    )
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_FakeBuilder(configs)))
    cache = tmp_path / "calibration.cache"
    trt_step.build_engine(tmp_path / "model.onnx", config, profiles((8,), (16,), 32), feed, cache)
    [built] = configs
    assert built.calibration_profile is not None
    assert built.calibration_profile.shapes == dict.fromkeys(("input_ids", "attention_mask"), ((4, 12),) * 3)
    calibrator = built.int8_calibrator
    assert type(calibrator).__mro__[1].__name__ == "IInt8EntropyCalibrator2" and calibrator.get_batch_size() == 4
    calibrator.write_calibration_cache(memoryview(b"scales"))
    assert cache.read_bytes() == b"scales" and calibrator.read_calibration_cache() is None
    refused = (((feed.shape,) * 3,) * 2,)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_FakeBuilder([], refused=refused)))
    with pytest.raises(OptbenchError, match=r"TensorRT refused the calibration profile \(4, 12\)"):
        trt_step.build_engine(tmp_path / "model.onnx", config, profiles((8,), (16,), 32), feed, cache)


def test_an_engine_tensorrt_does_not_build_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Named by its precision without an article to get wrong: it said "could not build a fp16 engine"."""
    config = TensorRTConfig(precision="fp16", batch_sizes=(1,), seq_lens=(16,), max_length=32)
    monkeypatch.setattr(trt_step, "import_tensorrt", lambda: _fake_tensorrt(_FakeBuilder([], engine=None)))
    with pytest.raises(OptbenchError, match=r"TensorRT could not build the fp16 engine from .*: its log above says"):
        trt_step.build_engine(tmp_path / "model.onnx", config, profiles((1,), (16,), 32), None, tmp_path)


def _fake_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shapes: list[Profile], engine: _FakeEngine
) -> object:
    """A TensorRTRuntime of an fp16 engine built with profiles `shapes`, TensorRT (`engine`) and CUDA faked."""
    import torch

    from optbench.runtimes import tensorrt as trt_runtime

    target = {"tensorrt": "10.3.0", "gpu": "NVIDIA H200", "compute_capability": "9.0"}
    fake_trt = SimpleNamespace(
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda blob: engine),
        Logger=_FakeLogger,
        TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
        ExecutionContextAllocationStrategy=SimpleNamespace(ON_PROFILE_CHANGE="ON_PROFILE_CHANGE"),
        nptype=lambda dtype: dtype,
    )
    monkeypatch.setattr(trt_runtime, "import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(trt_runtime, "detect_target", lambda: dict(target))
    monkeypatch.setattr(torch.cuda, "Stream", lambda: SimpleNamespace(cuda_stream=7))
    (tmp_path / "model.engine").write_bytes(b"engine")
    details = {**target, "precision": "fp16", "profiles": [p.to_dict() for p in shapes]}
    return trt_runtime.TensorRTRuntime(
        ModelArtifact(tmp_path, "trt", ("a", "b"), "0" * 64, details=details), precision="fp32"
    )


def test_runtime_refuses_a_profile_tensorrt_did_not_switch_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused switch would leave the context on its first profile: a shape that profile also holds would run,
    and be reported, on kernels tuned for another shape."""
    shapes = profiles((1,), (16,), max_length=32)
    runtime = _fake_runtime(tmp_path, monkeypatch, shapes, _FakeEngine(len(shapes), refused={1}))
    assert runtime._context(0) is runtime._context(0)
    with pytest.raises(OptbenchError, match="TensorRT refused optimization profile 1"):
        runtime._context(1)


def test_runtime_runs_a_batch_on_its_profile_at_its_shape_in_the_engine_s_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict, with TensorRT and CUDA faked: a batch of 8 rows x 20 tokens runs on the context of the profile tuned
    for it (batch 8 x data), with each input's shape set as (rows, tokens) and its tokens cast to the engine's input
    type (int32 here, which TensorRT makes of the ONNX model's int64 inputs)."""
    import torch

    shapes = profiles((1, 8), (16, "data"), max_length=32)
    runtime = _fake_runtime(tmp_path, monkeypatch, shapes, _FakeEngine(len(shapes), set(), input_dtype=np.int32))
    copied: list[np.ndarray] = []  # what predict copies to the GPU

    def from_numpy(host: np.ndarray) -> SimpleNamespace:
        copied.append(host)
        return SimpleNamespace(to=lambda device: torch.from_numpy(host))

    runtime._torch = SimpleNamespace(
        cuda=SimpleNamespace(stream=lambda stream: contextlib.nullcontext()),
        from_numpy=from_numpy,
        empty=lambda shape, dtype, device: torch.zeros(shape, dtype=dtype),
    )
    batch = {name: np.ones((8, 20), dtype=np.int64) for name in ("input_ids", "attention_mask")}
    assert runtime.predict(batch).shape == (8, 2)
    assert shapes[3].purpose == "batch 8 x data" and list(runtime._contexts) == [3]
    assert runtime._contexts[3].shapes == {"input_ids": (8, 20), "attention_mask": (8, 20)}
    assert [a.dtype for a in copied] == [np.int32, np.int32]
    assert runtime.describe(batch)["profile"]["index"] == 3
    assert runtime._contexts[3].strategy == "ON_PROFILE_CHANGE"  # the memory of its own profile, not the largest
    with pytest.raises(OptbenchError, match=r"needs input\(s\) \['attention_mask'\]; the batch has \['input_ids'\]"):
        runtime.predict({"input_ids": batch["input_ids"]})


def test_runtime_refuses_an_engine_whose_profiles_its_manifest_does_not_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime picks a profile by the manifest's list: off by one, every shape would run on another's kernels."""
    shapes = profiles((1,), (16,), max_length=32)
    with pytest.raises(OptbenchError, match=r"has 3 optimization profiles and its manifest lists 2: .*damaged"):
        _fake_runtime(tmp_path, monkeypatch, shapes, _FakeEngine(len(shapes) + 1, set()))


def test_runtime_refuses_an_engine_with_outputs_besides_the_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every output needs a buffer bound before TensorRT runs the engine, and predict binds the logits alone."""
    shapes = profiles((1,), (16,), max_length=32)
    engine = _FakeEngine(len(shapes), set(), outputs=("logits", "hidden_states"))
    with pytest.raises(OptbenchError, match=r"has outputs \['logits', 'hidden_states'\]; .*one output, the logits"):
        _fake_runtime(tmp_path, monkeypatch, shapes, engine)


def test_engines_of_another_precision_are_left_out_when_paired(tmp_path: Path) -> None:
    """A recipe with FP16 and INT8 engines and the runtime at fp16 measures the FP16 engine and leaves the INT8
    one out, instead of failing its jobs; at the default fp32 the runtime takes every engine as built."""
    from optbench import bench
    from optbench.runtimes import declines

    fp16, int8 = (
        ModelArtifact(tmp_path / p, "trt", ("a", "b"), "0" * 64, details={"precision": p}) for p in ("fp16", "int8")
    )
    at_fp16 = RuntimeSpec("tensorrt", "cuda", "fp16")
    assert declines(at_fp16, fp16) is None and declines(RuntimeSpec("tensorrt", "cuda"), int8) is None
    assert "this engine was built at int8" in (declines(at_fp16, int8) or "")
    assert bench._runs(at_fp16, fp16) and not bench._runs(at_fp16, int8)


def test_runtime_refuses_cpu_and_other_formats(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match='set device = "cuda"'):
        load_runtime(RuntimeSpec("tensorrt", "cpu"), _artifact(tmp_path, "trt"), threads=1)
    with pytest.raises(OptbenchError, match="not an ONNX model: end its chain with a tensorrt step"):
        load_runtime(RuntimeSpec("tensorrt", "cuda"), _artifact(tmp_path, "onnx"), threads=1)


def _data(max_length: int = 32) -> LabelledData:
    labels = np.zeros(40, dtype=np.int64)
    train = Split([f"a good film number {i} " + "word " * (i % 7) for i in range(40)], labels)
    test = Split([f"zebra zebra {i}" for i in range(40)], labels)
    return LabelledData(("fresh", "rotten"), train, test, test, source="t", max_length=max_length, fingerprint="f")


def test_calibration_from_a_train_split_smaller_than_calibration_samples_is_a_warning(
    tiny_classifier: Path, caplog
) -> None:
    """The engine is calibrated on the 40 rows there are, in whole batches, and the log says both (the manifest
    has the count)."""
    config = TensorRTConfig(precision="int8", calibration_samples=512, calibration_batch_size=16)
    with caplog.at_level("WARNING", logger="optbench.steps"):
        feed = CalibrationFeed.from_train_split(config, tiny_classifier, _data())
    assert "calibration_samples = 512 is more than the train split's 40 rows: calibration draws all 40" in caplog.text
    assert "the last 8 of the 40 samples drawn are left out" in caplog.text
    assert feed.describe()["samples"] == 32  # whole batches of 16


def test_a_train_split_smaller_than_one_calibration_batch_is_refused(tiny_classifier: Path) -> None:
    """TensorRT calibrates on whole batches only: 40 train rows make none of 64, and the error says what to lower."""
    config = TensorRTConfig(precision="int8", calibration_samples=64, calibration_batch_size=64)
    with pytest.raises(
        OptbenchError, match=r"fewer than calibration_batch_size = 64 samples .*: lower calibration_batch"
    ):
        CalibrationFeed.from_train_split(config, tiny_classifier, _data())


def test_calibration_feeds_whole_train_batches_of_one_shape(tiny_classifier: Path, caplog) -> None:
    from transformers import AutoTokenizer

    config = TensorRTConfig(precision="int8", calibration_samples=36, calibration_batch_size=16, seed=3)
    with caplog.at_level("WARNING", logger="optbench.steps"):
        feed = CalibrationFeed.from_train_split(config, tiny_classifier, _data())
    assert "calibration_batch_size = 16: the last 4 of the 36 samples drawn are left out" in caplog.text
    again = CalibrationFeed.from_train_split(config, tiny_classifier, _data())
    assert len(feed.batches) == 2 and feed.shape == (16, feed.seq_len) and feed.seq_len <= 32
    assert feed.describe()["samples"] == 32 and feed.describe()["split"] == "train"
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    names = ["token_type_ids", "input_ids", "attention_mask"]
    dtypes = dict.fromkeys(names, np.int32)
    for _ in feed.batches:
        arrays, expected = feed.next_batch(names, dtypes), again.next_batch(names, dtypes)
        assert [a.shape for a in arrays] == [feed.shape] * 3 and all(a.dtype == np.int32 for a in arrays)
        assert all(np.array_equal(a, b) for a, b in zip(arrays, expected, strict=True))  # deterministic
        texts = tokenizer.batch_decode(arrays[1], skip_special_tokens=True)
        assert all("good film" in t and "zebra" not in t for t in texts)  # train split only
    assert feed.next_batch(names, dtypes) is None
    reseeded = CalibrationFeed.from_train_split(replace(config, seed=4), tiny_classifier, _data())
    assert not all(
        np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(feed.batches, reseeded.batches, strict=True)
    )


def test_calibration_batches_come_in_the_order_tensorrt_names_its_inputs() -> None:
    rows = {name: np.full((2, 4), i, dtype=np.int64) for i, name in enumerate(("input_ids", "attention_mask", "tt"))}
    feed = CalibrationFeed([rows], 4)
    names = ["tt", "input_ids", "attention_mask"]  # TensorRT's order, not the tokenizer's
    arrays = feed.next_batch(names, dict.fromkeys(names, np.int32))
    assert [int(a[0, 0]) for a in arrays] == [2, 0, 1] and feed.next_batch(names, {}) is None


def _qdq_graph(zero_point_type: int | None, zero_point: int | list[int] = 0, domain: str = "") -> object:
    """A Q/DQ pair whose zero point `zp` is an initializer: a scalar, or one per channel (a list)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = ["x", "scale"] + (["zp"] if zero_point_type is not None else [])
    initializers = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])]
    if zero_point_type is not None:
        values = zero_point if isinstance(zero_point, list) else [zero_point]
        dims = [len(values)] if isinstance(zero_point, list) else []
        initializers.append(helper.make_tensor("zp", zero_point_type, dims, values))
    nodes = [
        helper.make_node("QuantizeLinear", inputs, ["q"], name="q_x"),
        helper.make_node("DequantizeLinear", ["q", *inputs[1:]], ["y"], name="dq_x"),
    ]
    if domain:
        nodes.append(helper.make_node("SkipLayerNormalization", ["y"], ["z"], name="fused", domain=domain))
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializers,
    )
    return onnx.helper.make_model(graph).graph


def test_qdq_models_must_be_symmetric_int8() -> None:
    from onnx import TensorProto

    check_symmetric_int8(_qdq_graph(TensorProto.INT8, 0))
    check_symmetric_int8(_qdq_graph(None))
    with pytest.raises(OptbenchError, match=r'uint8 .*q_x.*activation_type = "int8"'):
        check_symmetric_int8(_qdq_graph(TensorProto.UINT8, 128))
    with pytest.raises(OptbenchError, match=r"non-zero INT8 zero point.*activation_symmetric = true"):
        check_symmetric_int8(_qdq_graph(TensorProto.INT8, 3))
    with pytest.raises(OptbenchError, match=r"INT32 bias.*leave Gemm out of its op_types"):
        check_symmetric_int8(_qdq_graph(TensorProto.INT32, 0))
    with pytest.raises(OptbenchError, match=r"'q_x' quantizes to INT16: this step builds INT8 engines only"):
        check_symmetric_int8(_qdq_graph(TensorProto.INT16, 0))  # zero, but not INT8
    check_symmetric_int8(_qdq_graph(TensorProto.INT8, [0, 0]))  # per channel
    with pytest.raises(OptbenchError, match=r"q_x' has a non-zero INT8 zero point"):
        check_symmetric_int8(_qdq_graph(TensorProto.INT8, [0, 3]))  # one channel asymmetric is one too many
    weight = _qdq_graph(TensorProto.INT8, 3)
    del weight.node[0]  # a weight stored quantized: a DequantizeLinear alone
    with pytest.raises(OptbenchError, match=r"DequantizeLinear 'dq_x' has a non-zero INT8 zero point"):
        check_symmetric_int8(weight)


def test_a_zero_point_input_left_empty_is_zero() -> None:
    """ONNX names an optional input it leaves out "": no zero point, which is 0, not a tensor computed elsewhere."""
    graph = _qdq_graph(None)
    for node in graph.node:
        node.input.append("")
    assert [len(n.input) for n in graph.node] == [3, 3]
    check_symmetric_int8(graph)


def test_zero_points_of_constant_nodes_are_read_and_computed_ones_refused() -> None:
    """An exporter may give a zero point as a Constant node's output rather than an initializer."""
    from onnx import TensorProto, helper

    def from_a_node(zero_point: int, op_type: str) -> object:
        """The Q/DQ pair with its zero point `zp` made by a node: a Constant, or one computing it from a stored one."""
        graph = _qdq_graph(TensorProto.INT8, zero_point)
        stored = graph.initializer.pop()  # zp
        if op_type == "Constant":
            node = helper.make_node("Constant", [], ["zp"], value=stored)
        else:
            stored.name = "stored_zp"
            graph.initializer.append(stored)
            node = helper.make_node(op_type, ["stored_zp"], ["zp"])
        graph.node.insert(0, node)
        return graph

    check_symmetric_int8(from_a_node(0, "Constant"))
    with pytest.raises(OptbenchError, match="non-zero INT8 zero point"):
        check_symmetric_int8(from_a_node(3, "Constant"))
    with pytest.raises(OptbenchError, match=r"'q_x' takes its zero point from a computed tensor"):
        check_symmetric_int8(from_a_node(0, "Identity"))


def _plain_graph() -> object:
    """The Q/DQ pair's graph with one Identity node instead: a graph of other nodes, not QDQ."""
    from onnx import helper

    plain = _qdq_graph(None)
    del plain.node[:]
    plain.node.append(helper.make_node("Identity", ["x"], ["y"]))
    return plain


def test_qdq_is_told_by_the_graph() -> None:
    from onnx import TensorProto

    assert not is_qdq(_plain_graph())
    assert is_qdq(_qdq_graph(TensorProto.INT8))


def test_onnxruntime_only_operators_are_refused() -> None:
    from onnx import helper

    with pytest.raises(OptbenchError, match=r"\['SkipLayerNormalization'\].*fuse = false"):
        check_parsable(_qdq_graph(None, domain="com.microsoft"))
    integer = _plain_graph()
    integer.node.append(helper.make_node("MatMulInteger", ["x", "x"], ["z"]))  # quantize-dynamic's, default domain
    with pytest.raises(OptbenchError, match=r"integer operators \['MatMulInteger'\].*from a quantize-static"):
        check_parsable(integer)
    check_parsable(_plain_graph())


@pytest.mark.parametrize("op_type", ["MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "QAttention"])
def test_each_onnxruntime_integer_operator_is_refused(op_type: str) -> None:
    """quantize-dynamic writes these, some in the default domain: TensorRT's parser would fail on each, on the GPU."""
    from onnx import helper

    graph = _plain_graph()
    graph.node.append(helper.make_node(op_type, ["x", "x"], ["z"]))
    with pytest.raises(OptbenchError, match=rf"integer operators \['{op_type}'\]"):
        check_parsable(graph)


def test_qdq_model_needs_int8_precision(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto

    model = onnx.helper.make_model(_qdq_graph(TensorProto.INT8))
    onnx.save(model, str(tmp_path / "model.onnx"))
    for precision in ("fp16", "fp32"):
        with pytest.raises(OptbenchError, match=rf'Q/DQ .*precision = "{precision}": set precision = "int8"'):
            trt_step.apply(TensorRTConfig(precision=precision), _artifact(tmp_path), _data(), tmp_path / "out")


def _apply_with_fakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: TensorRTConfig, graph: object
) -> tuple[ModelArtifact, dict]:
    """apply on an ONNX model of `graph` with the dataset's max_length 32, TensorRT's build and the train split's
    calibration faked; also what build_engine was given."""
    import onnx

    (tmp_path / "model").mkdir(exist_ok=True)  # a test may put HF files there first
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "model" / "model.onnx"))
    given: dict = {}

    def build_engine(source: Path, config: TensorRTConfig, shapes: list, calibration: object, cache: Path) -> bytes:
        given.update(shapes=shapes, calibration=calibration, cache=cache)
        return b"engine"

    rows = {"input_ids": np.zeros((4, 12), dtype=np.int64)}
    monkeypatch.setattr(trt_step, "build_engine", build_engine)
    monkeypatch.setattr(trt_step, "detect_target", lambda: {"tensorrt": "10.3.0", "gpu": "NVIDIA H200"})
    monkeypatch.setattr(CalibrationFeed, "from_train_split", classmethod(lambda cls, *a: cls([rows], 12)))
    (tmp_path / "out").mkdir()
    engine = trt_step.apply(config, _artifact(tmp_path / "model"), _data(max_length=32), tmp_path / "out")
    return engine, given


def test_a_calibrated_engine_is_built_for_its_shapes_and_its_manifest_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TensorRTConfig(precision="int8", batch_sizes=(4,), seq_lens=(16,), max_length=48)
    engine, given = _apply_with_fakes(tmp_path, monkeypatch, config, _plain_graph())
    assert given["shapes"] == profiles((4,), (16,), 48)  # the step's max_length, above the dataset's 32
    assert given["cache"] == tmp_path / "out" / "calibration.cache" and given["calibration"].shape == (4, 12)
    assert (tmp_path / "out" / "model.engine").read_bytes() == b"engine"
    assert engine.details["quantization"] == "calibrated" and engine.details["gpu"] == "NVIDIA H200"
    assert engine.details["profiles"] == [p.to_dict() for p in profiles((4,), (16,), 48)]
    assert engine.details["calibration"] == {
        "split": "train",
        "samples": 4,
        "batch_size": 4,
        "seq_len": 12,
        "cache": "calibration.cache",
        "calibrator": "IInt8MinMaxCalibrator",
    }


def test_a_qdq_model_is_built_from_its_own_scales_not_calibrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import TensorProto

    config = TensorRTConfig(precision="int8", batch_sizes=(4,), seq_lens=(16,))
    engine, given = _apply_with_fakes(tmp_path, monkeypatch, config, _qdq_graph(TensorProto.INT8))
    assert given["calibration"] is None and given["shapes"] == profiles((4,), (16,), 32)  # the dataset's max_length
    assert engine.details["quantization"] == "explicit (Q/DQ)" and "calibration" not in engine.details


def test_an_fp16_engine_s_artifact_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the runtime and the report read: a trt artifact of the step's label, the tokenizer and config beside the
    engine, and a manifest that names the target, no quantization, the profiles, workspace and build seconds (the
    build's own time, to 0.1 s)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"id2label": {"0": "fresh", "1": "rotten"}}')
    clock = iter([100.0, 112.34])
    monkeypatch.setattr(trt_step, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    config = TensorRTConfig(precision="fp16", batch_sizes=(4,), seq_lens=(16,), workspace_mib=512)
    engine, given = _apply_with_fakes(tmp_path, monkeypatch, config, _plain_graph())
    assert engine.format == "trt" and engine.path == tmp_path / "out" and engine.variant == "baseline+tensorrt-fp16"
    assert (tmp_path / "out" / "config.json").read_text() == (tmp_path / "model" / "config.json").read_text()
    assert given["calibration"] is None
    assert engine.details == {
        "tensorrt": "10.3.0",
        "gpu": "NVIDIA H200",
        "precision": "fp16",
        "quantization": None,
        "profiles": [p.to_dict() for p in profiles((4,), (16,), 32)],
        "build_seconds": 12.3,
        "workspace_mib": 512,
    }


@pytest.mark.parametrize(
    ("config", "graph", "message"),
    [
        (TensorRTConfig(precision="int8"), "fused", r"onnxruntime-only operators \['SkipLayerNormalization'\]"),
        (TensorRTConfig(precision="int8"), "uint8 Q/DQ", r"uint8 \(QuantizeLinear 'q_x'\)"),
        (
            TensorRTConfig(batch_sizes=(4,), seq_lens=(16,), max_length=16),
            "plain",
            "max_length = 16 is below the dataset's max_length = 32",
        ),
    ],
)
def test_a_model_or_length_tensorrt_cannot_take_is_refused_before_the_build(
    config: TensorRTConfig, graph: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's operators and zero points, and an engine too short for the accuracy pass, are checked before
    TensorRT spends minutes building an engine that would fail to parse, mis-quantize or refuse the run's shapes."""
    from onnx import TensorProto

    graphs = {
        "fused": lambda: _qdq_graph(None, domain="com.microsoft"),
        "uint8 Q/DQ": lambda: _qdq_graph(TensorProto.UINT8, 128),
        "plain": _plain_graph,
    }
    with pytest.raises(OptbenchError, match=message):
        _apply_with_fakes(tmp_path, monkeypatch, config, graphs[graph]())
    assert not (tmp_path / "out" / "model.engine").exists()


@needs_gpu
def test_fp16_engine_matches_onnxruntime(tiny_classifier: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from optbench.artifact import content_hash
    from optbench.encoding import batches
    from optbench.steps.onnx import OnnxConfig

    data = _data(max_length=32)
    classifier = ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))
    exported = run_step(OnnxConfig(exporter="torchscript", fuse=False), classifier, data, tmp_path)
    config = TensorRTConfig(precision="fp16", batch_sizes=(1, 8), seq_lens=(16, "data"), max_length=32)
    engine = run_step(config, exported, data, tmp_path)
    assert engine.format == "trt" and engine.variant == "baseline+onnx+tensorrt-fp16"
    assert (engine.path / "model.engine").is_file() and len(engine.details["profiles"]) == 5
    assert engine.details["build_seconds"] > 0 and engine.details["gpu"]
    tokenizer = AutoTokenizer.from_pretrained(engine.path)
    trt_runtime = load_runtime(RuntimeSpec("tensorrt", "cuda"), engine, threads=1)
    ort_runtime = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1)
    for batch_size, seq_len in [(1, 16), (8, "data"), (5, "data"), (64, "data")]:
        texts = (data.test.texts * 2)[:batch_size]
        batch = batches(tokenizer, texts, batch_size=batch_size, seq_len=seq_len, max_length=32)[0]
        np.testing.assert_allclose(trt_runtime.predict(batch), ort_runtime.predict(batch), atol=2e-2)
    described = trt_runtime.describe(batch)
    assert described["precision"] == "fp16" and described["profile"]["purpose"] == "accuracy pass"


@needs_gpu
def test_calibrated_int8_engine_writes_its_cache(tiny_classifier: Path, tmp_path: Path) -> None:
    from optbench.artifact import content_hash
    from optbench.steps.onnx import OnnxConfig

    data = _data(max_length=32)
    classifier = ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))
    exported = run_step(OnnxConfig(exporter="torchscript", fuse=False), classifier, data, tmp_path)
    config = TensorRTConfig(precision="int8", batch_sizes=(4,), seq_lens=(16,), calibration_samples=32)
    engine = run_step(config, exported, data, tmp_path)
    assert engine.details["quantization"] == "calibrated"
    assert engine.details["calibration"]["split"] == "train"
    assert engine.details["calibration"]["calibrator"] == "IInt8MinMaxCalibrator"
    assert (engine.path / "calibration.cache").is_file()
    _runs_like_onnxruntime(engine, exported, data, atol=0.5)


@needs_gpu
def test_an_engine_from_a_symmetric_qdq_model_takes_its_scales(tiny_classifier: Path, tmp_path: Path) -> None:
    from optbench.artifact import content_hash
    from optbench.steps.onnx import OnnxConfig
    from optbench.steps.quantize import StaticQuantizeConfig

    data = _data(max_length=32)
    classifier = ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))
    exported = run_step(OnnxConfig(exporter="torchscript", fuse=False), classifier, data, tmp_path)
    qdq_config = StaticQuantizeConfig(
        calibration_samples=16, activation_type="int8", weight_type="int8", activation_symmetric=True
    )
    qdq = run_step(qdq_config, exported, data, tmp_path)
    config = TensorRTConfig(precision="int8", batch_sizes=(4,), seq_lens=(16,), max_length=32)
    engine = run_step(config, qdq, data, tmp_path)
    assert engine.details["quantization"] == "explicit (Q/DQ)" and "calibration" not in engine.details
    _runs_like_onnxruntime(engine, qdq, data, atol=0.5)


def _runs_like_onnxruntime(engine: ModelArtifact, source: ModelArtifact, data: LabelledData, atol: float) -> None:
    """The engine gives finite logits of the right shape, close to onnxruntime's on the model it was built from."""
    from transformers import AutoTokenizer

    from optbench.encoding import batches

    tokenizer = AutoTokenizer.from_pretrained(engine.path)
    batch = batches(tokenizer, data.test.texts[:4], batch_size=4, seq_len=16, max_length=32)[0]
    logits = load_runtime(RuntimeSpec("tensorrt", "cuda"), engine, threads=1).predict(batch)
    assert logits.shape == (4, 2) and np.isfinite(logits).all()
    np.testing.assert_allclose(
        logits, load_runtime(RuntimeSpec("onnxruntime"), source, threads=1).predict(batch), atol=atol
    )
