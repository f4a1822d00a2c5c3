"""The benchmark's job order and pooling: rounds interleave the variants, the A/A repeat sets the noise floor.

The job processes are replaced by a fake that records the order and returns made-up timings, so these
tests check the bookkeeping, not the clock."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optbench import bench
from optbench.artifact import StepRecord
from optbench.bench import BenchConfig, benchmark, noise_floor_pct
from optbench.errors import OptbenchError
from optbench.job import JobFailed
from optbench.measure import Latency, Timing
from optbench.runtimes import RuntimeSpec
from optbench.sweep import SweepStore

MS = 1_000_000


@pytest.fixture()
def fake_jobs(monkeypatch: pytest.MonkeyPatch, reviews) -> list[tuple[str, str]]:
    """Replace the job processes: each latency job of the baseline returns 10 ms per call the first time in
    a round and 11 ms the second (the A/A repeat); the pruned variant always 5 ms."""
    calls: list[tuple[str, str]] = []

    def run(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        variant = "+".join(["baseline", *(step["name"] for step in job.artifact["lineage"])])
        calls.append((job.kind, variant))
        if (job.kind, variant) in failing:
            raise failing[job.kind, variant]
        if job.kind == "accuracy":
            logits_path = Path(job.output).with_suffix(".npy")
            np.save(logits_path, np.tile([[1.0, 0.0]], (len(reviews.test), 1)))
            return {"logits": str(logits_path), "runtime_details": {}, "peak_rss_mb": 100.0}
        repeat = "-repeat-" in Path(job.output).name
        per_call = 5 if variant != "baseline" else 11 if repeat else 10
        return {"values_ns": [per_call * MS] * 3, "resolution_ns": 500, "peak_rss_mb": 200.0 + len(calls)}

    failing: dict[tuple[str, str], BaseException] = {}
    monkeypatch.setattr(bench, "run_in_subprocess", run)
    monkeypatch.setattr(bench, "_failing", failing, raising=False)
    return calls


def _fail(kind: str, variant: str, error: BaseException) -> None:
    """Make the fake job runner raise `error` for the jobs of `kind` on `variant`."""
    bench._failing[kind, variant] = error  # type: ignore[attr-defined]


@pytest.fixture()
def store(tmp_path: Path) -> SweepStore:
    return SweepStore.open(tmp_path / "results", {"test": True}, lambda: "r", 60)


TWO_ROUNDS = BenchConfig(batch_sizes=(1,), seq_lens=(16,), rounds=2, timing=Timing(warmup=0, min_iters=1))


def _pruned(artifact: Any) -> Any:
    return dataclasses.replace(artifact, lineage=(StepRecord("prune", {}),))


def test_rounds_interleave_the_variants_and_end_with_the_a_a_repeat(fake_jobs, tiny_artifact, reviews, store) -> None:
    reports, failed = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert failed == [] and {r.run_id for r in reports} == {"r"}
    a, b = "baseline", "baseline+prune"
    rounds = [("latency", a), ("latency", b), ("latency", a), ("latency", b), ("latency", a), ("latency", a)]
    assert fake_jobs == [("accuracy", a), ("accuracy", b), *rounds]  # round 2 starts with b, then the repeat
    baseline, pruned = ({m.batch_size: m for m in r.measurements}[1] for r in reports)
    assert baseline.latency.n == pruned.latency.n == 6  # two rounds of three calls, pooled
    assert baseline.latency.p50_ms == 10.0 and pruned.speedup_p50 == 2.0  # the repeat is not pooled in
    assert baseline.latency.clock_resolution_ms == 0.0005  # the jobs' clock's, and the intervals include it
    assert (baseline.latency.p50_ci_low, baseline.latency.p50_ci_high) == pytest.approx((9.9995, 10.0005))
    assert baseline.noise_floor_pct == pruned.noise_floor_pct == pytest.approx(200 / 21)
    assert pruned.peak_rss_mb == 200.0 + 6  # the higher of its two rounds (job 6 of 8)
    assert reports[0].workload["rounds"] == 2


def test_every_job_keeps_its_caches_in_the_run_s_cache_folder(
    fake_jobs, tiny_artifact, reviews, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caches: list[str | None] = []
    fake = bench.run_in_subprocess
    monkeypatch.setattr(bench, "run_in_subprocess", lambda job, *args: caches.append(job.cache) or fake(job, *args))
    benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store, cache_dir=tmp_path / "cache")
    assert len(caches) == len(fake_jobs) > 1 and set(caches) == {str((tmp_path / "cache").resolve())}


def test_pooled_rounds_keep_the_coarsest_clock_resolution() -> None:
    """A round stored before jobs recorded their clock's resolution pools as unknown (0)."""
    pooled: dict[Any, dict[str, Any]] = {}
    bench._pool(pooled, "k", {"values_ns": [MS], "peak_rss_mb": 1.0})
    assert pooled["k"]["resolution_ns"] == 0
    bench._pool(pooled, "k", {"values_ns": [MS], "resolution_ns": 500, "peak_rss_mb": 1.0})
    assert pooled["k"]["resolution_ns"] == 500 and pooled["k"]["values_ns"] == [MS, MS]


