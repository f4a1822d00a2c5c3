"""Reading back optbench's own JSON records: what is not as written is named as damaged, with the fix."""

import re
from pathlib import Path

import pytest

from optbench.errors import OptbenchError
from optbench.records import is_number, read_json, require_fields


def test_a_folder_read_as_json_is_named_as_damaged(tmp_path: Path) -> None:
    (tmp_path / "record.json").mkdir()
    with pytest.raises(
        OptbenchError, match=rf"^{re.escape(str(tmp_path))}/record\.json is damaged \(\[Errno 21\] Is a "
    ):
        read_json(tmp_path / "record.json")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2]", r"not a JSON object"),
        ('"ok"', r"not a JSON object"),
        ("3", r"not a JSON object"),
        ('{"status": "ok"', r"Expecting"),
        ('{"result": {}}', r"no 'status' field"),
        ('{"status": 3}', r"'status' is not a string"),
    ],
)
def test_a_record_not_as_written_is_damaged(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "job.json").write_text(content)
    with pytest.raises(OptbenchError, match=rf"job\.json is damaged \({problem}.*\): delete it and run the recipe"):
        read_json(tmp_path / "job.json", required={"status": "a string"})


def test_a_missing_record_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "job.json") is None


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), "1.5", None])
def test_only_finite_numbers_are_numbers(value: object) -> None:
    assert not is_number(value)
    assert is_number(1) and is_number(0.5)


@pytest.mark.parametrize(
    ("field", "kind", "value"),
    [
        ("run_id", "a folder name", ".."),
        ("run_id", "a folder name", "a/b"),
        ("run_id", "a folder name", "."),
        ("run_id", "a folder name", ""),
        ("run_id", "a folder name", "a\0b"),
        ("run_id", "a folder name", 12),
        ("result", "an object", [1]),
        ("durations_s", "a non-empty list of durations (numbers, 0 or more)", []),
        ("durations_s", "a non-empty list of durations (numbers, 0 or more)", [0.1, -0.1]),
        ("durations_s", "a non-empty list of durations (numbers, 0 or more)", [0.1, float("inf")]),
        ("startup", "startup times (load_s and first_call_s: numbers of 0 or more, where given)", {"load_s": "2"}),
        ("startup", "startup times (load_s and first_call_s: numbers of 0 or more, where given)", {"load_s": -1.0}),
        (
            "startup",
            "startup times (load_s and first_call_s: numbers of 0 or more, where given)",
            {"first_call_s": "1"},
        ),
        ("startup", "startup times (load_s and first_call_s: numbers of 0 or more, where given)", [1.5]),
        ("gpu_memory", "GPU memory figures (numbers of 0 or more, where given)", {"peak_allocated_mb": "9"}),
        ("gpu_memory", "GPU memory figures (numbers of 0 or more, where given)", {"peak_reserved_mb": "9"}),
        ("gpu_memory", "GPU memory figures (numbers of 0 or more, where given)", {"process_used_mb": "9"}),
    ],
)
def test_an_optional_field_of_another_kind_is_damaged(tmp_path: Path, field: str, kind: str, value: object) -> None:
    with pytest.raises(OptbenchError, match=rf"'{field}' is not {re.escape(kind)}"):
        require_fields(tmp_path / "job.json", {field: value}, {}, optional={field: kind})


def test_fields_of_their_kind_pass(tmp_path: Path) -> None:
    record = {"run_id": "20261203T1200Z-ab12", "durations_s": [0.0, 0.2], "startup": {"load_s": 1.5}}
    kinds = {
        "run_id": "a folder name",
        "durations_s": "a non-empty list of durations (numbers, 0 or more)",
        "startup": "startup times (load_s and first_call_s: numbers of 0 or more, where given)",
    }
    require_fields(tmp_path / "job.json", record, kinds, optional={"result": "an object"})  # absent: nothing to check


@pytest.mark.parametrize(
    ("record", "problem"), [({}, "no 'status', 'result' fields"), ({"result": {}}, "no 'status' field")]
)
def test_every_missing_field_is_named(tmp_path: Path, record: dict[str, object], problem: str) -> None:
    with pytest.raises(OptbenchError, match=rf"\({problem}\): delete it"):
        require_fields(tmp_path / "job.json", record, {"status": "a string", "result": "an object"})
