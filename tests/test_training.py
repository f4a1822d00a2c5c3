"""The shared training loop: its row order, schedule, gradient clipping and settings, the cache versions that follow
from them, and the predictions and accuracy of a trained model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from optbench.configs import config_from_dict
from optbench.data import Split
from optbench.errors import OptbenchError
from optbench.steps.distill import DistillConfig
from optbench.steps.finetune import FinetuneConfig
from optbench.steps.prune import PruneConfig
from optbench.training import accuracy, predictions, train


def _visited(config: FinetuneConfig, train_rows: int, loss_scale: float = 1.0) -> np.ndarray:
    """The train rows `train` hands to the loss, in order, training a one-weight model (and a bias) on a loss of
    `loss_scale` times its outputs' sum."""
    import torch

    model = torch.nn.Linear(1, 1)
    seen: list[np.ndarray] = []

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        seen.append(rows)
        return model(torch.ones(len(rows), 1)).sum() * loss_scale

    run = train(model, config, train_rows, batch_loss, desc="test")
    order = np.concatenate(seen)
    assert run.rows == len(order)
    return order


def _optimizer_steps(
    monkeypatch: pytest.MonkeyPatch, config: FinetuneConfig, train_rows: int, loss_scale: float = 1.0
) -> list[tuple[float, float]]:
    """The learning rate and the gradient's norm of each optimizer step `_visited` takes."""
    import torch

    steps: list[tuple[float, float]] = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):  # type: ignore[no-untyped-def]
            gradients = [p.grad for group in self.param_groups for p in group["params"]]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradients]))
            steps.append((self.param_groups[0]["lr"], float(norm)))
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    _visited(config, train_rows, loss_scale)
    return steps


