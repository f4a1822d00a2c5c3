"""Datasets: the built-in reviews, the columns of user files, splits, cleaning and label alignment."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from data_fixtures import MakeCsv, all_texts, labelled_rows, write_jsonl

from optbench.data import (
    BUILTIN,
    SPLITS,
    DatasetConfig,
    LabelledData,
    Split,
    _read_builtin,
    align_labels,
    load_dataset,
)
from optbench.errors import OptbenchError
from optbench.recipe import load_recipe

# --- the built-in dataset -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> LabelledData:
    return load_dataset(DatasetConfig())


def test_builtin_has_three_nonempty_splits_and_its_labels(builtin: LabelledData) -> None:
    assert builtin.source == BUILTIN
    assert builtin.label_names == ("fresh", "rotten")
    sizes = {name: len(builtin.split(name)) for name in SPLITS}
    assert all(size > 0 for size in sizes.values()), sizes
    total = sum(sizes.values())
    assert 12_000 < total < 13_500  # about 12.7k reviews once duplicates and conflicts are gone
    for name in ("validation", "test"):
        assert 0.05 < sizes[name] / total < 0.15, sizes
    for name in SPLITS:
        split = builtin.split(name)
        assert split.labels.dtype == np.int64
        assert set(np.unique(split.labels)) == {0, 1}
        assert len(split.texts) == len(split.labels)


def test_builtin_splits_share_no_text_and_no_movie(builtin: LabelledData) -> None:
    raw = _read_builtin()
    assert set(raw.columns) >= {"text", "label", "movie"}
    movie_of = raw.drop_duplicates("text").set_index("text")["movie"]
    texts = {name: set(builtin.split(name).texts) for name in SPLITS}
    movies = {name: set(movie_of.loc[list(texts[name])]) for name in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not texts[a] & texts[b], (a, b)
            assert not movies[a] & movies[b], (a, b)


def test_builtin_split_is_deterministic(builtin: LabelledData) -> None:
    again = load_dataset(DatasetConfig())
    assert len(builtin.fingerprint) == 16
    assert again.fingerprint == builtin.fingerprint
    assert again.test.texts == builtin.test.texts
    np.testing.assert_array_equal(again.test.labels, builtin.test.labels)


@pytest.mark.parametrize(
    ("option", "value"),
    [("text_column", "review"), ("label_column", "sentiment"), ("split_column", "split"), ("group_column", "movie")],
)
def test_column_settings_on_the_builtin_dataset_are_refused(option: str, value: str) -> None:
    """A recipe that named its file's columns but no source ran on the movie reviews: the settings were ignored."""
    message = rf'\[dataset\] {option} = "{value}" name columns of a file, and the source is the built-in '
    with pytest.raises(OptbenchError, match=message + r'"rotten-tomatoes": set source to your \.csv'):
        load_dataset(DatasetConfig(**{option: value}))


def test_unknown_split_name_is_refused(builtin: LabelledData) -> None:
    with pytest.raises(OptbenchError, match="unknown split 'dev'"):
        builtin.split("dev")


# --- user files ------------------------------------------------------------------------------------


def test_csv_with_custom_columns(make_csv: MakeCsv) -> None:
    rows = labelled_rows(300, ("good", "bad", "meh"))
    path = make_csv({"body": rows["text"], "stars": rows["label"], "other": range(300)})
    data = load_dataset(DatasetConfig(source=str(path), text_column="body", label_column="stars"))
    assert data.label_names == ("bad", "good", "meh")  # alphabetical
    texts = all_texts(data)
    assert sorted(t for split in texts.values() for t in split) == sorted(rows["text"])
    truth = dict(zip(rows["text"], rows["label"], strict=True))
    for name in SPLITS:
        split = data.split(name)
        assert len(split) > 0
        assert [data.label_names[i] for i in split.labels] == [truth[t] for t in split.texts]


def test_jsonl_with_custom_columns(tmp_path: Path) -> None:
    rows = labelled_rows(200)
    records = [{"sentence": t, "y": y} for t, y in zip(rows["text"], rows["label"], strict=True)]
    path = write_jsonl(tmp_path / "data.jsonl", records)
    data = load_dataset(DatasetConfig(source=str(path), text_column="sentence", label_column="y"))
    assert data.label_names == ("neg", "pos")
    assert sum(len(data.split(n)) for n in SPLITS) == 200


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_labels_are_read_as_the_file_writes_them(tmp_path: Path, suffix: str) -> None:
    """pandas read "01", "02" as 1 and 2 (and "1" beside "01" as one label): a model whose labels are "01", "02"
    refused the data as labels it did not know. JSON numbers still read as numbers: 1.0 is label 1."""
    import json

    strings = labelled_rows(300, ("01", "1", "02"))
    numbers = labelled_rows(300, (0, 1.0, None))
    for rows, names in ((strings, ("01", "1", "02")), (numbers, ("0", "1"))):
        records = [{"text": t, "label": y} for t, y in zip(rows["text"], rows["label"], strict=True)]
        path = tmp_path / f"data{suffix}"
        if suffix == ".json":
            path.write_text(json.dumps(records), encoding="utf-8")
        else:
            write_jsonl(path, records)
        assert load_dataset(DatasetConfig(source=str(path))).label_names == names


