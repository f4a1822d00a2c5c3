"""Importance scores for structured pruning, measured on train-split batches.

A gate of ones is put on the input of a layer's attention output projection (one gate per head) and
of its FFN output projection (one per neuron), wherever its family's `Layout` keeps them; the score is
|dLoss/dgate| summed over batches. For a head this is Michel et al.'s head importance ("Are Sixteen Heads
Really Better than One?"); for a neuron it is |sum of gradient x activation|, the first-order estimate of
the loss change when it is removed. Head scores are normalized per layer (as Michel et al. do) so layers
compare fairly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from optbench.errors import OptbenchError
from optbench.surgery import encoder_layers, ffn_neuron_scores, layer_shapes, layout


@dataclass
class Importance:
    """One score per head and one per FFN neuron, for every layer (higher: more important)."""

    heads: list[Any]
    neurons: list[Any]


def gradient_importance(model: Any, batches: Iterable[tuple[dict[str, Any], Any]], *, ffn: str) -> Importance:
    """Scores from the gradient of the classification loss on `batches` of (inputs, labels); FFN neurons
    by `ffn` = "gradient" (gradient x activation) or "magnitude" (`ffn_neuron_scores`)."""
    import torch

    if ffn not in ("gradient", "magnitude"):
        raise OptbenchError(f'ffn importance {ffn!r}: use "gradient" or "magnitude"')
    parts, layers, shapes = layout(model), encoder_layers(model), layer_shapes(model)
    head_gates = [torch.ones(n, requires_grad=True) for n in shapes["heads_per_layer"]]
    neuron_gates = [torch.ones(n, requires_grad=True) for n in shapes["intermediate_per_layer"]]
    hooks = [
        _gate_input(layer.get_submodule(parts.attention_out), g) for layer, g in zip(layers, head_gates, strict=True)
    ]
    hooks += [_gate_input(layer.get_submodule(parts.ffn_out), g) for layer, g in zip(layers, neuron_gates, strict=True)]
    head_scores = [torch.zeros_like(g) for g in head_gates]
    neuron_scores = [torch.zeros_like(g) for g in neuron_gates]
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no dropout: the scores describe the model as it predicts
    for p in trainable:
        p.requires_grad_(False)  # gradients flow to the gates only
    try:
        for inputs, labels in batches:
            loss = model(**inputs, labels=labels).loss
            grads = torch.autograd.grad(loss, head_gates + neuron_gates)
            for total, grad in zip(head_scores + neuron_scores, grads, strict=True):
                total += grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)
    heads = [s / s.norm().clamp_min(1e-12) for s in head_scores]
    neurons = neuron_scores if ffn == "gradient" else [ffn_neuron_scores(layer).detach() for layer in layers]
    return Importance(heads=heads, neurons=neurons)


def _gate_input(linear: Any, gate: Any) -> Any:
    """Multiply the input of `linear` group-wise by `gate` (len(gate) equal groups of its features)."""

    def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        (x,) = args
        grouped = x.reshape(*x.shape[:-1], len(gate), -1) * gate[:, None]
        return (grouped.reshape(x.shape),)

    return linear.register_forward_pre_hook(hook)


def keep_plan(scores: list[Any], fraction: float, *, scope: str) -> list[list[int]]:
    """Which units each layer keeps when `fraction` of all units go, least important first.

    `scope = "layer"` removes the fraction from every layer; `"global"` ranks all units together, so
    layers may end up uneven. Either way each layer keeps at least its most important unit (a layer
    without heads or neurons would be a different model, so that is the rule, not an error).
    """
    import torch

    if not 0 <= fraction < 1:
        raise OptbenchError(f"pruning fraction {fraction}: use a value in [0, 1)")
    if scope == "layer":
        keep_counts = [max(1, len(s) - round(fraction * len(s))) for s in scores]
    elif scope == "global":
        flat = torch.cat([s.flatten() for s in scores])
        to_remove = round(fraction * len(flat))
        order = torch.argsort(flat, stable=True)[:to_remove] if to_remove else torch.tensor([], dtype=torch.long)
        removed = torch.zeros(len(flat), dtype=torch.bool)
        removed[order] = True
        offsets = [0, *torch.cumsum(torch.tensor([len(s) for s in scores]), 0).tolist()]
        keep_counts = [
            max(1, len(s) - int(removed[start:end].sum()))
            for s, start, end in zip(scores, offsets[:-1], offsets[1:], strict=True)
        ]
    else:
        raise OptbenchError(f'pruning scope {scope!r}: use "global" or "layer"')
    return [sorted(torch.topk(s, k).indices.tolist()) for s, k in zip(scores, keep_counts, strict=True)]
