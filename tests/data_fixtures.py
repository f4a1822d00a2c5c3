"""Small labelled datasets made up for the tests of data and data_files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optbench.data import SPLITS, LabelledData

MakeCsv = Callable[..., Path]


def labelled_rows(n: int, labels: tuple[Any, ...] = ("neg", "pos")) -> dict[str, list[Any]]:
    """`n` distinct texts with labels cycling through `labels`."""
    return {
        "text": [f"review number {i} of the test set" for i in range(n)],
        "label": [labels[i % len(labels)] for i in range(n)],
    }


def all_texts(data: LabelledData) -> dict[str, list[str]]:
    return {name: data.split(name).texts for name in SPLITS}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
