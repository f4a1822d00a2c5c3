"""Structured pruning: remove the least important attention heads and FFN neurons from the weights,
then recover with a short fine-tune that distills from the unpruned model.

Takes BERT, RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT classifiers (`optbench.pruned_bert.PRUNED`).
Scores come from `optbench.importance` on train-split rows; the pruned model is saved as a checkpoint of its
family's pruned type (`optbench-pruned-bert`, `optbench-pruned-roberta`, ...: the family's config plus each
layer's head count and FFN width), which loads with `from_pretrained`, exports to ONNX and runs on every
runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.encoding import load_tokenizer
from optbench.errors import OptbenchError
from optbench.formats import check_step_input
from optbench.hf_config import config_key
from optbench.importance import check_removes_some, gradient_importance, keep_plan, preflight_scores
from optbench.steps.distill import LogitDistillation, teacher_logits
from optbench.surgery import encoder_layers, keep_ffn_neurons, keep_heads, layer_shapes
from optbench.training import TrainingConfig, accuracy, encode_rows, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneConfig(TrainingConfig, LogitDistillation):
    """How much to remove and how to recover.

    `heads` / `ffn`: the fraction of all attention heads / FFN neurons to remove, in [0, 1), rounded to whole
    units halves up (`optbench.importance.units_to_remove`); one that removes none is refused. `scope`:
    "global" ranks units across layers (layers may end uneven), "layer" removes the fraction from
    each. Every layer keeps at least its most important head and neuron. `importance_rows`: train rows
    the scores are measured on. Recovery trains for `epochs` (0 skips it) on `distill_weight` x T^2 x KL
    to the unpruned model's logits plus `label_weight` x cross-entropy.
    """

    name: ClassVar[str] = "prune"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "hf"
    may_skip_training: ClassVar[bool] = True
    # 2: the checkpoint carries its model code (loads without optbench); 3: a half unit is removed (halves round up)
    step_version: ClassVar[int] = 3
    heads: float = 0.0
    ffn: float = 0.0
    scope: Literal["global", "layer"] = "global"
    ffn_importance: Literal["gradient", "magnitude"] = "gradient"
    importance_rows: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("heads", "ffn"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise OptbenchError(f"{key} = {value}: give the fraction to remove, in [0, 1)")
        if self.heads == 0 and self.ffn == 0:
            raise OptbenchError("heads and ffn are both 0: set the fraction of heads and/or FFN neurons to remove")
        if self.importance_rows < 1:
            raise OptbenchError(f"importance_rows = {self.importance_rows}: use 1 or more")
        self.check_logit_terms()
        if self.epochs > 0 and self.distill_weight == 0 and self.label_weight == 0:
            raise OptbenchError(
                "distill_weight and label_weight are both 0, so recovery would train on no loss (only "
                "weight decay would move the weights): give one a weight, or set epochs = 0 to skip recovery"
            )

    def preflight(self, model: dict[str, Any] | None) -> dict[str, Any] | None:
        """Refuse an input model of a type prune does not take, and `heads` or `ffn` that would remove none of its
        units where it states their counts (`stated_sizes`), from its config.json (None: not known before the steps
        before this one run); the config.json of what it makes, its family's pruned type without the per-layer
        sizes, known once it runs (see `optbench.preflight.check_step_inputs`)."""
        if model is None or not isinstance(model.get("model_type"), str):
            return None
        made = pruned_type(model["model_type"])
        sizes = stated_sizes(model)
        if sizes is not None:
            self.check_removes_some(*(preflight_scores(n) for n in sizes))
        return {k: v for k, v in model.items() if k not in PER_LAYER_KEYS} | {"model_type": made}

    def check_removes_some(self, head_scores: list[Any], neuron_scores: list[Any]) -> None:
        """Refuse `heads` or `ffn` above 0 that removes no head or neuron of a model scored so
        (`optbench.importance.check_removes_some`)."""
        check_removes_some("heads", "attention head", self.heads, head_scores, scope=self.scope)
        check_removes_some("ffn", "FFN neuron", self.ffn, neuron_scores, scope=self.scope)


PER_LAYER_KEYS = ("heads_per_layer", "intermediate_per_layer")  # a pruned checkpoint's config.json records both


def stated_sizes(model: dict[str, Any]) -> tuple[list[int], list[int]] | None:
    """Each layer's head count and FFN width, as the config.json of a model prune takes states them: a pruned
    checkpoint's lists, else every layer's one count and width (BERT's names, or DistilBERT's). None where it does
    not: what an earlier prune of the chain makes (its `preflight` gives its pruned type without the lists: they are
    known once it runs), a stand-in config without the sizes."""
    if all(isinstance(model.get(key), list) for key in PER_LAYER_KEYS):
        heads, widths = model["heads_per_layer"], model["intermediate_per_layer"]
    elif pruned_type(model["model_type"]) == model["model_type"]:
        return None
    else:
        names = ("num_hidden_layers", "num_attention_heads", "intermediate_size")
        depth, head, width = (model.get(config_key(model, name)) for name in names)
        heads, widths = ([head] * depth, [width] * depth) if isinstance(depth, int) else ([], [])
    sizes = [*heads, *widths]
    return (heads, widths) if sizes and all(isinstance(n, int) and n > 0 for n in sizes) else None


def pruned_type(model_type: str) -> str:
    """The model type prune makes of a `model_type` checkpoint (`optbench.pruned_bert.PRUNED`); refuses a type
    it does not take: ALBERT shares one layer's weights, DeBERTa-v2's attention has relative-position
    projections of its own, and MPNet and others are laid out otherwise."""
    from optbench.pruned_bert import PRUNED

    if model_type not in PRUNED:
        families = ", ".join(f'"{t}"' for t, pruned in PRUNED.items() if t != pruned.config_class.model_type)
        raise OptbenchError(
            "prune supports BERT, RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT classifiers (model_type "
            f'{families}, or one an earlier prune made); this checkpoint has model_type "{model_type}": distill it '
            'into a student of one of those first (student = "paraphrase-minilm-l3" or a checkpoint folder) and '
            "prune that"
        )
    return PRUNED[model_type].config_class.model_type


def apply(config: PruneConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Score, prune, recover and save `artifact` (a classifier of a family prune takes) to `out_dir`."""
    import torch

    from optbench.pruned_bert import load_classifier, save_classifier

    check_step_input(config, artifact)
    torch.manual_seed(config.seed)
    model = load_classifier(artifact.path)
    pruned_type(model.config.model_type)
    tokenizer = load_tokenizer(artifact.path)
    train_split = data.train
    before = sum(p.numel() for p in model.parameters())
    rows = np.random.default_rng(config.seed).permutation(len(train_split))[: config.importance_rows]
    if len(rows) < config.importance_rows:  # said: the step scores fewer rows than the recipe reads as asked
        log.info("importance scored on all %d train rows (importance_rows = %d)", len(rows), config.importance_rows)
    batches = (
        (
            encode_rows(model, tokenizer, train_split, chunk, config.max_length),
            torch.from_numpy(train_split.labels[chunk]),
        )
        for chunk in np.array_split(rows, max(1, len(rows) // config.batch_size))
    )
    scores = gradient_importance(model, batches, ffn=config.ffn_importance)
    config.check_removes_some(scores.heads, scores.neurons)
    heads = keep_plan(scores.heads, config.heads, scope=config.scope)
    neurons = keep_plan(scores.neurons, config.ffn, scope=config.scope)
    for layer, kept_heads, kept_neurons in zip(encoder_layers(model), heads, neurons, strict=True):
        keep_heads(layer, kept_heads)
        keep_ffn_neurons(layer, kept_neurons)
    pruned = as_pruned(model)
    after = sum(p.numel() for p in pruned.parameters())
    log.info(
        "pruned to heads %s and FFN widths %s: %s of %s parameters left (%.1f%%)",
        [len(h) for h in heads],
        [len(n) for n in neurons],
        f"{after:,}",
        f"{before:,}",
        100 * after / before,
    )
    details: dict[str, Any] = {
        "heads_per_layer": [len(h) for h in heads],
        "intermediate_per_layer": [len(n) for n in neurons],
        "kept_heads": heads,
        "parameters_before": before,
        "parameters": after,
        "parameters_left": after / before,
        "importance_rows": len(rows),  # scored: the train split's rows where it has fewer than asked
    }
    if config.epochs > 0:
        logits = teacher_logits(artifact, train_split, config.max_length, out_dir.parent / "teacher-logits")

        def batch_loss(batch_rows: np.ndarray) -> Any:
            out = pruned(**encode_rows(pruned, tokenizer, train_split, batch_rows, config.max_length))
            return config.logit_loss(
                out.logits, torch.from_numpy(logits[batch_rows]), torch.from_numpy(train_split.labels[batch_rows])
            )

        run = train(pruned, config, len(train_split), batch_loss, desc="recover")
        details |= {"train_rows": run.rows, "train_seconds": run.seconds}
    pruned.eval()
    details["validation_accuracy"] = accuracy(pruned, tokenizer, data.validation, config.max_length)
    log.info("pruned model: validation accuracy %.4f", details["validation_accuracy"])
    save_classifier(pruned, tokenizer, out_dir)
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="hf", details=details)


def as_pruned(model: Any) -> Any:
    """An edited classifier as its family's pruned classifier (`optbench.pruned_bert.PRUNED`) with the same
    weights: its config records each layer's sizes (loading the weights proves it describes every shape)."""
    from optbench.pruned_bert import PRUNED

    classifier = PRUNED[model.config.model_type]
    values = model.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "auto_map"):
        values.pop(key, None)
    pruned = classifier(classifier.config_class(**{**values, **layer_shapes(model)}))
    pruned.load_state_dict(model.state_dict())
    return pruned
