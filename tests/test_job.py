"""Jobs in fresh processes: batch files, results, failures and time-outs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import _save_tiny_onnx

from optbench import job as job_module
from optbench.artifact import QUANTIZATION_FILE, ModelArtifact, content_hash
from optbench.errors import OptbenchError
from optbench.job import Job, JobFailed, load_batches, run_in_subprocess, save_batches
from optbench.measure import HostClock, Timing
from optbench.runtimes import RuntimeSpec
from optbench.runtimes.torch import SCHEME


def test_batches_round_trip_in_order(tmp_path: Path) -> None:
    batches = [
        {"input_ids": np.arange(i * 6, i * 6 + 6).reshape(2, 3), "attention_mask": np.ones((2, 3), dtype=np.int64)}
        for i in range(12)
    ]
    save_batches(tmp_path / "b.npz", batches)
    loaded = load_batches(tmp_path / "b.npz")
    assert len(loaded) == 12
    for got, want in zip(loaded, batches, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def _job(tmp_path: Path, model: Path, kind: str = "latency", runtime: RuntimeSpec | None = None) -> Job:
    from transformers import AutoTokenizer

    from optbench.encoding import batches

    inputs = tmp_path / "in.npz"
    tokenizer = AutoTokenizer.from_pretrained(model)
    save_batches(inputs, batches(tokenizer, ["one", "two", "three"], batch_size=2, seq_len=8, max_length=8))
    artifact = ModelArtifact(model, "hf", ("fresh", "rotten"), content_hash(model))
    return Job(
        kind=kind,  # type: ignore[arg-type]
        artifact=artifact.to_dict(),
        runtime=(runtime or RuntimeSpec("torch")).to_dict(),
        threads=1,
        inputs=str(inputs),
        output=str(tmp_path / "out.json"),
        timing=Timing(warmup=1, min_iters=4, min_seconds=0, max_seconds=5),
    )


def _job_command_failing_on(*modules: str) -> tuple[str, ...]:
    """The job's command, made to fail when the job imported one of `modules` (whose memory would count in the
    model's peak RSS; an entry of None in sys.modules is a module hidden, not imported)."""
    probe = (
        "import sys; from optbench.job import main; code = main(sys.argv[1:]); "
        f"imported = [m for m in {modules!r} if sys.modules.get(m) is not None]; "
        "sys.exit(code or (f'the job imported {imported}' if imported else 0))"
    )
    return (sys.executable, "-c", probe)


