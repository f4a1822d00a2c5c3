"""A quote that opens a CSV text and is never closed on its line (`"great film,pos`, the closing quote lost in a
hand edit or a bad export): pandas reads every line after it, up to the next quote, into that one text, whose rows
vanish without a word, or, with no quote after it, fails with "EOF inside string starting at row N", a count of
records, not the file line to fix; or, where the next quote opens a text that holds a comma, with "Expected 2 fields
in line 12, saw 3" on a line of two. Each is found here and named by the line where the quote opens."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pandas as pd

from optbench.errors import OptbenchError

QUOTE_FIX = (
    "close the quote where its text ends, or, if the quote belongs to the text, quote the whole text and write that "
    'quote as two ("""great"" film",pos)'
)
FIELD_LIMIT = 2**31 - 1  # the csv module's largest (a C long on every platform): a swallowing text has no bound

NEWLINE = "\n"  # for f-strings, which take no backslash before Python 3.12
LooksLikeRow = Callable[[str, int], bool]  # (line, from_column): whether it holds a row's fields from that column


def check_no_swallowed_rows(frame: pd.DataFrame, path: Path, separator: str, label_column: str) -> None:
    """Refuse a CSV one of whose cells swallowed rows: a text holding line breaks whose first line holds the rest of
    its own row (the fields after its column, a label among them where the label column comes later) and every line
    after it (but the last, which ends where a later quote closed it) a whole row of the file: the header's number
    of fields, with one of the file's labels in the label column. A text of honest line breaks (paragraphs, a list)
    has lines that are no such rows; a refusal, not a warning, as the swallowed rows are lost and the one left is a
    mix of them all.

    Cheap on any file: only cells with line breaks are looked at, and the file is read again only to name the line
    of one that swallowed rows."""
    if label_column not in frame.columns:  # load_dataset refuses it, naming the columns there are
        return
    labels = set(frame[label_column].dropna().astype(str).str.strip())
    looks_like_row = _row_test(separator, len(frame.columns), frame.columns.get_loc(label_column), labels)
    texts = frame.select_dtypes(include=["object", "string"])
    broken = ((frame.columns.get_loc(column), texts[column]) for column in texts.columns)
    cells = ((at, cell) for at, values in broken for cell in values[values.str.contains("\n", regex=False, na=False)])
    if any(_swallowed_rows(cell, at, looks_like_row) for at, cell in cells) and (
        found := _swallowing_text(_rows_by_line(path, separator), separator, label_column)
    ):
        line, text, _ = found
        raise OptbenchError(f"dataset {path}: {_rows_lost(line, text)}")


def unclosed_quote(path: Path, separator: str, label_column: str, error: Exception) -> str | None:
    """Where the quote opens that made pandas fail, and how many lines after it were read into its text: one open at
    the end of the file ("EOF inside string starting at row N"), or one whose text swallowed rows up to a quoted text
    with a comma, its row then of too many fields ("Expected 2 fields in line 12, saw 3"), or one that swallowed rows
    before another row of too many fields, whose line pandas then counts short by the lines swallowed; None for other
    errors."""
    at_end = "EOF inside string" in str(error)
    if not at_end and "Expected" not in str(error):
        return None
    try:
        rows = _rows_by_line(path, separator)
    except (OSError, UnicodeDecodeError, csv.Error):  # pandas's own error says what it can
        return None
    if at_end:
        start, row = rows[-1]  # the open quote's text runs to the end of the file: the last field
        line = start + sum(field.count("\n") for field in row[:-1])
        after = row[-1].rstrip("\r\n").count("\n")
        swallowed = f": the {after} line(s) after it, to the end of the file, were read into its text" if after else ""
        return f"line {line} opens a quote that is never closed{swallowed}: {QUOTE_FIX}"
    found = _swallowing_text(rows, separator, label_column)
    if not found:
        return None
    line, text, row = found
    width = len(_header(rows))
    if len(row) == width:  # another row has too many fields: pandas names it by a line count short by the swallowed
        return _rows_lost(line, text)
    return f"{_opens_a_quote(line, text)}, and its row into {len(row)} fields, not {width}: {QUOTE_FIX}"


def _header(rows: list[tuple[int, list[str]]]) -> list[str]:
    """The first row that is not a blank line, as pandas takes it."""
    return next((row for _, row in rows if row), [])


def _opens_a_quote(line: int, text: str) -> str:
    """`line 12 opens a quote ...`: where a text that swallowed rows starts, and how many lines it took."""
    return (
        f"line {line} opens a quote that no quote closes on that line, so the {text.count(NEWLINE)} line(s) after it "
        "were read into its text"
    )


def _rows_lost(line: int, text: str) -> str:
    """The refusal of a text that swallowed rows of a whole width, lost without a word."""
    return f"{_opens_a_quote(line, text)} and their rows lost: {QUOTE_FIX}"


def _swallowing_text(
    rows: list[tuple[int, list[str]]], separator: str, label_column: str
) -> tuple[int, str, list[str]] | None:
    """The first text of `rows` (the header first) that swallowed rows: the line it starts on, the text, its row."""
    header = _header(rows)
    if label_column not in header:
        return None
    label_at = header.index(label_column)
    labels = {
        row[label_at].strip()
        for _, row in rows
        if row is not header and len(row) == len(header) and "\n" not in row[label_at]
    }
    looks_like_row = _row_test(separator, len(header), label_at, labels)
    return next(
        (
            (line, field, row)
            for line, at, field, row in _fields_by_line(rows)
            if _swallowed_rows(field, at, looks_like_row)
        ),
        None,
    )


def _row_test(separator: str, width: int, label_at: int, labels: Collection[str]) -> LooksLikeRow:
    """Whether a line holds a row's fields from a column on: as many as the row has from there (`width` in all), one
    of `labels` at `label_at` where that column is among them."""

    def looks_like_row(line: str, from_column: int) -> bool:
        fields = next(csv.reader([line], delimiter=separator, skipinitialspace=True), [])
        if len(fields) != width - from_column:
            return False
        return label_at < from_column or fields[label_at - from_column].strip() in labels

    return looks_like_row


def _swallowed_rows(text: str, column: int, looks_like_row: LooksLikeRow) -> bool:
    """Whether `text`, of the field at `column`, swallowed rows: its first line holds the rest of its row, and the lines
    after it are whole rows of the file, all but the last (cut where a later quote closed the text), at least one."""
    first, *after = re.split(r"\r?\n", text)
    rows = [looks_like_row(line, 0) for line in after]
    return looks_like_row(first, column) and all(rows[:-1]) and any(rows)


def _rows_by_line(path: Path, separator: str) -> list[tuple[int, list[str]]]:
    """Each row of the CSV with the file line it starts on, read as pandas reads it (a quote opens a field only at
    its start; one inside a field is kept as it is)."""
    rows = []
    limit = csv.field_size_limit(FIELD_LIMIT)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=separator, skipinitialspace=True)
            end = 0
            for row in reader:
                rows.append((end + 1, row))
                end = reader.line_num
    finally:
        csv.field_size_limit(limit)
    return rows


def _fields_by_line(rows: list[tuple[int, list[str]]]) -> Iterator[tuple[int, int, str, list[str]]]:
    """Each field of `rows` with the line it starts on, its column, and its row."""
    for line, row in rows:
        for at, field in enumerate(row):
            yield line, at, field, row
            line += field.count("\n")
