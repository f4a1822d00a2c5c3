"""Export a Hugging Face classifier to ONNX, fuse its graph for onnxruntime, and check parity.

The exporter choice matters for speed: onnxruntime's BERT fusion finds attention only in some graph
shapes (see FINDINGS). `auto` tries the dynamo exporter first and falls back to the TorchScript
exporter when dynamo fails (a file onnxruntime cannot load included) or its graph leaves attention unfused
in some layer; the manifest records what ran and why.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from optbench.artifact import HF_FILES, ModelArtifact
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.encoding import batches, load_tokenizer
from optbench.errors import OptbenchError
from optbench.formats import check_step_input
from optbench.hf_config import read_hf_config
from optbench.model_inputs import model_input_names
from optbench.onnx_graph import ONNX_FILE, STANDARD_DOMAINS

log = logging.getLogger(__name__)

ATTENTION_OPS = ("Attention", "MultiHeadAttention")
PARITY_BATCH_SIZE = 64
FP16_MAX_ABS_DIFF = 1e-2  # the FP16 file's logits against PyTorch's FP32: weights rounded to 11 bits


# the first onnxruntime whose BERT fusion finds the attention of transformers 5's exports (1.30 fuses none;
# results/FINDINGS.md, session 2026-12-01 rehearsal)
FUSING_ONNXRUNTIME = (1, 31)


@dataclass(frozen=True)
class OnnxConfig:
    """How to export and fuse, and how close the ONNX logits must stay to PyTorch's."""

    name: ClassVar[str] = "onnx"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "onnx"
    # 2: fusion given the heads of a config that names them otherwise (DistilBERT's now fuses attention), no
    # token_type_ids input for a model that takes none, and `auto` going on past a partly fused export
    version: ClassVar[int] = 2
    # export, then fusion: their versions key the step's cache
    libraries: ClassVar[tuple[str, ...]] = (
        "torch",
        "transformers",
        "onnxscript",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
    )
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"
    opset: int = 17
    fuse: bool = True
    precision: Literal["fp32", "fp16"] = "fp32"
    max_abs_diff: float = 1e-3
    min_agreement: float = 0.999
    parity_rows: int | None = None

    def __post_init__(self) -> None:
        if not 14 <= self.opset <= 23:
            raise OptbenchError(f"opset={self.opset} is outside 14..23, the range onnxruntime runs BERT in")
        if self.max_abs_diff <= 0 or not 0 < self.min_agreement <= 1:
            raise OptbenchError(
                f"needs max_abs_diff > 0 and 0 < min_agreement <= 1 (got {self.max_abs_diff}, {self.min_agreement})"
            )
        if self.parity_rows is not None and self.parity_rows < 1:
            raise OptbenchError(f"parity_rows={self.parity_rows}: use 1 or more, or leave it out for the whole split")

    @property
    def output_precision(self) -> str:
        """Its model's precision: a quantize step after it needs FP32 (recipe._check_step_order)."""
        return self.precision

    @property
    def label(self) -> str:
        """The name in the variant: `onnx`, or `onnx-fp16`."""
        return self.name if self.precision == "fp32" else f"{self.name}-{self.precision}"


