"""Config dataclasses from TOML/JSON tables: unknown keys, type checks, tuples, and the way back."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from optbench.bench import BenchConfig
from optbench.configs import check_keys, config_from_dict, config_to_dict, toml_value
from optbench.data import DatasetConfig
from optbench.errors import OptbenchError
from optbench.steps.distill import DistillConfig
from optbench.steps.finetune import FinetuneConfig
from optbench.steps.quantize import StaticQuantizeConfig
from optbench.steps.tensorrt import TensorRTConfig


@dataclass(frozen=True)
class Knobs:
    """One field of each kind that step configs use."""

    name: str = "x"
    count: int = 1
    ratio: float = 0.5
    limit: int | None = None
    sizes: tuple[int, ...] = (1,)
    names: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    lengths: tuple[int | Literal["data"], ...] = (128,)
    mode: Literal["fast", "exact"] = "fast"
    flag: bool = False
    extra: Any = None


@dataclass(frozen=True)
class Needs:
    required: int
    optional: str = "o"


KNOWN = ["name", "count", "ratio", "limit", "sizes", "names", "weights", "lengths", "mode", "flag", "extra"]


def test_defaults_from_an_empty_table() -> None:
    assert config_from_dict(Knobs, {}, "[knobs]") == Knobs()


def test_values_are_taken() -> None:
    knobs = config_from_dict(
        Knobs,
        {"name": "y", "count": 3, "ratio": 0.25, "limit": 7, "mode": "exact", "flag": True, "extra": {"a": 1}},
        "[knobs]",
    )
    assert knobs == Knobs(name="y", count=3, ratio=0.25, limit=7, mode="exact", flag=True, extra={"a": 1})


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(OptbenchError, match=r"unknown key\(s\) \['cout', 'zeta'\] in \[knobs\]") as info:
        config_from_dict(Knobs, {"cout": 3, "zeta": 1, "count": 2}, "[knobs]")
    assert f"known keys are {KNOWN}" in str(info.value)


def test_check_keys_accepts_known_keys() -> None:
    check_keys({"a": 1}, ["a", "b"], "[t]")
    with pytest.raises(OptbenchError, match=r"\['c'\] in \[t\]: known keys are \['a', 'b'\]"):
        check_keys({"a": 1, "c": 2}, ["a", "b"], "[t]")


@pytest.mark.parametrize(
    ("value", "problem"),
    [("slow", "is not one of the choices"), ("FAST", "is not one of the choices"), (3, "has the wrong type")],
)
def test_a_value_outside_a_fixed_set_is_not_one_of_the_choices(value: Any, problem: str) -> None:
    """A string the key's choices do not hold is told as such; the wrong type is for a value of another type."""
    with pytest.raises(OptbenchError) as info:
        config_from_dict(Knobs, {"mode": value}, "[knobs]")
    assert str(info.value) == f'[knobs] mode = {toml_value(value)} {problem}: expected "fast" or "exact"'


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("count", "3", "an integer"),
        ("count", True, "an integer"),
        ("count", 1.5, "an integer"),
        ("count", None, "an integer"),
        ("ratio", "0.5", "a number"),
        ("ratio", False, "a number"),
        ("name", 3, "a string"),
        ("limit", "none", "an integer, or no value (leave the key out)"),
        ("limit", 2.0, "an integer, or no value (leave the key out)"),
        ("sizes", [1, "2"], "a list of integers"),
        ("sizes", [1, True], "a list of integers"),
        ("sizes", [1.0], "a list of integers"),
        ("sizes", 4, "a list of integers: write it as a list, [4]"),
        ("sizes", 4.0, "a list of integers"),
        ("names", ["MatMul", 1], "a list of strings"),
        ("weights", [0.5, "1"], "a list of numbers"),
        ("weights", [True], "a list of numbers"),
        ("flag", [True], "true or false"),
        ("lengths", [64, "long"], 'a list of integers or "data"'),
        ("lengths", "data", 'a list of integers or "data": write it as a list, ["data"]'),
        ("flag", 1, "true or false"),
        ("flag", "yes", "true or false"),
    ],
)
def test_wrong_types_are_refused(key: str, value: Any, expected: str) -> None:
    with pytest.raises(OptbenchError) as info:
        config_from_dict(Knobs, {key: value}, "[knobs]")
    assert str(info.value) == f"[knobs] {key} = {toml_value(value)} has the wrong type: expected {expected}"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (True, "true"),
        (False, "false"),
        ("no", '"no"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("café", '"café"'),
        (3, "3"),
        (0.5, "0.5"),
        (float("nan"), "nan"),
        ([1, "a", True], '[1, "a", true]'),
        ((64, "data"), '[64, "data"]'),
        ({"scale": 0.5, "two words": [False]}, '{scale = 0.5, "two words" = [false]}'),
        ({"max-length": 1, "": 2}, '{max-length = 1, "" = 2}'),  # a bare key is one character or more
        (datetime.date(2026, 12, 3), "2026-12-03"),
        (datetime.datetime(2026, 12, 3, 7, 30), "2026-12-03T07:30:00"),
    ],
)
def test_settings_are_quoted_as_toml_writes_them(value: Any, written: str) -> None:
    """A user who wrote fuse = "no" was shown fuse = 'no', and flag = true as flag = True."""
    assert toml_value(value) == written


