"""Importance scores for structured pruning, measured on train-split batches.

A gate of ones is put on the input of a layer's attention output projection (one gate per head) and
of its FFN output projection (one per neuron), wherever its family's `Layout` keeps them; the score is
|dLoss/dgate| summed over batches. For a head this is Michel et al.'s head importance ("Are Sixteen Heads
Really Better than One?"); for a neuron it is |sum of gradient x activation|, the first-order estimate of
the loss change when it is removed. Head scores are normalized per layer (as Michel et al. do) so layers
compare fairly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
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
    layers may end up uneven. How many go is `units_to_remove`'s count. Either way each layer keeps at least
    its most important unit (a layer without heads or neurons would be a different model, so that is the rule,
    not an error).
    """
    import torch

    if not 0 <= fraction < 1:
        raise OptbenchError(f"pruning fraction {fraction}: use a value in [0, 1)")
    if scope == "layer":
        keep_counts = [max(1, len(s) - units_to_remove(fraction, len(s))) for s in scores]
    elif scope == "global":
        flat = torch.cat([s.flatten() for s in scores])
        order = torch.argsort(flat, stable=True)[: units_to_remove(fraction, len(flat))]
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


def units_to_remove(fraction: float, units: int) -> int:
    """`fraction` of `units`, rounded to the nearest whole number, halves up (0.5 of 5 is 2.5: 3 go, where Python's
    `round`, halves to even, took 2), on the fraction as written (0.009 of 1500 is 13.5, not the float 13.4999...)."""
    return int((Decimal(str(fraction)) * units).to_integral_value(rounding=ROUND_HALF_UP))


def check_removes_some(key: str, unit: str, fraction: float, scores: list[Any], *, scope: str) -> None:
    """Refuse a `fraction` above 0 (the prune setting `key`, of `unit`s) whose `keep_plan` removes no unit: the step
    would make a copy of the model, labelled pruned and measured as a variant. The error names the least fraction
    that removes one with these `scores` (before the model is scored, `preflight_scores`: the least any allow)."""
    if fraction == 0 or _removes_some(scores, fraction, scope):
        return
    sizes = [len(s) for s in scores]
    if len(sizes) == 1:
        shape = f"{sizes[0]} {unit}{'s' if sizes[0] > 1 else ''} in its one layer"
    elif len(set(sizes)) == 1:
        shape = f"{sizes[0]} {unit}{'s' if sizes[0] > 1 else ''} in each of its {len(sizes)} layers"
    else:
        shape = f"{unit}s per layer: {', '.join(map(str, sizes))}"
    least = next((f for f in _fractions_to_try(sizes, scope) if _removes_some(scores, f, scope)), None)
    fix = f"raise {key} to at least {least}, or set {key} = 0" if least is not None else f"set {key} = 0"
    taken = "each layer's" if scope == "layer" else "all its"
    raise OptbenchError(
        f"{key} = {fraction} removes no {unit} from this model ({shape}): it takes {fraction} of {taken} {unit}s, "
        f"rounded to the nearest whole number (halves up), and every layer keeps at least one; {fix}"
    )


def preflight_scores(sizes: list[int]) -> list[Any]:
    """Scores for `check_removes_some` before the model is scored, from each layer's unit count alone: the units of
    layers of more than one rank least important, so a fraction is refused only where no scores would remove one."""
    import torch

    return [torch.zeros(n) if n > 1 else torch.ones(n) for n in sizes]


def _removes_some(scores: list[Any], fraction: float, scope: str) -> bool:
    """Whether `keep_plan` at `fraction` removes at least one unit."""
    return sum(map(len, keep_plan(scores, fraction, scope=scope))) < sum(map(len, scores))


def _fractions_to_try(sizes: list[int], scope: str) -> Iterator[float]:
    """In increasing order, the fractions from which `units_to_remove` takes one unit of the widest layer ("layer":
    the least that removes a unit of any layer) or 1, 2, ... of all units ("global"), each rounded up to a fraction
    easy to write."""
    if scope == "layer":
        thresholds: Iterable[Decimal] = [Decimal(1) / (2 * max(sizes))]
    else:
        thresholds = (Decimal(2 * k - 1) / (2 * sum(sizes)) for k in range(1, sum(sizes) + 1))
    return (_round_up(t) for t in thresholds)


def _round_up(value: Decimal) -> float:
    """`value`, in (0, 1), rounded up to two significant digits (more where two would reach 1)."""
    digits = 2
    while True:
        step = Decimal(1).scaleb(value.adjusted() - digits + 1)
        rounded = (value / step).to_integral_value(rounding=ROUND_CEILING) * step
        if rounded < 1:
            return float(rounded)
        digits += 1
