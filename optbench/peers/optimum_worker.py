"""optimum-onnx's own pipeline, run by the peer-optimum step inside the optimum environment.

This file runs there as a script (`python -I optimum_worker.py JOB.json`): it imports only optimum and what
optimum brings, never optbench, which is not installed in that environment. It exports the checkpoint with
ORTModelForSequenceClassification, optimizes it with ORTOptimizer at an optimization level, quantizes it with
ORTQuantizer (dynamic, or static with MinMax calibration on the texts it is given), and writes `model.onnx`
with the tokenizer and config into the output folder. A stage that fails exits 1 with one line on stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

VERSIONS = ("optimum", "optimum-onnx", "transformers", "onnxruntime", "onnx", "torch")


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Export, optimize and quantize as `job` says; returns what was done, with timings and versions."""
    output = Path(job["output"])
    seconds: dict[str, float] = {}
    work = Path(job["scratch"])  # in the caller's temporary folder: removed by it, even when this process is killed
    work.mkdir(parents=True, exist_ok=True)
    exported, model_file = _stage("export", seconds, _export, Path(job["source"]), work / "export")
    folder = exported
    if job["level"]:
        folder, model_file = _stage("optimize", seconds, _optimize, folder, model_file, job["level"], work)
    if job["quantization"] != "none":
        folder, model_file = _stage("quantize", seconds, _quantize, folder, model_file, job, work)
    output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / model_file, output / "model.onnx")
    for name in job["hf_files"]:  # the vocabulary and labels, as the export wrote them (artifact.HF_FILES)
        if (exported / name).is_file():
            shutil.copyfile(exported / name, output / name)
    import onnx

    graph = onnx.load(str(output / "model.onnx"), load_external_data=False).graph
    return {
        "seconds": seconds,
        "versions": {name: _version(name) for name in VERSIONS},
        "operators": dict(Counter(node.op_type for node in graph.node).most_common()),
    }


def _stage(name: str, seconds: dict[str, float], fn: Any, *args: Any) -> Any:
    started = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as exc:
        message = " ".join(str(exc).split())[:500]
        print(f"optimum {name} failed: {type(exc).__name__}" + (f": {message}" if message else ""), file=sys.stderr)
        raise SystemExit(1) from exc
    seconds[name] = round(time.perf_counter() - started, 2)
    return result


def _export(source: Path, folder: Path) -> tuple[Path, str]:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    model = ORTModelForSequenceClassification.from_pretrained(source, export=True)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder, "model.onnx"


def _optimize(folder: Path, model_file: str, level: str, work: Path) -> tuple[Path, str]:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    optimizer = ORTOptimizer.from_pretrained(folder, file_names=[model_file])
    config = AutoOptimizationConfig.with_optimization_level(level)
    target = work / "optimized"
    optimizer.optimize(save_dir=target, optimization_config=config)
    return target, model_file.replace(".onnx", "_optimized.onnx")


def _quantize(folder: Path, model_file: str, job: dict[str, Any], work: Path) -> tuple[Path, str]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, CalibrationConfig

    static = job["quantization"] == "static"
    quantizer = ORTQuantizer.from_pretrained(folder, file_name=model_file)
    config = getattr(AutoQuantizationConfig, job["isa"])(is_static=static, per_channel=job["per_channel"])
    ranges = None
    if static:
        from onnxruntime.quantization import CalibrationMethod
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        rows = calibration_rows(tokenizer, job["calibration_texts"], job["calibration_batch_size"], job["max_length"])
        calibration = CalibrationConfig(
            dataset_name="optbench-train-split",
            dataset_config_name=None,
            dataset_split="train",
            dataset_num_samples=len(rows),
            method=CalibrationMethod.MinMax,
        )
        ranges = quantizer.fit(
            dataset=rows,
            calibration_config=calibration,
            operators_to_quantize=config.operators_to_quantize,
            batch_size=job["calibration_batch_size"],
            onnx_augmented_model_name=str(work / "augmented.onnx"),
        )
    target = work / "quantized"
    quantizer.quantize(save_dir=target, quantization_config=config, calibration_tensors_range=ranges)
    return target, model_file.replace(".onnx", "_quantized.onnx")


def calibration_rows(tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> list[dict[str, list]]:
    """The tokenized `texts`, one dict a row, each `batch_size` consecutive rows (the batches optimum's reader
    stacks, in order) padded to their own longest text and cut at `max_length`: padding positions widen MinMax
    ranges, so batch size 1 is unpadded, as optimum's guide calibrates, and larger batches pad as optbench's
    own quantize-static does."""
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding="longest", truncation=True, max_length=max_length)
        rows += [dict(zip(batch.keys(), values, strict=True)) for values in zip(*batch.values(), strict=True)]
    return rows


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    result = run(job)
    Path(job["result"]).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