def test_without_the_a_a_check_there_is_no_repeat_and_no_noise_floor(fake_jobs, tiny_artifact, reviews, store) -> None:
    config = BenchConfig(batch_sizes=(1,), seq_lens=(16,), aa_check=False, timing=Timing(warmup=0, min_iters=1))
    reports, _ = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", store=store)
    assert [kind for kind, _ in fake_jobs].count("latency") == 2
    assert all(m.noise_floor_pct is None for r in reports for m in r.measurements)


def test_noise_floor_is_the_p50_gap_in_percent_of_the_mean() -> None:
    first, second = Latency.from_values([10 * MS] * 5), Latency.from_values([12 * MS] * 5)
    assert noise_floor_pct(first, second) == pytest.approx(200 * 2 / 22)
    assert noise_floor_pct(first, first) == 0.0


def test_threads_default_to_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned to 2 of 64 cores (docker --cpuset-cpus, taskset), 64 threads would oversubscribe the 2."""
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {4, 5}, raising=False)
    assert BenchConfig().threads == 2


def test_more_threads_than_usable_cores_are_warned_about(
    fake_jobs, tiny_artifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Oversubscribed cores distort every latency: the run goes on (it may be meant), with a warning."""
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    for threads in (2, 8):
        store = SweepStore.open(tmp_path / str(threads), {"test": True}, lambda: "r", 60)
        with caplog.at_level("WARNING", logger="optbench.bench"):
            config = dataclasses.replace(TWO_ROUNDS, threads=threads)
            reports, _ = benchmark([tiny_artifact], reviews, config, recipe="t", store=store)
        if threads == 2:
            assert "threads" not in caplog.text
    assert "[bench] threads = 8 is more than the 2 cores this process may use" in caplog.text
    assert reports and reports[0].runtime["threads"] == 8


def test_rounds_below_one_are_refused() -> None:
    from optbench.errors import OptbenchError

    with pytest.raises(OptbenchError, match="rounds=0"):
        BenchConfig(rounds=0)


# --- failures and resume -------------------------------------------------------------------------------


def test_a_failed_job_is_recorded_and_the_other_variants_finish(fake_jobs, tiny_artifact, reviews, store) -> None:
    _fail("latency", "baseline+prune", JobFailed("latency job failed: killed by SIGKILL: out of memory"))
    reports, failed = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert [r.variant for r in reports] == ["baseline"]
    assert [(f.variant, f.job, f.reason) for f in failed] == [
        ("baseline+prune", "latency-1x16-round0-pair1", "latency job failed: killed by SIGKILL: out of memory")
    ]
    # its second round was skipped, the reference's jobs all ran
    assert fake_jobs.count(("latency", "baseline+prune")) == 1 and fake_jobs.count(("latency", "baseline")) == 4


def test_without_the_reference_nothing_is_compared(fake_jobs, tiny_artifact, reviews, store) -> None:
    _fail("accuracy", "baseline", JobFailed("accuracy job hung: no result after 5 s"))
    with pytest.raises(OptbenchError, match=r"the reference baseline on torch.* failed \(accuracy job hung"):
        benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, TWO_ROUNDS, recipe="t", store=store)


