"""Reading a dataset file: CSV (by its header's separator), JSON Lines or a JSON array, with errors that say where
the file breaks and how to save it so that it reads."""

from __future__ import annotations

import codecs
import json
import math
import re
from pathlib import Path

import pandas as pd

from optbench.csv_quotes import check_no_swallowed_rows, unclosed_quote
from optbench.errors import OptbenchError, listed

# how to write each file format optbench reads, for the error that says a file could not be read
READ_FIXES = {
    ".csv": "save it as UTF-8 CSV: a header row naming the columns, then one row per text with as many fields",
    ".jsonl": 'save it as UTF-8 JSON Lines: one object per line, e.g. {"text": "...", "label": "..."}',
    # Dataset.to_json writes JSON Lines whatever the name, and pandas then says only "Trailing data"
    ".json": 'save it as UTF-8 JSON: an array of objects, e.g. [{"text": "...", "label": "..."}]; a file of one '
    "object per line (what Dataset.to_json writes): name it .jsonl",
}
FILE_SUFFIXES = ", ".join(list(READ_FIXES)[:-1]) + f" or {list(READ_FIXES)[-1]}"  # ".csv, .jsonl or .json", for errors


def read_table(path: Path, text_column: str, label_column: str) -> pd.DataFrame:
    """The rows of a dataset file, read by its suffix: `text_column` is read as text ("007" stays a text);
    `label_column` tells the rows a CSV text swallowed past a quote left open (csv_quotes)."""
    suffix = path.suffix.lower()
    if suffix not in READ_FIXES:
        raise OptbenchError(
            f"dataset {path} has suffix {suffix!r}: use {FILE_SUFFIXES} (a .csv may be separated by tabs, ';' or '|', "
            "read from its header: rename a .tsv or .txt of such rows to .csv)"
        )
    separator = _separator(path) if suffix == ".csv" else ","
    try:  # "007" stays a text and "None" or "NA" a label: only empty cells are missing
        if suffix == ".csv":
            # skipinitialspace: a file written "text, label" (by hand, or by tools that space their commas) names
            # "label", and a quoted text after ", " is one field: its header's " label" was no column of the
            # default name, and its texts were cut at their commas into fields of their own
            frame = pd.read_csv(
                path,
                sep=separator,
                dtype={text_column: str},
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
            )
        else:
            # -sig: a BOM, as Windows tools write (pandas reads one in a CSV, and tomllib in a recipe, the same)
            # labels as the file writes them: pandas' inference read "01", 1 and true as one label 1, so a model's
            # "01" was refused as unknown; JSON numbers still read as numbers (infer_objects), whole floats as ints
            columns = {text_column: object, label_column: object}
            frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=columns, encoding="utf-8-sig")
            if text_column in frame.columns:
                frame[text_column] = frame[text_column].map(_as_text)
            if label_column in frame.columns:
                frame[label_column] = frame[label_column].infer_objects()
    # TypeError (pandas 3) or AttributeError (pandas 2): pandas's, for a row of JSON that is no object (null, 5, [1, 2])
    except (ValueError, TypeError, AttributeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        if suffix == ".csv" and (unclosed := unclosed_quote(path, separator, label_column, exc)):
            raise OptbenchError(f"cannot read dataset {path}: {unclosed}") from exc
        reason = _not_utf8(path) or _bad_json_row(path, suffix) or " ".join(str(exc).split())
        raise OptbenchError(f"cannot read dataset {path}: {reason}: {READ_FIXES[suffix]}") from exc
    if len(frame) == 0:  # a header alone, or an empty JSON file: not a file without the named columns
        raise OptbenchError(f"dataset {path} has no rows: {READ_FIXES[suffix]}")
    if suffix == ".csv":
        check_no_swallowed_rows(frame, path, separator, label_column)
    if suffix == ".json" and text_column not in frame.columns and _is_json_object(path):
        if text_column in frame.index.astype(str):
            raise OptbenchError(  # {"0": {"text": ...}, "1": ...}: pandas reads each row as a column, named by its key
                f"dataset {path} is a JSON object of rows keyed by their ids, not an array: {READ_FIXES[suffix]}"
            )
        # {"data": [{"text": ...}, ...]}: pandas reads the array as one column of objects, which the error called a
        # column to name in text_column, and then, named, one of lists or objects (multi-label data)
        nesting = [str(c) for c in frame.columns if frame[c].map(lambda v: isinstance(v, dict)).all()]
        if nesting:
            raise OptbenchError(
                f"dataset {path} is a JSON object with its rows under {listed(nesting)}, not an array of them: "
                f"{READ_FIXES[suffix]}"
            )
    return frame


def _as_text(value: object) -> object:
    """A JSON cell of the text column as text (a JSON number too); missing, a list or an object
    kept as it is, for load_dataset to drop or refuse (as text, {"en": "..."} was the row "{'en': '...'}")."""
    if value is None or isinstance(value, list | dict) or (isinstance(value, float) and math.isnan(value)):
        return value
    return str(value)


def _is_json_object(path: Path) -> bool:
    """Whether a JSON file holds an object at its top, not an array: only an object keys its rows by id or holds them
    under a key. An array whose rows each hold an object ("meta": {...}) reads as a column of objects too, and was
    refused as rows under that key, with the fix to save it as the array it was."""
    return path.read_text(encoding="utf-8-sig").lstrip().startswith("{")


def _separator(path: Path) -> str:
    """The field separator of a CSV: a comma, else the ';', tab or '|' of a header row without one (Excel saves
    "CSV" with ';' where the decimal mark is a comma; a TSV may be named .csv). Read with commas, such a file was
    one column lacking the named ones, or, once a text held a comma, pandas' "Expected 1 fields in line 3, saw 2".
    A quoted column name is passed over: its comma ("score, raw";label) separates nothing."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            header = next((line.rstrip("\r\n") for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError):  # pandas reads it next, and its error says why it cannot
        return ","
    header = re.sub(r'"[^"]*"', "", header)
    if "," in header:
        return ","
    return next((c for c in ";\t|" if c in header), ",")


def _not_utf8(path: Path) -> str | None:
    """Where a file that is not UTF-8 (Latin-1 or Windows-1252, as older tools save) first breaks: the line and the
    byte. pandas' "can't decode byte 0xe9 in position 3" counts from the block it was decoding, not the file."""
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)  # allowed, and utf-8-sig counts from after it
        data.decode("utf-8")
    except OSError:
        return None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line} is not UTF-8 (byte {data[exc.start]:#04x})"
    return None


def _bad_json_row(path: Path, suffix: str) -> str | None:
    """Where a JSON Lines file first breaks (pandas only gives a character position), or the first row of a JSON
    Lines file or a JSON array that is no object (pandas stopped on it with a TypeError traceback, or "dictionary
    update sequence element #0 has length 1"); None for a CSV, or where neither is found."""
    if suffix == ".csv":
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError):  # pandas's own error says where
            return None
        numbered = enumerate(rows if isinstance(rows, list) else [], 1)
        return next(
            (_not_a_row(f"element {n} of its array", row) for n, row in numbered if not isinstance(row, dict)), None
        )
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number} is not JSON ({exc.msg})"
        # valid JSON that Python refuses: an integer over its 4,300-digit limit, thousands of nested [ or {
        except (ValueError, RecursionError) as exc:
            return f"line {number} cannot be read ({exc})"
        if not isinstance(row, dict):
            return _not_a_row(f"line {number}", row)
    return None


def _not_a_row(where: str, value: object) -> str:
    """`line 3 is null, not an object`: a JSON value that holds no row's columns, shown as JSON writes it."""
    return f"{where} is {json.dumps(value)[:40]}, not an object of one row's columns"
