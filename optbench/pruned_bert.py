"""BERT-family classifiers whose layers may keep different numbers of attention heads and FFN neurons.

A family's config has one head count (and derives the head size from it) and one FFN width for every layer,
so a structurally pruned model needs a config that records each layer's sizes. Each family prune takes has a
pruned config and classifier here (`PRUNED`: BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT), its own
model type ("optbench-pruned-bert", "optbench-pruned-roberta", ...): the family's own config and classifier
(embeddings, position offsets, classification head) plus `heads_per_layer` and `intermediate_per_layer`,
with each layer's matrices sized as those record. Where a family keeps those matrices is its `Layout`.

This file imports only torch and transformers: the prune step copies it into every pruned checkpoint
(with an `auto_map` in config.json), so the checkpoint loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` where optbench is
not installed, and without `trust_remote_code` in any process that imported this module.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

CODE_FILE = "modeling_pruned_bert.py"  # this file's name inside a pruned checkpoint


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its transformer layers and, in each layer, its attention and FFN matrices (dotted
    paths from a layer unless said otherwise)."""

    holder: str  # the base model's module whose `layer` is the list of layers
    attention: str  # a layer's self-attention module
    heads: str  # that module's head count
    width: str  # that module's heads x head size (what transformers 4's forward reads)
    projections: tuple[str, ...]  # the query, key and value Linears (output: the heads side by side)
    attention_out: str  # the attention output Linear (input: the heads side by side)
    ffn_in: str  # the first FFN Linear (output: the neurons)
    ffn_out: str  # the second FFN Linear (input: the neurons)
    ffn_key: str  # the config's FFN width

    def set_heads(self, layer: nn.Module, count: int) -> None:
        """Record in `layer`'s attention module that it has `count` heads (of its head size)."""
        attention = layer.get_submodule(self.attention)
        setattr(attention, self.heads, count)
        setattr(attention, self.width, count * attention.attention_head_size)


BERT_LAYOUT = Layout(
    "encoder",
    "attention.self",
    "num_attention_heads",
    "all_head_size",
    ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
    "intermediate_size",
)
DISTILBERT_LAYOUT = Layout(
    "transformer",
    "attention",
    "n_heads",
    "dim",
    ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
    "attention.out_lin",
    "ffn.lin1",
    "ffn.lin2",
    "hidden_dim",
)
LAYOUTS = (BERT_LAYOUT, DISTILBERT_LAYOUT)  # every layout optbench edits, in the order they are tried


def set_linear(layer: nn.Module, path: str, linear: nn.Module) -> None:
    """Put `linear` at the dotted `path` of `layer`."""
    parent, _, name = path.rpartition(".")
    setattr(layer.get_submodule(parent), name, linear)


class PrunedConfig:
    """Each layer's head count and FFN width on top of a family's config (`None`: the family-wide values)."""

    heads_per_layer: list[int] | None = None
    intermediate_per_layer: list[int] | None = None


class PrunedClassifier:
    """A family's classifier with each layer's matrices sized as its config records."""

    layout: ClassVar[Layout]

    def __init__(self, config: Any) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        parts = self.layout
        for index, layer in enumerate(getattr(self.base_model, parts.holder).layer):  # type: ignore[attr-defined]
            if config.heads_per_layer is not None:
                heads = config.heads_per_layer[index]
                width = heads * layer.get_submodule(parts.attention).attention_head_size
                for path in parts.projections:
                    _resize(layer, path, out_features=width)
                _resize(layer, parts.attention_out, in_features=width)
                parts.set_heads(layer, heads)
            if config.intermediate_per_layer is not None:
                _resize(layer, parts.ffn_in, out_features=config.intermediate_per_layer[index])
                _resize(layer, parts.ffn_out, in_features=config.intermediate_per_layer[index])


def _resize(layer: nn.Module, path: str, *, in_features: int | None = None, out_features: int | None = None) -> None:
    """Put a new Linear at the dotted `path` of `layer`, of the feature counts given (else the old one's)."""
    old = layer.get_submodule(path)
    set_linear(layer, path, nn.Linear(in_features or old.in_features, out_features or old.out_features))


class PrunedBertConfig(PrunedConfig, BertConfig):
    model_type = "optbench-pruned-bert"


class PrunedBertForSequenceClassification(PrunedClassifier, BertForSequenceClassification):
    config_class = PrunedBertConfig
    layout = BERT_LAYOUT


class PrunedRobertaConfig(PrunedConfig, RobertaConfig):
    model_type = "optbench-pruned-roberta"


class PrunedRobertaForSequenceClassification(PrunedClassifier, RobertaForSequenceClassification):
    config_class = PrunedRobertaConfig
    layout = BERT_LAYOUT


class PrunedXLMRobertaConfig(PrunedConfig, XLMRobertaConfig):
    model_type = "optbench-pruned-xlm-roberta"


class PrunedXLMRobertaForSequenceClassification(PrunedClassifier, XLMRobertaForSequenceClassification):
    config_class = PrunedXLMRobertaConfig
    layout = BERT_LAYOUT


class PrunedElectraConfig(PrunedConfig, ElectraConfig):
    model_type = "optbench-pruned-electra"


class PrunedElectraForSequenceClassification(PrunedClassifier, ElectraForSequenceClassification):
    config_class = PrunedElectraConfig
    layout = BERT_LAYOUT


class PrunedDistilBertConfig(PrunedConfig, DistilBertConfig):
    model_type = "optbench-pruned-distilbert"


class PrunedDistilBertForSequenceClassification(PrunedClassifier, DistilBertForSequenceClassification):
    config_class = PrunedDistilBertConfig
    layout = DISTILBERT_LAYOUT


CLASSIFIERS = (
    PrunedBertForSequenceClassification,
    PrunedRobertaForSequenceClassification,
    PrunedXLMRobertaForSequenceClassification,
    PrunedElectraForSequenceClassification,
    PrunedDistilBertForSequenceClassification,
)
# The pruned classifier of each family's model type; a pruned model's own type maps to its class too.
PRUNED: dict[str, type] = {
    model_type: pruned
    for pruned in CLASSIFIERS
    for model_type in (pruned.__bases__[1].config_class.model_type, pruned.config_class.model_type)
}


def load_classifier(path: Any, **kwargs: Any) -> Any:
    """`AutoModelForSequenceClassification.from_pretrained(path, **kwargs)`, pruned checkpoints included
    (importing this module registers their types). FP32 unless `dtype` says otherwise: transformers 5 keeps
    the dtype a checkpoint was saved in, and a baseline saved in FP16 must still be exported, pruned,
    distilled and measured as FP32 (reduced precision is the runtime's choice)."""
    kwargs.setdefault("dtype", torch.float32)
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


def save_classifier(model: Any, tokenizer: Any, folder: Path) -> None:
    """`save_pretrained` of a classifier and its tokenizer; a pruned one also gets this file and an
    `auto_map`, so that it loads where optbench is not installed."""
    pruned = isinstance(model, PrunedClassifier)
    if pruned:
        module = Path(CODE_FILE).stem
        model.config.auto_map = {
            "AutoConfig": f"{module}.{type(model.config).__name__}",
            "AutoModelForSequenceClassification": f"{module}.{type(model).__name__}",
        }
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if pruned:
        shutil.copyfile(__file__, Path(folder) / CODE_FILE)


for _classifier in CLASSIFIERS:
    AutoConfig.register(_classifier.config_class.model_type, _classifier.config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_classifier.config_class, _classifier, exist_ok=True)
