"""The benchmark's job order and pooling: rounds interleave the variants, the A/A repeat sets the noise floor.

The job processes are replaced by a fake that records the order and returns made-up timings, so these
tests check the bookkeeping, not the clock."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optbench import bench
from optbench.accuracy import Drop, Metrics
from optbench.artifact import StepRecord
from optbench.bench import BenchConfig, benchmark, noise_floor_pct
from optbench.environment import fingerprint_key
from optbench.errors import OptbenchError
from optbench.executors.local import LocalExecutor
from optbench.job import JobFailed, load_batches
from optbench.measure import GpuMemory, Latency, Timing
from optbench.report import workload_fingerprint
from optbench.runtimes import RuntimeSpec
from optbench.sweep import PlannedJob, SweepStore

MS = 1_000_000


def _variant(job: Any) -> str:
    """The variant name of a job's model, from its lineage's step names."""
    return "+".join(["baseline", *(step["name"] for step in job.artifact["lineage"])])


@pytest.fixture()
def fake_jobs(monkeypatch: pytest.MonkeyPatch, reviews) -> list[tuple[str, str]]:
    """Replace the job processes: each latency job of the baseline returns 10 ms per call the first time in
    a round and 11 ms the second (the A/A repeat); the pruned variant always 5 ms."""
    calls: list[tuple[str, str]] = []

    def run(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        variant = _variant(job)
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
    assert "set threads = 2 or fewer, or run where more cores are free" in caplog.text
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


def _failing_job(
    monkeypatch: pytest.MonkeyPatch, key: str, reason: str = "latency job hung: no result after 5 s"
) -> None:
    """Make the fake job runner fail the one job whose output is named `key` (its round and pair) for `reason`."""
    run = bench.run_in_subprocess

    def fail_one(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        if Path(job.output).name.rsplit("-", 1)[0] == key:  # the store names it <key>-<claim token>.result.json
            raise JobFailed(reason)
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


# --- what the configuration refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_sizes": ()}, "needs at least one runtime, batch size and sequence length"),
        ({"seq_lens": ()}, "needs at least one runtime, batch size and sequence length"),
        ({"seq_lens": (16, 0)}, "sequence length 0 is not valid"),
        ({"batch_sizes": (True,)}, r"batch_sizes \[True\] are not positive integers"),
        ({"batch_sizes": ("32",)}, r"batch_sizes \['32'\] are not positive integers"),
        ({"max_batches": 0}, "^max_batches=0: must be 1 or more"),
        ({"threads": 0, "rounds": 0}, "^threads=0 and rounds=0: must be 1 or more"),
        ({"job_timeout_s": 0.0}, "^job_timeout_s=0.0 must be a positive number of seconds"),
        ({"job_timeout_s": float("nan")}, "^job_timeout_s=nan must be a positive number of seconds"),
    ],
)
def test_a_bench_config_made_in_code_is_checked_as_a_recipe_s(changes: dict[str, Any], message: str) -> None:
    """The recipe reader checks seq_lens itself first: a BenchConfig built by code is checked by its own."""
    with pytest.raises(OptbenchError, match=message):
        BenchConfig(**changes)


# --- the matrix --------------------------------------------------------------------------------------------

COMPILED = RuntimeSpec("torch", options={"compile": True})


def test_the_reference_pair_comes_first_unless_a_runtime_lists_it() -> None:
    reference = bench.REFERENCE
    assert bench.pair_up(["base", "int8"], [COMPILED], lambda spec, model: True) == (
        [("base", reference), ("base", COMPILED), ("int8", COMPILED)],
        0,
    )

    def not_int8_on_reference(spec: RuntimeSpec, model: str) -> bool:
        return (model, spec) != ("int8", reference)

    assert bench.pair_up(["base", "int8"], [COMPILED, reference], not_int8_on_reference) == (
        [("base", COMPILED), ("base", reference), ("int8", COMPILED)],
        1,
    )


def test_a_runtime_is_not_paired_with_a_model_of_a_format_it_does_not_run(tiny_artifact, caplog) -> None:
    with caplog.at_level("WARNING", logger="optbench.bench"):
        assert not bench._runs(RuntimeSpec("onnxruntime"), tiny_artifact)
    assert caplog.text == ""  # not a model it declines: one it never runs


def test_jobs_run_elsewhere_are_not_warned_about_this_machine_s_cores(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Each node of a distributed executor has cores of its own."""
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    elsewhere = type("Elsewhere", (LocalExecutor,), {"runs_here": False})(bench.run_in_subprocess)
    config = dataclasses.replace(TWO_ROUNDS, threads=8)
    with caplog.at_level("WARNING", logger="optbench.bench"):
        reports, _ = benchmark([tiny_artifact], reviews, config, recipe="t", store=store, executor=elsewhere)
    assert reports and "threads" not in caplog.text


