"""The benchmark's job order and pooling: rounds interleave the variants, the A/A repeat sets the noise floor.

The job processes are replaced by a fake that records the order and returns made-up timings, so these
tests check the bookkeeping, not the clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optbench import bench
from optbench.artifact import StepRecord
from optbench.bench import BenchConfig, benchmark, noise_floor_pct
from optbench.measure import Latency, Timing

MS = 1_000_000


@pytest.fixture()
def fake_jobs(monkeypatch: pytest.MonkeyPatch, reviews) -> list[tuple[str, str]]:
    """Replace the job processes: each latency job of the baseline returns 10 ms per call the first time in
    a round and 11 ms the second (the A/A repeat); the pruned variant always 5 ms."""
    calls: list[tuple[str, str]] = []

    def run(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        variant = "+".join(["baseline", *(step["name"] for step in job.artifact["lineage"])])
        calls.append((job.kind, variant))
        if job.kind == "accuracy":
            logits_path = Path(job.output).with_suffix(".npy")
            np.save(logits_path, np.tile([[1.0, 0.0]], (len(reviews.test), 1)))
            return {"logits": str(logits_path), "runtime_details": {}, "peak_rss_mb": 100.0}
        repeat = variant == "baseline" and calls[-2:-1] == [("latency", "baseline+prune")]
        per_call = 5 if variant != "baseline" else 11 if repeat else 10
        return {"values_ns": [per_call * MS] * 3, "peak_rss_mb": 200.0 + len(calls)}

    monkeypatch.setattr(bench, "run_in_subprocess", run)
    return calls


def _pruned(artifact: Any) -> Any:
    return dataclasses.replace(artifact, lineage=(StepRecord("prune", {}),))


def test_rounds_interleave_the_variants_and_end_with_the_a_a_repeat(fake_jobs, tiny_artifact, reviews) -> None:
    config = BenchConfig(batch_sizes=(1,), seq_lens=(16,), rounds=2, timing=Timing(warmup=0, min_iters=1))
    reports = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", run_id="r")
    a, b = "baseline", "baseline+prune"
    assert fake_jobs == [("accuracy", a), ("accuracy", b)] + [("latency", a), ("latency", b), ("latency", a)] * 2
    baseline, pruned = ({m.batch_size: m for m in r.measurements}[1] for r in reports)
    assert baseline.latency.n == pruned.latency.n == 6  # two rounds of three calls, pooled
    assert baseline.latency.p50_ms == 10.0 and pruned.speedup_p50 == 2.0  # the repeat is not pooled in
    assert baseline.noise_floor_pct == pruned.noise_floor_pct == pytest.approx(200 / 21)
    assert pruned.peak_rss_mb == 200.0 + 7  # the higher of its two rounds (job 7 of 8)
    assert reports[0].workload["rounds"] == 2


def test_without_the_a_a_check_there_is_no_repeat_and_no_noise_floor(fake_jobs, tiny_artifact, reviews) -> None:
    config = BenchConfig(batch_sizes=(1,), seq_lens=(16,), aa_check=False, timing=Timing(warmup=0, min_iters=1))
    reports = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", run_id="r")
    assert [kind for kind, _ in fake_jobs].count("latency") == 2
    assert all(m.noise_floor_pct is None for r in reports for m in r.measurements)


def test_noise_floor_is_the_p50_gap_in_percent_of_the_mean() -> None:
    first, second = Latency.from_values([10 * MS] * 5), Latency.from_values([12 * MS] * 5)
    assert noise_floor_pct(first, second) == pytest.approx(200 * 2 / 22)
    assert noise_floor_pct(first, first) == 0.0


def test_rounds_below_one_are_refused() -> None:
    from optbench.errors import OptbenchError

    with pytest.raises(OptbenchError, match="rounds=0"):
        BenchConfig(rounds=0)
