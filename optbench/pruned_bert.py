"""A BERT classifier whose layers may keep different numbers of attention heads and FFN neurons.

BertConfig has one head count (and derives the head size from it) and one FFN width for every layer,
so a structurally pruned BERT needs a config that records each layer's sizes. `PrunedBertConfig` does,
and `PrunedBertForSequenceClassification` builds a BERT with exactly those matrix shapes, so a pruned
checkpoint loads with `AutoModelForSequenceClassification.from_pretrained` in any process that has
imported this module (optbench's runtimes and steps do).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from optbench.surgery import keep_ffn_neurons, keep_heads, layer_shapes

MODEL_TYPE = "optbench-pruned-bert"


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
    """BertForSequenceClassification with each layer shrunk to the sizes its config records."""

    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        for index, layer in enumerate(self.bert.encoder.layer):
            if config.heads_per_layer is not None:
                keep_heads(layer, list(range(config.heads_per_layer[index])))
            if config.intermediate_per_layer is not None:
                keep_ffn_neurons(layer, list(range(config.intermediate_per_layer[index])))


def load_classifier(path: Any, **kwargs: Any) -> Any:
    """`AutoModelForSequenceClassification.from_pretrained(path, **kwargs)`, pruned checkpoints included
    (importing this module registers their type)."""
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


def pruned_config(model: Any) -> PrunedBertConfig:
    """The PrunedBertConfig that describes `model` (a BERT classifier, pruned or not) as it is now."""
    values = model.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    return PrunedBertConfig(**{**values, **layer_shapes(model)})


AutoConfig.register(MODEL_TYPE, PrunedBertConfig)
AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification)