def test_integer_labels_keep_numeric_order(make_csv: MakeCsv) -> None:
    path = make_csv(labelled_rows(300, (10, 2, 1)))
    data = load_dataset(DatasetConfig(source=str(path)))
    assert data.label_names == ("1", "2", "10")


def test_negative_integer_labels_keep_numeric_order(make_csv: MakeCsv) -> None:
    """Labels -2, -1 and 3 (a sentiment scale) are integers: sorted as text, label id 0 would name -1 and id 1 -2."""
    data = load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(300, (-1, 3, -2))))))
    assert data.label_names == ("-2", "-1", "3")


@pytest.mark.parametrize("odd", ["--5", "²"])
def test_labels_that_only_look_like_integers_sort_as_text(make_csv: MakeCsv, odd: str) -> None:
    """str.isdigit took "²" (and "--5" once stripped of its minuses) for an integer, and int() then failed."""
    data = load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(300, (odd, "2", "10"))))))
    assert data.label_names == tuple(sorted((odd, "2", "10")))


def test_labels_that_differ_only_in_case_are_classes_of_their_own(make_csv: MakeCsv) -> None:
    """A label is its name as written: "Pos" is not "pos". Each row keeps its own label; a row scored as the other
    class's would count a right prediction as wrong."""
    rows = labelled_rows(300, ("pos", "Pos", "neg"))
    data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert data.label_names == ("Pos", "neg", "pos")  # as sorted: upper case first
    truth = dict(zip(rows["text"], rows["label"], strict=True))
    for name in SPLITS:
        split = data.split(name)
        assert [data.label_names[i] for i in split.labels] == [truth[t] for t in split.texts]


def test_integer_labels_with_a_missing_value_stay_integers(make_csv: MakeCsv) -> None:
    rows = labelled_rows(200, (0, 1))
    rows["label"][7] = None  # pandas reads the column as floats: 0.0, 1.0, NaN
    data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert data.label_names == ("0", "1")
    assert sum(len(data.split(n)) for n in SPLITS) == 199
    aligned = align_labels(data, ["LABEL_0", "LABEL_1"])
    assert aligned.label_names == ("LABEL_0", "LABEL_1")


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        ((0.5, 1.0), "[0.5]"),
        ((0.0, 0.7, 1.4, 2.1), "[0.7, 1.4, 2.1]"),
        ((1.0, 2.0, 2.5), "[2.5]"),
        ((0.0, 1.0, math.inf), "[inf]"),  # else cast to integers: pandas' IntCastingNaNError traceback
    ],
)
def test_labels_that_are_not_whole_numbers_are_refused_as_scores(
    make_csv: MakeCsv, labels: tuple[float, ...], shown: str
) -> None:
    """Regression data (STS-B's similarity scores): each score was a class of its own ("2.0999999999999996"), which
    the fine-tune trained and a classifier refused as labels it did not know."""
    path = make_csv(labelled_rows(120, labels))
    with pytest.raises(
        OptbenchError, match=rf"the label column 'label' holds numbers that are not whole, {re.escape(shown)}: "
    ):
        load_dataset(DatasetConfig(source=str(path)))
    records = [{"text": f"review {i}", "label": labels[i % len(labels)]} for i in range(120)]
    with pytest.raises(OptbenchError, match=r"not whole.*: scores, as regression data has, not classes"):
        load_dataset(DatasetConfig(source=str(write_jsonl(path.with_suffix(".jsonl"), records))))


def test_file_split_is_deterministic_and_follows_content(make_csv: MakeCsv, tmp_path: Path) -> None:
    rows = labelled_rows(300)
    first = load_dataset(DatasetConfig(source=str(make_csv(rows, "a.csv"))))
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    shuffled.to_csv(tmp_path / "b.csv", index=False)
    second = load_dataset(DatasetConfig(source=str(tmp_path / "b.csv")))
    # a row's split depends on its text, not on where it sits in the file
    assert {n: set(t) for n, t in all_texts(first).items()} == {n: set(t) for n, t in all_texts(second).items()}
    assert load_dataset(DatasetConfig(source=str(tmp_path / "a.csv"))).fingerprint == first.fingerprint
    rows["label"][0] = "pos" if rows["label"][0] == "neg" else "neg"
    changed = load_dataset(DatasetConfig(source=str(make_csv(rows, "c.csv"))))
    assert changed.fingerprint != first.fingerprint


def test_renamed_labels_change_the_fingerprint(make_csv: MakeCsv) -> None:
    """The fingerprint keys the cached fine-tune: the same texts with "neg" renamed "bad" (label ids unchanged, as
    both sort before "pos") would reuse a classifier whose id2label names "neg", which the renamed data lacks."""
    rows = labelled_rows(300)
    first = load_dataset(DatasetConfig(source=str(make_csv(rows, "a.csv"))))
    rows["label"] = ["bad" if label == "neg" else label for label in rows["label"]]
    renamed = load_dataset(DatasetConfig(source=str(make_csv(rows, "b.csv"))))
    assert renamed.label_names == ("bad", "pos")
    np.testing.assert_array_equal(renamed.train.labels, first.train.labels)
    assert renamed.fingerprint != first.fingerprint