def test_latency_and_accuracy_jobs_in_a_fresh_process(
    tmp_path: Path, tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pandas (40 MB) came with optbench.data and counted in every torch job's peak RSS; torchao (11 MB) came with
    # transformers, which imports it whenever it is installed, though only a model quantized with it needs it
    monkeypatch.setattr(job_module, "JOB_COMMAND", _job_command_failing_on("pandas", "torchao"))
    quantized = _torchao_quantized_copy(tiny_classifier, tmp_path / "quantized")
    jobs = {kind: _job(tmp_path / kind, tiny_classifier, kind) for kind in ("latency", "accuracy")}  # own folders
    jobs["quantized"] = _job(tmp_path / "quantized-job", quantized, "accuracy")
    with ThreadPoolExecutor(len(jobs)) as pool:  # both at once: each fresh process spends seconds importing torch
        running = {
            kind: pool.submit(run_in_subprocess, job, tmp_path / kind / "job.json", 300) for kind, job in jobs.items()
        }
    result = running["latency"].result()
    assert len(result["values_ns"]) >= 4 and all(v > 0 for v in result["values_ns"])
    assert result["peak_rss_mb"] > 0
    assert "gpu_memory" not in result  # a CPU runtime has none to report
    result = running["accuracy"].result()
    assert np.load(result["logits"]).shape == (3, 2)
    startup = result["startup"]  # the load and the first call, timed apart from the latency
    assert startup["load_s"] > 0 and startup["first_call_s"] > 0
    with pytest.raises(JobFailed, match=r"the job imported \['torchao'\]"):  # the one model that needs it has it
        running["quantized"].result()


@pytest.mark.parametrize(
    ("files", "hidden"),
    [
        ({"config.json": {"model_type": "bert"}}, True),
        ({"config.json": {"model_type": "bert"}, QUANTIZATION_FILE: {"library": "torchao"}}, False),
        # saved quantized by the user (transformers' TorchAoConfig): transformers needs torchao to load it
        ({"config.json": {"model_type": "bert", "quantization_config": {"quant_method": "torchao"}}}, False),
    ],
    ids=["plain", "optbench-scheme", "quantization_config"],
)
def test_torchao_is_hidden_only_from_a_model_saved_without_quantization(
    tmp_path: Path, files: dict[str, dict], hidden: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    modules = {name: module for name, module in sys.modules.items() if name != "torchao"}
    monkeypatch.setattr(sys, "modules", modules)  # a copy: the test process's own imports stay as they are
    job_module._hide_torchao_unless_the_model_needs_it({"path": str(tmp_path)})
    assert ("torchao" in modules and modules["torchao"] is None) == hidden


def _torchao_quantized_copy(model: Path, folder: Path) -> Path:
    """`model` with the torch runtime's INT8 scheme beside it, as quantize-dynamic's torch backend writes it."""
    shutil.copytree(model, folder)
    scheme = {"library": "torchao", "version": "test", "scheme": SCHEME}
    (folder / QUANTIZATION_FILE).write_text(json.dumps(scheme))
    return folder


def _execute_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, widths: list[int], timing: Timing
) -> tuple[list[int], dict]:
    """A latency job over batches of these widths, on a runtime that records the width of each call it gets;
    returns the widths seen and the job's result."""
    save_batches(tmp_path / "in.npz", [{"input_ids": np.zeros((2, w), dtype=np.int64)} for w in widths])
    seen: list[int] = []

    class Recorder:
        def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
            seen.append(batch["input_ids"].shape[1])
            return np.zeros((2, 2))

        def clock(self) -> HostClock:
            return HostClock()

    return seen, _execute_on(Recorder(), "latency", tmp_path, monkeypatch, timing)


def _execute_on(
    runtime: object,
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    timing: Timing | None = None,
    device: str = "cpu",
) -> dict:
    """A `kind` job over the batches saved in tmp_path/in.npz, run in this process on `runtime` (a fake)."""
    monkeypatch.setattr("optbench.runtimes.load_runtime", lambda spec, artifact, threads: runtime)
    artifact = ModelArtifact(tmp_path, "onnx", ("a", "b"), content_hash(tmp_path))
    spec = RuntimeSpec("onnxruntime", device).to_dict()
    paths = str(tmp_path / "in.npz"), str(tmp_path / "out.json")
    return job_module.execute(Job(kind, artifact.to_dict(), spec, 1, *paths, timing or Timing()))


def test_every_shape_runs_twice_before_the_timed_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of real lengths ("data") differ in shape; each shape's first call (a recompile, a CUDA graph
    capture) and second (where torch.compile's "reduce-overhead" records its CUDA graph) run before timing
    starts, not among the timed calls."""
    timing = Timing(warmup=0, min_iters=3, min_seconds=0, max_seconds=5)
    seen, result = _execute_recording(tmp_path, monkeypatch, [8, 12, 8, 16, 12, 8], timing)
    assert seen[:3] == [8, 12, 16]  # the first call, then the first batch of each other shape
    assert seen[3:6] == [8, 12, 16]  # every shape's second call
    # then the timed calls from batch 1 on, in whole passes over the 6 batches of different widths
    assert seen[6:] == [12, 8, 16, 12, 8, 8] and len(result["values_ns"]) == 6
    assert result["resolution_ns"] == HostClock.resolution_ns  # the runtime's clock's, for the intervals


def test_batches_of_one_shape_are_timed_for_min_iters_calls_not_whole_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole passes are for batches of different cost ("data" lengths); at a fixed length every batch costs the
    same, and the recipe's min_iters is what is timed: 3 calls, not the 6 of a pass (64 with max_batches' default)."""
    timing = Timing(warmup=0, min_iters=3, min_seconds=0, max_seconds=5)
    _, result = _execute_recording(tmp_path, monkeypatch, [8] * 6, timing)
    assert len(result["values_ns"]) == 3


def test_a_job_error_comes_back_as_its_one_line_reason(tmp_path: Path, tiny_classifier: Path) -> None:
    job = _job(tmp_path, tiny_classifier, runtime=RuntimeSpec("onnxruntime"))
    refusal = r"^latency job failed: runtime onnxruntime takes an ONNX model, not a Hugging Face checkpoint: end its"
    with pytest.raises(OptbenchError, match=refusal):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=300)


