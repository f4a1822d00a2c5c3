"""The tensors a tokenized batch holds, and which of them a model's forward takes.

Apart from optbench.data so that a torch benchmark job can ask without importing pandas, whose memory
would count in the model's peak RSS.
"""

from __future__ import annotations

import inspect
from typing import Any

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what `encoding.encode` returns, in this order


def model_input_names(model: Any) -> tuple[str, ...]:
    """The inputs of `encoding.encode` that a torch model's forward names, in order. DistilBERT names no
    token_type_ids: transformers 4 refuses them (TypeError), 5 takes and ignores them, which leaves an ONNX
    export with an input that does nothing and that DistilBERT's tokenizer does not give."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(name for name in MODEL_INPUTS if name in accepted)