def test_the_fingerprint_follows_the_texts_their_order_and_their_splits(make_csv: MakeCsv, tmp_path: Path) -> None:
    """The fingerprint keys every cached step: a text edited (or another text column), the rows reordered (a
    fine-tune's seeded row order, cut at max_train_rows, picks other rows) or rows moved between validation and test
    (what a fine-tune scores, and the ONNX parity check runs on) is other data, whose steps must not reuse the
    outputs made from this."""
    rows = {**labelled_rows(300), "split": ["train"] * 240 + ["validation"] * 30 + ["test"] * 30}
    rows["summary"] = [f"{text} in short" for text in rows["text"]]

    def fingerprint(columns: dict[str, list[Any]], name: str, **settings: Any) -> str:
        source = str(make_csv(columns, f"{name}.csv"))
        return load_dataset(DatasetConfig(source=source, split_column="split", **settings)).fingerprint

    first = fingerprint(rows, "first")
    assert fingerprint({**rows, "text": [*rows["text"][:-1], "a review rewritten"]}, "edited") != first
    assert fingerprint(rows, "summaries", text_column="summary") != first
    reordered = {key: [*values[:240][::-1], *values[240:]] for key, values in rows.items()}  # the train rows reversed
    assert fingerprint(reordered, "reordered") != first
    swapped = {**rows, "split": ["train"] * 240 + ["test"] * 30 + ["validation"] * 30}  # train is as it was
    assert fingerprint(swapped, "swapped") != first


def test_the_fingerprint_leaves_out_where_the_file_is_and_the_token_length(make_csv: MakeCsv) -> None:
    """The same rows in a file of another name (or folder) are the same data; a longer max_length is keyed only by
    the steps that read it (`reads_data_length`), so it must not re-run a fine-tune or an export through the
    fingerprint."""
    first = load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(300))), max_length=64)).fingerprint
    moved = make_csv(labelled_rows(300), "renamed.csv")
    assert load_dataset(DatasetConfig(source=str(moved), max_length=64)).fingerprint == first
    assert load_dataset(DatasetConfig(source=str(moved), max_length=256)).fingerprint == first


def test_split_column_assigns_rows(make_csv: MakeCsv) -> None:
    rows = labelled_rows(12)
    rows["part"] = ["train", "TRAIN", "Validation", "test"] * 3
    data = load_dataset(DatasetConfig(source=str(make_csv(rows)), split_column="part"))
    expected = {
        "train": [t for t, p in zip(rows["text"], rows["part"], strict=True) if p.lower() == "train"],
        "validation": rows["text"][2::4],
        "test": rows["text"][3::4],
    }
    assert all_texts(data) == expected


def test_labels_without_train_rows_are_named(make_csv: MakeCsv, caplog: pytest.LogCaptureFixture) -> None:
    rows = labelled_rows(12)
    rows["part"] = ["train", "train", "validation", "test"] * 3
    rows["label"][3] = "meh"  # a test row
    with caplog.at_level("WARNING", logger="optbench.data"):
        data = load_dataset(DatasetConfig(source=str(make_csv(rows)), split_column="part"))
    assert data.label_names == ("meh", "neg", "pos")
    assert "label(s) ['meh'] have no train rows" in caplog.text


def test_a_label_of_one_row_is_warned_of_as_a_likely_stray(make_csv: MakeCsv, caplog: pytest.LogCaptureFixture) -> None:
    """A CSV cut off inside its last row's label ("pos" -> "po") made a class of that row alone, without a word."""
    path = make_csv(labelled_rows(60))
    path.write_bytes(path.read_bytes().rstrip()[:-1])  # the last row's label loses its last letter
    with caplog.at_level("WARNING", logger="optbench.data"):
        data = load_dataset(DatasetConfig(source=str(path)))
    assert data.label_names == ("neg", "po", "pos")
    assert "label(s) ['po'] are carried by one row each of 60: if one is a stray" in caplog.text
    for rows, warned in ((49, False), (50, True)):  # in data this small, one row may well be a class
        caplog.clear()
        small = labelled_rows(rows)
        small["label"][-1] = "meh"
        with caplog.at_level("WARNING", logger="optbench.data"):
            load_dataset(DatasetConfig(source=str(make_csv(small, f"{rows}.csv"))))
        assert ("label(s) ['meh'] are carried by one row each" in caplog.text) is warned, f"{rows} rows"


def test_split_column_takes_dev_and_val_as_validation(make_csv: MakeCsv) -> None:
    """GLUE's files, among others, call the validation split dev; others val or valid."""
    rows = labelled_rows(12)
    rows["part"] = ["train", "dev", "test", "Val", "train", "valid"] * 2
    data = load_dataset(DatasetConfig(source=str(make_csv(rows)), split_column="part"))
    aliases = ("dev", "Val", "valid")
    validation = [text for text, part in zip(rows["text"], rows["part"], strict=True) if part in aliases]
    assert all_texts(data)["validation"] == validation and len(data.test) == 2


def test_split_column_values_are_read_without_the_spaces_around_them(tmp_path: Path) -> None:
    """A CSV written "text,label,split " by hand has "train " as a value: it was refused as no split name."""
    rows = "".join(f"review {i},{'pos' if i % 2 else 'neg'},{['train ', ' Test', 'dev '][i % 3]}\n" for i in range(30))
    (tmp_path / "data.csv").write_text(f"text,label,part\n{rows}")
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv"), split_column="part"))
    assert (len(data.train), len(data.validation), len(data.test)) == (10, 10, 10)


