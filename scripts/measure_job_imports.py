"""Side by side: a torch latency job with torchao hidden (as optbench's jobs run) and imported (as transformers
does whenever torchao is installed), alternating; writes their peak RSS and the job processes' wall times.

    .venv/bin/python scripts/measure_job_imports.py MODEL_FOLDER [--pairs 6]

MODEL_FOLDER: a Hugging Face classifier (the cached fine-tune: ~/.cache/optbench/finetune-*). The figures go to
results/job-imports/<time>.json with the environment fingerprint, and a summary is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from optbench import job as job_module
from optbench.artifact import ModelArtifact, content_hash
from optbench.atomic import write_json_atomic
from optbench.environment import fingerprint
from optbench.job import Job, run_in_subprocess, save_batches
from optbench.measure import Timing
from optbench.runtimes import RuntimeSpec

COMMANDS = {
    "torchao hidden": job_module.JOB_COMMAND,
    "torchao imported": (
        sys.executable,
        "-c",
        "import sys, torchao; from optbench.job import main; sys.exit(main(sys.argv[1:]))",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a Hugging Face classifier folder")
    parser.add_argument("--pairs", type=int, default=6, help="jobs of each kind, alternating (default 6)")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ids = np.ones((1, 128), dtype=np.int64)
        save_batches(work / "in.npz", [{"input_ids": ids, "attention_mask": ids, "token_type_ids": 0 * ids}])
        artifact = ModelArtifact(args.model, "hf", ("0", "1"), content_hash(args.model))
        timing = Timing(warmup=2, min_iters=10, min_seconds=0, max_seconds=10)
        job = Job(
            "latency",
            artifact.to_dict(),
            RuntimeSpec("torch").to_dict(),
            1,
            str(work / "in.npz"),
            str(work / "out.json"),
            timing,
        )
        for pair in range(args.pairs):
            for name in list(COMMANDS)[:: 1 if pair % 2 == 0 else -1]:  # ABBA: neither always goes first
                job_module.JOB_COMMAND = COMMANDS[name]
                started = time.perf_counter()
                result = run_in_subprocess(job, work / "job.json", 300)
                runs[name].append({"peak_rss_mb": result["peak_rss_mb"], "wall_s": time.perf_counter() - started})
    summary = {
        name: {figure: statistics.median(run[figure] for run in values) for figure in ("peak_rss_mb", "wall_s")}
        for name, values in runs.items()
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(__file__).resolve().parents[1] / "results" / "job-imports" / f"{stamp}.json"
    record = {
        "model": str(args.model),
        "shape": [1, 128],
        "threads": 1,
        "medians": summary,
        "runs": runs,
        "environment": fingerprint(threads=1),
    }
    write_json_atomic(out, record)
    for name, medians in summary.items():
        print(f"{name}: peak RSS median {medians['peak_rss_mb']:.1f} MB, job wall median {medians['wall_s']:.2f} s")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