def test_an_interrupted_sweep_resumes_with_only_the_jobs_it_lacks(fake_jobs, tiny_artifact, reviews, store) -> None:
    artifacts = [tiny_artifact, _pruned(tiny_artifact)]
    _fail("latency", "baseline+prune", KeyboardInterrupt())  # the sweep dies in its first latency job of prune
    with pytest.raises(KeyboardInterrupt):
        benchmark(artifacts, reviews, TWO_ROUNDS, recipe="t", store=store)
    a, b = "baseline", "baseline+prune"
    assert fake_jobs == [("accuracy", a), ("accuracy", b), ("latency", a), ("latency", b)]  # the last one died
    bench._failing.clear()  # type: ignore[attr-defined]
    fake_jobs.clear()
    reports, failed = benchmark(artifacts, reviews, TWO_ROUNDS, recipe="t", store=store)
    assert fake_jobs == [("latency", b), ("latency", a), ("latency", b), ("latency", a), ("latency", a)]
    assert failed == [] and [r.variant for r in reports] == [a, b]
    assert all(m.latency.n == 6 for r in reports for m in r.measurements)


def test_a_resumed_sweep_tries_failed_jobs_again(fake_jobs, tiny_artifact, reviews, store) -> None:
    artifacts = [tiny_artifact, _pruned(tiny_artifact)]
    _fail("accuracy", "baseline+prune", JobFailed("accuracy job failed: crashed with SIGSEGV"))
    _, failed = benchmark(artifacts, reviews, TWO_ROUNDS, recipe="t", store=store)
    assert len(failed) == 1
    bench._failing.clear()  # type: ignore[attr-defined]
    fake_jobs.clear()
    resumed = SweepStore.open(store.folder.parent, {"test": True}, lambda: "r2", 60)
    reports, failed = benchmark(artifacts, reviews, TWO_ROUNDS, recipe="t", store=resumed)
    assert failed == [] and len(reports) == 2
    assert fake_jobs[0] == ("accuracy", "baseline+prune") and ("accuracy", "baseline") not in fake_jobs