def test_split_column_with_bad_values_is_refused(make_csv: MakeCsv) -> None:
    rows = labelled_rows(12)
    rows["part"] = ["train", "holdout", "validation", "test"] * 3
    with pytest.raises(OptbenchError, match=r"split column 'part' has values \['holdout'\]: use only .*'dev', 'val'"):
        load_dataset(DatasetConfig(source=str(make_csv(rows)), split_column="part"))


def test_group_column_keeps_groups_together(make_csv: MakeCsv) -> None:
    groups = [f"movie-{g}" for g in range(40) for _ in range(8)]
    texts = [f"{g}: review {i}" for i, g in enumerate(groups)]
    labels = ["neg", "pos"] * (len(texts) // 2)
    path = make_csv({"text": texts, "label": labels, "movie": groups})
    data = load_dataset(DatasetConfig(source=str(path), group_column="movie"))
    group_of = dict(zip(texts, groups, strict=True))
    seen: dict[str, str] = {}
    for name in SPLITS:
        assert len(data.split(name)) > 0
        for text in data.split(name).texts:
            assert seen.setdefault(group_of[text], name) == name, f"{group_of[text]} straddles two splits"
    assert len(seen) == 40


def test_a_group_is_its_name_without_the_spaces_around_it(tmp_path: Path) -> None:
    """A CSV edited by hand has "movie-3 " on some of a movie's rows: hashed as a group of its own, those rows went to
    another split than the rest of the movie's, its reviews in both train and test."""
    lines = [
        f"{g}: review {i},{'pos' if i % 2 else 'neg'},movie-{g}{' ' * (i % 2)}\n" for g in range(40) for i in range(8)
    ]
    (tmp_path / "data.csv").write_text("text,label,movie\n" + "".join(lines))
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv"), group_column="movie"))
    split_of_group = {(text.split(":")[0], name) for name in SPLITS for text in data.split(name).texts}
    assert len(split_of_group) == 40, "a movie's rows straddle two splits"


def test_cleaning_drops_conflicts_duplicates_and_blanks(make_csv: MakeCsv, caplog: pytest.LogCaptureFixture) -> None:
    rows = labelled_rows(200)
    rows["text"] += ["contested", "contested", "twice", "twice", "   ", None, "unlabelled"]
    rows["label"] += ["neg", "pos", "pos", "pos", "neg", "pos", None]
    with caplog.at_level("INFO", logger="optbench.data"):
        data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    # a user's rows never vanish unsaid: the log counts what was dropped and why
    assert "dropping 3 row(s) with an empty text or label" in caplog.text
    assert "dropping 1 repeated text(s)" in caplog.text
    everything = [t for split in all_texts(data).values() for t in split]
    assert "contested" not in everything
    assert everything.count("twice") == 1
    assert len(everything) == 201
    assert all(t.strip() for t in everything)


def test_a_single_dropped_row_is_said(make_csv: MakeCsv, caplog: pytest.LogCaptureFixture) -> None:
    """A user's rows never vanish unsaid, not even one."""
    rows = labelled_rows(200)
    rows["text"][5] = None
    with caplog.at_level("WARNING", logger="optbench.data"):
        load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert "dropping 1 row(s) with an empty text or label" in caplog.text


def test_a_clean_file_loads_without_a_warning_or_a_word_of_dropping(
    make_csv: MakeCsv, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing dropped and every label trained: a "dropping 0 rows" or a "labels [] have no train rows" would send
    the reader looking for rows that are all there."""
    with caplog.at_level("INFO", logger="optbench.data"):
        load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(300)))))
    assert not [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "dropping" not in caplog.text


def test_a_text_with_conflicting_labels_is_counted_once_and_not_as_a_repeat(
    make_csv: MakeCsv, caplog: pytest.LogCaptureFixture
) -> None:
    rows = labelled_rows(200)
    rows["text"] += ["contested"] * 3
    rows["label"] += ["neg", "pos", "pos"]
    with caplog.at_level("INFO", logger="optbench.data"):
        data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert "dropping 1 texts that carry conflicting labels" in caplog.text
    assert "repeated" not in caplog.text
    assert sum(len(data.split(n)) for n in SPLITS) == 200


def test_texts_and_labels_of_whitespace_alone_are_dropped_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON keeps the spaces a CSV reader skips: a text of " \t " is no text, and a label of spaces no class."""
    records = [{"text": t, "label": y} for t, y in zip(*labelled_rows(60).values(), strict=True)]
    records += [{"text": " \t ", "label": "pos"}, {"text": "a review without a label", "label": "  "}]
    with caplog.at_level("WARNING", logger="optbench.data"):
        data = load_dataset(DatasetConfig(source=str(write_jsonl(tmp_path / "data.jsonl", records))))
    assert data.label_names == ("neg", "pos")
    assert sum(len(data.split(n)) for n in SPLITS) == 60
    assert "dropping 2 row(s) with an empty text or label" in caplog.text


def test_labels_are_their_names_without_surrounding_spaces(tmp_path: Path) -> None:
    """A label with spaces around it (" pos", "pos ") made a class of its own beside "pos" (four labels here)."""
    rows = "".join(f"review number {i}, {'pos' if i % 2 else 'neg'}\n" for i in range(60))
    rows += "".join(f"another review {i},{'pos ' if i % 2 else 'neg'}\n" for i in range(60))
    (tmp_path / "data.csv").write_text("text,label\n" + rows + "unlabelled review,   \n")
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    assert data.label_names == ("neg", "pos")
    everything = [t for split in all_texts(data).values() for t in split]
    assert len(everything) == 120  # the row whose label is spaces alone has none: dropped as unlabelled


def test_a_csv_written_with_spaces_after_its_commas_is_read_by_its_column_names(tmp_path: Path) -> None:
    """A file written "text, label" (by hand, or by a tool that spaces its commas): its header's " label" was not the
    default label column, and a quoted text after ", " was cut at its commas into fields of their own."""
    rows = "".join(f'"review {i}, read aloud", {"pos" if i % 2 else "neg"}\n' for i in range(60))
    (tmp_path / "data.csv").write_text("text, label\n" + rows)
    data = load_dataset(DatasetConfig(source=str(tmp_path / "data.csv")))
    assert data.label_names == ("neg", "pos")
    everything = {t for split in all_texts(data).values() for t in split}
    assert everything == {f"review {i}, read aloud" for i in range(60)}


def test_texts_that_differ_only_in_spacing_are_one_text(make_csv: MakeCsv) -> None:
    rows = labelled_rows(200)
    rows["text"] += ["a great film", " a great  film ", "a great\tfilm", "split  decision", "split decision"]
    rows["label"] += ["pos", "pos", "pos", "pos", "neg"]
    everything = [
        t for split in all_texts(load_dataset(DatasetConfig(source=str(make_csv(rows))))).values() for t in split
    ]
    assert [t for t in everything if "great" in t] == ["a great film"]  # the first spelling is kept
    assert not [t for t in everything if "decision" in t]  # one text with two labels: a conflict


def test_values_are_read_as_written(make_csv: MakeCsv, tmp_path: Path) -> None:
    rows = labelled_rows(300, ("pos", "neg", "None"))
    rows["text"][0], rows["text"][1] = "007", "NA"
    data = load_dataset(DatasetConfig(source=str(make_csv(rows))))
    assert data.label_names == ("None", "neg", "pos")  # a class named None is a class, not a missing label
    assert {"007", "NA"} <= {t for split in all_texts(data).values() for t in split}
    path = tmp_path / "multi.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"text {i}", "label": ["a", "b"]}) for i in range(30)))
    with pytest.raises(OptbenchError, match=r"column\(s\) \['label'\] hold lists or objects"):
        load_dataset(DatasetConfig(source=str(path)))


def test_a_label_column_with_a_few_lists_is_refused_as_multi_label(tmp_path: Path) -> None:
    """One row of a list among single labels is multi-label data too, not a class "['a', 'b']"."""
    records = [{"text": f"text {i}", "label": ["a", "b"] if i == 7 else "ab"[i % 2]} for i in range(30)]
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    with pytest.raises(OptbenchError, match=r"column\(s\) \['label'\] hold lists or objects"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize("text", [{"en": "a review"}, ["a premise", "a hypothesis"]], ids=["object", "list"])
@pytest.mark.parametrize("name", ["data.jsonl", "data.json"])
def test_a_text_column_with_an_object_or_a_list_is_refused(tmp_path: Path, name: str, text: Any) -> None:
    """A text of another shape (translations by language, a sentence pair) is no text: read as text, it became the
    row "{'en': 'a review'}", trained on and measured without a word."""
    records = [{"text": text if i == 7 else f"text {i}", "label": "ab"[i % 2]} for i in range(30)]
    path = tmp_path / name
    if path.suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        path.write_text(json.dumps(records))
    with pytest.raises(OptbenchError, match=r"column\(s\) \['text'\] hold lists or objects"):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize(
    ("option", "column"),
    [("text_column", "body"), ("label_column", "sentiment"), ("group_column", "movie"), ("split_column", "part")],
)
def test_missing_column_names_it_and_the_existing_ones(make_csv: MakeCsv, option: str, column: str) -> None:
    """The fix names only the setting of the missing column: it named all four, whatever was missing; and run's
    option for it where run has one."""
    path = make_csv(labelled_rows(50))
    flag = (
        rf", or give --{option.replace('_', '-')} to optbench run" if option in ("text_column", "label_column") else ""
    )
    message = rf"no column\(s\) \['{column}'\] \(it has \['text', 'label'\]\): set {option} in \[dataset\]{flag}$"
    with pytest.raises(OptbenchError, match=message):
        load_dataset(DatasetConfig(source=str(path), **{option: column}))


def test_missing_columns_name_the_columns_meant(make_csv: MakeCsv) -> None:
    """A header written "Text,Label" (as spreadsheets capitalize it): the line listed the columns, and left the reader
    to see that only the case differs."""
    path = make_csv({"Text": ["a", "b"], "Label": ["x", "y"], "score": [1, 2]})
    with pytest.raises(OptbenchError, match=r"to optbench run; did you mean 'Text' or 'Label'\?$"):
        load_dataset(DatasetConfig(source=str(path)))


def test_missing_columns_name_each_of_their_settings(make_csv: MakeCsv) -> None:
    path = make_csv({"sentence": ["a", "b"], "label": ["x", "y"]})
    with pytest.raises(
        OptbenchError, match=r"no column\(s\) \['text', 'movie'\] .*: set text_column / group_column in"
    ):
        load_dataset(DatasetConfig(source=str(path), group_column="movie"))


@pytest.mark.parametrize("name", ["data.jsonl", "data.json"])
def test_an_object_column_no_setting_names_is_ignored(tmp_path: Path, name: str) -> None:
    """Only the columns the settings name must hold one value per row; rows with metadata objects beside them load."""
    records = [{"text": f"review {i}", "label": i % 2, "meta": {"site": "web"}} for i in range(60)]
    text = "".join(json.dumps(r) + "\n" for r in records) if name.endswith(".jsonl") else json.dumps(records)
    (tmp_path / name).write_text(text)
    data = load_dataset(DatasetConfig(source=str(tmp_path / name)))
    assert sum(len(data.split(s)) for s in SPLITS) == 60


def test_single_label_value_is_refused(make_csv: MakeCsv) -> None:
    path = make_csv(labelled_rows(100, ("pos",)))
    with pytest.raises(
        OptbenchError, match=rf"dataset {re.escape(str(path))}: .*1 distinct value\(s\) \['pos'\].*2 or more"
    ):
        load_dataset(DatasetConfig(source=str(path)))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("header.csv", "text,label\n", "has no rows: save it as UTF-8 CSV"),
        ("empty.jsonl", "", "has no rows: save it as UTF-8 JSON Lines"),
        ("blank-lines.jsonl", "\n\n", "has no rows: save it as UTF-8 JSON Lines"),
        ("empty.json", "[]", "has no rows: save it as UTF-8 JSON"),
        ("no-texts.csv", "text,label\n,pos\n  ,neg\n", r"none of its 2 rows has both a text \('text'\) and a label"),
        (
            "no-labels.jsonl",
            '{"text": "a", "label": null}\n',
            r"none of its 1 rows has both a text \('text'\) and a label",
        ),
    ],
)
def test_a_file_without_a_usable_row_is_refused_by_name(tmp_path: Path, name: str, content: str, problem: str) -> None:
    """Not as a file without columns, nor as a label column of 0 distinct values."""
    (tmp_path / name).write_text(content)
    with pytest.raises(OptbenchError, match=rf"^dataset {re.escape(str(tmp_path / name))}:? {problem}"):
        load_dataset(DatasetConfig(source=str(tmp_path / name)))


def test_empty_split_is_refused(make_csv: MakeCsv) -> None:
    # two rows can fill at most two of the three splits
    with pytest.raises(OptbenchError, match=r"has an empty \w+ split \(2 rows in all\): add rows, or (raise|lower) "):
        load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(2)))))


