"""Reading dataset files: CSV by its header's separator, JSON Lines, JSON arrays, byte order marks, capital suffixes,
and the errors for a file that does not read, each naming where it breaks and the fix."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from data_fixtures import MakeCsv, all_texts, labelled_rows, write_jsonl

from optbench.data import SPLITS, DatasetConfig, load_dataset
from optbench.data_files import read_table
from optbench.errors import OptbenchError

DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested past any recursion limit


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.json"])
def test_utf8_files_with_a_byte_order_mark_are_read(tmp_path: Path, name: str) -> None:
    """Windows tools (Notepad, PowerShell's Out-File) write UTF-8 with a BOM; a JSON file of one was refused as
    'not JSON' with the fix 'save it as UTF-8', which it was."""
    frame = pd.DataFrame(labelled_rows(60, ("n\u00e9g", "pos")))
    text = {
        ".csv": frame.to_csv(index=False),
        ".jsonl": frame.to_json(orient="records", lines=True, force_ascii=False),
        ".json": frame.to_json(orient="records", force_ascii=False),
    }[Path(name).suffix]
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    data = load_dataset(DatasetConfig(source=str(tmp_path / name)))
    assert data.label_names == ("n\u00e9g", "pos")
    assert sum(len(data.split(s)) for s in SPLITS) == 60


@pytest.mark.parametrize("name", ["missing.csv", "missing.jsonl"])
def test_missing_file_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(OptbenchError, match=r"missing\.\w+ does not exist: give a \.csv, \.jsonl or \.json path"):
        load_dataset(DatasetConfig(source=str(tmp_path / name)))


def test_a_folder_is_refused_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OptbenchError, match=r"is a folder, not a file: give a \.csv, \.jsonl or \.json file"):
        load_dataset(DatasetConfig(source=str(tmp_path)))


def test_json_lines_in_a_json_file_are_refused_with_the_fix(tmp_path: Path) -> None:
    # what Hugging Face's Dataset.to_json("data.json") writes: one object per line
    path = write_jsonl(tmp_path / "data.json", [{"text": f"t {i}", "label": i % 2} for i in range(30)])
    with pytest.raises(OptbenchError, match=r"one object per line \(what Dataset.to_json writes\): name it \.jsonl"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize("name", ["data.tsv", "data.txt"])
def test_a_tab_separated_file_of_another_suffix_is_told_to_take_the_name_csv(tmp_path: Path, name: str) -> None:
    """A .csv is read by its header's separator, tabs included; a .tsv was told only to "use .csv", which read as
    converting the file. Renamed, it reads."""
    path = tmp_path / name
    path.write_text("text\tlabel\n" + "".join(f"review {i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    message = (
        f"dataset {path} has suffix '{path.suffix}': use .csv, .jsonl or .json (a .csv may be separated by tabs, ';' "
        "or '|', read from its header: rename a .tsv or .txt of such rows to .csv)"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        load_dataset(DatasetConfig(source=str(path)))
    data = load_dataset(DatasetConfig(source=str(path.rename(path.with_suffix(".csv")))))
    assert data.label_names == ("neg", "pos")


def test_wrong_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("text,label\na,b\n")
    with pytest.raises(OptbenchError, match=r"suffix '\.txt': use \.csv, \.jsonl or \.json"):
        load_dataset(DatasetConfig(source=str(path)))


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(OptbenchError, match="cannot read dataset"):
        load_dataset(DatasetConfig(source=str(tmp_path / "empty.csv")))
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(OptbenchError, match="cannot read dataset"):
        load_dataset(DatasetConfig(source=str(tmp_path / "broken.jsonl")))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("rows.csv", "text,label\na,x\nb,y,z\n", "Expected 2 fields in line 3, saw 3"),
        (
            "rows.jsonl",
            '{"text": "a", "label": "x"}\n\n{"text": "b", "label": }\n',
            r"line 3 is not JSON \(Expecting value\)",
        ),
        # valid JSON, but past Python's 4,300-digit limit on integers: json.loads raises a plain ValueError
        ("rows.jsonl", '{"text": "a", "label": ' + "1" * 5000 + "}\n", r"line 1 cannot be read \(Exceeds the limit"),
        ("rows.json", '{"text": "a", "label": "x"}', "scalar values"),
        # valid JSON rows that are no objects: pandas stopped with a TypeError traceback, or for a string with
        # "dictionary update sequence element #0 has length 1"
        ("rows.jsonl", '{"text": "a", "label": "x"}\n\nnull\n', r"line 3 is null, not an object of one row's columns"),
        ("rows.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', r"line 2 is \[1, 2\], not an object"),
        ("rows.jsonl", '{"text": "a", "label": "x"}\n"b"\n', 'line 2 is "b", not an object'),
        # a long value is shown by its first 40 characters
        (
            "rows.jsonl",
            '{"text": "a"}\n' + json.dumps(list(range(30))) + "\n",
            r"line 2 is \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, not an object",
        ),
        ("rows.json", '[{"text": "a", "label": "x"}, 5]', r"element 2 of its array is 5, not an object"),
        ("rows.json", '[{"text": "a", "label": "x"}, null]', r"element 2 of its array is null, not an object"),
        # thousands of nested [: Python's json recursed past its limit, with a RecursionError traceback
        ("rows.jsonl", '{"text": "a"}\n' + DEEP + "\n", r"line 2 cannot be read \(maximum recursion depth exceeded"),
        ("rows.json", DEEP, "depth limit"),
    ],
)
def test_a_file_that_cannot_be_read_gets_one_line_naming_where_and_the_fix(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    """pandas' own message gives a character position for JSON Lines and ends CSV errors with a newline."""
    (tmp_path / name).write_text(content)
    with pytest.raises(OptbenchError, match=problem) as caught:
        load_dataset(DatasetConfig(source=str(tmp_path / name)))
    assert "\n" not in str(caught.value)
    assert ": save it as UTF-8" in str(caught.value)


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.json"])
def test_a_file_that_is_not_utf8_is_refused_naming_its_first_bad_line(tmp_path: Path, name: str) -> None:
    """A Latin-1 file (as older Windows tools save): pandas named "position 3" of the block it was decoding, far from
    the line at fault in a file of thousands of rows."""
    frame = pd.DataFrame(labelled_rows(5000))
    frame.loc[4321, "text"] = "un caf\u00e9 au lait"
    text = {
        ".csv": frame.to_csv(index=False),
        ".jsonl": frame.to_json(orient="records", lines=True, force_ascii=False),
        ".json": frame.to_json(orient="records", force_ascii=False, indent=0),
    }[Path(name).suffix]
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode("latin-1"))  # a BOM too: the line counts the same
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "caf" in row)
    with pytest.raises(OptbenchError, match=rf": line {line} is not UTF-8 \(byte 0xe9\): save it as UTF-8"):
        load_dataset(DatasetConfig(source=str(tmp_path / name)))


