"""Fine-tune a BERT-family checkpoint as a sequence classifier on the train split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from optbench.artifact import ModelArtifact
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.encoding import load_tokenizer
from optbench.formats import check_step_input
from optbench.hf_config import head_config
from optbench.training import TrainingConfig, accuracy, encode_rows, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig):
    """Knobs of the fine-tune; the defaults reach about 0.8 test accuracy on the built-in data."""

    name: ClassVar[str] = "finetune"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "hf"

    def preflight(self, model: dict[str, Any] | None) -> dict[str, Any] | None:
        """The config.json of what this step makes from a model whose config.json is `model`: the same
        model type (see `optbench.preflight.check_step_inputs`)."""
        return model


def apply(config: FinetuneConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Train `artifact` (an encoder or a classifier) on `data.train` and save the classifier to `out_dir`."""
    import torch

    from optbench.pruned_bert import load_classifier, save_classifier

    check_step_input(config, artifact)
    torch.manual_seed(config.seed)
    labels = list(data.label_names)
    tokenizer = load_tokenizer(artifact.path)
    model = load_classifier(artifact.path, **head_config(labels))
    train_split = data.train

    def batch_loss(rows):  # type: ignore[no-untyped-def]
        inputs = encode_rows(model, tokenizer, train_split, rows, config.max_length)
        return model(**inputs, labels=torch.from_numpy(train_split.labels[rows])).loss

    run = train(model, config, len(train_split), batch_loss, desc="fine-tune")
    validation_accuracy = accuracy(model, tokenizer, data.validation, config.max_length)
    log.info("fine-tuned %d rows in %.0f s; validation accuracy %.4f", run.rows, run.seconds, validation_accuracy)
    save_classifier(model, tokenizer, out_dir)
    details = {"train_rows": run.rows, "train_seconds": run.seconds, "validation_accuracy": validation_accuracy}
    return artifact.derive(
        out_dir,
        step=config.name,
        config=config_to_dict(config),
        format="hf",
        details=details,
        label_names=tuple(labels),
    )
