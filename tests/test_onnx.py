"""The onnx step (export, fusion, parity) and the onnxruntime runtime, on a tiny random BERT."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import _save_tiny_onnx, _write_fp16_weights_only

from optbench.artifact import ModelArtifact, content_hash
from optbench.data import DatasetConfig, load_dataset
from optbench.encoding import batches
from optbench.errors import OptbenchError
from optbench.onnx_graph import custom_operators
from optbench.runtimes import RuntimeSpec, load_runtime
from optbench.runtimes import onnxruntime as ort_runtime
from optbench.steps import onnx as onnx_step
from optbench.steps.cache import run_step
from optbench.steps.onnx import OnnxConfig


@pytest.fixture(scope="module")
def data(reviews_csv: Path):
    return load_dataset(DatasetConfig(source=str(reviews_csv), group_column="movie", max_length=32))


@pytest.fixture(scope="module")
def classifier(tiny_classifier: Path) -> ModelArtifact:
    return ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))


@pytest.fixture(scope="module")
def exported(classifier: ModelArtifact, data, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    return run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path_factory.mktemp("cache"))


def test_export_fuses_attention_and_records_it(exported: ModelArtifact) -> None:
    assert exported.format == "onnx" and exported.variant == "baseline+onnx"
    details = exported.details
    assert details["exporter"] == "torchscript"
    assert [sorted(a) for a in details["attempts"]] == [
        ["attention_fused", "export_seconds", "exporter", "fused_operators"]
    ]  # what ran and how long it took, for the manifest's reader
    assert details["attempts"][0]["export_seconds"] >= 0
    fused = details["fused_operators"]
    assert fused.get("Attention") == 2, fused  # one per layer of the tiny model
    assert fused.get("SkipLayerNormalization", 0) >= 2
    assert all(n > 0 for n in fused.values()), fused  # operators the fusion made, not every one it looks for
    assert details["opset"] == 17 and "opset_requested" not in details  # TorchScript writes the opset asked
    assert details["parity"]["agreement"] == 1.0 and details["parity"]["max_abs_diff"] < 1e-3
    assert "warnings" not in details
    assert (exported.path / "model.onnx").is_file() and (exported.path / "tokenizer.json").is_file()
    assert [p.name for p in exported.path.glob("*.onnx")] == ["model.onnx"]
    import onnx

    logits = onnx.load(str(exported.path / "model.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert logits[0].dim_param == "batch"  # any batch size, not the export's sample batch of 2


def test_onnxruntime_matches_torch_on_the_test_split(exported: ModelArtifact, classifier: ModelArtifact, data) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    batch = batches(tokenizer, data.test.texts[:16], batch_size=16, seq_len="data", max_length=32)[0]
    ort = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1)
    torch_runtime = load_runtime(RuntimeSpec("torch"), classifier, threads=1)
    np.testing.assert_allclose(ort.predict(batch), torch_runtime.predict(batch), atol=1e-4)
    described = ort.describe(batch)
    assert described["providers"] == ["CPUExecutionProvider"]
    assert described["graph_optimization_level"] == "all" and described["intra_op_threads"] == 1
    assert described["nodes_per_provider"].get("CPUExecutionProvider", 0) > 0
    assert set(described["nodes_per_provider"]) == {"CPUExecutionProvider"}
    import onnxruntime

    applied = ort.session.get_session_options()  # what the session runs with, not what was recorded
    assert (applied.intra_op_num_threads, applied.inter_op_num_threads) == (1, 1)
    assert applied.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize(
    ("level", "applied"),
    [("disable", "ORT_DISABLE_ALL"), ("basic", "ORT_ENABLE_BASIC"), ("extended", "ORT_ENABLE_EXTENDED")],
)
def test_the_session_runs_the_optimization_level_its_label_names(level: str, applied: str, tmp_path: Path) -> None:
    """A row labelled opt-basic is measured at basic, not at another level the label does not name."""
    import onnxruntime

    spec = RuntimeSpec("onnxruntime", options={"graph_optimization_level": level})
    runtime = load_runtime(spec, _save_tiny_onnx(tmp_path / "plain"), threads=1)
    assert spec.label == f"onnxruntime-cpu-fp32-opt-{level}"
    expected = getattr(onnxruntime.GraphOptimizationLevel, applied)
    assert runtime.session.get_session_options().graph_optimization_level == expected
    batch = {"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)}
    assert runtime.describe(batch)["graph_optimization_level"] == level  # and the report says so


def test_the_session_runs_the_threads_it_was_given_intra_op(tmp_path: Path) -> None:
    """A job's threads are onnxruntime's intra-op threads, one inter-op thread: swapped, a run asked for 2 threads
    would run 1 op at a time on 1 thread (at 1 thread both read 1, so 2 tells them apart)."""
    import onnxruntime

    runtime = load_runtime(RuntimeSpec("onnxruntime"), _save_tiny_onnx(tmp_path / "plain"), threads=2)
    applied = runtime.session.get_session_options()
    assert (applied.intra_op_num_threads, applied.inter_op_num_threads) == (2, 1)
    # one node at a time; the session's options do not read the mode back, so it is read where it is handed over
    handed = ort_runtime._session_options(2, "all", None)
    assert handed.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL


def test_onnxruntime_predict_feeds_the_session_the_model_s_inputs_alone(tmp_path: Path) -> None:
    """A batch may hold arrays the model does not take (onnxruntime refuses an input the graph does not name)."""
    runtime = load_runtime(RuntimeSpec("onnxruntime"), _save_tiny_onnx(tmp_path / "plain"), threads=1)
    batch = {"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)}
    expected = runtime.predict(batch)
    np.testing.assert_array_equal(runtime.predict({**batch, "token_type_ids": np.zeros((1, 3), np.int64)}), expected)


def test_a_session_opens_and_runs_without_onnxruntime_s_log_lines(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """onnxruntime logs its graph transforms and allocations to stderr below its error level: in a job's output
    (and the failed job's reason, read from it) they would bury optbench's own lines."""
    runtime = load_runtime(RuntimeSpec("onnxruntime"), _save_tiny_onnx(tmp_path / "plain"), threads=1)
    runtime.predict({"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)})
    assert capfd.readouterr() == ("", "")


def test_dynamo_export_is_tried_first_and_recorded(classifier: ModelArtifact, data, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    attempts = result.details["attempts"]
    assert attempts[0]["exporter"] == "dynamo"
    assert result.details["exporter"] in ("dynamo", "torchscript")
    if result.details["exporter"] == "torchscript":  # dynamo failed or fused no attention: say which
        assert "error" in attempts[0] or attempts[0]["attention_fused"] == 0
    assert result.details["fused_operators"].get("Attention", 0) > 0


def test_an_unfused_auto_export_keeps_dynamo_and_records_the_opset_in_the_file(
    classifier: ModelArtifact, data, tmp_path: Path
) -> None:
    """The path the TensorRT and quantize-static recipes take: `auto` with fuse = false keeps the first
    export that works (dynamo), whose opset may be above the one asked for."""
    import onnx

    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    result = run_step(OnnxConfig(fuse=False), classifier, data, tmp_path)
    assert result.details["exporter"] == "dynamo" and result.details["parity"]["agreement"] == 1.0
    # no onnxruntime operators, which TensorRT cannot parse, and the weights inside the one file (not in a
    # dynamo.onnx.data beside it, named after a file that is gone)
    assert custom_operators(onnx.load(str(result.path / "model.onnx")).graph) == []
    assert [p.name for p in result.path.iterdir() if "onnx" in p.name] == ["model.onnx"]
    declared = {o.domain: o.version for o in onnx.load(str(result.path / "model.onnx")).opset_import}
    assert result.details["opset"] == declared.get("", declared.get("ai.onnx"))  # what the file holds
    if result.details["opset"] != 17:
        assert result.details["opset_requested"] == 17


def test_no_fused_attention_is_reported_loudly(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(onnx_step, "fuse", lambda path, hf_config: {"SkipLayerNormalization": 4})
    result = run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path)
    assert "no Attention was fused" in result.details["warnings"][0]
    assert 'try exporter = "dynamo"' in result.details["warnings"][0]
    assert "no Attention was fused" in caplog.text


def test_no_fused_attention_on_an_onnxruntime_too_old_to_fuse_advises_the_upgrade(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """onnxruntime 1.30's fusion finds no attention in transformers 5's exports from either exporter, so the
    exporter advice would send the user round in circles."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.30.0")
    monkeypatch.setattr(onnx_step, "fuse", lambda path, hf_config: {"SkipLayerNormalization": 4})
    warning = run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path).details["warnings"][0]
    assert "onnxruntime 1.30.0's fusion finds no attention" in warning and "pip install -U onnxruntime" in warning
    assert "try exporter" not in warning


