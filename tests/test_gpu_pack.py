"""The GPU check's pack: the built-in data row for row, the baseline in FP16, recipes pointed at both."""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.artifact import ModelArtifact
from optbench.data import BUILTIN, DatasetConfig, LabelledData, Split, load_dataset
from optbench.errors import OptbenchError
from optbench.gpu_check import RECIPES
from optbench.gpu_pack import main, pack, pack_recipe, save_fp16, write_data
from optbench.pruned_bert import load_classifier
from optbench.recipe import Recipe, load_recipe


def test_the_data_file_holds_the_same_splits_as_its_source(tmp_path: Path) -> None:
    texts = ["NA", "null", 'she said "no", then left', "line one\nline two", "1.0", "naïve café", "ok", "fine"]
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    data = LabelledData(
        ("fresh", "rotten"),
        Split(texts[:4], labels[:4]),
        Split(texts[4:6], labels[4:6]),
        Split(texts[6:], labels[6:]),
        source="memory",
        max_length=128,
    )
    write_data(data, tmp_path / "data.jsonl")
    read = load_dataset(DatasetConfig(source=str(tmp_path / "data.jsonl"), split_column="split"))
    assert read.label_names == data.label_names
    for name in ("train", "validation", "test"):
        assert read.split(name).texts == data.split(name).texts
        assert read.split(name).labels.tolist() == data.split(name).labels.tolist()


