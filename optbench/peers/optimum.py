"""The peer-optimum step: Hugging Face optimum-onnx's export, ORTOptimizer and ORTQuantizer on the baseline.

optimum-onnx pins transformers<4.58 and optimum~=2.1, so it runs in its own virtual environment (`peers.venv`,
built on first use) through `optimum_worker.py`; the ONNX folder it writes comes back as an artifact that
optbench's onnxruntime runtime and accuracy pass measure like any other. The peer's choices stay its own: its
exporter, its optimization level's fusions, and its quantization presets for the machine's instruction set.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from optbench.artifact import HF_FILES, ModelArtifact
from optbench.calibration import calibration_texts
from optbench.configs import config_to_dict
from optbench.data import LabelledData
from optbench.encoding import encode, load_tokenizer
from optbench.environment import cpu_flags, installed_version
from optbench.errors import OptbenchError, StepFailed
from optbench.formats import check_step_input
from optbench.peers.venv import peer_env

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("optimum_worker.py")
OPTIMUM_ONNX = "optimum-onnx==0.1.0"
CHECK_ROWS = 8
TIMEOUT_S = 1800  # export, optimize and quantize of a BERT take well under a minute on 2 cores


def default_requirements() -> tuple[str, ...]:
    """optimum-onnx, with the torch and onnxruntime releases optbench itself runs (the same exporter's torch,
    the same quantization tools), without their local build tags (`2.13.0+cpu` -> `torch==2.13.0`)."""
    pins = [OPTIMUM_ONNX]
    for package, distributions in (("torch", ("torch",)), ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))):
        version = installed_version(*distributions)
        if version:  # the CPU package even where optbench runs onnxruntime-gpu: optimum only quantizes here
            pins.append(f"{package}=={version.split('+')[0]}")
    return tuple(pins)


def detect_isa() -> str:
    """optimum's quantization preset for this CPU: arm64, avx512_vnni, avx512 or avx2."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = set(cpu_flags())
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


@dataclass(frozen=True)
class PeerOptimumConfig:
    """optimum-onnx's pipeline: export, then optionally ORTOptimizer at `level` (O1-O3; O4 is FP16 for GPUs
    and not offered), then optionally ORTQuantizer, `dynamic` or `static` (QDQ, MinMax-calibrated on
    `calibration_samples` train-split rows in batches of `calibration_batch_size`, each padded to its longest
    text: 1 by default, as `ORTQuantizer.fit` and optimum's guide, so unpadded rows one at a time), with the
    `AutoQuantizationConfig` preset of `isa` (`auto`: this CPU's). `requirements` is what pip installs into the
    peer's environment."""

    name: ClassVar[str] = "peer-optimum"
    input_format: ClassVar[str] = "hf"
    output_format: ClassVar[str] = "onnx"
    level: Literal["none", "O1", "O2", "O3"] = "none"
    quantization: Literal["none", "dynamic", "static"] = "none"
    isa: Literal["auto", "arm64", "avx2", "avx512", "avx512_vnni"] = "auto"
    per_channel: bool = True
    calibration_samples: int = 256
    calibration_batch_size: int = 1  # ORTQuantizer.fit's own default
    requirements: tuple[str, ...] = field(default_factory=default_requirements)

    @property
    def version(self) -> int:
        """3 with static quantization, whose calibration batches are padded to their longest text (were padded to
        max_length; 2: its rows became a random sample, were the first train rows); the other configs' output did
        not change, and keeps its cache."""
        return 3 if self.quantization == "static" else 1

    @property
    def quantizes(self) -> bool:
        """Whether its output is INT8, which no quantize step after it may take (recipe._check_step_order)."""
        return self.quantization != "none"

    @property
    def reads_data_length(self) -> bool:
        """Static calibration cuts its rows at the dataset's max_length: that length keys the step's cache."""
        return self.quantization == "static"

    def __post_init__(self) -> None:
        if self.isa == "auto":  # the concrete preset goes into the cache key and the report
            object.__setattr__(self, "isa", detect_isa())
        if self.calibration_samples < 1 or self.calibration_batch_size < 1:
            raise OptbenchError("calibration_samples and calibration_batch_size must be 1 or more")

    @property
    def default_label(self) -> str:
        """The name in the variant: `optimum-O2`, `optimum-int8-dynamic`, `optimum-O2-int8-static`, or
        `optimum-export` for the plain export."""
        parts = [self.level] if self.level != "none" else []
        parts += [f"int8-{self.quantization}"] if self.quantization != "none" else []
        return "optimum-" + ("-".join(parts) or "export")