# --- the reports ----------------------------------------------------------------------------------------------


def _script_jobs(
    monkeypatch: pytest.MonkeyPatch, latency: Callable[[Any], dict[str, Any]], logits: Callable[[str], np.ndarray]
) -> None:
    """Replace the job processes: a latency job returns `latency(job)`, an accuracy job `logits(variant)` with the
    variant's name as its runtime details."""

    def run(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        if job.kind == "latency":
            return latency(job)
        path = Path(job.output).with_suffix(".npy")
        np.save(path, logits(_variant(job)))
        details = {"variant": _variant(job)}
        return {"logits": str(path), "runtime_details": details, "startup": {"load_s": 0.5}, "peak_rss_mb": 1.0}

    monkeypatch.setattr(bench, "run_in_subprocess", run)


def test_each_report_holds_its_own_pair_s_figures(
    monkeypatch: pytest.MonkeyPatch, tiny_artifact, reviews, store
) -> None:
    """Every figure is the pair's own, at each shape, and the speedup, the drop and the noise floor are taken
    against the reference, at p50 and at the row's own shape: where every model timed and predicted alike, a mix-up
    passed unnoticed, and where every shape timed alike, a speedup or noise floor taken at another shape did."""
    labels = reviews.test.labels

    def latency(job: Any) -> dict[str, Any]:
        variant, name = _variant(job), Path(job.output).name
        b = 2 if "-2x16-" in name else 1
        if "-repeat-" in name:
            ms = [12 if b == 1 else 25] * 3
        else:
            ms = {"baseline": [10 * b, 10 * b, 30 * b], "baseline+prune": [5 if b == 1 else 4] * 3}[variant]
        return {
            "values_ns": [v * MS for v in ms],
            "peak_rss_mb": 100.0 + len(variant),
            "gpu_memory": {"peak_allocated_mb": float(len(variant))},
        }

    def logits(variant: str) -> np.ndarray:  # the baseline says fresh (0) to every text, the pruned model is right
        return np.eye(2)[labels if variant == "baseline+prune" else np.zeros_like(labels)]

    _script_jobs(monkeypatch, latency, logits)
    timing = Timing(warmup=0, min_iters=1)
    config = BenchConfig(batch_sizes=(1, 2), seq_lens=(16,), threads=1, timing=timing, max_batches=3)
    artifacts = [tiny_artifact, _pruned(tiny_artifact)]
    reports, failed = benchmark(artifacts, reviews, config, recipe="t", store=store)
    workload = {
        "dataset": reviews.source,
        "data_fingerprint": reviews.fingerprint,
        "split": "test",
        "rows": len(reviews.test),
        "max_length": reviews.max_length,
        "threads": 1,
        "timing": dataclasses.asdict(timing),
        "max_batches": 3,
        "rounds": 1,
    }
    assert not failed and len(reports) == 2
    for report, artifact in zip(reports, artifacts, strict=True):
        variant = artifact.variant
        assert report.recipe == "t" and report.workload == workload
        assert report.artifact == {
            **artifact.to_dict(),
            "size_mb": artifact.size_mb(),
            "parameters": artifact.parameters(),
        }
        details = {"details": {"variant": variant}, "startup": {"load_s": 0.5}}
        assert report.runtime == {**bench.REFERENCE.to_dict(), "threads": 1, **details}
        assert report.environment["machine"] == fingerprint_key(report.environment)
        assert report.metrics == Metrics.from_logits(labels, logits(variant))
        assert [(m.batch_size, m.seq_len) for m in report.measurements] == [(1, 16), (2, 16)]
        for m in report.measurements:
            assert m.workload_fingerprint == workload_fingerprint(workload, m.batch_size, 16)
            assert m.throughput_sps == pytest.approx(m.batch_size * 1e3 / m.latency.mean_ms)
            assert m.peak_rss_mb == 100.0 + len(variant)
            assert m.gpu_memory == GpuMemory(peak_allocated_mb=float(len(variant)))
        # p50s 10 and 12 at batch 1 (their p90s: 26 and 12), 20 and 25 at batch 2
        assert [m.noise_floor_pct for m in report.measurements] == pytest.approx([200 * 2 / 22, 200 * 5 / 45])
    baseline, pruned = reports
    assert baseline.drop == Drop.of_reference()
    assert pruned.drop == Drop.paired(labels, logits("baseline"), logits("baseline+prune")) and pruned.drop.points < 0
    # p50s 10 over 5 and 20 over 4 (the p90s: 26 over 5, 52 over 4)
    assert [m.speedup_p50 for m in pruned.measurements] == [2.0, 5.0]


def test_shapes_are_reported_by_the_machine_that_timed_them(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An executor's nodes send their environment with each latency job: each pair gets a report per node, of the
    shapes timed there, in the order the run has them."""
    run = bench.run_in_subprocess

    def on_nodes(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        result = run(job, job_path, timeout_s)
        if job.kind == "latency":
            node = "node-b" if "-2x16-" in Path(job.output).name else "node-a"
            result["environment"] = {"machine": node, "executor": "ray"}
        return result

    monkeypatch.setattr(bench, "run_in_subprocess", on_nodes)
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=(1, 2, 4))
    reports, _ = benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", store=store)
    assert [(r.variant, r.environment["machine"], [m.batch_size for m in r.measurements]) for r in reports] == [
        ("baseline", "node-a", [1, 4]),
        ("baseline+prune", "node-a", [1, 4]),
        ("baseline", "node-b", [2]),
        ("baseline+prune", "node-b", [2]),
    ]


def test_this_machine_is_fingerprinted_once_a_run_with_its_threads(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint times a calibration: once for the run, not once per shape."""
    taken: list[int] = []
    fingerprint = bench.fingerprint
    monkeypatch.setattr(bench, "fingerprint", lambda threads: taken.append(threads) or fingerprint(threads))
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=(1, 2), threads=2)
    reports, _ = benchmark([tiny_artifact], reviews, config, recipe="t", store=store)
    assert taken == [2] and [len(r.measurements) for r in reports] == [2]


def test_the_reference_failing_a_later_shape_is_an_error_naming_its_own_failure(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the reason of an A/A repeat of it that failed before: that one lost only a noise floor."""
    _failing_job(monkeypatch, "latency-1x16-round0-pair0-repeat")
    _failing_job(monkeypatch, "latency-2x16-round0-pair0", "latency job failed: killed by SIGKILL: out of memory")
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=(1, 2), rounds=1)
    with pytest.raises(OptbenchError, match=r"the reference baseline on torch.* failed \(latency job failed: killed"):
        benchmark([tiny_artifact, _pruned(tiny_artifact)], reviews, config, recipe="t", store=store)


def test_a_failed_pair_listed_before_the_reference_leaves_the_reference_its_figures(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the reference listed second, its machine and noise floor are read from its own jobs, not the first
    pair's (which has none)."""
    _failing_job(monkeypatch, "latency-1x16-round0-pair0")
    config = dataclasses.replace(TWO_ROUNDS, runtimes=(COMPILED, bench.REFERENCE), rounds=1)
    reports, failed = benchmark([tiny_artifact], reviews, config, recipe="t", store=store)
    assert [(f.runtime, f.job) for f in failed] == [("torch-cpu-fp32-compile", "latency-1x16-round0-pair0")]
    assert [(r.runtime["options"], r.measurements[0].noise_floor_pct) for r in reports] == [
        ({}, pytest.approx(200 / 21))
    ]


def test_an_int8_model_slower_than_its_fp32_source_is_flagged_at_those_shapes(
    monkeypatch: pytest.MonkeyPatch, tiny_artifact, reviews, store
) -> None:
    """Its source is the model its quantize step ran on (not the baseline); equal p50s are not slower; a model that
    no quantize step made last is not flagged, however slow."""
    batch_sizes = (1, 2, 4)
    p50s = {
        "baseline": (10, 10, 10),
        "baseline+prune": (12, 5, 5),
        "baseline+prune+quantize-dynamic": (13, 5, 14),
        "baseline+quantize-dynamic": (9, 9, 9),
    }

    def latency(job: Any) -> dict[str, Any]:
        batch_size = int(Path(job.output).name.split("-")[1].split("x")[0])  # latency-<batch>x<seq>-round...
        return {"values_ns": [p50s[_variant(job)][batch_sizes.index(batch_size)] * MS] * 3, "peak_rss_mb": 1.0}

    _script_jobs(monkeypatch, latency, lambda variant: np.tile([[1.0, 0.0]], (len(reviews.test), 1)))
    pruned = _pruned(tiny_artifact)
    quantize = StepRecord("quantize-dynamic", {})
    artifacts = [
        tiny_artifact,
        pruned,
        dataclasses.replace(pruned, lineage=(*pruned.lineage, quantize)),
        dataclasses.replace(tiny_artifact, lineage=(quantize,)),
    ]
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=batch_sizes, rounds=1, aa_check=False)
    reports, _ = benchmark(artifacts, reviews, config, recipe="t", store=store)
    assert {r.variant: r.warnings for r in reports} == {
        "baseline": (),
        "baseline+prune": (),
        "baseline+prune+quantize-dynamic": (
            "INT8 is slower than its FP32 source baseline+prune on torch-cpu-fp32 at batch 1 x 16, batch 4 x 16",
        ),
        "baseline+quantize-dynamic": (),
    }


def test_an_int8_model_whose_source_is_not_timed_on_its_runtime_is_not_flagged(tiny_artifact) -> None:
    quantized = dataclasses.replace(tiny_artifact, lineage=(StepRecord("quantize-dynamic", {}),))
    pairs = [(tiny_artifact, bench.REFERENCE), (quantized, COMPILED)]
    assert bench._int8_slower_than_source(1, pairs, [tiny_artifact, quantized], {}, [(1, 16)], {}) == []


def test_an_int8_model_slower_by_no_more_than_the_a_a_noise_floor_is_not_flagged(tiny_artifact) -> None:
    """A tiny model's INT8 at 0.381 ms against its FP32 ONNX source at 0.359 ms, in a run whose reference's two p50s
    differed by 19.7%, was flagged slower: the run cannot tell them apart. A gap past the floor still is."""
    quantized = dataclasses.replace(tiny_artifact, lineage=(StepRecord("quantize-dynamic", {}),))
    pairs = [(tiny_artifact, bench.REFERENCE), (quantized, bench.REFERENCE)]
    p50s = {(0, 1, 16): 0.359, (1, 1, 16): 0.381, (0, 8, 16): 10.0, (1, 8, 16): 15.0}
    latencies = {key: Latency.from_values([round(p50 * MS)] * 10) for key, p50 in p50s.items()}
    shapes = [(1, 16), (8, 16)]
    flagged = bench._int8_slower_than_source(
        1, pairs, [tiny_artifact, quantized], latencies, shapes, {(1, 16): 19.7, (8, 16): 19.7}
    )
    assert flagged == ["INT8 is slower than its FP32 source baseline on torch-cpu-fp32 at batch 8 x 16"]


# --- the jobs and their inputs ----------------------------------------------------------------------------------


def test_every_job_runs_with_the_run_s_settings(
    fake_jobs, tiny_artifact, reviews, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its threads, timing, timeout and cache folder, the last made absolute: a job's process may start elsewhere."""
    seen: list[tuple[Any, ...]] = []
    fake = bench.run_in_subprocess

    def record(job: Any, job_path: Path, timeout_s: float) -> dict[str, Any]:
        seen.append((job.threads, job.timing, timeout_s, job.cache))
        return fake(job, job_path, timeout_s)

    monkeypatch.setattr(bench, "run_in_subprocess", record)
    monkeypatch.chdir(tmp_path)
    timing = Timing(warmup=0, min_iters=2, min_seconds=0.5)
    config = dataclasses.replace(TWO_ROUNDS, threads=3, timing=timing, job_timeout_s=42.0)
    benchmark([tiny_artifact], reviews, config, recipe="t", store=store, cache_dir=Path("cache"))
    assert len(seen) == len(fake_jobs) > 1 and set(seen) == {(3, timing, 42.0, str(tmp_path.resolve() / "cache"))}


def test_latency_inputs_are_whole_batches_and_the_accuracy_pass_reads_every_text_up_to_max_length(
    fake_jobs, tiny_artifact, reviews, store
) -> None:
    data = dataclasses.replace(reviews, max_length=16)
    config = dataclasses.replace(TWO_ROUNDS, batch_sizes=(7,), seq_lens=(16,), max_batches=3)
    benchmark([tiny_artifact], data, config, recipe="t", store=store)
    assert [b["input_ids"].shape for b in load_batches(store.inputs / "shape-7-16.npz")] == [(7, 16)] * 3
    accuracy = load_batches(store.inputs / "accuracy.npz")
    rows = [len(b["input_ids"]) for b in accuracy]
    assert sum(rows) == len(data.test) and all(n == bench.ACCURACY_BATCH_SIZE for n in rows[:-1])
    assert max(b["input_ids"].shape[1] for b in accuracy) == 16  # each batch as long as its longest text, cut at 16


def test_a_resumed_sweep_reads_the_inputs_it_tokenized(
    fake_jobs, tiny_artifact, reviews, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    monkeypatch.setattr(bench, "save_batches", lambda *args: pytest.fail("a resumed sweep tokenized its inputs again"))
    reports, _ = benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert len(reports) == 1


def test_a_resumed_sweep_writes_again_inputs_found_damaged_or_holding_other_batches(
    fake_jobs, tiny_artifact, reviews, store, caplog
) -> None:
    """An inputs file cut short failed every job of its shape on every resume (the file was kept as it was found);
    one holding other batches (another sweep's, copied in) had each job time them."""
    benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    accuracy, shape = store.inputs / "accuracy.npz", store.inputs / "shape-1-16.npz"
    expected = load_batches(shape)
    shutil.copyfile(shape, accuracy)
    shape.write_bytes(shape.read_bytes()[:100])
    with caplog.at_level("WARNING", logger="optbench.bench"):
        benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert f"{shape} is damaged" in caplog.text and f"{accuracy} holds other inputs than this sweep's" in caplog.text
    stored = load_batches(shape)
    assert len(stored) == len(expected)
    assert all(np.array_equal(a[key], b[key]) for a, b in zip(stored, expected, strict=True) for key in a)
    assert len(load_batches(accuracy)) != len(expected)


def _save_zip_of_arrays(path: Path) -> None:
    """An .npz (another sweep's inputs, say) at `path`, whatever its name: np.load reads it as a zip of arrays."""
    with path.open("wb") as file:
        np.savez(file, input_ids=np.eye(2))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "cannot be read: "),
        (lambda path: path.write_bytes(b""), "cannot be read: "),
        (lambda path: path.unlink(), "cannot be read: "),
        (lambda path: path.write_text("not an array\n"), "cannot be read: "),
        (lambda path: np.save(path, np.zeros((5, 2), np.float32)), "are float32 of shape (5, 2), not 43 rows"),
        (lambda path: np.save(path, np.array(["a", "b"])), "are <U1 of shape (2,), not 43 rows"),
        (_save_zip_of_arrays, "cannot be read: "),
    ],
    ids=["truncated", "empty", "missing", "text", "other rows", "strings", "npz"],
)
def test_stored_logits_that_are_damaged_name_their_record_before_a_resume_runs_a_job(
    fake_jobs, tiny_artifact, reviews, store, damage: Callable[[Path], object], why: str
) -> None:
    """A cut-short logits file ended the run in numpy's traceback; one of another sweep's test split in an error
    telling the user to score the examples that are labelled; a zip of arrays in an AttributeError. And a resume
    found them only once every remaining job had run (hours of them). Deleting the record runs the job again."""
    _fail("latency", "baseline", KeyboardInterrupt())  # stopped after its accuracy job: the latency jobs remain
    with pytest.raises(KeyboardInterrupt):
        benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    bench._failing.clear()  # type: ignore[attr-defined]
    fake_jobs.clear()
    logits = store.jobs / "accuracy-pair0.npy"
    damage(logits)
    with pytest.raises(OptbenchError) as error:
        benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert fake_jobs == []  # refused before the first remaining job ran
    record = store.jobs / "accuracy-pair0.json"
    assert str(error.value).startswith(f"{record} is damaged (its logits, accuracy-pair0.npy, {why}")
    assert str(error.value).endswith("delete it and run the recipe again")
    record.unlink()
    reports, _ = benchmark([tiny_artifact], reviews, TWO_ROUNDS, recipe="t", store=store)
    assert len(reports) == 1


