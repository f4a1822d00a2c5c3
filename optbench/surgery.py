"""Structural edits of BERT-family models that make the matrices themselves smaller: dropping whole
layers, attention heads and FFN neurons, never masking them, of models laid out as BERT's (BERT, RoBERTa,
XLM-RoBERTa, ELECTRA, DeBERTa-v2, MiniLM) or DistilBERT's, each family's `Layout` saying where its parts are.
Layer dropping and uniform FFN narrowing keep the model's own config; uneven heads and widths need
`optbench.pruned_bert`'s per-layer config."""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from optbench.errors import OptbenchError

if TYPE_CHECKING:
    from optbench.pruned_bert import Layout


def layout(model: Any) -> Layout:
    """The layout of a model whose layers optbench can keep: BERT's (BERT, RoBERTa, XLM-RoBERTa, ELECTRA,
    DeBERTa-v2, MiniLM) or DistilBERT's, its first layer holding the self-attention and FFN where the layout
    says. ALBERT has no list of layers (all share one); MPNet's list holds other parts."""
    from optbench.pruned_bert import LAYOUTS

    for candidate in LAYOUTS:
        layers = getattr(getattr(model.base_model, candidate.holder, None), "layer", None)
        if layers is not None and all(_lays_out(candidate, layer) for layer in layers[:1]):
            return candidate
    raise OptbenchError(
        f'{type(model).__name__} (model_type "{model.config.model_type}") has no list of layers optbench can keep: '
        "it keeps the layers of BERT-style models (BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v2, MiniLM) "
        "and DistilBERT, not ALBERT's, whose layers all share one set of weights, nor those laid out otherwise "
        '(MPNet\'s); distill it into another student (student = "paraphrase-minilm-l3" or a checkpoint folder '
        "of one of those)"
    )


def layer_layout(layer: Any) -> Layout:
    """The layout of one transformer layer (BERT's or DistilBERT's)."""
    from optbench.pruned_bert import LAYOUTS

    for candidate in LAYOUTS:
        if _lays_out(candidate, layer):
            return candidate
    raise OptbenchError(f"{type(layer).__name__} is not a transformer layer laid out as BERT's or DistilBERT's")


def _lays_out(candidate: Layout, layer: Any) -> bool:
    """Whether `layer` holds its self-attention and FFN where `candidate` says."""
    return _has(layer, candidate.attention, candidate.ffn_in)


def _has(layer: Any, *paths: str) -> bool:
    """Whether `layer` has a submodule at each dotted path."""
    try:
        attrgetter(*paths)(layer)
    except AttributeError:
        return False
    return True


def encoder_layers(model: Any) -> Any:
    """The `nn.ModuleList` of transformer layers of a model `layout` knows."""
    return _layer_holder(model).layer


def _layer_holder(model: Any) -> Any:
    """The module whose `layer` is the list of layers (BERT's encoder, DistilBERT's transformer)."""
    return getattr(model.base_model, layout(model).holder)


def self_attention(model: Any, layer: Any) -> Any:
    """The self-attention module of one of `model`'s layers (BERT's sits beside its output projection)."""
    return attrgetter(layout(model).attention)(layer)


def transformers_config(config: dict[str, Any]) -> Any | None:
    """transformers' config object of a config.json's contents, which answers to the common attribute names
    (DistilBERT's n_layers as num_hidden_layers), or None for a type this transformers cannot build."""
    from transformers import AutoConfig

    import optbench.pruned_bert  # noqa: F401 (registers the pruned model types)

    values = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(config.get("model_type", ""), **values)
    except Exception:  # an unknown or custom model type
        return None