def test_an_onnxruntime_job_never_imports_torch(tmp_path: Path, monkeypatch) -> None:
    """torch's libraries would count in an ONNX model's peak RSS, though serving it needs none of them."""
    artifact = _save_tiny_onnx(tmp_path / "model")
    ones = np.ones((2, 8), dtype=np.int64)
    save_batches(tmp_path / "in.npz", [{"input_ids": ones, "attention_mask": ones, "token_type_ids": 0 * ones}])
    monkeypatch.setattr(job_module, "JOB_COMMAND", _job_command_failing_on("torch"))
    job = Job(
        "accuracy",
        artifact.to_dict(),
        RuntimeSpec("onnxruntime").to_dict(),
        1,
        str(tmp_path / "in.npz"),
        str(tmp_path / "out.json"),
    )
    result = run_in_subprocess(job, tmp_path / "job.json", timeout_s=120)
    np.testing.assert_allclose(np.load(result["logits"]), [[1.0, -1.0], [1.0, -1.0]])
    assert result["runtime_details"]["intra_op_threads"] == 1


def test_a_crashing_job_reports_its_last_line(tmp_path: Path, tiny_classifier: Path) -> None:
    job = _job(tmp_path, tiny_classifier)
    Path(job.inputs).write_bytes(b"not an npz file")
    # the traceback's last line (numpy's refusal of the file), not "exit code 1"
    with pytest.raises(OptbenchError, match=r"^latency job failed: ValueError: \S"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=300)


def test_a_hanging_job_times_out(tmp_path: Path, tiny_classifier: Path) -> None:
    # the timeout as given: ":.0f" wrote "no result after 0 s" for 0.2, as if it had not waited at all
    with pytest.raises(JobFailed, match=r"^latency job hung: no result after 0.2 s \(raise \[bench\] job_timeout_s"):
        run_in_subprocess(_job(tmp_path, tiny_classifier), tmp_path / "job.json", timeout_s=0.2)