@pytest.mark.parametrize("separator", [";", "\t", "|"])
@pytest.mark.parametrize("comma", ["", ","])
def test_a_csv_file_separated_by_semicolons_tabs_or_bars_is_read(tmp_path: Path, separator: str, comma: str) -> None:
    """As Excel saves "CSV" where the decimal mark is a comma: it was refused as lacking the text and label columns
    (and once a text held a comma, with pandas' "Expected 1 fields in line 3, saw 2"), then told to save it anew."""
    rows = labelled_rows(60)
    rows["text"] = [f"{text}{comma * (i % 2)} read aloud" for i, text in enumerate(rows["text"])]  # some rows
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", sep=separator, index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "commas.csv", index=False)
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    commas = load_dataset(DatasetConfig(source=str(tmp_path / "commas.csv")))
    assert all_texts(data) == all_texts(commas) and data.label_names == commas.label_names


def test_a_csv_whose_header_follows_a_byte_order_mark_and_blank_lines_is_read_by_its_separator(tmp_path: Path) -> None:
    """pandas skips the blank lines before a header: the separator is the header's, not that of the first line."""
    rows = "".join(f"review {i}, read aloud;{'pos' if i % 2 else 'neg'}\n" for i in range(60))
    (tmp_path / "data.csv").write_bytes(b"\xef\xbb\xbf" + f"\n\ntext;label\n{rows}".encode())
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    assert data.label_names == ("neg", "pos")
    assert {t for split in all_texts(data).values() for t in split} == {f"review {i}, read aloud" for i in range(60)}