def apply(config: OnnxConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Export, fuse and check `artifact` (a Hugging Face classifier); the ONNX model goes to `out_dir`."""
    check_step_input(config, artifact)
    read_hf_config(artifact.path)  # a folder that is no checkpoint is a clear error, before transformers loads it
    model = _load_eager(artifact.path)
    layers = model.config.num_hidden_layers
    split = data.test if config.parity_rows is None else data.test.head(config.parity_rows)
    parity_batches = batches(
        load_tokenizer(artifact.path),
        split.texts,
        batch_size=PARITY_BATCH_SIZE,
        seq_len="data",
        max_length=data.max_length,
    )
    reference = _torch_logits(model, parity_batches)
    exporters = ("dynamo", "torchscript") if config.exporter == "auto" else (config.exporter,)
    attempts: list[dict[str, Any]] = []
    for exporter in exporters:
        attempts.append(_export_and_fuse(model, out_dir / f"{exporter}.onnx", exporter, config))
        if "error" not in attempts[-1] and (not config.fuse or attempts[-1]["attention_fused"] >= layers):
            break
        if exporter != exporters[-1]:
            fused = f"Attention fused in {attempts[-1].get('attention_fused')} of {layers} layers"
            log.warning("%s export: %s; trying the next exporter", exporter, attempts[-1].get("error", fused))
    done = [a for a in attempts if "error" not in a]
    if not done:
        reasons = "; ".join(f"{a['exporter']}: {a['error']}" for a in attempts)
        raise OptbenchError(f"ONNX export failed ({reasons}): {_export_advice(config, list(exporters))}")
    chosen = max(done, key=lambda a: a.get("attention_fused", 0))  # the first of those that fused the most
    path = out_dir / ONNX_FILE
    (out_dir / f"{chosen['exporter']}.onnx").rename(path)
    for attempt in done:
        (out_dir / f"{attempt['exporter']}.onnx").unlink(missing_ok=True)
    details: dict[str, Any] = {"exporter": chosen["exporter"], "opset": file_opset(path), "attempts": attempts}
    if details["opset"] != config.opset:  # dynamo builds at 18 and converts down, where it can
        details["opset_requested"] = config.opset
        log.info("ONNX model: opset %d (%s export; %d was asked)", details["opset"], chosen["exporter"], config.opset)
    warnings: list[str] = []
    if config.fuse:
        details["fused_operators"] = chosen["fused_operators"]
        if not chosen["attention_fused"]:
            warnings.append(
                "no Attention was fused: onnxruntime will run attention as separate MatMul/Softmax nodes "
                f"(slower); {_unfused_advice([a['exporter'] for a in attempts])}"
            )
        elif chosen["attention_fused"] < layers:  # ALBERT's shared layer fuses once
            warnings.append(
                f"Attention fused in {chosen['attention_fused']} of {layers} layers: onnxruntime will run the "
                "others as separate MatMul/Softmax nodes (slower)"
            )
        if warnings:
            log.warning("ONNX model: %s", warnings[-1])
    details["parity"] = check_parity(path, parity_batches, reference, config)
    if config.precision == "fp16":  # the FP16 file is checked too, on the CPU provider (it casts where it must)
        details["fp16"] = convert_fp16(path)
        check_onnx(path, "the FP16 conversion", 'keep this model FP32 (precision = "fp32" in the onnx step)')
        fp16_limits = replace(config, max_abs_diff=max(config.max_abs_diff, FP16_MAX_ABS_DIFF))
        details["parity_fp16"] = check_parity(path, parity_batches, reference, fp16_limits)
    details["precision"] = config.precision
    if warnings:
        details["warnings"] = warnings
    copy_hf_files(artifact.path, out_dir)
    return artifact.derive(out_dir, step=config.label, config=config_to_dict(config), format="onnx", details=details)


def _unfused_advice(tried: list[str]) -> str:
    """What to do about an export without fused attention, given the exporters that ran."""
    import onnxruntime

    installed = tuple(int(part) for part in onnxruntime.__version__.split(".")[:2])
    if installed < FUSING_ONNXRUNTIME:
        return (
            f"onnxruntime {onnxruntime.__version__}'s fusion finds no attention in transformers 5's exports; "
            f"{'.'.join(map(str, FUSING_ONNXRUNTIME))} and later do: pip install -U onnxruntime (or onnxruntime-gpu)"
        )
    if len(tried) > 1:  # `auto`: the other exporter was tried too
        return (
            f"{' and '.join(tried)} were both tried (the manifest's attempts say how each went), so no exporter "
            "setting fuses this model's attention"
        )
    other = "torchscript" if tried[0] == "dynamo" else "dynamo"
    return f'try exporter = "{other}" (or "auto", which tries both and keeps the better fused)'


def _export_advice(config: OnnxConfig, tried: list[str]) -> str:
    """What to do when every exporter tried failed, given those tried: the same settings fail the same way."""
    options = [f'exporter = "{other}"' for other in ("dynamo", "torchscript") if other not in tried]
    if "dynamo" in tried and config.opset < 18:
        options.append("opset = 18 (the dynamo exporter builds at 18 and converting down can break the graph)")
    tail = (
        "check that the model runs in transformers; one that does and fails every export is a model type "
        "optbench's onnx step does not support: leave the step out for it"
    )
    return f"try {' or '.join(options)} in the onnx step; if that fails too, {tail}" if options else tail


def copy_hf_files(source: Path, out_dir: Path) -> None:
    """The tokenizer and config.json travel with an ONNX model: they hold its vocabulary and labels."""
    for name in HF_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out_dir / name)


def _export_and_fuse(model: Any, path: Path, exporter: str, config: OnnxConfig) -> dict[str, Any]:
    """One export attempt (and its fusion); failures come back as an `error` entry, not an exception."""
    attempt: dict[str, Any] = {"exporter": exporter}
    started = time.perf_counter()
    try:
        export(model, path, exporter=exporter, opset=config.opset)
        attempt["export_seconds"] = round(time.perf_counter() - started, 1)
        if config.fuse:  # onnxruntime's optimizer can fail on one exporter's graph: then try the next exporter
            attempt["fused_operators"] = fuse(path, model.config)
            attempt["attention_fused"] = sum(attempt["fused_operators"].get(op, 0) for op in ATTENTION_OPS)
        check_loads(path)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        attempt["error"] = f"{type(exc).__name__}: {first_line}"[:300]
        path.unlink(missing_ok=True)
    return attempt


def export(model: Any, path: Path, *, exporter: str, opset: int) -> None:
    """torch.onnx.export with dynamic batch and sequence axes on the inputs the model takes and the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        """The classifier with one output, `logits`, and its inputs in a fixed order (no token_type_ids
        for a model that takes none, DistilBERT)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **types).logits

    names = model_input_names(model)
    sample = {name: torch.ones(2, 16, dtype=torch.long) for name in names}
    if "token_type_ids" in sample:
        sample["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    wrapped = LogitsOnly().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; failures still raise
        if exporter == "dynamo":
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                wrapped,
                (),
                str(path),
                kwargs=sample,
                input_names=list(names),
                output_names=["logits"],
                dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        else:
            torch.onnx.export(
                wrapped,
                tuple(sample.values()),
                str(path),
                input_names=list(names),
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )


def fuse(path: Path, model_config: Any) -> dict[str, int]:
    """onnxruntime's BERT fusion (attention, skip-layer-norm, GELU, embedding layer-norm), in place.

    `model_config` is the model's transformers config: its attribute names are the same across the family
    (DistilBERT's config.json says n_heads and dim, and without them the fusion finds no attention).
    Returns the count of each fused operator that appears at least once.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads = int(getattr(model_config, "num_attention_heads", 0))
    hidden = int(getattr(model_config, "hidden_size", 0))
    optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    if getattr(model_config, "heads_per_layer", None) and heads:
        set_attention_heads(optimized.model, head_size=hidden // heads)
    optimized.save_model_to_file(str(path))
    return {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}


def set_attention_heads(model: Any, *, head_size: int) -> None:
    """Give each fused Attention node the head count its weights hold (width / 3 / head size).

    The fusion stamps every Attention node with the model-wide head count; in a pruned model, where
    layers keep different numbers of heads of the original size, that splits a layer's attention into
    heads of the wrong size, silently (measured with onnxruntime 1.32). An Attention whose weight is not an
    initializer is refused: its head count cannot be read.
    """
    import onnx

    weights = {t.name: t for t in model.graph.initializer}
    separate = [n.name for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    if separate:  # Q, K and V come from separate MatMuls: no one weight to read the head count from
        raise OptbenchError(
            f"the fusion made MultiHeadAttention nodes ({separate[:2]}) in a model whose layers keep different "
            "head counts, which they would all take as the model-wide one: export with another exporter"
        )
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    computed = [n for n in attention if n.input[1] not in weights]
    if computed:  # no stored width to read: it would keep the model-wide count
        raise OptbenchError(
            f"the fused Attention node {computed[0].name!r} takes its weight from {computed[0].input[1]!r}, a "
            "computed tensor, so its head count cannot be read, and the model-wide one would split a pruned layer "
            "wrong: export with another exporter, or set fuse = false in the onnx step"
        )
    for node in attention:
        heads = weights[node.input[1]].dims[1] // 3 // head_size
        for attribute in node.attribute:
            if attribute.name == "num_heads":
                attribute.CopyFrom(onnx.helper.make_attribute("num_heads", int(heads)))


def file_opset(path: Path) -> int:
    """The default-domain opset the ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS)


def check_loads(path: Path) -> None:
    """Refuse an export onnxruntime cannot load. An exporter can write a file that breaks the ONNX spec, the same
    way on every run: torch 2.13's dynamo exporter, converting RoFormer's graph down from opset 18 to 17, kept
    Split's opset-18 attribute `num_outputs`. onnxruntime checks every node against its operators when it loads
    a model, ONNX's own and the fused ones it adds."""
    reason = onnxruntime_refusal(path)
    if reason:
        raise OptbenchError(f"onnxruntime cannot load the file ({reason})")


def onnxruntime_refusal(path: Path) -> str | None:
    """Why onnxruntime's CPU provider will not load the ONNX file at `path`, or None when it loads it."""
    from optbench.runtimes.onnxruntime import inference_session
    from optbench.runtimes.onnxruntime_options import PROVIDERS

    try:
        inference_session(path, [PROVIDERS["cpu"]])
    except Exception as exc:  # onnxruntime raises its own InvalidGraph/Fail/NotImplemented types
        return str(exc).strip().split("failed:", 1)[-1].strip()
    return None


def check_onnx(path: Path, made_by: str, instead: str) -> None:
    """Refuse a file `made_by` a tool just wrote that is not a valid ONNX model, or that onnxruntime will not load
    (a type mismatch passes onnx's checker), naming the tool and what to do `instead`: the same settings write the
    same file again, so deleting it and running the step again is no fix."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        raise OptbenchError(
            f"{path}, which {made_by} just wrote, is not a valid ONNX model ({str(exc).splitlines()[0]}): {instead}"
        ) from exc
    reason = onnxruntime_refusal(path)
    if reason:
        raise OptbenchError(f"onnxruntime cannot load {path}, which {made_by} just wrote ({reason}): {instead}")


def check_parity(
    path: Path, parity_batches: list[dict[str, np.ndarray]], reference: np.ndarray, config: OnnxConfig
) -> dict[str, Any]:
    """Max absolute logit difference and argmax agreement of the ONNX model (onnxruntime, CPU)
    against PyTorch on the same batches; beyond the configured tolerance the step fails."""
    from optbench.runtimes.onnxruntime import open_session

    session = open_session(path, providers=["CPUExecutionProvider"], threads=None)
    names = {i.name for i in session.get_inputs()}
    logits = np.concatenate(
        [session.run(["logits"], {k: v for k, v in b.items() if k in names})[0] for b in parity_batches]
    )
    max_diff = float(np.abs(logits - reference).max())
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    result = {"rows": len(logits), "max_abs_diff": max_diff, "agreement": agreement}
    log.info("ONNX parity on %d rows: max |logit diff| %.2e, argmax agreement %.4f", len(logits), max_diff, agreement)
    if not max_diff <= config.max_abs_diff or agreement < config.min_agreement:  # NaN logits fail too
        raise OptbenchError(
            f"ONNX parity failed: max |logit diff| {max_diff:.3g} (limit {config.max_abs_diff:g}), "
            f"argmax agreement {agreement:.4f} (limit {config.min_agreement:g}); raise the limits in the onnx "
            "step only if the difference is expected (e.g. reduced precision)"
        )
    return result


def convert_fp16(path: Path) -> dict[str, Any]:
    """Convert weights and compute to FP16 for GPU execution providers (inputs and logits stay as they are)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(path)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(path))
    return {"keep_io_types": True}


def _load_eager(path: Path) -> Any:
    """The classifier with eager attention: the graph shape onnxruntime's attention fusion recognizes."""
    from optbench.pruned_bert import load_classifier

    return load_classifier(path, attn_implementation="eager").eval()


def _torch_logits(model: Any, parity_batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    import torch

    names = model_input_names(model)
    with torch.inference_mode():
        return np.concatenate(
            [model(**{k: torch.from_numpy(b[k]) for k in names}).logits.numpy() for b in parity_batches]
        )
