"""Reports built by hand from small made-up figures, for the tests of reports, the table, compare, gate and HTML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from optbench.accuracy import Drop, Metrics
from optbench.artifact import ModelArtifact, StepRecord
from optbench.measure import CudaEventClock, GpuMemory, Latency, throughput
from optbench.report import Measurement, Report
from optbench.runtimes import RuntimeSpec

LABELS = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
# (seq_len, variant) of the rows of a baseline and baseline+onnx measured at batch 1 x 16, 128 and the data's own
# lengths, in the order a run's table and the merged table give them: by shape, lengths as numbers and "data" after
# them, then by variant.
SHAPE_GROUPED_ROWS = [
    (16, "baseline"),
    (16, "baseline+onnx"),
    (128, "baseline"),
    (128, "baseline+onnx"),
    ("data", "baseline"),
    ("data", "baseline+onnx"),
]


def _logits(flip: int) -> np.ndarray:
    """Logits that predict LABELS right except on the first `flip` examples."""
    predicted = LABELS.copy()
    predicted[:flip] = 1 - predicted[:flip]
    return np.stack([1.0 - predicted, predicted.astype(float)], axis=1) + np.linspace(0, 0.5, len(LABELS))[:, None]


def make_report(
    steps: tuple[str, ...] = (),
    *,
    runtime: RuntimeSpec | None = None,
    recipe: str = "demo",
    run_id: str = "20261130T031500Z-3f9a",
    shapes: tuple[tuple[int, int | str], ...] = ((1, 128), (8, "data")),
    flip: int = 0,
    noise_floor_pct: float | None = None,
) -> Report:
    """A report as the benchmark writes one, from small made-up figures; the baseline without flips stands for
    the run's reference, whose drop against itself is zero and certain."""
    artifact = ModelArtifact(
        Path("/models/x"),
        "hf",
        ("fresh", "rotten"),
        "ab" * 32,
        origin={"checkpoint": "default"},
        lineage=tuple(StepRecord(s, {"k": 1}) for s in steps),
    )
    spec = runtime or RuntimeSpec("torch")
    measurements = tuple(
        Measurement(
            batch_size=batch,
            seq_len=seq_len,
            latency=Latency.from_values([(i % 7 + 1 + batch) * 1_000_000 for i in range(40)]),
            throughput_sps=100.0 * batch,
            peak_rss_mb=512.5,
            speedup_p50=None if not steps else 1.5 + batch,
            workload_fingerprint=f"wl-{batch}-{seq_len}",
            noise_floor_pct=noise_floor_pct,
        )
        for batch, seq_len in shapes
    )
    return Report(
        run_id=run_id,
        recipe=recipe,
        created_at="2026-11-30T03:15:00+00:00",
        artifact={**artifact.to_dict(), "size_mb": 86.6, "parameters": 22_700_000},
        runtime={**spec.to_dict(), "threads": 2},
        workload={"dataset": "rotten-tomatoes", "split": "test", "rows": len(LABELS)},
        environment={"machine": "box-1", "git": {"commit": "abc123", "dirty": False}, "cpu": {"model": "x"}},
        metrics=Metrics.from_logits(LABELS, _logits(flip)),
        drop=Drop.paired(LABELS, _logits(0), _logits(flip)) if steps or flip else Drop.of_reference(),
        measurements=measurements,
    )


def with_figures(
    report: Report,
    *,
    p50_ms: float | None = None,
    spread_ms: float = 0.0,
    speedup: float | None = None,
    peak_rss_mb: float | None = None,
    noise_floor_pct: float | None = None,
    workload: str | None = None,
    calls: int = 61,
) -> Report:
    """`report` with every measurement changed: `calls` calls spread evenly over `p50_ms` +- `spread_ms` (with
    61, the p50's 95% interval is about +- spread_ms / 4), and the other figures as given."""
    changed = []
    for m in report.measurements:
        latency = m.latency
        if p50_ms is not None:
            values = [p50_ms + spread_ms * (2 * i / (calls - 1) - 1) for i in range(calls)]
            latency = Latency.from_values([round(v * 1e6) for v in values])
        changed.append(
            dataclasses.replace(
                m,
                latency=latency,
                speedup_p50=m.speedup_p50 if speedup is None else speedup,
                peak_rss_mb=m.peak_rss_mb if peak_rss_mb is None else peak_rss_mb,
                noise_floor_pct=noise_floor_pct,
                workload_fingerprint=workload or m.workload_fingerprint,
            )
        )
    return dataclasses.replace(report, measurements=tuple(changed))


def on_cuda_events(report: Report, reading_us: float, calls: int = 400) -> Report:
    """`report` with every measurement timed by CUDA events (0.5 us ticks) on a kernel so steady that all
    `calls` readings fall on one tick, `reading_us`."""
    latency = Latency.from_values([round(reading_us * 1000)] * calls, CudaEventClock.resolution_ns)
    changed = (
        dataclasses.replace(m, latency=latency, throughput_sps=throughput(m.batch_size, latency))
        for m in report.measurements
    )
    return dataclasses.replace(report, measurements=tuple(changed))


def with_drop(report: Report, points: float, low: float, high: float) -> Report:
    """`report` with its accuracy drop and 95% interval set (accuracy itself unchanged)."""
    return dataclasses.replace(report, drop=dataclasses.replace(report.drop, points=points, ci_low=low, ci_high=high))


def gpu_report() -> Report:
    """A report of a variant on cuda, with its GPU memory and the runtime's startup times."""
    report = make_report(("onnx",), runtime=RuntimeSpec("torch", "cuda", "fp16"))
    gpu = GpuMemory(peak_allocated_mb=210.0, peak_reserved_mb=256.0, process_used_mb=900.0, device_total_mb=143771.0)
    measurements = tuple(dataclasses.replace(m, gpu_memory=gpu) for m in report.measurements)
    runtime = {**report.runtime, "startup": {"load_s": 1.25, "first_call_s": 14.5}}
    return dataclasses.replace(report, measurements=measurements, runtime=runtime)


# Rows naming a runtime, device or precision optbench has none of, each with the error RowChoice.parse gives:
# read alike by a budget's speedup_against and by report --against.
UNKNOWN_ROW_NAMES = [
    (
        "baseline/onxruntime",
        r"'onxruntime' is no runtime .*: give one of \['onnxruntime', .*did you mean 'onnxruntime'\?",
    ),
    (  # the options were not checked: the row named no row of any run
        "baseline/torch-compil/cpu",
        r"'torch-compil' is no torch runtime: give one of \['torch', 'torch-compile', .*did you mean 'torch-compile'\?",
    ),
    ("baseline/torch/CUDA", r"'CUDA' is no device: give one of \['cpu', 'cuda'\]; did you mean 'cuda'\?"),
    ("baseline/torch/cuda/fp61", r"'fp61' is no precision: give one of \['bf16', 'fp16', 'fp32'\]; did you mean"),
    ("baseline/torch-cuda-graphs/cpu", r"torch-cuda-graphs does not run on cpu: it runs on cuda"),
    ("baseline/onnxruntime-tensorrt/cpu", r"onnxruntime-tensorrt does not run on cpu: it runs on cuda"),
    (  # its device runs it, its precision there does not: the precision was not checked against the device
        "baseline/torch/cpu/fp16",
        r"torch does not run on cpu/fp16: it runs on cpu/fp32, cuda/bf16, cuda/fp16, cuda/fp32$",
    ),
]