def test_the_pack_holds_the_baseline_in_fp16_the_builtin_data_and_recipes_that_use_them(
    tmp_path: Path, tiny_artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_from: list[tuple[str, Path]] = []

    def make_baseline(recipe: Recipe, data: LabelledData, cache: Path) -> ModelArtifact:
        made_from.append((recipe.checkpoint, cache))
        return tiny_artifact

    monkeypatch.setattr("optbench.pipeline.make_baseline", make_baseline)
    saved_into: list[Path] = []

    def save(baseline: Path, target: Path) -> None:
        saved_into.append(target)
        save_fp16(baseline, target)

    monkeypatch.setattr("optbench.gpu_pack.save_fp16", save)
    umask = os.umask(0o022)
    try:
        pack(tmp_path / "here" / "packs" / "pack", tmp_path / "cache")  # the folders above it are made
    finally:
        os.umask(umask)
    assert made_from == [("default", tmp_path / "cache")]  # the fine-tune the cache given holds, not another
    # made whole beside it, under a hidden name (a rename within one file system), and no scratch folder left there
    assert saved_into[0].parent.parent == tmp_path / "here" / "packs" and saved_into[0].parent.name.startswith(".pack.")
    assert sorted(p.name for p in (tmp_path / "here" / "packs").iterdir()) == ["pack"]
    # carried to the GPU machine: its recipes point into the pack wherever it lies, at nothing left here
    folder = tmp_path / "gpu-machine" / "pack"
    shutil.move(tmp_path / "here" / "packs" / "pack", folder)
    modes = {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes  # readable by whoever runs it there (the weights too)
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o755}  # and its folders open to them (not mkdtemp's 0700)
    assert {p.name for p in (folder / "model").iterdir()} == {p.name for p in tiny_artifact.path.iterdir()}
    saved = load_classifier(folder / "model", dtype="auto")
    assert saved.dtype == torch.float16 and load_classifier(folder / "model").dtype == torch.float32
    original = load_classifier(tiny_artifact.path)
    weight = "classifier.weight"
    torch.testing.assert_close(saved.state_dict()[weight].float(), original.state_dict()[weight].half().float())
    for name in ("gpu.toml", "gpu-tensorrt.toml"):
        packed, source = load_recipe(folder / "recipes" / name), load_recipe(RECIPES / name)
        assert packed.checkpoint == str(folder / "model")
        assert packed.dataset.source == str(folder / "data.jsonl") and packed.dataset.split_column == "split"
        assert packed.bench == source.bench and packed.chains == source.chains
    builtin = load_dataset(DatasetConfig(source=BUILTIN, max_length=128))
    assert load_dataset(packed.dataset).fingerprint == builtin.fingerprint


def test_python_m_says_where_the_pack_is_and_what_to_run_there(
    tmp_path: Path, tiny_artifact, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # run as `python -m optbench.gpu_pack`, the module's logger was __main__'s, outside optbench's INFO level:
    # the line naming the pack and the command to run on the GPU machine was never shown
    caches: list[Path] = []
    monkeypatch.setattr("optbench.pipeline.make_baseline", lambda _r, _d, cache: caches.append(cache) or tiny_artifact)
    folder = tmp_path / "pack"
    monkeypatch.setattr(sys, "argv", ["gpu_pack", str(folder), "--cache", str(tmp_path / "cache")])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exited:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already (by this test)
        runpy.run_module("optbench.gpu_pack", run_name="__main__")
    assert exited.value.code == 0 and caches == [tmp_path / "cache"]  # --cache's fine-tune, not the default cache's
    out = capsys.readouterr().out
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size > 1e5 and f"packed {folder} ({size / 1e6:.1f} MB): on the GPU machine" in out  # its size, in MB
    assert f"run scripts/gpu_check.sh --recipes {folder}/recipes" in out


def _no_fine_tune(*args: object) -> None:
    raise AssertionError("fine-tuned for a pack that is refused")


def test_a_pack_never_overwrites_and_leaves_nothing_when_it_fails(
    tmp_path: Path, tiny_artifact, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    monkeypatch.setattr("optbench.pipeline.make_baseline", _no_fine_tune)  # refused first, at once
    assert main([str(tmp_path / "taken"), "--cache", str(tmp_path / "cache")]) == 2
    assert f"{tmp_path / 'taken'} exists: give a new folder" in capsys.readouterr().err
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("gpu.toml", "gpu-tensorrt.toml"):
        (recipes / name).write_text((RECIPES / name).read_text())
    tensorrt = recipes / "gpu-tensorrt.toml"
    tensorrt.write_text(tensorrt.read_text().replace('source = "rotten-tomatoes"', "source = 'rotten-tomatoes'"))
    monkeypatch.setattr("optbench.pipeline.make_baseline", lambda recipe, data, cache: tiny_artifact)
    with pytest.raises(OptbenchError, match="should hold the line 'source = \"rotten-tomatoes\"' once"):
        pack(tmp_path / "out" / "pack", tmp_path / "cache", recipes)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_recipe_holding_the_line_twice_is_refused(tmp_path: Path) -> None:
    """Which of the two is the model's line is not guessed: both would be replaced."""
    source = tmp_path / "gpu.toml"
    source.write_text((RECIPES / "gpu.toml").read_text() + '# was: checkpoint = "default"\n')
    with pytest.raises(OptbenchError, match="should hold the line 'checkpoint = \"default\"' once"):
        pack_recipe(source, tmp_path / "packed.toml")
    assert not (tmp_path / "packed.toml").exists()


def test_recipes_on_a_model_of_their_own_are_refused_before_any_fine_tune(
    tmp_path: Path, tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack carries the built-in default's fine-tune: recipes on another checkpoint have nothing to pack, and
    are refused before a fine-tune of minutes."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (RECIPES / "gpu.toml").read_text().replace('checkpoint = "default"', f'checkpoint = "{tiny_classifier}"')
    (recipes / "gpu.toml").write_text(text)

    monkeypatch.setattr("optbench.pipeline.make_baseline", _no_fine_tune)
    with pytest.raises(OptbenchError, match=r"gpu.toml does not use the built-in default: nothing to pack$"):
        pack(tmp_path / "pack", tmp_path / "cache", recipes)
    assert not (tmp_path / "pack").exists()


def test_help_shows_the_pack_made_here_and_run_there(capsys: pytest.CaptureFixture[str]) -> None:
    # the help named only the GPU machine's command, not how to make the pack
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    examples = capsys.readouterr().out.split("\nexamples:\n")[1].splitlines()
    assert examples[0].startswith("  python -m optbench.gpu_pack .gpupack ")
    assert examples[1].startswith("  scripts/gpu_check.sh --recipes .gpupack/recipes ")


def test_an_interrupted_pack_says_so_exits_130_and_leaves_no_folder(
    tmp_path: Path, tiny_artifact, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the pack ran outside optbench's command setting: Ctrl-C printed a traceback and the hub was not kept offline
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("optbench.pipeline.make_baseline", lambda recipe, data, cache: tiny_artifact)

    def interrupted(data: LabelledData, path: Path) -> None:
        assert os.environ.get("HF_HUB_OFFLINE") == "1"
        raise KeyboardInterrupt

    monkeypatch.setattr("optbench.gpu_pack.write_data", interrupted)
    assert main([str(tmp_path / "out" / "pack"), "--cache", str(tmp_path / "cache")]) == 130
    assert "gpu pack: interrupted; nothing was written" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_a_path_the_system_refuses_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the pack and the GPU check end where `optbench` does (command.run_command): a name too long for the file system
    # made folder.exists() raise, and the pack ended in a traceback
    too_long = tmp_path / ("x" * 300)
    assert main([str(too_long), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu pack: error: ") and "File name too long" in err and "Traceback" not in err