@pytest.mark.parametrize(
    ("fractions", "split", "fix"),
    [
        ((0.45, 0.5), "train", "lower validation_fraction and test_fraction"),
        ((0.05, 0.3), "validation", "raise validation_fraction"),
        ((0.3, 0.05), "test", "raise test_fraction"),
    ],
)
def test_an_empty_hash_split_is_told_the_fraction_that_fills_it(
    make_csv: MakeCsv, fractions: tuple[float, float], split: str, fix: str
) -> None:
    """Five rows leave one split empty at these fractions: the fix must name the setting that gives that split rows,
    not the other split's (raising test_fraction leaves validation as empty as it was)."""
    validation, test = fractions
    message = f"has an empty {split} split (5 rows in all): add rows, or {fix} in [dataset]"
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_dataset(
            DatasetConfig(source=str(make_csv(labelled_rows(5))), validation_fraction=validation, test_fraction=test)
        )


def test_split_column_without_a_split_is_refused(make_csv: MakeCsv) -> None:
    """Its fix is in the split column: the error said to change the split fractions, which are refused beside it."""
    rows = labelled_rows(10)
    rows["part"] = ["train", "test"] * 5
    message = (
        "has an empty validation split (column 'part' holds ['test', 'train']): mark some rows 'validation' there, "
        "or leave split_column out to split the rows by hash (validation_fraction, test_fraction)"
    )
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_dataset(DatasetConfig(source=str(make_csv(rows)), split_column="part"))