@pytest.mark.parametrize(
    ("key", "value"),
    [("ratio", float("nan")), ("sizes", [1, float("inf")]), ("extra", {"scale": [0.5, float("-inf")], "shift": 1.0})],
)
def test_nan_and_inf_are_refused_within_lists_and_tables(key: str, value: Any) -> None:
    """As settings of their own: TOML writes them in arrays and inline tables too, and one in a list of integers
    was "has the wrong type: expected a list of integers", a number the user wrote as one."""
    with pytest.raises(OptbenchError, match=rf"^\[knobs\] {key} = .*: give a finite number \(nan and inf are not"):
        config_from_dict(Knobs, {key: value}, "[knobs]")


def test_a_field_of_a_config_type_names_the_type_it_takes() -> None:
    """[bench]'s timing is built from the table's timing keys, not written as one: a wrong value is a bug in code."""
    with pytest.raises(OptbenchError, match=r"^\[bench\] timing = 3 has the wrong type: expected Timing$"):
        config_from_dict(BenchConfig, {"timing": 3}, "[bench]")


def test_int_is_accepted_for_float() -> None:
    assert config_from_dict(Knobs, {"ratio": 1}, "[knobs]").ratio == 1


def test_lists_become_tuples_for_tuple_fields() -> None:
    knobs = config_from_dict(Knobs, {"sizes": [2, 3], "lengths": [64, "data"]}, "[knobs]")
    assert knobs.sizes == (2, 3)
    assert isinstance(knobs.sizes, tuple)
    assert knobs.lengths == (64, "data")
    assert isinstance(knobs.lengths, tuple)
    assert config_from_dict(Knobs, {"sizes": []}, "[knobs]").sizes == ()


def test_a_list_for_a_tuple_or_nothing_field_becomes_a_tuple() -> None:
    """distill's layers (a tuple or nothing): a list kept as it was left the frozen config unhashable, and unequal
    to the same config built in code."""
    config = config_from_dict(DistillConfig, {"layers": [0, 2]}, "[[steps]] #1 (distill)")
    assert config == DistillConfig(layers=(0, 2))
    assert hash(config) == hash(DistillConfig(layers=(0, 2)))


def test_only_a_list_for_a_tuple_field_becomes_a_tuple() -> None:
    """A list for a field of any type stays a list, and no value for a tuple-or-nothing field stays none."""
    assert config_from_dict(Knobs, {"extra": [1, 2]}, "[knobs]").extra == [1, 2]
    assert config_from_dict(DistillConfig, {"layers": None}, "[[steps]] #1 (distill)") == DistillConfig()


def test_missing_required_field_is_an_optbench_error() -> None:
    with pytest.raises(OptbenchError, match=r"\[needs\]: .*required"):
        config_from_dict(Needs, {"optional": "p"}, "[needs]")
    assert config_from_dict(Needs, {"required": 2}, "[needs]") == Needs(2)


def test_checks_in_post_init_reach_the_user() -> None:
    """Named by `where`, the place the recipe wrote them, as wrong types are: the checks name no table."""
    with pytest.raises(OptbenchError, match=r"^\[\[steps\]\] #1 \(finetune\) needs epochs > 0"):
        config_from_dict(FinetuneConfig, {"epochs": 0}, "[[steps]] #1 (finetune)")
    with pytest.raises(OptbenchError, match=r"^\[dataset\] max_length=2 is too small"):
        config_from_dict(DatasetConfig, {"max_length": 2}, "[dataset]")


@pytest.mark.parametrize("config_type", [StaticQuantizeConfig, TensorRTConfig])
def test_a_negative_calibration_seed_is_refused_when_read(config_type: type) -> None:
    # numpy's generator takes none: the step failed only when it drew its calibration rows
    with pytest.raises(OptbenchError, match=rf"\[{config_type.name}\] seed=-1: use 0 or more"):
        config_from_dict(config_type, {"seed": -1}, f"[{config_type.name}]")


def test_a_field_the_config_computes_is_not_a_key() -> None:
    """A field out of __init__ (init=False) is set by the config itself: a table that gives it is refused as
    unknown, not passed on to fail as a TypeError."""

    @dataclass(frozen=True)
    class Derived:
        size: int = 1
        doubled: int = field(init=False, default=0)

    message = r"^unknown key\(s\) \['doubled'\] in \[derived\]: known keys are \['size'\]$"
    with pytest.raises(OptbenchError, match=message):
        config_from_dict(Derived, {"doubled": 2}, "[derived]")


def test_class_level_name_is_not_a_key() -> None:
    with pytest.raises(OptbenchError, match=r"unknown key\(s\) \['name'\]"):
        config_from_dict(FinetuneConfig, {"name": "finetune"}, "[model.finetune]")


def test_to_dict_gives_plain_json_values() -> None:
    d = config_to_dict(Knobs(sizes=(2, 3), lengths=(64, "data")))
    assert d["sizes"] == [2, 3]
    assert d["lengths"] == [64, "data"]
    assert list(d) == KNOWN
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    "config",
    [
        Knobs(),
        Knobs(name="n", count=9, ratio=0.1, limit=4, sizes=(1, 8, 32), lengths=("data", 16), mode="exact", flag=True),
        FinetuneConfig(),
        FinetuneConfig(epochs=2.5, max_train_rows=100, batch_size=8, seed=3),
        DatasetConfig(source="data.csv", text_column="body", group_column="movie", validation_fraction=0.2),
    ],
)
def test_to_dict_round_trips_through_json(config: Any) -> None:
    table = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(type(config), table, "[config]") == config