def test_a_semicolon_csv_whose_quoted_column_name_holds_a_comma_is_read_by_semicolons(tmp_path: Path) -> None:
    """Excel quotes a column name holding the comma: read by that comma, the file was a column "score" and one of
    the rest, lacking the named ones."""
    rows = "".join(f"review {i};{'pos' if i % 2 else 'neg'};{i}\n" for i in range(60))
    (tmp_path / "data.csv").write_text(f'text;label;"score, raw"\n{rows}')
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    assert data.label_names == ("neg", "pos") and sum(len(data.split(s)) for s in SPLITS) == 60


@pytest.mark.parametrize("name", ["DATA.CSV", "Data.JsonL", "DATA.JSON"])
def test_a_file_suffix_in_capitals_is_read(tmp_path: Path, name: str) -> None:
    """A suffix is the same in any case, as Windows takes it."""
    frame = pd.DataFrame(labelled_rows(60))
    text = {
        ".csv": frame.to_csv(index=False),
        ".jsonl": frame.to_json(orient="records", lines=True),
        ".json": frame.to_json(orient="records"),
    }[Path(name).suffix.lower()]
    (tmp_path / name).write_text(text)
    data = load_dataset(DatasetConfig(source=str(tmp_path / name)))
    assert sum(len(data.split(s)) for s in SPLITS) == 60


def test_a_csv_with_a_semicolon_in_a_column_name_is_read(make_csv: MakeCsv) -> None:
    """Its header has commas: a ';' or '|' in one column's name is no sign of another separator."""
    rows = {**labelled_rows(60), "score;raw": range(60), "source|site": ["web"] * 60}
    data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert sum(len(data.split(s)) for s in SPLITS) == 60


