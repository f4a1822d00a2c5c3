"""Fine-tune a BERT-family checkpoint as a sequence classifier on the train split."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from optbench.artifact import ModelArtifact
from optbench.configs import config_to_dict
from optbench.data import LabelledData, encode
from optbench.errors import OptbenchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Knobs of the fine-tune; the defaults reach about 0.8 test accuracy on the built-in data."""

    name: ClassVar[str] = "finetune"
    output_format: ClassVar[str] = "hf"
    epochs: float = 1.0
    max_train_rows: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise OptbenchError(
                f"[finetune] needs epochs > 0, batch_size >= 1 and learning_rate > 0 "
                f"(got {self.epochs}, {self.batch_size}, {self.learning_rate})"
            )
        if self.max_train_rows is not None and self.max_train_rows < 1:
            raise OptbenchError(f"[finetune] max_train_rows={self.max_train_rows}: use 1 or more, or leave it out")
        if not 0 <= self.warmup_fraction < 1:
            raise OptbenchError(f"[finetune] warmup_fraction={self.warmup_fraction}: use a value in [0, 1)")


def apply(config: FinetuneConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Train `artifact` (an encoder or a classifier) on `data.train` and save the classifier to `out_dir`."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if artifact.format != "hf":
        raise OptbenchError(f"finetune needs a Hugging Face checkpoint, not a {artifact.format} model")
    torch.manual_seed(config.seed)
    labels = list(data.label_names)
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    model = AutoModelForSequenceClassification.from_pretrained(
        artifact.path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    order = np.random.default_rng(config.seed).permutation(len(data.train))
    rows = round(len(order) * config.epochs)
    if config.max_train_rows is not None:
        rows = min(rows, config.max_train_rows)
    order = np.resize(order, rows)  # repeats the permutation for epochs > 1
    steps = math.ceil(rows / config.batch_size)
    warmup = round(steps * config.warmup_fraction)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    model.train()
    started = time.perf_counter()
    progress = tqdm(range(steps), desc="fine-tune", unit="batch", mininterval=2.0)
    for step in progress:
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        batch = encode(tokenizer, [data.train.texts[i] for i in index], seq_len="data", max_length=config.max_length)
        inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
        output = model(**inputs, labels=torch.from_numpy(data.train.labels[index]))
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            progress.set_postfix(loss=f"{output.loss.item():.3f}")
    progress.close()
    seconds = time.perf_counter() - started
    model.eval()
    validation_accuracy = _accuracy(model, tokenizer, data, config.max_length)
    log.info("fine-tuned %d rows in %.0f s; validation accuracy %.4f", rows, seconds, validation_accuracy)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    details = {"train_rows": rows, "train_seconds": round(seconds, 1), "validation_accuracy": validation_accuracy}
    return artifact.derive(
        out_dir,
        step=config.name,
        config=config_to_dict(config),
        format="hf",
        details=details,
        label_names=tuple(labels),
    )


def _accuracy(model: object, tokenizer: object, data: LabelledData, max_length: int) -> float:
    """Validation accuracy, for the log and the manifest (the benchmark measures the test split)."""
    import torch

    split = data.validation
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(split), 64):
            batch = encode(tokenizer, split.texts[i : i + 64], seq_len="data", max_length=max_length)
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits  # type: ignore[operator]
            correct += int((logits.argmax(-1).numpy() == split.labels[i : i + 64]).sum())
    return correct / len(split)