def test_each_epoch_visits_every_row_in_an_order_of_its_own() -> None:
    order = _visited(FinetuneConfig(epochs=3, batch_size=7), 20)
    epochs = order.reshape(3, 20)
    assert all(sorted(epoch) == list(range(20)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3  # a repeated order would train on the same sequence


@pytest.mark.parametrize(
    ("epochs", "max_train_rows", "rows"),
    [(1.0, None, 20), (0.5, None, 10), (0.33, None, 7), (0.32, None, 6), (1.0, 12, 12), (3.0, 12, 12)],
)
def test_within_one_epoch_the_order_is_the_seeds_first_permutation(
    epochs: float, max_train_rows: int | None, rows: int
) -> None:
    """The order training in one epoch or less always had: baselines cached and results committed before
    epochs shuffled anew stay valid. A fraction of an epoch trains on its rows rounded to the nearest."""
    config = FinetuneConfig(epochs=epochs, max_train_rows=max_train_rows, batch_size=4, seed=3)
    expected = np.random.default_rng(3).permutation(20)[:rows]
    np.testing.assert_array_equal(_visited(config, 20), expected)


def test_a_longer_run_starts_with_the_shorter_runs_epoch() -> None:
    first = np.random.default_rng(0).permutation(20)
    order = _visited(FinetuneConfig(epochs=1.5, batch_size=8), 20)
    np.testing.assert_array_equal(order[:20], first)
    assert len(order) == 30 and len(set(order[20:])) == 10


def test_only_configs_of_more_than_one_epoch_get_new_cache_versions() -> None:
    """Their outputs changed when each epoch got its own order; the others keep their versions and caches."""
    assert FinetuneConfig().version == FinetuneConfig(epochs=0.5).version == 1
    assert FinetuneConfig(epochs=1.5).version == 2
    assert DistillConfig().version == 1 and DistillConfig(attention_weight=1.0).version == 2
    assert DistillConfig(epochs=2).version == 2 and DistillConfig(epochs=2, attention_weight=1.0).version == 3
    assert PruneConfig(heads=0.5).version == PruneConfig(heads=0.5, epochs=0).version == 3  # 3: halves round up
    assert PruneConfig(heads=0.5, epochs=2).version == 4


@pytest.mark.parametrize(
    ("config_type", "knob", "where", "message"),
    [
        (FinetuneConfig, {"weight_decay": -0.01}, "[model.finetune]", r"^\[model.finetune\] weight_decay=-0.01: use 0"),
        (
            DistillConfig,
            {"weight_decay": -1.0},
            "[[steps]] #1 (distill)",
            r"^\[\[steps\]\] #1 \(distill\) weight_decay=",
        ),
        (FinetuneConfig, {"seed": -1}, "[model.finetune]", r"^\[model.finetune\] seed=-1: use 0 or more"),
    ],
)
def test_training_numbers_no_run_can_use_are_refused_when_read(
    config_type: type, knob: dict, where: str, message: str
) -> None:
    # a negative weight decay trained on, pushing weights away from 0; a negative seed failed in numpy once the
    # model had loaded
    with pytest.raises(OptbenchError, match=message):
        config_from_dict(config_type, knob, where)


def test_the_learning_rate_warms_up_then_decays_linearly_to_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate each optimizer step uses: (s + 1) / (warmup + 1) of it during warm-up, then down to 1/steps of it
    at the last step. A schedule that started at 0, skipped the warm-up or never decayed trained a different
    baseline without any error."""
    config = FinetuneConfig(batch_size=2, learning_rate=0.1, warmup_fraction=0.2)  # 10 steps, 2 of warm-up
    rates = [rate for rate, _ in _optimizer_steps(monkeypatch, config, 20)]
    expected = [1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    assert rates == pytest.approx([0.1 * factor for factor in expected])


@pytest.mark.parametrize(("warmup_fraction", "warmup_steps"), [(0.14, 1), (0.16, 2)])
def test_the_warm_up_is_its_fraction_of_the_steps_rounded_to_the_nearest(
    monkeypatch: pytest.MonkeyPatch, warmup_fraction: float, warmup_steps: int
) -> None:
    """The full rate is first reached at the step after the warm-up (1.4 steps of 10 warm up for 1, 1.6 for 2)."""
    config = FinetuneConfig(batch_size=2, warmup_fraction=warmup_fraction)  # 10 steps
    rates = [rate for rate, _ in _optimizer_steps(monkeypatch, config, 20)]
    assert rates.index(max(rates)) == warmup_steps


def test_each_step_clips_the_gradient_to_a_norm_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large gradient (a loss far from its minimum, as a fresh head's is) is scaled down to a norm of 1 before
    the step; a small one is left as it is: the weight's and the bias's gradients are each 4 x loss_scale."""
    config = FinetuneConfig(batch_size=4)  # 2 steps of 4 rows
    for loss_scale, norm in ((1000.0, 1.0), (0.01, 0.04 * np.sqrt(2))):
        norms = [step_norm for _, step_norm in _optimizer_steps(monkeypatch, config, 8, loss_scale)]
        assert norms == pytest.approx([norm, norm], rel=1e-4)


def test_each_batch_starts_from_no_gradient_and_the_model_ends_in_eval_mode() -> None:
    """Gradients kept from the batch before would add up over the run; a model left in train mode keeps dropout
    on for the validation accuracy the manifest records."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.5))
    stale: list[bool] = []

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        stale.append(model[0].weight.grad is not None)
        return model(torch.ones(len(rows), 1)).sum()

    train(model, FinetuneConfig(batch_size=4), 12, batch_loss, desc="test")
    assert stale == [False, False, False] and not model.training


def test_every_batch_trains_with_dropout_on_though_the_model_came_in_eval_mode() -> None:
    """`from_pretrained` hands over a model in eval mode: trained as it came, no batch had dropout, and a distilled,
    fine-tuned or pruned model trained without its regularization and no test saw it."""
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.5)).eval()
    modes: list[bool] = []

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        modes.append(model.training and model[1].training)
        return model(torch.ones(len(rows), 1)).sum()

    train(model, FinetuneConfig(batch_size=4), 12, batch_loss, desc="test")
    assert modes == [True, True, True]


def test_a_weight_decay_of_zero_is_allowed() -> None:
    assert FinetuneConfig(weight_decay=0.0).weight_decay == 0.0


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ({"epochs": 0}, r"^needs epochs > 0, batch_size"),
        ({"batch_size": 0}, r"^needs epochs > 0, batch_size >= 1"),
        ({"learning_rate": 0.0}, r"learning_rate > 0 \(got 1.0, 32, 0.0\)"),
        ({"max_train_rows": 0}, r"^max_train_rows=0: use 1 or more"),
        ({"warmup_fraction": 1.0}, r"^warmup_fraction=1.0: use a value in \[0, 1\)"),
        ({"warmup_fraction": -0.1}, r"^warmup_fraction=-0.1"),
        ({"max_length": 7}, r"^max_length=7 is too small: use 8 or more"),
    ],
)
def test_the_settings_just_past_the_least_a_run_can_use_are_refused(knob: dict, message: str) -> None:
    """Each one step past the edges `test_the_least_settings_a_run_can_use_are_taken` takes: no batches, a rate that
    never moves a weight, no train rows, a warm-up that never ends, too few tokens for a sentence."""
    with pytest.raises(OptbenchError, match=message):
        FinetuneConfig(**knob)


def test_the_optimizer_decays_the_weights_by_the_configs_weight_decay(monkeypatch: pytest.MonkeyPatch) -> None:
    """AdamW gets the config's weight decay (and rate), not its own default."""
    import torch

    settings: list[tuple[float, float]] = []

    class Recording(torch.optim.AdamW):
        def __init__(self, params: Any, lr: float, weight_decay: float) -> None:
            super().__init__(params, lr=lr, weight_decay=weight_decay)
            settings.append((self.defaults["lr"], self.defaults["weight_decay"]))

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    _visited(FinetuneConfig(batch_size=4, learning_rate=0.003, weight_decay=0.25), 8)
    assert settings == [(0.003, 0.25)]


def test_a_one_batch_run_warmed_up_for_its_only_step_trains() -> None:
    """warmup_fraction 0.6 of 1 step rounds to a warm-up of 1 = every step: the decay that follows has no steps,
    and dividing by them failed the run after its only batch."""
    assert len(_visited(FinetuneConfig(batch_size=4, warmup_fraction=0.6), 4)) == 4


def test_a_run_of_no_epochs_trains_on_nothing_and_a_run_of_no_rows_is_refused() -> None:
    """A step whose training is optional (prune) may run none; a fraction of an epoch that rounds to no rows is a
    setting that trains nothing, and says which to raise."""
    import torch

    model = torch.nn.Linear(1, 1)
    batches: list[np.ndarray] = []

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        batches.append(rows)
        return model(torch.ones(len(rows), 1)).sum()

    run = train(model, PruneConfig(heads=0.5, epochs=0), 20, batch_loss, desc="test")
    assert (run.rows, batches) == (0, [])
    with pytest.raises(OptbenchError, match=r"^the finetune step's epochs = 0.01 of 20 train rows trains on none"):
        train(model, FinetuneConfig(epochs=0.01), 20, batch_loss, desc="test")


def test_the_log_shows_the_first_batch_s_loss(caplog: pytest.LogCaptureFixture) -> None:
    """The loss is shown every 10 batches from the first: a one-batch run's log line still says it."""
    import torch

    model = torch.nn.Linear(1, 1)
    with caplog.at_level("INFO"):
        train(model, FinetuneConfig(batch_size=4), 4, lambda rows: (model.weight * 0).sum() + 0.25, desc="test")
    assert "test: 1 of 1 batches done, loss 0.250" in caplog.text


def test_training_draws_no_bar_where_stderr_is_no_terminal(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """In a CI log (stderr a file, as under capsys) the bar's frames piled up as one line of carriage returns; the
    log says how far training got instead."""
    with caplog.at_level("INFO"):
        _visited(FinetuneConfig(batch_size=4), 12)
    assert "\r" not in capsys.readouterr().err
    assert "test: 3 of 3 batches done, loss" in caplog.text


def test_the_least_settings_a_run_can_use_are_taken() -> None:
    """Each at the edge of what is refused: one row a batch, one train row, no warm-up, 8 tokens."""
    config = FinetuneConfig(batch_size=1, max_train_rows=1, warmup_fraction=0.0, max_length=8)
    assert (config.batch_size, config.max_train_rows, config.warmup_fraction, config.max_length) == (1, 1, 0.0, 8)


def test_predictions_and_accuracy_score_every_row_of_a_split_by_its_largest_logit() -> None:
    """65 rows: a batch of 64 and one more. A classifier that scores a text's token count odd or even predicts the
    parity of each row's count; 13 of the labels agree."""
    from types import SimpleNamespace

    import torch

    from optbench.packaged_models import default_tokenizer

    class Parity(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
            odd = attention_mask.sum(-1).float() % 2
            return SimpleNamespace(logits=torch.stack([1 - odd, odd], dim=-1))

    tokenizer = default_tokenizer()
    texts = [" ".join(["word"] * (1 + row % 5)) for row in range(65)]
    parity = np.array([len(tokenizer(text)["input_ids"]) % 2 for text in texts])
    assert 0 < parity.sum() < 65  # both classes predicted
    split = Split(texts, np.concatenate([parity[:13], 1 - parity[13:]]))
    np.testing.assert_array_equal(predictions(Parity(), tokenizer, split, 16), parity)
    assert accuracy(Parity(), tokenizer, split, 16) == pytest.approx(0.2)


def test_predictions_read_no_more_tokens_than_max_length() -> None:
    """Texts longer than max_length are cut to it, as the benchmark's inputs are: the parity classifier sees 8
    tokens of every long text at max_length 8, and 9 at 9."""
    from types import SimpleNamespace

    import torch

    from optbench.packaged_models import default_tokenizer

    class Parity(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
            odd = attention_mask.sum(-1).float() % 2
            return SimpleNamespace(logits=torch.stack([1 - odd, odd], dim=-1))

    split = Split([" ".join(["word"] * 40)] * 3, np.zeros(3, dtype=int))
    np.testing.assert_array_equal(predictions(Parity(), default_tokenizer(), split, 8), [0, 0, 0])
    np.testing.assert_array_equal(predictions(Parity(), default_tokenizer(), split, 9), [1, 1, 1])