def test_a_json_object_of_rows_keyed_by_id_is_refused_as_such(tmp_path: Path) -> None:
    """pandas reads {"0": {"text": ...}, ...} as one column per row: the error listed every row id as a column (a
    line of 50 kB for 10k rows) and gave the fix to rename the text and label columns."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps({str(i): {"text": f"review {i}", "label": i % 2} for i in range(500)}))
    with pytest.raises(OptbenchError, match=r"is a JSON object of rows keyed by their ids, not an array: save it as"):
        load_dataset(DatasetConfig(source=str(path)))
    path.write_text(json.dumps({"text": {"0": "a review"}, **{f"column {i}": {"0": i} for i in range(500)}}))
    with pytest.raises(OptbenchError, match=r"has no column\(s\) \['label'\]") as caught:
        load_dataset(DatasetConfig(source=str(path)))
    assert "(501 in all)" in str(caught.value) and len(str(caught.value)) < 500


@pytest.mark.parametrize("before", [b"", b"\xef\xbb\xbf", b"\n  "])  # a byte order mark, or blank space
@pytest.mark.parametrize("extra", [{}, {"version": "1.0"}])
def test_a_json_object_holding_its_rows_under_a_key_is_refused_as_such(
    tmp_path: Path, extra: dict, before: bytes
) -> None:
    """pandas reads {"data": [{"text": ...}, ...]} as one column of objects: the error said to name it in text_column
    or label_column, and once named, that it held objects (multi-label data)."""
    path = tmp_path / "data.json"
    rows = [{"text": f"review {i}", "label": i % 2} for i in range(20)]
    path.write_bytes(before + json.dumps({**extra, "data": rows}).encode())
    message = "is a JSON object with its rows under ['data'], not an array of them: save it as UTF-8 JSON: an array"
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_dataset(DatasetConfig(source=str(path)))


def test_a_json_array_with_an_object_column_and_no_text_column_is_told_the_column_missing(tmp_path: Path) -> None:
    """An array of rows, each with an object ("meta": {...}) and its text under another name: it was refused as a
    JSON object holding its rows under 'meta', with the fix to save it as the array of objects it already was."""
    path = tmp_path / "data.json"
    rows = [{"sentence": f"review {i}", "label": i % 2, "meta": {"site": "web"}} for i in range(20)]
    path.write_text(json.dumps(rows))
    message = r"has no column\(s\) \['text'\] \(it has \['sentence', 'label', 'meta'\]\): set text_column"
    with pytest.raises(OptbenchError, match=message):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.json"])
def test_texts_that_look_like_numbers_stay_texts(tmp_path: Path, name: str) -> None:
    """A text column of codes or amounts: read as numbers, "007" was 7 and "1.50" was 1.5."""
    frame = pd.DataFrame({"text": ["007", "1.50", "10"], "label": ["a", "b", "a"]})
    path = tmp_path / name
    path.write_text(
        {
            ".csv": frame.to_csv(index=False),
            ".jsonl": frame.to_json(orient="records", lines=True),
            ".json": frame.to_json(orient="records"),
        }[path.suffix]
    )
    assert read_table(path, "text", "label")["text"].tolist() == ["007", "1.50", "10"]


def _lines_with_a_quote_left_open(opened: int, closed: str | None) -> list[str]:
    """A CSV of 60 rows whose row on file line `opened` has a text that opens a quote and never closes it; with
    `closed`, file line 31 is that row instead (a text that opens a quote of its own: pandas took it as the close)."""
    lines = ["text,label"] + [f"review number {i} of the set,{'pos' if i % 2 else 'neg'}" for i in range(60)]
    lines[opened - 1] = '"' + lines[opened - 1]
    if closed is not None:
        lines[30] = closed
    return lines


def test_a_quote_left_open_to_the_end_of_the_file_is_refused_naming_its_line(tmp_path: Path) -> None:
    """pandas said "EOF inside string starting at row 57", a count of records (one fewer than the line, and fewer
    still past a text of line breaks), not the line to fix."""
    lines = _lines_with_a_quote_left_open(59, None)
    lines[2] = '"two lines\nof text",pos'  # one line more before the quote: pandas' row count fell one further behind
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    message = (
        f"cannot read dataset {path}: line 60 opens a quote that is never closed: the 2 line(s) after it, to the end "
        "of the file, were read into its text: close the quote where its text ends, or, if the quote belongs to the "
        'text, quote the whole text and write that quote as two ("""great"" film",pos)'
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}$"):
        load_dataset(DatasetConfig(source=str(path)))


def test_a_quote_left_open_on_the_last_line_is_refused_naming_that_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("\n".join(_lines_with_a_quote_left_open(61, None)))  # no line break at the end
    with pytest.raises(OptbenchError, match=r": line 61 opens a quote that is never closed: close the quote"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_quote_left_open_that_swallows_rows_up_to_a_later_quote_is_refused_naming_its_line(
    tmp_path: Path, newline: str
) -> None:
    """The quote that opens a later text (here one that holds quotes of its own) closed the one left open: the 19 rows
    between were read into one text and lost without a word (41 rows of 60 loaded)."""
    lines = _lines_with_a_quote_left_open(12, '"he said ""wow"" twice",pos')
    lines[2:2] = ["", ""]  # blank lines, which pandas skips: the quote now opens on line 14
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join(lines).encode() + newline.encode())
    message = (
        f"dataset {path}: line 14 opens a quote that no quote closes on that line, so the 19 line(s) after it were "
        "read into its text and their rows lost: close the quote"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}"):
        load_dataset(DatasetConfig(source=str(path)))


def test_a_quote_left_open_in_a_file_of_labels_first_and_semicolons_is_refused(tmp_path: Path) -> None:
    """The rows a text swallowed are found by the label column wherever it is, and by the file's separator; its name
    after the byte order mark Excel writes in front of a ';' file (read with it, "\ufefflabel" named no column)."""
    lines = ["label;text"] + [f"{'pos' if i % 2 else 'neg'};review {i}" for i in range(60)]
    lines[11] = 'neg;"review 10'
    lines[30] = 'pos;"a ""quoted"" review"'
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    with pytest.raises(OptbenchError, match=r": line 12 opens a quote .* the 19 line\(s\) after it were read"):
        load_dataset(DatasetConfig(source=str(path)))