def test_a_failed_a_a_repeat_loses_only_the_noise_floor(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = bench.run_in_subprocess

    def repeat_fails_at_batch_1(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        if "1x16-round0-pair0-repeat" in job.output:
            raise JobFailed("latency job hung: no result after 5 s")
        return run(job, job_path, timeout_s)

    monkeypatch.setattr(bench, "run_in_subprocess", repeat_fails_at_batch_1)
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=(1, 2), rounds=1)
    reports, failed = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", store=store)
    assert [f.job for f in failed] == ["latency-1x16-round0-pair0-repeat"]  # recorded, so the gate sees it
    assert [r.variant for r in reports] == ["baseline", "baseline+prune"]  # the reference keeps its report
    floors = {m.batch_size: m.noise_floor_pct for m in reports[1].measurements}
    assert floors[1] is None and floors[2] is not None
    assert fake_jobs.count(("latency", "baseline")) == 3  # batch 1's, then batch 2's and its repeat: none skipped


def test_a_bench_config_made_in_code_refuses_a_runtime_listed_twice() -> None:
    # the check sat in the recipe reader, so a BenchConfig built by code timed the same runtime twice
    with pytest.raises(OptbenchError, match=r'^runtimes lists \["torch-cpu-fp32"\] more than once'):
        BenchConfig(runtimes=(RuntimeSpec("torch"), RuntimeSpec("torch", "cpu", "fp32")))


def _failing_job(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """Make the fake job runner fail the one job whose output is named `key` (its round and pair)."""
    run = bench.run_in_subprocess

    def fail_one(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        if Path(job.output).name.rsplit("-", 1)[0] == key:  # the store names it <key>-<claim token>.result.json
            raise JobFailed("latency job hung: no result after 5 s")
        return run(job, job_path, timeout_s)

    monkeypatch.setattr(bench, "run_in_subprocess", fail_one)


def test_the_reference_failing_a_later_round_is_an_error(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first round succeeded: the run went on with no baseline report, every speedup against one round of
    the reference and the variants' two."""
    _failing_job(monkeypatch, "latency-1x16-round1-pair0")
    with pytest.raises(OptbenchError, match=r"the reference baseline on torch.* failed \(latency job hung"):
        benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, TWO_ROUNDS, recipe="t", store=store)


def test_an_a_a_repeat_failing_a_later_round_leaves_no_noise_floor(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor would compare the reference's two rounds with one round of its repeat."""
    _failing_job(monkeypatch, "latency-1x16-round1-pair0-repeat")
    reports, failed = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert [f.job for f in failed] == ["latency-1x16-round1-pair0-repeat"]
    assert [r.variant for r in reports] == ["baseline", "baseline+prune"]
    assert all(m.noise_floor_pct is None for r in reports for m in r.measurements)


def test_each_model_reads_the_test_split_through_its_own_tokenizer(
    fake_jobs, tiny_artifact, reviews, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distill student of another vocabulary (a checkpoint folder, the packaged student) got the baseline's token
    ids: past its embeddings, an IndexError failed its jobs; within them, its accuracy was of other words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from optbench.artifact import ModelArtifact, content_hash
    from optbench.job import load_batches

    student = tmp_path / "student"
    shutil.copytree(tiny_artifact.path, student)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (student / name).unlink(missing_ok=True)
    vocab = {"[PAD]": 0, "[UNK]": 1, "the": 2, "a": 3}
    tokens = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokens.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokens, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(student)
    distilled = ModelArtifact(
        student, "hf", tiny_artifact.label_names, content_hash(student), lineage=(StepRecord("distill", {}),)
    )
    inputs: dict[str, set[str]] = {}
    fake = bench.run_in_subprocess
    monkeypatch.setattr(
        bench,
        "run_in_subprocess",
        lambda job, *args: inputs.setdefault(job.artifact["path"], set()).add(job.inputs) or fake(job, *args),
    )
    _, failed = benchmark([tiny_artifact, distilled], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert not failed
    assert not inputs[str(tiny_artifact.path)] & inputs[str(student)]  # the two read batches of their own
    for path in inputs[str(student)]:
        ids = np.concatenate([batch["input_ids"].ravel() for batch in load_batches(Path(path))])
        assert ids.max() < len(vocab) and (ids == vocab["the"]).any()  # the student's own ids


def test_models_of_the_baselines_tokenizer_files_or_of_none_share_its_batches(
    fake_jobs, tiny_artifact, reviews, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the tokenizer files tell apart what a model reads: a pruned model (its config.json another) reads the
    baseline's batches, as does a folder with no tokenizer files, and the baseline's keep their names (a sweep
    begun before models read through their own tokenizers finds them)."""
    from optbench.artifact import HF_FILES, ModelArtifact, content_hash

    def copy(name: str, step: str) -> ModelArtifact:
        folder = shutil.copytree(tiny_artifact.path, tmp_path / name)
        lineage = (StepRecord(step, {}),)
        return ModelArtifact(folder, "hf", tiny_artifact.label_names, content_hash(folder), lineage=lineage)

    pruned = copy("pruned", "prune")
    config = json.loads((pruned.path / "config.json").read_text())
    (pruned.path / "config.json").write_text(json.dumps({**config, "intermediate_size": 16}))
    bare = copy("bare", "distill")
    for name in (n for n in HF_FILES if n != "config.json"):
        (bare.path / name).unlink(missing_ok=True)
    inputs: dict[str, set[str]] = {}
    fake = bench.run_in_subprocess
    monkeypatch.setattr(
        bench,
        "run_in_subprocess",
        lambda job, *args: inputs.setdefault(job.artifact["path"], set()).add(job.inputs) or fake(job, *args),
    )
    _, failed = benchmark([tiny_artifact, pruned, bare], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert not failed
    assert inputs[str(pruned.path)] == inputs[str(bare.path)] == inputs[str(tiny_artifact.path)]
    assert {Path(path).name for path in inputs[str(tiny_artifact.path)]} == {"accuracy.npz", "shape-1-16.npz"}