@pytest.mark.parametrize(
    "settings",
    [{"group_column": "movie"}, {"validation_fraction": 0.3}, {"group_column": "movie", "test_fraction": 0.2}],
)
def test_hash_split_settings_beside_a_split_column_are_refused(tmp_path: Path, settings: dict) -> None:
    """The split column gives every row its split: the fractions and the group column were ignored in silence."""
    recipe = tmp_path / "recipe.toml"
    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in settings.items())
    recipe.write_text(f'[dataset]\nsource = "data.csv"\nsplit_column = "part"\n{lines}\n')
    ignored = ", ".join(f"{key} = {value!r}".replace("'", '"') for key, value in settings.items())  # in order
    message = f'[dataset] split_column = "part" gives every row its split, so {ignored} would be ignored: drop them'
    with pytest.raises(OptbenchError, match=re.escape(message)):
        load_recipe(recipe)


@pytest.mark.parametrize("option", ["group_column", "split_column"])
def test_rows_without_a_group_or_split_are_refused(make_csv: MakeCsv, option: str) -> None:
    rows = labelled_rows(300)
    rows["part"] = [None if i in (3, 7) else ("train", "validation", "test")[i % 3] for i in range(300)]
    with pytest.raises(OptbenchError, match=r"2 row\(s\) have no 'part' value.*fill it in"):
        load_dataset(DatasetConfig(source=str(make_csv(rows)), **{option: "part"}))


