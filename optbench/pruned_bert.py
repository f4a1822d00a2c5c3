"""A BERT classifier whose layers may keep different numbers of attention heads and FFN neurons.

BertConfig has one head count (and derives the head size from it) and one FFN width for every layer,
so a structurally pruned BERT needs a config that records each layer's sizes. `PrunedBertConfig` does,
and `PrunedBertForSequenceClassification` builds a BERT with exactly those matrix shapes.

This file imports only torch and transformers: the prune step copies it into every pruned checkpoint
(with an `auto_map` in config.json), so the checkpoint loads with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)` where optbench is
not installed, and without `trust_remote_code` in any process that imported this module.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

MODEL_TYPE = "optbench-pruned-bert"
CODE_FILE = "modeling_pruned_bert.py"  # this file's name inside a pruned checkpoint


class PrunedBertConfig(BertConfig):
    """A BertConfig plus each layer's head count and FFN width (`None`: the BERT-wide values)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        heads_per_layer: list[int] | None = None,
        intermediate_per_layer: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.heads_per_layer = heads_per_layer
        self.intermediate_per_layer = intermediate_per_layer


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification with each layer's matrices sized as its config records."""

    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        for index, layer in enumerate(self.bert.encoder.layer):
            if config.heads_per_layer is not None:
                attention = layer.attention.self
                width = config.heads_per_layer[index] * attention.attention_head_size
                attention.query, attention.key, attention.value = (nn.Linear(hidden, width) for _ in range(3))
                attention.num_attention_heads, attention.all_head_size = config.heads_per_layer[index], width
                layer.attention.output.dense = nn.Linear(width, hidden)
            if config.intermediate_per_layer is not None:
                layer.intermediate.dense = nn.Linear(hidden, config.intermediate_per_layer[index])
                layer.output.dense = nn.Linear(config.intermediate_per_layer[index], hidden)


def load_classifier(path: Any, **kwargs: Any) -> Any:
    """`AutoModelForSequenceClassification.from_pretrained(path, **kwargs)`, pruned checkpoints included
    (importing this module registers their type). FP32 unless `dtype` says otherwise: transformers 5 keeps
    the dtype a checkpoint was saved in, and a baseline saved in FP16 must still be exported, pruned,
    distilled and measured as FP32 (reduced precision is the runtime's choice)."""
    kwargs.setdefault("dtype", torch.float32)
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


def save_classifier(model: Any, tokenizer: Any, folder: Path) -> None:
    """`save_pretrained` of a classifier and its tokenizer; a pruned one also gets this file and an
    `auto_map`, so that it loads where optbench is not installed."""
    if isinstance(model.config, PrunedBertConfig):
        module = Path(CODE_FILE).stem
        model.config.auto_map = {
            "AutoConfig": f"{module}.PrunedBertConfig",
            "AutoModelForSequenceClassification": f"{module}.PrunedBertForSequenceClassification",
        }
        shutil.copyfile(__file__, folder / CODE_FILE)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


AutoConfig.register(MODEL_TYPE, PrunedBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification, exist_ok=True)