def _every_attempt_exports_with_torchscript(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto`'s "dynamo" attempt exports with TorchScript too (seconds faster), named as dynamo's: for tests of
    what `auto` does with each attempt's file, not of the exporters (the dynamo tests above run the real one)."""
    real_export = onnx_step.export
    monkeypatch.setattr(
        onnx_step, "export", lambda model, path, **kw: real_export(model, path, **kw | {"exporter": "torchscript"})
    )


def test_no_fused_attention_after_auto_does_not_advise_the_exporter_it_tried(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    _every_attempt_exports_with_torchscript(monkeypatch)  # neither fuses attention
    monkeypatch.setattr(onnx_step, "fuse", lambda path, model_config: {"SkipLayerNormalization": 4})
    with caplog.at_level(logging.WARNING, logger=onnx_step.__name__):
        result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    # after the last exporter there is no next one to try: the log says so of dynamo's attempt alone
    fallbacks = [r.getMessage() for r in caplog.records if "trying the next exporter" in r.getMessage()]
    assert fallbacks == ["dynamo export: Attention fused in 0 of 2 layers; trying the next exporter"]
    warning = result.details["warnings"][0]
    assert "no Attention was fused" in warning and "dynamo and torchscript were both tried" in warning
    assert "try" not in warning.split("both tried")[1]
    assert result.details["exporter"] == "dynamo"  # a tie keeps the first tried, not the last


def test_attention_fused_in_some_layers_only_is_a_warning(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(onnx_step, "fuse", lambda path, model_config: {"Attention": 1})
    result = run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path)
    assert "Attention fused in 1 of 2 layers" in result.details["warnings"][0]


def test_auto_goes_on_to_the_next_exporter_when_attention_fuses_in_some_layers_only(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    real_fuse = onnx_step.fuse

    def fuse(path: Path, model_config) -> dict:  # type: ignore[no-untyped-def]
        return {"Attention": 1} if path.name.startswith("dynamo") else real_fuse(path, model_config)

    _every_attempt_exports_with_torchscript(monkeypatch)  # the "dynamo" one fuses one layer of two
    monkeypatch.setattr(onnx_step, "fuse", fuse)
    result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    assert [a["attention_fused"] for a in result.details["attempts"]] == [1, 2]
    assert result.details["exporter"] == "torchscript" and "warnings" not in result.details
    assert result.details["fused_operators"] == result.details["attempts"][1]["fused_operators"]  # the kept file's


def _export_invalid_as_dynamo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "dynamo" export writes what torch 2.13's dynamo exporter wrote for RoFormer at opset 17: a Split with
    opset 18's `num_outputs`, which onnxruntime refuses on every run; the TorchScript export is the real one."""
    import onnx
    from onnx import TensorProto, helper

    real_export = onnx_step.export

    def export(model, path: Path, *, exporter: str, opset: int) -> None:  # type: ignore[no-untyped-def]
        if exporter != "dynamo":
            return real_export(model, path, exporter=exporter, opset=opset)
        split = helper.make_node("Split", ["x"], ["a", "b"], num_outputs=2)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "ab"]
        graph = helper.make_graph([split], "split", [x], outputs)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))

    monkeypatch.setattr(onnx_step, "export", export)


def test_onnxruntime_counts_each_node_its_providers_ran_once(tmp_path: Path) -> None:
    """The profile's kernel events, one per node run (its fence and session events are not nodes): the tiny graph
    unoptimized runs its three nodes (Cast, ReduceMean, MatMul)."""
    spec = RuntimeSpec("onnxruntime", options={"graph_optimization_level": "disable"})
    runtime = load_runtime(spec, _save_tiny_onnx(tmp_path / "plain"), threads=1)
    batch = {"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((2, 3), np.int64)}
    assert runtime.describe(batch)["nodes_per_provider"] == {"CPUExecutionProvider": 3}


def test_nodes_per_provider_counts_kernel_events_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime's profile holds, besides each node's kernel event, fence events of the same node (which name no
    provider) and session events: a profile written as onnxruntime writes one, read through a faked session opened
    as the measured one."""
    runtime = load_runtime(RuntimeSpec("onnxruntime"), _save_tiny_onnx(tmp_path / "plain"), threads=1)
    profile = tmp_path / "profile.json"
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "MatMul_fence_before", "args": {"op_name": "MatMul"}},
        {
            "cat": "Node",
            "name": "MatMul_kernel_time",
            "args": {"op_name": "MatMul", "provider": "CUDAExecutionProvider"},
        },
        {"cat": "Node", "name": "MatMul_fence_after", "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "Cast_kernel_time", "args": {"op_name": "Cast", "provider": "CPUExecutionProvider"}},
        {"cat": "Node", "name": "Cast_kernel_time", "args": {"op_name": "Cast", "provider": "CPUExecutionProvider"}},
    ]
    profile.write_text(json.dumps(events))
    session = SimpleNamespace(
        run=lambda names, feed: [np.zeros((1, 2), np.float32)], end_profiling=lambda: str(profile)
    )
    opened: list[dict] = []
    monkeypatch.setattr(ort_runtime, "open_session", lambda path, **kwargs: opened.append(kwargs) or session)
    batch = {"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 3), np.int64)}
    assert runtime.nodes_per_provider(batch) == {"CUDAExecutionProvider": 1, "CPUExecutionProvider": 1}
    # the profiled session is opened as the measured one: its providers, threads and level
    assert [(o["providers"], o["threads"], o["level"]) for o in opened] == [(["CPUExecutionProvider"], 1, "all")]


def test_onnxruntime_gives_float32_logits_from_a_model_whose_output_is_not(tmp_path: Path) -> None:
    """A model from elsewhere (a peer's, a user's) may give FP16 logits: the accuracy and parity figures are
    computed, and the logits stored, in FP32 as every other runtime's."""
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path / "fp16-logits"
    model = onnx.load(str(_save_tiny_onnx(tmp_path / "plain").path / "model.onnx"))
    model.graph.node[-1].output[0] = "logits32"
    model.graph.node.append(helper.make_node("Cast", ["logits32"], ["logits"], to=TensorProto.FLOAT16))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"))
    runtime = load_runtime(RuntimeSpec("onnxruntime"), ModelArtifact(folder, "onnx", ("a", "b"), "0" * 64), threads=1)
    logits = runtime.predict({"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)})
    assert logits.dtype == np.float32 and logits.tolist() == [[1.0, -1.0]] * 2


def test_a_batch_the_cpu_provider_refuses_is_not_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session on the CPU provider tells a GPU provider's failure from the batch's; the CPU provider's own
    failure is the batch's, and its error is onnxruntime's, without a second session (a large model's load again)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    from optbench.runtimes import onnxruntime as ort_runtime

    runtime = load_runtime(RuntimeSpec("onnxruntime"), _save_tiny_onnx(tmp_path / "plain"), threads=1)
    opened = []
    monkeypatch.setattr(ort_runtime, "inference_session", lambda *args: opened.append(args))
    with pytest.raises(InvalidArgument):  # int32 tokens where the graph takes int64
        runtime.predict({"input_ids": np.ones((2, 3), np.int32), "attention_mask": np.ones((2, 3), np.int32)})
    assert opened == []


def test_no_cpu_session_prints_onnxruntime_s_fallback_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """onnxruntime opens a session again on the CPU provider, even from the CPU provider alone, when it raises a
    RuntimeError while it opens, printing "EP Error ..." on stdout: the export's check and the load's check of the
    CPU provider printed it into optbench's output before their own error."""
    import onnxruntime

    from optbench.runtimes.onnxruntime import open_session

    def fails(session, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        session._fallback_providers = ["CPUExecutionProvider"]  # as onnxruntime's own sets them, before it fails
        raise RuntimeError("a check inside onnxruntime")

    path = _save_tiny_onnx(tmp_path / "model").path / "model.onnx"
    monkeypatch.setattr(onnxruntime.InferenceSession, "_create_inference_session", fails)
    assert onnx_step.onnxruntime_refusal(path) == "a check inside onnxruntime"
    with pytest.raises(OptbenchError, match=r"cannot load .* \(a check inside onnxruntime\): the file is damaged"):
        open_session(path, providers=[("CUDAExecutionProvider", {})], threads=1)  # then the CPU provider's reason
    assert capsys.readouterr().out == ""


def test_auto_goes_on_past_an_export_onnxruntime_cannot_load(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """Kept, the dynamo file failed the step, whose message said to re-run it: it fails the same way each time."""
    _export_invalid_as_dynamo(monkeypatch)
    result = run_step(OnnxConfig(fuse=False), classifier, data, tmp_path)
    assert result.details["exporter"] == "torchscript" and result.details["parity"]["agreement"] == 1.0
    error = result.details["attempts"][0]["error"]
    assert error.startswith("OptbenchError: onnxruntime cannot load the file (") and "num_outputs" in error
    assert [p.name for p in result.path.glob("*.onnx")] == ["model.onnx"]  # the refused file is not kept beside it


def test_an_export_onnxruntime_cannot_load_names_the_settings_to_try(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    _export_invalid_as_dynamo(monkeypatch)
    with pytest.raises(OptbenchError) as raised:
        run_step(OnnxConfig(exporter="dynamo", fuse=False), classifier, data, tmp_path)
    message = str(raised.value)
    assert message.startswith("ONNX export failed (dynamo: OptbenchError: onnxruntime cannot load the file (")
    assert "num_outputs" in message and "re-run" not in message
    assert message.endswith(
        'try exporter = "torchscript" or opset = 18 (the dynamo exporter builds at 18 and converting down can break '
        "the graph) in the onnx step; if that fails too, check that the model runs in transformers; one that does "
        "and fails every export is a model type optbench's onnx step does not support: leave the step out for it"
    )
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_stops_the_step(classifier: ModelArtifact, data, tmp_path: Path, monkeypatch) -> None:
    real = onnx_step._torch_logits
    monkeypatch.setattr(onnx_step, "_torch_logits", lambda model, b: real(model, b) + np.array([0.0, 0.5]))
    with pytest.raises(OptbenchError, match=r"ONNX parity failed: max \|logit diff\| 0\.5"):
        run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_onnx_file_is_a_clear_error(exported: ModelArtifact, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(exported.path, broken)
    (broken / "model.onnx").write_bytes(b"this is not a protobuf")
    artifact = ModelArtifact(broken, "onnx", exported.label_names, "x", details=exported.details)
    with pytest.raises(OptbenchError, match=r"onnxruntime cannot load .*model\.onnx") as raised:
        load_runtime(RuntimeSpec("onnxruntime"), artifact, threads=1)
    # not "delete it and re-run the onnx step": the folder goes (the step cache refuses one whose files changed), and
    # its step may be a quantize or peer step
    assert str(raised.value).endswith(f"; delete its folder {broken} and run the recipe again, which makes it anew")
    with pytest.raises(OptbenchError, match=r"which the FP16 conversion just wrote, is not a valid ONNX model.*: keep"):
        onnx_step.check_onnx(broken / "model.onnx", "the FP16 conversion", "keep this model FP32")


def test_an_fp16_file_onnxruntime_refuses_names_the_conversion(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """onnx's checker passed the file and the parity check's load then called it damaged, to be deleted from the
    cache and exported again: the conversion writes the same file again."""

    def convert_fp16(path: Path) -> dict:
        _write_fp16_weights_only(path)
        return {"keep_io_types": True}

    monkeypatch.setattr(onnx_step, "convert_fp16", convert_fp16)
    with pytest.raises(OptbenchError) as raised:
        run_step(OnnxConfig(exporter="torchscript", precision="fp16"), classifier, data, tmp_path)
    message = str(raised.value)
    assert "onnxruntime cannot load" in message and "which the FP16 conversion just wrote" in message
    assert "Type Error" in message and "delete" not in message
    assert message.endswith('keep this model FP32 (precision = "fp32" in the onnx step)')
    assert list(tmp_path.iterdir()) == []


def test_runtime_and_artifact_must_fit(exported: ModelArtifact, classifier: ModelArtifact) -> None:
    with pytest.raises(OptbenchError, match="runtime onnxruntime takes an ONNX model, not a Hugging Face checkpoint"):
        load_runtime(RuntimeSpec("onnxruntime"), classifier, threads=1)
    with pytest.raises(OptbenchError, match="cannot run this fp32 ONNX model"):
        load_runtime(RuntimeSpec("onnxruntime", "cuda", "fp16"), exported, threads=1)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(OptbenchError, match="CUDAExecutionProvider is not in this onnxruntime build"):
            load_runtime(RuntimeSpec("onnxruntime", "cuda"), exported, threads=1)
    with pytest.raises(OptbenchError, match="does not fit device"):
        load_runtime(RuntimeSpec("onnxruntime", "cpu", options={"provider": "cuda"}), exported, threads=1)
    with pytest.raises(OptbenchError, match="graph_optimization_level 'max' is unknown"):
        load_runtime(RuntimeSpec("onnxruntime", options={"graph_optimization_level": "max"}), exported, threads=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": 9}, "opset=9"),
        ({"max_abs_diff": 0}, "max_abs_diff"),
        ({"min_agreement": 1.5}, "min_agreement"),
        ({"min_agreement": 0}, "min_agreement"),  # no agreement asked would check no prediction
        ({"parity_rows": 0}, "parity_rows"),
    ],
)
def test_bad_onnx_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        OnnxConfig(**kwargs)


def test_fp16_variant_is_named_apart() -> None:
    assert OnnxConfig(precision="fp16").label == "onnx-fp16" and OnnxConfig().label == "onnx"


def test_fp16_conversion_keeps_inputs_and_logits_in_their_types(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    limits: list[float] = []  # the max |logit diff| each parity check allows
    real_check = onnx_step.check_parity
    monkeypatch.setattr(
        onnx_step, "check_parity", lambda *args: limits.append(args[-1].max_abs_diff) or real_check(*args)
    )
    result = run_step(OnnxConfig(exporter="torchscript", precision="fp16"), classifier, data, tmp_path)
    assert limits == [1e-3, 1e-2]  # the FP32 file's, then the FP16 one's: the README's limits
    assert result.variant == "baseline+onnx-fp16" and result.details["precision"] == "fp16"
    assert result.details["fp16"] == {"keep_io_types": True}  # how it was converted, in the manifest
    assert result.details["parity"]["agreement"] == 1.0  # checked in FP32, before the conversion
    fp16 = result.details["parity_fp16"]  # and the FP16 file after it, within its looser limit
    assert fp16["agreement"] >= 0.999 and 0 <= fp16["max_abs_diff"] <= 1e-2
    graph = onnx.load(str(result.path / "model.onnx")).graph
    weights = [init.data_type for init in graph.initializer if len(init.dims) == 2]
    assert weights and all(t == onnx.TensorProto.FLOAT16 for t in weights)
    assert {i.type.tensor_type.elem_type for i in graph.input} == {onnx.TensorProto.INT64}
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    with pytest.raises(OptbenchError, match="at fp32 cannot run this fp16 ONNX model"):
        load_runtime(RuntimeSpec("onnxruntime"), result, threads=1)


def test_a_graph_that_cannot_be_read_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing file (or a folder in its place), a damaged one, one the disk fails to give back, and one this user
    may not read: the last is someone else's model, whose fix is access, not deleting their folder."""
    import onnx

    from optbench.onnx_graph import load_graph

    path = tmp_path / "model.onnx"
    with pytest.raises(OptbenchError) as raised:
        load_graph(path)
    remake = f"delete its folder {tmp_path} and run the recipe again, which makes it anew"
    assert str(raised.value) == f"{path} does not exist: the artifact has no ONNX model; {remake}"
    (tmp_path / "folder" / "model.onnx").mkdir(parents=True)
    with pytest.raises(OptbenchError, match="does not exist: the artifact has no ONNX model"):
        load_graph(tmp_path / "folder" / "model.onnx")
    path.write_bytes(b"\x0a\xff damaged")
    with pytest.raises(OptbenchError, match=r"model\.onnx .*the file is damaged; delete its folder .* run the recipe"):
        load_graph(path)
    for error in (OSError(5, "Input/output error"), PermissionError(13, "Permission denied")):

        def load(*args: object, error: OSError = error, **kwargs: object) -> None:
            raise error

        monkeypatch.setattr(onnx, "load", load)
        with pytest.raises(OptbenchError) as raised:
            load_graph(path)
        assert str(raised.value) == (
            f"cannot read the ONNX model {path} ([Errno 5] Input/output error): the file is damaged; {remake}"
            if error.errno == 5
            else f"cannot read {path} (Permission denied): give this user read access to it, or use a copy it can"
        )


def test_a_graph_is_read_without_its_external_weights(tmp_path: Path) -> None:
    """The checks read the graph's structure only: a large model's weights, stored beside it, stay on disk."""
    import onnx
    from onnx import numpy_helper

    from optbench.onnx_graph import load_graph

    model = onnx.load(str(_save_tiny_onnx(tmp_path / "plain").path / "model.onnx"))
    weight = model.graph.initializer[0]  # as raw bytes, which onnx stores outside the file
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight), weight.name))
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True, location="weights", size_threshold=0)
    graph = load_graph(tmp_path / "model.onnx")
    assert [w.data_location for w in graph.initializer] == [onnx.TensorProto.EXTERNAL]


def test_a_checkpoint_saved_in_fp16_is_exported_as_fp32(classifier: ModelArtifact, data, tmp_path: Path) -> None:
    import onnx
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    half = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(classifier.path).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(classifier.path).save_pretrained(half)
    saved = ModelArtifact(half, "hf", classifier.label_names, content_hash(half))
    result = run_step(OnnxConfig(exporter="torchscript", fuse=False), saved, data, tmp_path / "cache")
    graph = onnx.load(str(result.path / "model.onnx")).graph
    weights = [init.data_type for init in graph.initializer if len(init.dims) == 2]
    assert weights and all(t == onnx.TensorProto.FLOAT for t in weights)
    assert result.details["parity"]["agreement"] == 1.0


def test_a_fusion_that_fails_on_one_exporter_falls_back_to_the_next(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_fuse = onnx_step.fuse

    def fuse(path: Path, hf_config: dict) -> dict:
        if path.name.startswith("dynamo"):
            raise RuntimeError("the optimizer met a node it does not know\n  File optimizer.py, line 1")
        return real_fuse(path, hf_config)

    _every_attempt_exports_with_torchscript(monkeypatch)
    monkeypatch.setattr(onnx_step, "fuse", fuse)
    with caplog.at_level(logging.WARNING, logger=onnx_step.__name__):
        result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    assert result.details["exporter"] == "torchscript"
    # the error's first line, which says what went wrong, not the last (a traceback's tail, in onnxruntime's)
    assert result.details["attempts"][0]["error"] == "RuntimeError: the optimizer met a node it does not know"
    # the fallback is said as it happens, once: the exporter that failed and why, not the one that worked
    fallbacks = [r.getMessage() for r in caplog.records if "trying the next exporter" in r.getMessage()]
    assert fallbacks == [
        "dynamo export: RuntimeError: the optimizer met a node it does not know; trying the next exporter"
    ]


def test_nan_logits_fail_parity(exported: ModelArtifact, data) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    parity_batches = batches(tokenizer, data.test.texts[:4], batch_size=4, seq_len="data", max_length=32)
    logits = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(parity_batches[0])
    strictest = OnnxConfig(min_agreement=1.0)  # every argmax the same: a limit the model itself meets
    assert onnx_step.check_parity(exported.path / "model.onnx", parity_batches, logits, strictest)["agreement"] == 1
    reference = logits.copy()
    reference[0, logits[0].argmax()] = np.nan  # numpy's argmax picks the NaN: every argmax still agrees
    with pytest.raises(OptbenchError, match=r"ONNX parity failed: max \|logit diff\| nan"):
        onnx_step.check_parity(exported.path / "model.onnx", parity_batches, reference, OnnxConfig())


def test_uneven_heads_refuse_a_multi_head_attention_fusion() -> None:
    """MultiHeadAttention takes Q, K and V from separate MatMuls, so no weight says a layer's head count:
    the fusion's model-wide count would silently split a pruned layer wrong. The export attempt fails instead
    (and `auto` tries the next exporter)."""
    from onnx import TensorProto, helper

    from optbench.steps.onnx import set_attention_heads

    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="mha0", domain="com.microsoft")
    x = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8])
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])])
    with pytest.raises(OptbenchError, match=r"MultiHeadAttention nodes \(\['mha0'\]\).*export with another exporter"):
        set_attention_heads(helper.make_model(graph), head_size=4)


def test_uneven_heads_refuse_an_attention_whose_weight_is_computed() -> None:
    """An Attention whose QKV weight comes from a node, not an initializer, has no stored width to read its head
    count from: left alone it would keep the model-wide count and split a pruned layer wrong, so it is refused.
    The readable one beside it gets its own count."""
    from onnx import TensorProto, helper

    from optbench.steps.onnx import set_attention_heads

    weight = helper.make_tensor("qkv", TensorProto.FLOAT, [8, 24], [0.0] * 8 * 24)  # 24 = 3 x 2 heads x 4
    fused = {"domain": "com.microsoft", "num_heads": 4}  # the fusion's model-wide count
    nodes = [
        helper.make_node("Attention", ["x", "qkv"], ["h"], name="stored", **fused),
        helper.make_node("Identity", ["qkv"], ["qkv_computed"], name="copy"),
        helper.make_node("Attention", ["h", "qkv_computed"], ["y"], name="computed", **fused),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    graph = helper.make_graph(
        nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], initializer=[weight]
    )
    model = helper.make_model(graph)
    with pytest.raises(OptbenchError, match=r"Attention node 'computed' takes its weight from 'qkv_computed'.*fuse"):
        set_attention_heads(model, head_size=4)
    model.graph.node.pop()  # without it, the stored weight's width says 2 heads
    set_attention_heads(model, head_size=4)
    assert [a.i for a in model.graph.node[0].attribute if a.name == "num_heads"] == [2]


def test_an_export_carries_every_tokenizer_kind_over(tmp_path: Path) -> None:
    # a RoBERTa checkpoint saved without tokenizer.json: its vocabulary is vocab.json + merges.txt
    from optbench.steps.onnx import copy_hf_files

    source, out = tmp_path / "roberta", tmp_path / "onnx"
    source.mkdir(), out.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "README.md"):
        (source / name).write_text("{}")
    copy_hf_files(source, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "merges.txt", "tokenizer_config.json", "vocab.json"]


def test_an_export_of_a_bertweet_or_phobert_checkpoint_keeps_a_tokenizer_that_loads(tmp_path: Path) -> None:
    """BERTweet and PhoBERT are RoBERTa classifiers whose tokenizer (PhobertTokenizer, no tokenizer.json) reads
    vocab.txt and its merges in bpe.codes: without bpe.codes, the ONNX model's tokenizer did not load."""
    from optbench.encoding import load_tokenizer
    from optbench.steps.onnx import copy_hf_files

    source, out = tmp_path / "phobert", tmp_path / "onnx"
    source.mkdir(), out.mkdir()
    (source / "vocab.txt").write_text("h@@ 1\nello 1\nworld 1\nhello 1\n")
    (source / "bpe.codes").write_text("#version: 0.2\nh e\nl l\n")
    (source / "tokenizer_config.json").write_text('{"tokenizer_class": "PhobertTokenizer"}')
    (source / "config.json").write_text('{"model_type": "roberta"}')
    copy_hf_files(source, out)
    assert load_tokenizer(out)("hello world")["input_ids"] == load_tokenizer(source)("hello world")["input_ids"]


@pytest.mark.parametrize("opset", [14, 23])
def test_the_opsets_at_either_end_of_the_range_are_taken(opset: int) -> None:
    assert OnnxConfig(opset=opset).opset == opset


def test_parity_rows_limits_the_rows_checked(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[list[str]] = []  # the texts the parity batches are made of
    real_batches = onnx_step.batches
    monkeypatch.setattr(
        onnx_step, "batches", lambda tok, texts, **kw: checked.append(texts) or real_batches(tok, texts, **kw)
    )
    result = run_step(OnnxConfig(exporter="torchscript", fuse=False, parity_rows=5), classifier, data, tmp_path)
    assert result.details["parity"]["rows"] == 5
    assert checked == [data.test.texts[:5]]  # the first rows of the test split, as the README says


def test_an_opset_other_than_the_one_asked_is_recorded_beside_it(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dynamo exporter builds at 18 and converts down where it can: the manifest says what the file declares and,
    apart, what was asked (torch 2.13 converts this model to 17, so the real exporter never takes this path here)."""
    monkeypatch.setattr(onnx_step, "file_opset", lambda path: 18)
    result = run_step(OnnxConfig(exporter="torchscript", fuse=False, parity_rows=4), classifier, data, tmp_path)
    assert (result.details["opset"], result.details["opset_requested"]) == (18, 17)


def test_auto_stops_at_the_first_export_that_fuses_every_layer(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """Going on past it would export again for nothing, and list an attempt that decided nothing."""
    _every_attempt_exports_with_torchscript(monkeypatch)  # the "dynamo" one fuses both layers
    result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    assert [a["exporter"] for a in result.details["attempts"]] == ["dynamo"]
    assert result.details["exporter"] == "dynamo"


def test_auto_keeps_the_export_that_fused_the_most_and_only_its_file(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """The later exporter is no better for being later: dynamo's partly fused file beats an unfused one."""

    def fuse(path: Path, model_config) -> dict:  # type: ignore[no-untyped-def]
        return {"Attention": 1} if path.name.startswith("dynamo") else {"SkipLayerNormalization": 4}

    _every_attempt_exports_with_torchscript(monkeypatch)
    monkeypatch.setattr(onnx_step, "fuse", fuse)
    result = run_step(OnnxConfig(exporter="auto"), classifier, data, tmp_path)
    assert [a["attention_fused"] for a in result.details["attempts"]] == [1, 0]
    assert result.details["exporter"] == "dynamo"
    assert result.details["fused_operators"] == {"Attention": 1}  # the kept file's, not the last tried
    assert "Attention fused in 1 of 2 layers" in result.details["warnings"][0]
    assert [p.name for p in result.path.glob("*.onnx")] == ["model.onnx"]


def test_multi_head_attention_counts_as_fused_attention(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """The fusion makes MultiHeadAttention where Q, K and V stay separate MatMuls: attention fused all the same."""
    monkeypatch.setattr(onnx_step, "fuse", lambda path, model_config: {"MultiHeadAttention": 2})
    result = run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path)
    assert result.details["attempts"][0]["attention_fused"] == 2 and "warnings" not in result.details


def test_no_fused_attention_on_the_first_onnxruntime_that_fuses_advises_the_exporter(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    """onnxruntime 1.31 fuses transformers 5's exports: telling its user to upgrade to 1.31 is no advice."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "1.31.0")
    monkeypatch.setattr(onnx_step, "fuse", lambda path, hf_config: {"SkipLayerNormalization": 4})
    warning = run_step(OnnxConfig(exporter="torchscript"), classifier, data, tmp_path).details["warnings"][0]
    assert 'try exporter = "dynamo"' in warning and "pip install" not in warning


def test_no_fused_attention_from_dynamo_advises_torchscript(
    classifier: ModelArtifact, data, tmp_path: Path, monkeypatch
) -> None:
    _every_attempt_exports_with_torchscript(monkeypatch)
    monkeypatch.setattr(onnx_step, "fuse", lambda path, hf_config: {"SkipLayerNormalization": 4})
    warning = run_step(OnnxConfig(exporter="dynamo"), classifier, data, tmp_path).details["warnings"][0]
    assert 'try exporter = "torchscript" (or "auto"' in warning


@pytest.mark.parametrize(
    ("opset", "tried", "advice"),
    [
        (18, ["dynamo"], 'try exporter = "torchscript" in the onnx step;'),  # already at 18
        (17, ["torchscript"], 'try exporter = "dynamo" in the onnx step;'),  # TorchScript exports at 17 as asked
        (18, ["dynamo", "torchscript"], "check that the model runs in transformers;"),  # nothing left to try
    ],
)
def test_a_failed_export_is_not_told_to_try_the_opset_that_would_change_nothing(
    opset: int, tried: list[str], advice: str
) -> None:
    assert onnx_step._export_advice(OnnxConfig(opset=opset), tried).startswith(advice)


def test_a_wrong_argmax_fails_parity_within_the_logit_limit(exported: ModelArtifact, data) -> None:
    """The release gate's other half: logits close enough by the loose limit, but a prediction that flipped."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    parity_batches = batches(tokenizer, data.test.texts[:4], batch_size=4, seq_len="data", max_length=32)
    reference = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(parity_batches[0])
    reference[0] = reference[0, ::-1]  # one row of four predicts the other label
    loose = OnnxConfig(max_abs_diff=100.0)
    with pytest.raises(OptbenchError, match=r"argmax agreement 0\.7500 \(limit 0\.999\)"):
        onnx_step.check_parity(exported.path / "model.onnx", parity_batches, reference, loose)


def test_a_logit_difference_at_the_limit_passes_parity(exported: ModelArtifact, data) -> None:
    """`max_abs_diff` is the largest difference allowed: past it the step fails, at it the step passes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    parity_batches = batches(tokenizer, data.test.texts[:4], batch_size=4, seq_len="data", max_length=32)
    reference = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(parity_batches[0])
    reference[0] += 0.25  # both logits of one row: its argmax stays
    path = exported.path / "model.onnx"
    limit = onnx_step.check_parity(path, parity_batches, reference, OnnxConfig(max_abs_diff=1.0))["max_abs_diff"]
    assert limit > 0.2
    assert (
        onnx_step.check_parity(path, parity_batches, reference, OnnxConfig(max_abs_diff=limit))["max_abs_diff"] == limit
    )
    with pytest.raises(OptbenchError, match="ONNX parity failed"):
        onnx_step.check_parity(path, parity_batches, reference, OnnxConfig(max_abs_diff=float(np.nextafter(limit, 0))))


def test_the_file_opset_is_the_standard_domains_whatever_comes_first(tmp_path: Path) -> None:
    """The manifest's opset is ONNX's own, not that of a custom domain listed before it (onnxruntime's fused ones)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(tmp_path / "m.onnx"))
    assert onnx_step.file_opset(tmp_path / "m.onnx") == 17


def test_custom_operators_are_named_in_order_and_ai_onnx_is_standard() -> None:
    """The TensorRT provider's refusal names them: in set order the message would change from run to run; and ONNX's
    domain spelled out ("ai.onnx") is ONNX's own, which TensorRT parses."""
    from onnx import helper

    nodes = [
        helper.make_node("SkipLayerNormalization", [], [], domain="com.microsoft"),
        helper.make_node("Attention", [], [], domain="com.microsoft"),
        helper.make_node("MatMul", [], [], domain="ai.onnx"),
        helper.make_node("Gelu", [], [], domain="com.microsoft"),
        helper.make_node("Attention", [], [], domain="com.microsoft"),  # one per layer: named once
    ]
    assert custom_operators(helper.make_graph(nodes, "g", [], [])) == ["Attention", "Gelu", "SkipLayerNormalization"]


def test_the_default_logit_limit_is_the_readme_s(exported: ModelArtifact, data) -> None:
    """The README promises a step that fails past a logit difference of 1e-3 unless told otherwise."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    parity_batches = batches(tokenizer, data.test.texts[:4], batch_size=4, seq_len="data", max_length=32)
    logits = load_runtime(RuntimeSpec("onnxruntime"), exported, threads=1).predict(parity_batches[0])
    path = exported.path / "model.onnx"
    assert onnx_step.check_parity(path, parity_batches, logits + 5e-4, OnnxConfig())["agreement"] == 1.0
    with pytest.raises(OptbenchError, match=r"max \|logit diff\| 0\.002.* \(limit 0\.001\)"):
        onnx_step.check_parity(path, parity_batches, logits + 2e-3, OnnxConfig())


def test_a_torchscript_export_declares_the_opset_asked(classifier: ModelArtifact, tmp_path: Path) -> None:
    """TorchScript writes the opset the step names (the manifest's opset_requested is dynamo's alone)."""
    path = tmp_path / "m.onnx"
    onnx_step.export(onnx_step._load_eager(classifier.path), path, exporter="torchscript", opset=14)
    assert onnx_step.file_opset(path) == 14


def test_uneven_heads_alone_refuse_a_multi_head_attention_fusion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model-wide head count is right for a model whose layers all keep it: its MultiHeadAttention fusion is
    kept (refused, `auto` would fall back for nothing and a one-exporter step would fail)."""
    from onnx import TensorProto, helper
    from onnxruntime.transformers import optimizer

    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="mha0", domain="com.microsoft")
    x = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8])
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])])
    fused = SimpleNamespace(
        model=helper.make_model(graph),
        save_model_to_file=lambda path: None,
        get_fused_operator_statistics=lambda: {"MultiHeadAttention": 2, "Attention": 0},
    )
    monkeypatch.setattr(optimizer, "optimize_model", lambda *args, **kwargs: fused)
    even = SimpleNamespace(num_attention_heads=2, hidden_size=8)
    assert onnx_step.fuse(tmp_path / "m.onnx", even) == {"MultiHeadAttention": 2}
    uneven = SimpleNamespace(num_attention_heads=2, hidden_size=8, heads_per_layer=[2, 1])
    with pytest.raises(OptbenchError, match="MultiHeadAttention nodes"):
        onnx_step.fuse(tmp_path / "m.onnx", uneven)


def test_a_converted_file_the_disk_fails_to_give_back_names_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx's checker raises OSError (and ValueError) besides its own error: those are the tool's file too."""
    import onnx

    def check_model(path: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(onnx.checker, "check_model", check_model)
    with pytest.raises(OptbenchError, match=r"which the FP16 conversion just wrote, is not a valid .*: keep it FP32"):
        onnx_step.check_onnx(tmp_path / "model.onnx", "the FP16 conversion", "keep it FP32")


def test_a_folder_that_is_no_checkpoint_is_refused_before_transformers_loads_it(data, tmp_path: Path) -> None:
    """transformers' own error ("Unrecognized model ... model_type") does not say the folder lacks a config.json."""
    folder = tmp_path / "no-config"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    artifact = ModelArtifact(folder, "hf", ("fresh", "rotten"), content_hash(folder))
    with pytest.raises(OptbenchError, match=r"has no readable config\.json"):
        onnx_step.apply(OnnxConfig(exporter="torchscript"), artifact, data, tmp_path / "out")
