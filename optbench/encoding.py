"""Texts turned into model inputs: the saved tokenizer, padded batches, and the sequence-length policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optbench.errors import OptbenchError, refused_reading
from optbench.model_inputs import MODEL_INPUTS

SeqLen = int | Literal["data"]
Shape = tuple[int, SeqLen]  # (batch size, sequence length)


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer saved with the model in `folder`, for `encode`. One whose files do not load is refused naming
    the fix, and so is one without a pad token: transformers would fail on the first batch of several texts, part
    way through a step."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except PermissionError as exc:
        raise refused_reading(Path(exc.filename or folder), exc) from exc
    # damaged files: transformers and tokenizers raise anything (KeyError, UnicodeDecodeError, a bare Exception)
    except Exception as exc:
        raise OptbenchError(
            f"cannot load the tokenizer in {folder} ({type(exc).__name__}: {' '.join(str(exc).split())}): install "
            "the library that names, if it names one; else its tokenizer files are damaged or incomplete: save the "
            "model's tokenizer into it again (tokenizer.save_pretrained(folder))"
        ) from exc
    if tokenizer.pad_token is None:
        advice = _pad_advice(folder, tokenizer)
        raise OptbenchError(
            f"the tokenizer in {folder} has no pad token, which optbench pads batches with: {advice}, "
            f'then tokenizer.save_pretrained("{folder}")'
        )
    return tokenizer


def _pad_advice(folder: Path, tokenizer: Any) -> str:
    """How to set the pad token: the one the model's config.json names when the vocabulary has it."""
    try:
        pad_id = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("pad_token_id")
    except (OSError, ValueError, AttributeError):
        pad_id = None
    token = next((t for t, i in tokenizer.get_vocab().items() if i == pad_id), None)
    if token is None:
        return "set one of its vocabulary's tokens, e.g. tokenizer.pad_token = tokenizer.sep_token"
    return f"set the one config.json's pad_token_id = {pad_id} names, tokenizer.pad_token = {json.dumps(token)}"


def encode(tokenizer: Any, texts: list[str], *, seq_len: SeqLen, max_length: int) -> dict[str, np.ndarray]:
    """Tokenize one batch: padded to exactly `seq_len` tokens, or to its longest text for `data`."""
    if seq_len == "data":
        padding: str | bool = True
        length = max_length
    else:
        padding, length = "max_length", int(seq_len)
    encoded = tokenizer(
        texts,
        padding=padding,
        truncation=True,
        max_length=length,
        return_tensors="np",
        return_token_type_ids=True,
    )
    return {k: np.ascontiguousarray(encoded[k], dtype=np.int64) for k in MODEL_INPUTS}


def batches(
    tokenizer: Any, texts: list[str], *, batch_size: int, seq_len: SeqLen, max_length: int
) -> list[dict[str, np.ndarray]]:
    """Consecutive batches of `texts`, in order; the last one may be smaller."""
    if batch_size < 1:
        raise OptbenchError(f"batch size {batch_size} must be 1 or more")
    return [
        encode(tokenizer, texts[i : i + batch_size], seq_len=seq_len, max_length=max_length)
        for i in range(0, len(texts), batch_size)
    ]


def whole_batches(texts: list[str], batch_size: int, max_batches: int) -> list[str]:
    """The texts of up to `max_batches` whole batches: `texts` in order, wrapping around to its start to fill
    the last batch, so that every timed call runs `batch_size` rows (a short last batch would be timed, and
    counted in the throughput, as a whole one)."""
    count = min(max_batches, -(-len(texts) // batch_size))
    return [texts[i % len(texts)] for i in range(count * batch_size)]


def parse_seq_len(value: Any) -> SeqLen:
    """A sequence-length policy from a recipe: a positive integer, or `data` for the real lengths."""
    if value == "data":
        return "data"
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise OptbenchError(f'sequence length {value!r} is not valid: use a positive integer or "data"')
