"""The training loop the fine-tune, distillation and pruning steps share: shuffled rows, AdamW, linear
warm-up and decay, gradient clipping, progress (a bar on a terminal), and validation accuracy at the end."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from optbench.configs import check_seed
from optbench.data import Split
from optbench.encoding import encode
from optbench.errors import OptbenchError
from optbench.model_inputs import model_input_names
from optbench.progress import Progress


@dataclass(frozen=True)
class TrainingConfig:
    """How long and how fast a step trains; the defaults reach about 0.8 test accuracy on the built-in data."""

    name: ClassVar[str] = "training"
    may_skip_training: ClassVar[bool] = False  # a step whose training is optional accepts epochs = 0
    libraries: ClassVar[tuple[str, ...]] = ("torch", "transformers")  # their versions key the step's cache
    step_version: ClassVar[int] = 1  # the step's own output version (see `version`)
    epochs: float = 1.0
    max_train_rows: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        no_epochs = self.epochs < 0 or (self.epochs == 0 and not self.may_skip_training)
        if no_epochs or self.batch_size < 1 or self.learning_rate <= 0:
            raise OptbenchError(
                f"needs epochs > 0{' (or 0)' if self.may_skip_training else ''}, batch_size >= 1 and learning_rate > 0 "
                f"(got {self.epochs}, {self.batch_size}, {self.learning_rate})"
            )
        if self.max_train_rows is not None and self.max_train_rows < 1:
            raise OptbenchError(f"max_train_rows={self.max_train_rows}: use 1 or more, or leave it out")
        if not 0 <= self.warmup_fraction < 1:
            raise OptbenchError(f"warmup_fraction={self.warmup_fraction}: use a value in [0, 1)")
        if self.weight_decay < 0:  # AdamW would push every weight away from 0
            raise OptbenchError(f"weight_decay={self.weight_decay}: use 0 or more (0.01 is usual)")
        check_seed(self.seed)
        if self.max_length < 8:
            raise OptbenchError(f"max_length={self.max_length} is too small: use 8 or more tokens")

    @property
    def version(self) -> int:
        """The output version `steps.cache.cache_key` keys on: the step's own, plus one for epochs > 1. Those once
        repeated the first epoch's row order and now shuffle each epoch anew, so their outputs changed; epochs
        <= 1 train on the same rows in the same order as before and keep their cached outputs. (A config with
        epochs > 1 whose max_train_rows stops within the first epoch trains as before too, and is retrained
        once: its train split's size is not known here.)"""
        return self.step_version + int(self.epochs > 1)


@dataclass(frozen=True)
class TrainingRun:
    """What a training loop did, for the log and the manifest."""

    rows: int
    seconds: float


def train(
    model: Any,
    config: TrainingConfig,
    train_rows: int,
    batch_loss: Callable[[np.ndarray], Any],
    *,
    desc: str,
) -> TrainingRun:
    """Train `model` in place: `batch_loss(row_indices)` returns the loss tensor of one batch of train rows.

    Rows are visited in a seeded random order, shuffled anew for each epoch (as a shuffling DataLoader does)
    and cut at `max_train_rows`; the caller seeds torch (before it builds the model, so that new weights are
    seeded too).
    """
    import torch

    rows = round(train_rows * config.epochs)
    if config.max_train_rows is not None:
        rows = min(rows, config.max_train_rows)
    if rows == 0 and config.epochs > 0:
        raise OptbenchError(
            f"the {config.name} step's epochs = {config.epochs} of {train_rows} train rows trains on none: raise "
            "epochs (or max_train_rows)"
        )
    order = _row_order(train_rows, rows, config.seed)
    steps = math.ceil(rows / config.batch_size)
    warmup = round(steps * config.warmup_fraction)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    model.train()
    started = time.perf_counter()
    with Progress(steps, desc, "batch", "batches", mininterval=2.0) as progress:
        for step in range(steps):
            loss = batch_loss(order[step * config.batch_size : (step + 1) * config.batch_size])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.advance(**({"loss": f"{loss.item():.3f}"} if step % 10 == 0 else {}))
    model.eval()
    return TrainingRun(rows=rows, seconds=round(time.perf_counter() - started, 1))


def _row_order(train_rows: int, rows: int, seed: int) -> np.ndarray:
    """The first `rows` of one seeded permutation of the train rows per epoch, in turn. The first epoch's is
    the generator's first draw, so training within one epoch keeps the order it always had."""
    rng = np.random.default_rng(seed)
    epochs = max(1, math.ceil(rows / max(1, train_rows)))
    return np.concatenate([rng.permutation(train_rows) for _ in range(epochs)])[:rows]


def encode_rows(model: Any, tokenizer: Any, split: Split, rows: np.ndarray, max_length: int) -> dict[str, Any]:
    """The given rows of a split as a batch of torch tensors for `model` (the inputs its forward takes),
    padded to their longest text."""
    import torch

    batch = encode(tokenizer, [split.texts[i] for i in rows], seq_len="data", max_length=max_length)
    return {k: torch.from_numpy(batch[k]) for k in model_input_names(model)}


def predictions(model: Any, tokenizer: Any, split: Split, max_length: int) -> np.ndarray:
    """The label a torch classifier predicts for every row of a split."""
    import torch

    predicted = []
    with torch.inference_mode():
        for start in range(0, len(split), 64):
            rows = np.arange(start, min(start + 64, len(split)))
            predicted.append(model(**encode_rows(model, tokenizer, split, rows, max_length)).logits.argmax(-1).numpy())
    return np.concatenate(predicted)


def accuracy(model: Any, tokenizer: Any, split: Split, max_length: int) -> float:
    """Accuracy on a split, for the log and the manifest (the benchmark measures the test split itself)."""
    return float((predictions(model, tokenizer, split, max_length) == split.labels).mean())
