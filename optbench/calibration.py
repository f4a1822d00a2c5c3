"""Calibration data for static INT8: train-split texts drawn at random, fed in batches to a calibrator
(onnxruntime's for quantize-static and the optimum peer, TensorRT's for the tensorrt step)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import numpy as np

from optbench.data import LabelledData
from optbench.encoding import SeqLen, batches, load_tokenizer
from optbench.errors import OptbenchError
from optbench.model_inputs import MODEL_INPUTS

log = logging.getLogger(__name__)


def equal_batch_size(rows: int, batch_size: int) -> int:
    """The largest batch size up to `batch_size` that splits `rows` into whole batches: onnxruntime's histogram
    calibrators stack every batch's activations into one array, which a short last batch made ragged (a ValueError
    from numpy, microsoft/onnxruntime#18792). Their histograms are of every value, so the batching changes nothing
    else."""
    return max(size for size in range(1, min(rows, batch_size) + 1) if rows % size == 0)


def calibration_texts(data: LabelledData, samples: int, seed: int) -> list[str]:
    """`samples` train texts drawn at random with `seed`: the train split keeps its file's order (the built-in
    data is grouped by movie), so its first rows would be a few movies' reviews. A train split of fewer rows gives
    them all, with a warning: calibration on fewer texts than asked may choose other INT8 ranges."""
    rows = len(data.train)
    if samples > rows:
        log.warning(
            "calibration_samples = %d is more than the train split's %d rows: calibration draws all %d of them",
            samples,
            rows,
            rows,
        )
    order = np.random.default_rng(seed).permutation(rows)[:samples]
    return [data.train.texts[i] for i in order]


class CalibrationReader:
    """Feeds calibration batches drawn from the train split, holding those of `inputs` that `encode` makes:
    the model's own (onnxruntime refuses a name its graph lacks, such as DistilBERT's token_type_ids).

    With `one_length` every batch is padded to the longest sample (capped at the data's max_length), and with
    `equal_batches` every batch holds the same number of rows (`equal_batch_size`), because the histogram
    calibrators (Entropy, Percentile) stack batches into one array; otherwise each batch is padded to its own
    longest text, since padding positions widen MinMax ranges (measured: accuracy 0.8114 with one length against
    0.8162 per batch, 256 samples), and the last batch may be short. `batch_size` is the most rows a batch holds
    (what the manifest records): fewer samples than asked for one batch go in one batch of their number.
    """

    def __init__(
        self,
        model_dir: Path,
        data: LabelledData,
        samples: int,
        batch_size: int,
        seed: int,
        *,
        one_length: bool,
        equal_batches: bool = False,
        inputs: Collection[str] = MODEL_INPUTS,
    ) -> None:
        texts = calibration_texts(data, samples, seed)
        self.rows = len(texts)
        tokenizer = load_tokenizer(model_dir)
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=data.max_length)["input_ids"]]
        self.seq_len: SeqLen = max(lengths) if one_length else "data"
        self.batch_size = equal_batch_size(self.rows, batch_size) if equal_batches else min(self.rows, batch_size)
        self._batches = iter(
            {name: array for name, array in batch.items() if name in inputs}
            for batch in batches(
                tokenizer, texts, batch_size=self.batch_size, seq_len=self.seq_len, max_length=data.max_length
            )
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        raise OptbenchError("calibration needs a second pass, which optbench does not provide")