def check_layer_list(config: dict[str, Any]) -> None:
    """Refuse, from its config.json alone, a classifier whose layers `encoder_layers` cannot find (nor
    `narrow_ffn` narrow): its architecture is built without weights (on torch's meta device) and asked. A
    config this transformers cannot build is let through: loading the checkpoint reports it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    skeleton = transformers_config(config)
    if skeleton is None:
        return
    try:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(skeleton)
    except Exception:  # a type without a sequence-classification model: not certain enough to refuse
        return
    encoder_layers(model)


def check_layer_choice(indices: list[int] | tuple[int, ...]) -> None:
    """Refuse, without the model, layers to keep that no model has: none, a negative index, a repeat or a
    disorder. The highest index a model has is its own: `keep_layers` checks that."""
    if not indices:
        raise OptbenchError("layers = []: keep at least one layer")
    negative = [i for i in indices if i < 0]
    if negative:
        raise OptbenchError(f"layers {negative} are out of range: layers count from 0, the first one")
    if list(indices) != sorted(set(indices)):
        raise OptbenchError(f"layers {list(indices)} must be distinct and in increasing order, e.g. [0, 2, 4]")


def check_layers_within(indices: list[int] | tuple[int, ...], depth: int) -> None:
    """Refuse layers to keep that a model of `depth` layers lacks, and those `check_layer_choice` refuses."""
    check_layer_choice(indices)
    out_of_range = [i for i in indices if i >= depth]
    if out_of_range:
        has = f"layers 0 to {depth - 1}" if depth > 1 else "one layer, 0"
        raise OptbenchError(
            f"layers {out_of_range} are out of range: this model has {has}: keep layers among those (a recipe written "
            "for a deeper model needs its layers chosen again)"
        )


def config_depth(config: dict[str, Any]) -> int | None:
    """The number of layers a config.json's contents give (DistilBERT's n_layers too), or None when its type is
    one this transformers cannot build."""
    skeleton = transformers_config(config)
    return getattr(skeleton, "num_hidden_layers", None)


def keep_layers(model: Any, indices: list[int] | tuple[int, ...]) -> None:
    """Keep only the transformer layers at `indices` (increasing, each in range), in place."""
    import torch

    holder = _layer_holder(model)
    layers = holder.layer
    check_layers_within(indices, len(layers))
    holder.layer = torch.nn.ModuleList(layers[i] for i in indices)
    if hasattr(holder, "n_layers"):
        holder.n_layers = len(indices)  # DistilBERT's holder records its depth too
    for position, layer in enumerate(holder.layer):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position  # caches index layers by position (BERT's self-attention)
    model.config.num_hidden_layers = len(indices)  # DistilBERT's config maps the name to its n_layers
    record_shapes(model)


def ffn_neuron_scores(layer: Any) -> Any:
    """Weight-magnitude importance of each FFN neuron: the norm of its input row times the norm of its
    output column (a neuron that reads little or writes little matters little)."""
    parts = layer_layout(layer)
    return layer.get_submodule(parts.ffn_in).weight.norm(dim=1) * layer.get_submodule(parts.ffn_out).weight.norm(dim=0)


def narrow_ffn(model: Any, size: int) -> None:
    """Keep the `size` most important FFN neurons of every layer (by `ffn_neuron_scores`), in place, and
    record `size` as the config's FFN width; a layer already narrower (a pruned model's) keeps all of its own."""
    import torch

    widths = layer_shapes(model)["intermediate_per_layer"]
    if not 1 <= size <= max(widths):
        raise OptbenchError(f"intermediate_size = {size}: use 1 to {max(widths)} (this model's widest FFN)")
    for layer, width in zip(encoder_layers(model), widths, strict=True):
        kept = torch.topk(ffn_neuron_scores(layer), min(size, width)).indices.sort().values.tolist()
        keep_ffn_neurons(layer, kept)
    setattr(model.config, layout(model).ffn_key, size)  # DistilBERT's config calls it hidden_dim
    record_shapes(model)


def layer_shapes(model: Any) -> dict[str, list[int]]:
    """Each layer's attention head count and FFN width, as a pruned model's config records them."""
    parts, layers = layout(model), encoder_layers(model)
    return {
        "heads_per_layer": [getattr(layer.get_submodule(parts.attention), parts.heads) for layer in layers],
        "intermediate_per_layer": [layer.get_submodule(parts.ffn_in).out_features for layer in layers],
    }


def record_shapes(model: Any) -> None:
    """Bring a per-layer config (a pruned model's) in line with the layers after an edit."""
    if getattr(model.config, "heads_per_layer", None) is not None:
        for key, values in layer_shapes(model).items():
            setattr(model.config, key, values)


def keep_ffn_neurons(layer: Any, keep: list[int]) -> None:
    """Keep only the FFN neurons `keep` of one transformer layer, in place."""
    import torch

    from optbench.pruned_bert import set_linear

    parts, index = layer_layout(layer), torch.tensor(keep, dtype=torch.long)
    set_linear(layer, parts.ffn_in, _rows(layer.get_submodule(parts.ffn_in), index))
    set_linear(layer, parts.ffn_out, _columns(layer.get_submodule(parts.ffn_out), index))


def keep_heads(layer: Any, keep: list[int]) -> None:
    """Keep only the attention heads `keep` of one transformer layer (at least one), in place: their
    rows of the query, key and value projections and their columns of the output projection."""
    import torch

    from optbench.pruned_bert import set_linear

    if not keep:
        raise OptbenchError("a layer must keep at least one attention head")
    parts = layer_layout(layer)
    size = layer.get_submodule(parts.attention).attention_head_size
    index = torch.tensor([h * size + i for h in keep for i in range(size)], dtype=torch.long)
    for path in parts.projections:
        set_linear(layer, path, _rows(layer.get_submodule(path), index))
    set_linear(layer, parts.attention_out, _columns(layer.get_submodule(parts.attention_out), index))
    parts.set_heads(layer, len(keep))


def _rows(linear: Any, keep: Any) -> Any:
    """A Linear layer with only the output features `keep`."""
    import torch

    smaller = torch.nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias[keep])
    return smaller


def _columns(linear: Any, keep: Any) -> Any:
    """A Linear layer with only the input features `keep`."""
    import torch

    smaller = torch.nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight[:, keep])
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias)
    return smaller