@pytest.mark.parametrize(
    ("signal_name", "reason"),
    [("SIGKILL", "killed by SIGKILL: out of memory"), ("SIGSEGV", "crashed with SIGSEGV")],
)
def test_a_job_killed_by_a_signal_says_which(signal_name: str, reason: str, tmp_path: Path, monkeypatch) -> None:
    suicide = "import os, signal, sys; print('CUDA failure 2: out of memory', file=sys.stderr, flush=True); " + (
        f"os.kill(os.getpid(), signal.{signal_name})"
    )
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", suicide))
    job = Job("latency", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    with pytest.raises(JobFailed, match=f"^latency job failed: {reason}.*its last line: CUDA failure 2: out of memory"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)


def test_a_job_process_keeps_its_caches_in_the_run_s_cache_folder_and_runs_its_threads(
    tmp_path: Path, monkeypatch
) -> None:
    """A Ray worker does not inherit the run's OPTBENCH_CACHE (optbench run --cache), and sets OMP_NUM_THREADS to the
    CPUs its task holds: the job carries the cache folder and the run's threads (else figures measured at another
    thread count are reported under the run's). The tokenizers' own thread pool stays off beside the timing."""
    names = ("OPTBENCH_CACHE", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")
    reports = (
        "import json, os, sys; job = json.load(open(sys.argv[1])); "
        f"json.dump({{name: os.environ.get(name) for name in {names!r}}}, open(job['output'], 'w'))"
    )
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", reports))
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "the worker's own"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    job = Job("latency", {}, {}, 3, "in.npz", str(tmp_path / "out.json"), cache=str(tmp_path / "given"))
    environment = run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)
    assert environment == {
        "OPTBENCH_CACHE": str(tmp_path / "given"),
        "OMP_NUM_THREADS": "3",
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("import sys; sys.exit(3)", "exit code 3"),  # nothing said: the exit code is the reason
        ("import sys; print('boom', file=sys.stderr); print('\\n  ', file=sys.stderr); sys.exit(1)", "boom"),
    ],
    ids=["silent", "blank-lines-after"],
)
def test_a_failed_job_s_reason_is_its_last_non_blank_line_or_its_exit_code(
    script: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure always says something: blank lines printed last are not the reason, and a job that printed
    nothing is named by its exit code rather than by an empty message."""
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", script))
    job = Job("latency", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    with pytest.raises(JobFailed, match=f"^latency job failed: {reason}$"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)


def test_a_job_that_exits_without_a_result_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", "pass"))
    job = Job("accuracy", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    with pytest.raises(JobFailed, match="exited cleanly but wrote no readable result"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)


def test_a_job_whose_result_is_not_utf8_fails(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out.json"
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", f"open({str(out)!r}, 'wb').write(b'\\xff')"))
    job = Job("accuracy", {}, {}, 1, "in.npz", str(out))
    with pytest.raises(JobFailed, match=r"exited cleanly but wrote no readable result .*utf-8"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)


def _running(pid: int) -> bool:
    """Whether process `pid` is alive (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to see which processes are left")
def test_what_a_job_leaves_running_ends_with_it_and_cannot_hold_the_parent(tmp_path: Path, monkeypatch) -> None:
    """A helper the job started (as torch.compile starts compile workers) keeps the job's stderr open; the
    parent neither waits for it nor leaves it running. Undecodable stderr bytes do not break the parent."""
    leaves_a_helper = (
        "import json, subprocess, sys; job = json.load(open(sys.argv[1])); "
        "helper = subprocess.Popen(['sleep', '60']); open(job['output'] + '.pid', 'w').write(str(helper.pid)); "
        "sys.stderr.buffer.write(b'caf\\xe9 au lait\\n'); json.dump({'done': True}, open(job['output'], 'w'))"
    )
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", leaves_a_helper))
    job = Job("latency", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    assert run_in_subprocess(job, tmp_path / "job.json", timeout_s=30) == {"done": True}
    helper = int((tmp_path / "out.json.pid").read_text())
    for _ in range(50):  # SIGKILL is sent; the helper's new parent reaps it
        if not _running(helper):
            break
        time.sleep(0.1)
    assert not _running(helper)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's; reads /proc")
def test_a_job_dies_with_its_parent_killed_with_sigkill(tmp_path: Path) -> None:
    """A sweep killed with kill -9 runs no clean-up: its job must not go on measuring, or loading the machine,
    beside the jobs of the sweep resumed after it."""
    sleeper = "import os, sys, time; open(sys.argv[1] + '.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    parent = (
        "import sys; from pathlib import Path; from optbench import job; "
        f"job.JOB_COMMAND = (sys.executable, '-c', {sleeper!r}); "
        f"job.run_in_subprocess(job.Job('latency', {{}}, {{}}, 1, 'in.npz', {str(tmp_path / 'out.json')!r}), "
        f"Path({str(tmp_path / 'job.json')!r}), 60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    sweep = subprocess.Popen([sys.executable, "-c", parent], env=env)
    pid_file = tmp_path / "job.json.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sweep.kill()
    sweep.wait()
    job = int(pid_file.read_text())
    for _ in range(50):
        if not _running(job):
            break
        time.sleep(0.1)
    running = _running(job)
    if running:
        os.kill(job, signal.SIGKILL)
    assert not running, "the job outlived its sweep"


def test_a_jobs_error_line_is_its_reason_whatever_is_printed_after_it(tmp_path: Path, monkeypatch) -> None:
    fails = (
        "import sys; print('error: the engine was built for another GPU', file=sys.stderr); "
        "print('UserWarning: leaked semaphore objects at shutdown', file=sys.stderr); sys.exit(2)"
    )
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", fails))
    job = Job("latency", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    with pytest.raises(JobFailed, match=r"^latency job failed: the engine was built for another GPU$"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=60)


def test_a_hanging_job_says_its_last_line(tmp_path: Path, monkeypatch) -> None:
    hangs = "import sys, time; print('compiling', file=sys.stderr, flush=True); time.sleep(60)"
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", hangs))
    job = Job("latency", {}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    with pytest.raises(JobFailed, match=r"no result after 2 s .*its last line: compiling"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=2)


def test_a_job_refuses_a_model_folder_that_is_not_the_model_measured(tmp_path: Path, tiny_classifier: Path) -> None:
    """A model folder whose files differ from the artifact's hash (changed since the run hashed it, or a Ray
    node's own copy at the same path) is refused, not measured under the other model's name."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_classifier, model)
    job = _job(tmp_path, model, "accuracy")
    config = model / "config.json"
    config.write_text(config.read_text().replace('"fresh"', '"FRESH"'))
    with pytest.raises(JobFailed, match=r"^accuracy job failed: the model folder .*model is not the model"):
        run_in_subprocess(job, tmp_path / "job.json", timeout_s=300)


def test_an_accuracy_jobs_logits_are_its_batches_rows_in_their_order(tmp_path: Path, monkeypatch) -> None:
    """Row i of the logits is scored against label i of the test split: a batch's logits out of their place (the
    first call's, run apart from the rest to time the start-up, put after them) score each text against another
    text's label."""
    save_batches(tmp_path / "in.npz", [{"input_ids": np.array([[2 * i], [2 * i + 1]])} for i in range(3)])

    class Echo:  # each row's logits are its first token id and its negation
        def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
            ids = batch["input_ids"][:, :1].astype(np.float32)
            return np.hstack([ids, -ids])

        def describe(self, batch: dict[str, np.ndarray]) -> dict:
            return {}

    logits = np.load(_execute_on(Echo(), "accuracy", tmp_path, monkeypatch)["logits"])
    np.testing.assert_array_equal(logits[:, 0], np.arange(6))


def test_a_jobs_startup_times_the_load_and_the_first_call_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_s` is the model's load alone and `first_call_s` the first call alone (where torch.compile compiles):
    neither holds the other's time. On a fake clock, a load of 10 s and calls of 1 s each."""
    now = [100.0]
    monkeypatch.setattr(job_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    save_batches(tmp_path / "in.npz", [{"input_ids": np.zeros((2, 4), dtype=np.int64)}] * 3)

    class Slow:
        def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
            now[0] += 1.0
            return np.zeros((2, 2))

        def describe(self, batch: dict[str, np.ndarray]) -> dict:
            return {}

    def load(spec: RuntimeSpec, artifact: ModelArtifact, threads: int) -> Slow:
        now[0] += 10.0
        return Slow()

    monkeypatch.setattr("optbench.runtimes.load_runtime", load)
    artifact = ModelArtifact(tmp_path, "onnx", ("a", "b"), content_hash(tmp_path))
    paths = str(tmp_path / "in.npz"), str(tmp_path / "out.json")
    result = job_module.execute(Job("accuracy", artifact.to_dict(), RuntimeSpec("onnxruntime").to_dict(), 1, *paths))
    assert result["startup"] == {"load_s": 10.0, "first_call_s": 1.0}


@pytest.mark.parametrize(("through_torch", "torch_figures"), [(True, (3.0, 4.0)), (None, (None, None))])
def test_a_cuda_job_records_torch_s_memory_figures_only_for_a_runtime_that_allocates_through_torch(
    through_torch: bool | None,
    torch_figures: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch's allocator counters are the model's memory only where the runtime says its model lives there; a
    runtime that does not say (onnxruntime's CUDA arena, TensorRT's engines) gets None, not torch's leftovers."""
    cuda = SimpleNamespace(
        is_initialized=lambda: True, max_memory_allocated=lambda i: 3 * 2**20, max_memory_reserved=lambda i: 4 * 2**20
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    save_batches(tmp_path / "in.npz", [{"input_ids": np.zeros((2, 4), dtype=np.int64)}])

    class OnCuda:
        def predict(self, batch: dict[str, np.ndarray]) -> np.ndarray:
            return np.zeros((2, 2))

        def clock(self) -> HostClock:
            return HostClock()

    runtime = OnCuda()
    if through_torch is not None:
        runtime.allocates_through_torch = through_torch  # type: ignore[attr-defined]
    timing = Timing(warmup=0, min_iters=1, min_seconds=0, max_seconds=5)
    memory = _execute_on(runtime, "latency", tmp_path, monkeypatch, timing, device="cuda")["gpu_memory"]
    assert (memory["peak_allocated_mb"], memory["peak_reserved_mb"]) == torch_figures


def test_a_job_process_hides_scikit_learn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers imports scikit-learn (and with it pandas, 40 MB of peak RSS) whenever it is installed; no job
    uses it, so the job's process makes it look absent before anything imports transformers."""
    modules = {name: module for name, module in sys.modules.items() if name != "sklearn"}
    monkeypatch.setattr(sys, "modules", modules)  # a copy: the test process's own imports stay as they are
    monkeypatch.setattr(job_module, "execute", lambda job: {"done": True})
    job = Job("latency", {"path": str(tmp_path)}, {}, 1, "in.npz", str(tmp_path / "out.json"))
    (tmp_path / "job.json").write_text(json.dumps(asdict(job)))
    assert job_module.main([str(tmp_path / "job.json")]) == 0
    assert "sklearn" in modules and modules["sklearn"] is None