def test_a_quote_left_open_up_to_a_quoted_text_with_a_comma_is_refused_naming_its_line(tmp_path: Path) -> None:
    """The commonest close: a text with a comma, which CSV writers quote. pandas said "Expected 2 fields in line 12,
    saw 3" of a line of two fields."""
    path = tmp_path / "data.csv"
    path.write_text("\n".join(_lines_with_a_quote_left_open(12, '"a good, long film",pos')) + "\n")
    message = (
        f"cannot read dataset {path}: line 12 opens a quote that no quote closes on that line, so the 19 line(s) "
        "after it were read into its text, and its row into 3 fields, not 2: close the quote"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize(("separator", "columns"), [(",", ["text", "label"]), (";", ["label", "text"])])
def test_quoted_texts_of_several_lines_load_as_they_are(tmp_path: Path, separator: str, columns: list[str]) -> None:
    """Line breaks in a quoted text are CSV: lines that are no rows of the file (paragraphs; a line of two fields
    whose label field is no label, first or last; a line with a label in the label field but more fields than a
    row) are the text's own."""
    s = separator
    texts = [f"review {i}\n\nsecond paragraph{s} said {'neg' if i % 3 else 'twice'}\nthird{s} {i}" for i in range(58)]
    # a text of the rest of its row first, then a line of as many fields as a row, its label field no label
    rest = f"one line{s} and a second" if columns[0] == "text" else "one line"
    texts.append(f"{rest}\nthat ends{s} neg")
    # lines of three fields, a label where a row has its own
    texts.append(f"a{s} pos{s} b\nc{s} neg{s} d" if columns[0] == "text" else f"one line\npos{s} x{s} y")
    rows = {"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(60)]}
    pd.DataFrame(rows)[columns].to_csv(tmp_path / "data.csv", index=False, sep=separator)
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    assert sorted(t for split in all_texts(data).values() for t in split) == sorted(texts)


def test_a_quote_left_open_before_another_row_of_too_many_fields_is_named_first(tmp_path: Path) -> None:
    """pandas said "Expected 2 fields in line 32, saw 3" of the row on line 51: its count of lines fell 19 short
    past the 19 rows the open quote swallowed, and line 32 held nothing wrong."""
    lines = _lines_with_a_quote_left_open(12, '"he said ""wow"" twice",pos')
    lines[50] = "a, b, pos"
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    message = (
        f"cannot read dataset {path}: line 12 opens a quote that no quote closes on that line, so the 19 line(s) "
        "after it were read into its text and their rows lost: close the quote"
    )
    with pytest.raises(OptbenchError, match=f"^{re.escape(message)}"):
        load_dataset(DatasetConfig(source=str(path)))


def _refused_naming(path: Path, lines: list[str], message: str) -> None:
    """`lines` written to `path` are refused, the message starting `message` after the dataset's path."""
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(OptbenchError, match=rf"^(cannot read )?dataset {re.escape(str(path))}: {re.escape(message)}"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize("closed", [None, '"he said ""wow"" twice",pos'])
def test_a_quote_left_open_after_blank_lines_before_the_header_is_named_by_its_file_line(
    tmp_path: Path, closed: str | None
) -> None:
    """pandas skips the blank lines, as the header is found here: taken as the header, the blank line named no label
    column, and the rows swallowed up to a later quote were lost without a word."""
    lines = ["", "", *_lines_with_a_quote_left_open(12, closed)]
    _refused_naming(tmp_path / "data.csv", lines, "line 14 opens a quote that ")


@pytest.mark.parametrize(("closed", "says"), [(None, "is never closed"), ('t,"a good, long film",pos', "no quote")])
def test_a_quote_left_open_after_a_field_of_two_lines_is_named_by_its_file_line(
    tmp_path: Path, closed: str | None, says: str
) -> None:
    """The quote opens on the title's second line, not the line its row starts on."""
    lines = ["title,text,label"] + [f"t{i},review number {i},{'pos' if i % 2 else 'neg'}" for i in range(60)]
    lines[11] = '"a title of\ntwo lines","review left open,neg'
    if closed is not None:
        lines[30] = closed
    _refused_naming(tmp_path / "data.csv", lines, f"line 13 opens a quote that {says}")


def test_a_quote_left_open_after_a_comma_and_a_space_is_refused(tmp_path: Path) -> None:
    """A file written "label, text" (by hand, or by tools that space their commas): pandas opens the quote after the
    space, and so must the search for it, or the 19 rows swallowed were lost without a word."""
    lines = ["label, text"] + [f"{'pos' if i % 2 else 'neg'}, review {i}" for i in range(60)]
    lines[11] = 'neg, "review 10'
    lines[30] = 'pos, "a ""quoted"" review"'
    _refused_naming(tmp_path / "data.csv", lines, "line 12 opens a quote that no quote closes on that line, so the 19")


def test_a_quote_left_open_in_a_text_of_doubled_quotes_is_refused(tmp_path: Path) -> None:
    """The text was quoted and its quotes written as two, as the fix says, but its closing quote lost: a doubled
    quote is a quote of the text, not its close."""
    lines = _lines_with_a_quote_left_open(12, '"a good, long film",pos')
    lines[11] = '"she said ""wow"" and left,neg'
    _refused_naming(tmp_path / "data.csv", lines, "line 12 opens a quote that no quote closes on that line, so the 19")


def test_a_quote_left_open_is_refused_in_a_file_that_also_holds_a_text_of_paragraphs(tmp_path: Path) -> None:
    """One text swallowed rows and another, quoted whole, holds honest line breaks: the one that swallowed rows is
    refused, whatever the other cells with line breaks are (and named by its file line, the paragraph's counted)."""
    lines = _lines_with_a_quote_left_open(12, '"he said ""wow"" twice",pos')
    lines[4] = '"a first paragraph\n\nand a second, after a blank line",neg'
    _refused_naming(tmp_path / "data.csv", lines, "line 14 opens a quote that no quote closes on that line, so the 19")


def test_a_quote_left_open_in_a_file_without_the_label_column_gets_pandas_error(tmp_path: Path) -> None:
    """Without the label column the rows a text swallowed cannot be told (no labels to find in them): pandas' own
    error is given, as for any file that does not read, not a traceback from the search."""
    header, *rows = _lines_with_a_quote_left_open(12, '"a good, long film",pos')
    lines = [header.replace("label", "sentiment"), *rows]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(OptbenchError, match=r"^cannot read dataset .*: Expected 2 fields in line 12, saw 3: save it"):
        load_dataset(DatasetConfig(source=str(path)))


def test_labels_written_with_spaces_after_them_tell_the_rows_a_quote_swallowed(tmp_path: Path) -> None:
    """pandas keeps "pos " as it is: the labels the swallowed lines end in are compared without their spaces."""
    header, *rows = _lines_with_a_quote_left_open(12, '"he said ""wow"" twice",pos')
    lines = [header, *(f"{row} " for row in rows)]
    _refused_naming(tmp_path / "data.csv", lines, "line 12 opens a quote that no quote closes on that line, so the 19")


def test_a_quote_left_open_that_swallows_more_than_the_csv_module_s_field_limit_is_refused(tmp_path: Path) -> None:
    """A text past 128 KiB, the csv module's default limit on a field: the search for the quote read the file into
    a csv.Error of its own, and the limit it lifts for that is put back."""
    lines = ["text,label"] + [f"review {i} {'x' * 100},{'pos' if i % 2 else 'neg'}" for i in range(2000)]
    lines[12] = '"' + lines[12]
    lines[1900] = '"he said ""wow"" twice",pos'
    message = "line 13 opens a quote that no quote closes on that line, so the 1888 line(s)"
    limit = csv.field_size_limit(2**17)  # the default, whatever was left before
    try:
        _refused_naming(tmp_path / "data.csv", lines, message)
        assert csv.field_size_limit() == 2**17
    finally:
        csv.field_size_limit(limit)