@pytest.mark.parametrize("option", ["group_column", "split_column"])
def test_rows_with_a_blank_group_or_split_are_refused(tmp_path: Path, option: str) -> None:
    """JSON keeps "" as a value (CSV reads an empty cell as missing): blank groups would all hash as one group."""
    rows = labelled_rows(300)
    parts = ["" if i == 3 else "  " if i == 7 else ("train", "validation", "test")[i % 3] for i in range(300)]
    records = [{"text": t, "label": y, "part": p} for t, y, p in zip(rows["text"], rows["label"], parts, strict=True)]
    source = write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(OptbenchError, match=r"2 row\(s\) have no 'part' value.*fill it in"):
        load_dataset(DatasetConfig(source=str(source), **{option: "part"}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_fraction": -0.1}, "out of range"),
        ({"validation_fraction": 0.0}, "out of range"),
        ({"validation_fraction": 1.0}, "out of range"),
        ({"test_fraction": 0.0}, "out of range"),
        ({"test_fraction": 1.0}, "out of range"),
        ({"test_fraction": 1.5}, "out of range"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "sum below 1"),
        ({"max_length": 4}, "max_length=4 is too small"),
        ({"max_length": 7}, "max_length=7 is too small"),
        # a typo that trained (or scored) a class per text
        ({"label_column": "text"}, "text_column and label_column are both 'text': name the column that holds"),
    ],
)
def test_bad_config_values_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        DatasetConfig(**kwargs)


@pytest.mark.parametrize("option", ["text_column", "label_column", "group_column", "split_column"])
def test_an_empty_column_name_is_refused(option: str) -> None:
    """text_column = "" failed with a KeyError traceback as the file was read; an empty split_column or group_column
    was taken as none, the rows split by hash instead of by the column the user meant to name."""
    with pytest.raises(OptbenchError, match=rf"^{option} = '': an empty name is no column: give the column's name"):
        DatasetConfig(source="reviews.csv", **{option: ""})


def test_the_smallest_settings_the_errors_ask_for_are_accepted() -> None:
    """The errors say "use 8 or more tokens" and "sum below 1": 8 and a sum just under 1 must be taken."""
    config = DatasetConfig(max_length=8, validation_fraction=0.45, test_fraction=0.5)
    assert (config.max_length, config.validation_fraction, config.test_fraction) == (8, 0.45, 0.5)


def test_the_data_keeps_the_max_length_it_was_given(make_csv: MakeCsv) -> None:
    """The benchmark tokenizes the test texts at the data's max_length and records it with every figure: one token
    fewer or more measures other inputs than the recipe names."""
    data = load_dataset(DatasetConfig(source=str(make_csv(labelled_rows(60))), max_length=37))
    assert data.max_length == 37


def test_a_checked_config_cannot_be_changed() -> None:
    """Its checks run once, as it is made: a max_length set afterwards would escape them."""
    config = DatasetConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_length = 4  # type: ignore[misc]


def test_the_hash_split_of_a_text_is_the_same_in_every_release(make_csv: MakeCsv) -> None:
    """Every accuracy figure is measured on the test split: the same file must split the same on every machine and
    in every release, or figures of two runs compare different rows."""
    rows = labelled_rows(30)
    texts = all_texts(load_dataset(DatasetConfig(source=str(make_csv(rows)))))
    assert texts["test"] == [rows["text"][i] for i in (14, 23)]
    assert texts["validation"] == [rows["text"][i] for i in (3, 11, 19, 26, 28)]


def test_the_hash_split_takes_a_texts_words_not_its_spacing(tmp_path: Path) -> None:
    """A text is what the tokenizer sees: the rows of a file whose texts carry stray spaces (around them, a tab, two
    between words) must split as its tidied copy does, or tidying the file moves rows into and out of the test split
    that every accuracy figure is measured on."""
    rows = labelled_rows(30)
    spaced = [f" {text.replace(' of ', '  of ')}\t" for text in rows["text"]]
    records = [{"text": t, "label": y} for t, y in zip(spaced, rows["label"], strict=True)]
    texts = all_texts(load_dataset(DatasetConfig(source=str(write_jsonl(tmp_path / "data.jsonl", records)))))
    assert texts["test"] == [spaced[i] for i in (14, 23)]  # as the tidied file splits (the test above)
    assert texts["validation"] == [spaced[i] for i in (3, 11, 19, 26, 28)]


def test_fractions_shape_the_split(make_csv: MakeCsv) -> None:
    path = make_csv(labelled_rows(2000))
    data = load_dataset(DatasetConfig(source=str(path), validation_fraction=0.3, test_fraction=0.2))
    assert len(data.test) / 2000 == pytest.approx(0.2, abs=0.05)
    assert len(data.validation) / 2000 == pytest.approx(0.3, abs=0.05)


# --- label alignment ----------------------------------------------------------------------------------


def _labelled(names: tuple[str, ...], labels: list[int]) -> LabelledData:
    texts = [f"t{i}" for i in range(len(labels))]
    split = Split(texts, np.array(labels, dtype=np.int64))
    return LabelledData(names, split, split.head(3), split.head(2), source="mem", max_length=32, fingerprint="f")