def test_the_progress_bar_names_the_job_its_round_and_the_a_a_repeat(tiny_artifact) -> None:
    def describe(job: PlannedJob, rounds: int) -> str:
        return bench._describe(job, tiny_artifact, bench.REFERENCE, rounds)

    assert describe(PlannedJob("accuracy", 0), 2) == "accuracy baseline on torch-cpu-fp32"
    assert describe(PlannedJob("latency", 0, (1, 16)), 1) == "latency baseline on torch-cpu-fp32"
    assert describe(PlannedJob("latency", 0, (1, 16), round=1, repeat=True), 2) == (
        "latency baseline on torch-cpu-fp32 (round 2/2), A/A repeat"
    )


def test_pooled_rounds_keep_the_highest_memory_figures() -> None:
    """Each figure the highest of any round's, whichever rounds had GPU figures, and the coarsest clock resolution
    (a round stored before jobs recorded it reads 0); the jobs' results left as they were."""
    pooled: dict[Any, dict[str, Any]] = {}
    first = {
        "values_ns": [MS],
        "peak_rss_mb": 300.0,
        "gpu_memory": {"peak_allocated_mb": 10.0, "process_used_mb": 50.0},
    }
    bench._pool(pooled, "gpu", first)
    bench._pool(pooled, "gpu", {"values_ns": [MS], "peak_rss_mb": 200.0, "gpu_memory": {"peak_allocated_mb": 20.0}})
    bench._pool(pooled, "gpu", {"values_ns": [MS], "peak_rss_mb": 100.0})
    assert pooled["gpu"]["peak_rss_mb"] == 300.0
    assert pooled["gpu"]["gpu_memory"] == GpuMemory(peak_allocated_mb=20.0, process_used_mb=50.0)
    assert first["values_ns"] == [MS]
    bench._pool(pooled, "later", {"values_ns": [MS], "peak_rss_mb": 1.0})
    bench._pool(pooled, "later", {"values_ns": [MS], "peak_rss_mb": 1.0, "gpu_memory": {"process_used_mb": 5.0}})
    assert pooled["later"]["gpu_memory"] == GpuMemory(process_used_mb=5.0)
    bench._pool(pooled, "clock", {"values_ns": [MS], "peak_rss_mb": 1.0, "resolution_ns": 500})
    bench._pool(pooled, "clock", {"values_ns": [MS], "peak_rss_mb": 1.0})
    assert pooled["clock"]["resolution_ns"] == 500