def apply(config: PeerOptimumConfig, artifact: ModelArtifact, data: LabelledData, out_dir: Path) -> ModelArtifact:
    """Run optimum's pipeline on `artifact` in the optimum environment; its ONNX model lands in `out_dir`."""
    from optbench.steps.quantize import StaticQuantizeConfig

    check_step_input(config, artifact)
    env = peer_env(out_dir.parent / "peer-envs", "optimum", config.requirements)  # out_dir is in the run's cache
    started = time.perf_counter()
    # never the test split; the rows optbench's own quantize-static draws, for a like-for-like comparison
    texts = (
        calibration_texts(data, config.calibration_samples, StaticQuantizeConfig.seed)
        if config.quantization == "static"
        else []
    )
    with tempfile.TemporaryDirectory(prefix="optbench-peer-optimum-") as tmp:
        job = {
            "source": str(artifact.path),
            "output": str(out_dir),
            "result": str(Path(tmp) / "result.json"),
            "scratch": str(Path(tmp) / "work"),  # the worker's intermediate models, gone with tmp if it is killed
            "level": None if config.level == "none" else config.level,
            "quantization": config.quantization,
            "isa": config.isa,
            "per_channel": config.per_channel,
            "calibration_texts": texts,
            "calibration_batch_size": config.calibration_batch_size,
            "max_length": data.max_length,
            "hf_files": list(HF_FILES),  # the worker runs where optbench is not installed: it cannot import them
        }
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        log.info("peer-optimum: %s in %s", config.default_label, env.path)
        _run_worker(env.python, Path(tmp) / "job.json", config)
        result = json.loads(Path(job["result"]).read_text())
    _check_runs(out_dir, artifact, data)
    details = {
        "peer": "optimum-onnx",
        "isa": config.isa,
        "seconds": result["seconds"],
        "total_seconds": round(time.perf_counter() - started, 2),
        "versions": result["versions"],
        "operators": result["operators"],
        "environment": str(env.path),
    }
    if texts:  # as quantize-static's manifest: a train split smaller than calibration_samples gives fewer rows
        details["calibration"] = {"samples": len(texts), "batch_size": config.calibration_batch_size, "split": "train"}
    return artifact.derive(out_dir, step=config.name, config=config_to_dict(config), format="onnx", details=details)


def _run_worker(python: Path, job_path: Path, config: PeerOptimumConfig) -> None:
    """Run optimum_worker.py in the peer environment; a failure or a hang is StepFailed with optimum's reason."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(
            [str(python), "-I", str(WORKER), str(job_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(
            f"peer-optimum ({config.default_label}) gave no result after {TIMEOUT_S} s and was stopped "
            f"(a BERT-base takes under a minute): run {WORKER.name} by hand in {python.parent.parent} to see where"
        ) from exc
    except OSError as exc:  # the environment's interpreter is gone (its base Python removed or upgraded)
        raise StepFailed(
            f"peer-optimum cannot start {python} ({exc}): delete {python.parent.parent} to have it built again"
        ) from exc
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("optimum ")), lines[-1] if lines else "")
        raise StepFailed(f"peer-optimum ({config.default_label}) failed: {reason or f'exit code {done.returncode}'}")


def _check_runs(folder: Path, source: ModelArtifact, data: LabelledData) -> None:
    """The peer's model must load in optbench's onnxruntime and give one logit per label for a few rows."""
    from optbench.onnx_graph import ONNX_FILE
    from optbench.runtimes.onnxruntime import open_session
    from optbench.steps.onnx import onnxruntime_refusal

    refusal = onnxruntime_refusal(folder / ONNX_FILE)
    if refusal:  # not open_session's error, whose advice (delete the folder, run again) is for a cached file
        raise StepFailed(f"peer-optimum wrote a model onnxruntime cannot load ({refusal})")
    tokenizer = load_tokenizer(source.path)
    batch = encode(tokenizer, data.validation.texts[:CHECK_ROWS], seq_len="data", max_length=data.max_length)
    try:
        session = open_session(folder / ONNX_FILE, providers=["CPUExecutionProvider"], threads=1)
        feed = {i.name: batch[i.name] for i in session.get_inputs()}
        logits = np.asarray(session.run(["logits"], feed)[0])
    except Exception as exc:  # onnxruntime raises its own exception types; a missing input is a KeyError
        raise StepFailed(f"peer-optimum wrote a model optbench cannot run ({exc})") from exc
    expected = (len(batch["input_ids"]), len(source.label_names))
    if logits.shape != expected:
        raise StepFailed(f"peer-optimum's model gives logits of shape {logits.shape}, expected {expected}")