def test_head_keeps_texts_and_labels_together() -> None:
    split = Split(["a", "b", "c", "d"], np.array([0, 1, 1, 0], dtype=np.int64))
    head = split.head(3)
    assert head.texts == ["a", "b", "c"] and head.labels.tolist() == [0, 1, 1]
    assert len(split.head(9)) == 4


def test_align_same_names_is_a_no_op() -> None:
    data = _labelled(("fresh", "rotten"), [0, 1, 1, 0])
    assert align_labels(data, ["fresh", "rotten"]) is data


def test_align_reorders_to_the_model() -> None:
    data = _labelled(("fresh", "rotten"), [0, 1, 1, 0])
    aligned = align_labels(data, ["rotten", "fresh"])
    assert aligned.label_names == ("rotten", "fresh")
    np.testing.assert_array_equal(aligned.train.labels, [1, 0, 0, 1])
    np.testing.assert_array_equal(aligned.validation.labels, [1, 0, 0])
    np.testing.assert_array_equal(aligned.test.labels, [1, 0])
    assert aligned.train.texts == data.train.texts
    assert aligned.fingerprint == data.fingerprint


def test_align_to_a_model_with_more_labels() -> None:
    data = _labelled(("neg", "pos"), [0, 1])
    aligned = align_labels(data, ["neutral", "pos", "neg"])
    assert aligned.label_names == ("neutral", "pos", "neg")  # the model's three: label 2 names "neg"
    np.testing.assert_array_equal(aligned.train.labels, [2, 1])


def test_align_integer_labels_to_generic_names(caplog: pytest.LogCaptureFixture) -> None:
    data = _labelled(("0", "2"), [0, 1, 1])  # the data holds classes 0 and 2 of three
    with caplog.at_level("INFO", logger="optbench.data"):
        aligned = align_labels(data, ["LABEL_0", "LABEL_1", "LABEL_2"])
    assert aligned.label_names == ("LABEL_0", "LABEL_1", "LABEL_2")
    np.testing.assert_array_equal(aligned.train.labels, [0, 2, 2])
    assert "class ids" not in caplog.text  # "0 = LABEL_0" says nothing: ids and names are the same


def test_align_integer_labels_to_a_models_named_classes_by_id(caplog: pytest.LogCaptureFixture) -> None:
    """As transformers reads them: 0 is id2label's 0. They were refused as labels the model does not know."""
    data = _labelled(("0", "1"), [1, 0, 1])
    with caplog.at_level("INFO", logger="optbench.data"):
        aligned = align_labels(data, ["neg", "pos"])
    assert aligned.label_names == ("neg", "pos")
    np.testing.assert_array_equal(aligned.train.labels, [1, 0, 1])
    assert "dataset labels ['0', '1'] are read as the model's class ids: 0 = neg, 1 = pos" in caplog.text
    with pytest.raises(OptbenchError, match=r"dataset labels \['0'\] are not known"):
        align_labels(_labelled(("0", "1"), [0, 1]), ["1", "2"])  # integer names of its own: names, not ids


def test_align_integer_labels_beyond_the_model_are_refused() -> None:
    data = _labelled(("0", "1", "2"), [0, 1, 2])
    with pytest.raises(OptbenchError, match=r"dataset labels \['0', '1', '2'\] are not known"):
        align_labels(data, ["LABEL_0", "LABEL_1"])


@pytest.mark.parametrize("odd", ["²", "-1"])
def test_align_labels_that_only_look_like_integers_to_generic_names_are_refused(odd: str) -> None:
    """str.isdigit takes "²" for an integer, and int() then failed with a bare ValueError (a traceback)."""
    data = _labelled(("0", odd), [0, 1])
    with pytest.raises(OptbenchError, match=rf"dataset labels \[.*'{odd}'\] are not known"):
        align_labels(data, ["LABEL_0", "LABEL_1", "LABEL_2"])


def test_align_unknown_labels_are_named() -> None:
    data = _labelled(("fresh", "rotten", "stale"), [0, 1, 2])
    with pytest.raises(OptbenchError, match=r"labels \['stale'\] are not known.*\['fresh', 'rotten'\]"):
        align_labels(data, ["fresh", "rotten"])


def test_align_names_a_few_of_many_unknown_labels() -> None:
    # label_column naming the text (or a movie) gives a label per row: listed whole, one error line ran to 100 kB
    names = tuple(f"review {i} of a film that went on, and on, and on" for i in range(300))
    data = _labelled(names, list(range(300)))
    with pytest.raises(OptbenchError) as refused:
        align_labels(data, ["fresh", "rotten"])
    message = str(refused.value)
    assert len(message) < 1000 and "['review 0 of a fil...on, and on, and on', " in message  # each cut
    assert "...] (300 in all) are not known to the model (its labels: ['fresh', 'rotten'])" in message


def test_align_names_that_differ_from_the_models_only_in_case_are_refused() -> None:
    """The model's labels are matched by their exact names: "POSITIVE" rows scored as the model's "positive" would be
    a guess at what the user meant, and the error says how to make them one."""
    data = _labelled(("NEGATIVE", "POSITIVE"), [0, 1])
    with pytest.raises(OptbenchError, match=r"dataset labels \['NEGATIVE', 'POSITIVE'\] are not known to the model"):
        align_labels(data, ["negative", "positive"])
