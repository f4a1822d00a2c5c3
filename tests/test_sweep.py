"""Sweeps: the plan, the store's records and claims, kill -9 and resume, and two sweeps sharing one plan."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from optbench import claims, sweep
from optbench.errors import OptbenchError
from optbench.executors.local import LocalExecutor
from optbench.job import Job, JobFailed
from optbench.sweep import PlannedJob, SweepStore, Unfinished, failures, plan, run_sweep


def _store(root: Path, run_id: str = "run-1") -> SweepStore:
    """The sweep of the test plan under `root`, this process registered in it (`run_id`: when it is new)."""
    return SweepStore.open(root, {"plan": "test"}, lambda: run_id, 60)


def _on(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """Act as a process on `host` from here on: sweeps of one plan on several nodes, driven from one test."""
    monkeypatch.setattr(sweep.socket, "gethostname", lambda: host)


def _run(jobs: list[PlannedJob], store: SweepStore, execute) -> dict:
    """run_sweep on the local executor, with `execute(planned job)` standing in for the job process."""
    return run_sweep(jobs, store, LocalExecutor(lambda spec, path, timeout: execute(spec.planned)), _spec)


def _result(job: PlannedJob) -> dict[str, Any]:
    """A result of the job's kind with what the benchmark reads of it (an accuracy job's logits in a file)."""
    if job.kind == "latency":
        return {"values_ns": [1], "peak_rss_mb": 1.0}
    handle, logits = tempfile.mkstemp(suffix=".npy")
    with os.fdopen(handle, "wb") as file:
        np.save(file, np.eye(2))
    return {"logits": logits, "runtime_details": {}}


def _spec(job: PlannedJob) -> Job:
    spec = Job(job.kind, {}, {}, 1, "inputs.npz", f"/nowhere/{job.key}.result.json")
    object.__setattr__(spec, "planned", job)  # the fake runner reads it back
    return spec


def test_the_plan_interleaves_pairs_per_round_and_ends_rounds_with_the_repeat() -> None:
    jobs = plan(2, 0, [(1, 128)], rounds=2, aa_check=True)
    assert [j.key for j in jobs] == [
        "accuracy-pair0",
        "accuracy-pair1",
        "latency-1x128-round0-pair0",
        "latency-1x128-round0-pair1",
        "latency-1x128-round0-pair0-repeat",
        "latency-1x128-round1-pair1",  # each round starts one pair later
        "latency-1x128-round1-pair0",
        "latency-1x128-round1-pair0-repeat",
    ]
    assert len({j.key for j in plan(3, 1, [(1, 16), (8, "data")], 3, True)}) == 3 + 2 * 3 * 4


def test_rounds_rotate_a_b_c_then_b_c_a_and_repeat_the_reference_where_it_sits() -> None:
    """With two pairs a rotation either way reads B A; with three, A B C, B C A, C A B puts each pair in each slot
    once in that order. The A/A repeat is the reference's, which is not pair 0 when a listed runtime comes first."""
    jobs = plan(3, 1, [(1, 16)], rounds=3, aa_check=True)
    rounds = [[j.pair for j in jobs if j.kind == "latency" and j.round == r and not j.repeat] for r in range(3)]
    assert rounds == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert [(j.round, j.pair) for j in jobs if j.repeat] == [(0, 1), (1, 1), (2, 1)]


def test_one_identity_opens_one_store_with_one_run_id(tmp_path: Path) -> None:
    first = SweepStore.open(tmp_path, {"plan": 1}, lambda: "run-1", 60)
    assert SweepStore.open(tmp_path, {"plan": 1}, lambda: "run-2", 60).run_id == "run-1"
    other = SweepStore.open(tmp_path, {"plan": 2}, lambda: "run-3", 60)
    assert other.folder != first.folder and other.run_id == "run-3"
    assert first.folder.name.startswith(".sweep-")  # hidden: never read as a run's reports


def test_a_published_sweep_left_behind_starts_a_new_run(tmp_path: Path) -> None:
    # the run was published, then its process was stopped before it removed the sweep
    stale = _store(tmp_path)
    job = PlannedJob("latency", 0, (1, 16))
    stale.record(job, _result(job))
    (tmp_path / "run-1").mkdir()
    fresh = _store(tmp_path, "run-2")
    assert fresh.run_id == "run-2" and fresh.done() == 0
    busy = {**claims.lease(60), "host": "another-node"}  # a live process still works on run-2's sweep
    (fresh.folder / "participants" / "another-node-1.json").write_text(json.dumps(busy))
    (tmp_path / "run-2").mkdir()
    assert _store(tmp_path, "run-4").run_id == "run-2"  # resumed (it hands back the run), not discarded


def test_unfinished_says_what_open_would_resume_without_writing(tmp_path: Path) -> None:
    """The dry run's word on a resume follows `open`: the run id it resumes (None: sweep.json is gone, a new one)
    and the jobs it keeps, failed ones left out unless another live process is in the sweep; None where `open`
    starts a new run (no sweep, its run published with no one in it, or a folder without sweep.json keeping no
    job)."""
    identity = {"plan": "test"}
    assert SweepStore.unfinished(tmp_path, identity) is None and not list(tmp_path.iterdir())
    store, ok, failed = _store(tmp_path), PlannedJob("latency", 0, (1, 16)), PlannedJob("accuracy", 0)
    assert SweepStore.unfinished(tmp_path, identity) == Unfinished("run-1", 0)
    store.record(ok, _result(ok))
    store.record_failure(failed, "crashed")
    other = store.folder / "participants" / "another-node-1.json"
    for others, kept in ((False, 1), (True, 2)):  # a process joining a sweep in progress keeps its failures
        other.unlink(missing_ok=True)
        if others:
            other.write_text(json.dumps({**claims.lease(60), "host": "another-node"}))
        assert SweepStore.unfinished(tmp_path, identity) == Unfinished("run-1", kept)
        (tmp_path / "run-1").mkdir()  # published
        assert SweepStore.unfinished(tmp_path, identity) == (Unfinished("run-1", kept) if others else None)
        (tmp_path / "run-1").rmdir()
        (store.folder / "sweep.json").rename(tmp_path / "sweep.json")
        assert SweepStore.unfinished(tmp_path, identity) == Unfinished(None, kept)
        (store.jobs / f"{ok.key}.json").rename(tmp_path / "ok.json")
        assert SweepStore.unfinished(tmp_path, identity) == (Unfinished(None, 1) if others else None)
        (tmp_path / "ok.json").rename(store.jobs / f"{ok.key}.json")
        (tmp_path / "sweep.json").rename(store.folder / "sweep.json")


def _abandon(store: SweepStore) -> None:
    """Its process is killed: each place in the sweep names a process that is gone (its pid reused since)."""
    for path in (store.folder / "participants").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "started": "0"}))


def test_other_sweeps_no_process_works_on_are_noted_and_kept_or_removed_if_published(tmp_path: Path, caplog) -> None:
    # a sweep interrupted before the recipe changed what it measures (its models or [bench]) was never removed nor
    # mentioned: its inputs and logits piled up unseen in a hidden folder under results/<recipe>/
    old = SweepStore.open(tmp_path, {"plan": "old"}, lambda: "run-1", 60)
    job = PlannedJob("latency", 0, (1, 16))
    old.record(job, _result(job))
    (old.inputs / "inputs.npz").write_bytes(bytes(2_000_000))
    _abandon(old)
    published = SweepStore.open(tmp_path, {"plan": "published"}, lambda: "run-2", 60)
    (tmp_path / "run-2").mkdir()  # published, then its process was stopped before it removed the sweep
    _abandon(published)
    cut_short = tmp_path / ".sweep-0123.4567.removed"  # its removal was killed half way
    (cut_short / "jobs").mkdir(parents=True)
    busy = SweepStore.open(tmp_path, {"plan": "busy"}, lambda: "run-3", 60)
    live = {**claims.lease(60), "host": "another-node"}
    (busy.folder / "participants" / "another-node-1.json").write_text(json.dumps(live))
    current = _store(tmp_path, "run-4")
    with caplog.at_level("INFO", logger="optbench.sweep"):
        sweep.tidy_sweeps(tmp_path, current)
    unfinished, left = sorted((r.getMessage() for r in caplog.records), key=lambda m: "published" in m)
    assert unfinished.startswith(f"{old.folder} (2.0 MB, last changed {time.strftime('%Y-%m-%d')}")
    assert "jobs done: 1) is the unfinished sweep of run run-1" in unfinished
    assert unfinished.endswith("resumes it; if none will, deleting it is safe")
    assert left == f"removed {published.folder}, the sweep of run run-2, published and left behind"
    assert len(caplog.records) == 2  # not the sweep a live process works on, nor the run's own
    assert all(s.folder.is_dir() for s in (old, busy, current))  # resumable, or in use: kept
    assert not published.folder.exists() and not cut_short.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".sweep-")) == ["run-2"]


def test_records_keep_results_and_move_logits_in(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = PlannedJob("accuracy", 0)
    assert store.outcome(job) is None
    logits = store.work / "x.npy"
    np.save(logits, np.eye(2))
    store.record(job, {"logits": str(logits), "runtime_details": {"a": 1}})
    outcome = store.outcome(job)
    assert outcome is not None and outcome.ok and not logits.exists()
    np.testing.assert_array_equal(np.load(outcome.result["logits"]), np.eye(2))
    store.record_failure(PlannedJob("accuracy", 1), "crashed with SIGSEGV")
    failed = store.outcome(PlannedJob("accuracy", 1))
    assert failed is not None and not failed.ok and failed.reason == "crashed with SIGSEGV"
    assert store.forget_failures() == 1 and store.outcome(PlannedJob("accuracy", 1)) is None


@pytest.mark.parametrize("logits", ["/etc/passwd", "../inputs/accuracy.npz", "accuracy-pair1.npy"])
def test_a_record_whose_logits_are_not_the_file_beside_it_is_named_as_damaged(tmp_path: Path, logits: str) -> None:
    """A record's logits are read from the file beside it: a path elsewhere was read as the record named it."""
    store = _store(tmp_path)
    job = PlannedJob("accuracy", 0)
    record = store.jobs / f"{job.key}.json"
    record.write_text(json.dumps({"status": "ok", "result": {"logits": logits, "runtime_details": {}}}))
    with pytest.raises(OptbenchError, match=re.escape(f"{record} is damaged ('logits' is not accuracy-pair0.npy")):
        store.outcome(job)


def test_a_record_copied_from_another_sweep_or_job_is_named_as_damaged(tmp_path: Path) -> None:
    """Records are named by their job's key alone, which every sweep shares (pair 1 is another model in another
    recipe's plan): one copied in from another sweep's folder, or under another job's name, was taken as this job's
    result. One written before records named their sweep and job is read as before."""
    ours, theirs = _store(tmp_path), SweepStore.open(tmp_path, {"plan": "another"}, lambda: "run-2", 60)
    job, later = PlannedJob("latency", 1, (1, 16)), PlannedJob("latency", 1, (1, 16), round=1)
    for store in (ours, theirs):
        store.record(job, _result(job))
    theirs.record_failure(later, "crashed with SIGSEGV")
    record, failed = ours.jobs / f"{job.key}.json", ours.jobs / f"{later.key}.json"
    shutil.copyfile(theirs.jobs / f"{job.key}.json", record)
    shutil.copyfile(theirs.jobs / f"{later.key}.json", failed)
    for path, copied in ((record, job), (failed, later)):
        with pytest.raises(
            OptbenchError,
            match=re.escape(
                f"{path} is damaged (the record of another sweep, {theirs.folder.name}, not this one's): delete it"
            ),
        ):
            ours.outcome(copied)
    ours.record(job, _result(job))
    shutil.copyfile(record, failed)
    with pytest.raises(
        OptbenchError, match=re.escape(f"{failed} is damaged (the record of job {job.key}, not {later.key}): delete it")
    ):
        ours.outcome(later)
    older = {key: value for key, value in json.loads(record.read_text()).items() if key not in ("sweep", "job")}
    record.write_text(json.dumps(older))
    outcome = ours.outcome(job)
    assert outcome is not None and outcome.ok


def test_a_sweep_another_user_left_that_this_one_cannot_write_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep a run as root left unfinished, resumed by a user: its resume failed naming a temporary file with a
    bare permission error, and a dry run said it would resume it. (os.access says yes to root for every folder.)"""
    store = _store(tmp_path)
    access = os.access
    monkeypatch.setattr(sweep.os, "access", lambda path, mode: path != store.jobs and access(path, mode))
    for opens in (lambda: _store(tmp_path), lambda: SweepStore.unfinished(tmp_path, {"plan": "test"})):
        with pytest.raises(OptbenchError) as error:
            opens()
        assert str(error.value).startswith(
            f"{store.jobs} is not writable by this user: the unfinished sweep {store.folder} was left by another user ("
        )
        assert str(error.value).endswith("or delete it to start the benchmark over (its finished jobs are lost)")


@pytest.mark.parametrize("sub", ["work", "participants", "jobs"])
def test_a_file_in_place_of_a_sweep_folder_is_named_as_damaged(tmp_path: Path, sub: str) -> None:
    """A hand-made file where the sweep keeps a folder stopped the run with a bare "File exists"."""
    folder = _store(tmp_path).folder
    shutil.rmtree(folder / sub)
    (folder / sub).write_text("x\n")
    for opens in (lambda: _store(tmp_path), lambda: SweepStore.unfinished(tmp_path, {"plan": "test"})):
        with pytest.raises(OptbenchError) as error:
            opens()
        assert str(error.value) == (
            f"{folder / sub} is damaged (a file where the sweep keeps a folder): delete it and run the recipe again"
        )


def test_a_claim_holds_while_its_process_lives(tmp_path: Path) -> None:
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    assert store.claim(job, 60)
    assert not store.claim(job, 60)  # held by a live process (this one)
    store.release(job)
    assert store.claim(job, 60)


def _write_claim(store: SweepStore, job: PlannedJob, holder: dict[str, Any]) -> None:
    (store.jobs / f"{job.key}.claim").write_text(json.dumps(holder))


def test_claims_of_dead_processes_are_taken_over(tmp_path: Path) -> None:
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = claims.lease(3600)
    _write_claim(store, job, {**holder, "pid": int(finished.stdout)})
    assert store.claim(job, 60)  # its process is gone
    _write_claim(store, job, {**holder, "started": "0"})
    assert store.claim(job, 60)  # this pid, but a process started at another time: the pid was reused
    _write_claim(store, job, {**holder, "host": "another-node"})
    assert not store.claim(job, 60)  # another host's process cannot be checked: it counts as alive
    _write_claim(store, job, {**holder, "host": "another-node", "at": time.time() - 60 - claims.CLAIM_GRACE_S - 1})
    assert not store.claim(job, 60)  # taken by a sweep with a longer job timeout: held until its own deadline
    _write_claim(store, job, {**holder, "host": "another-node", "until": time.time() - 1})
    assert store.claim(job, 60)  # but its holder renews it while the job runs: one past its time is left behind
    _write_claim(store, job, {**holder, "until": time.time() - 1})
    assert store.claim(job, 60)  # so on this host too: its process lives, but stopped renewing (stopped, or stuck)
    assert not list(store.jobs.glob("*.gone"))  # each dead claim renamed away was removed once judged


def _lapse(store: SweepStore, job: PlannedJob) -> None:
    """The claim's holder stops renewing it past its deadline (its host suspended, or its clock behind)."""
    claim = store.jobs / f"{job.key}.claim"
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "until": time.time() - 1}))


def _taken_over(job: PlannedJob, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SweepStore, SweepStore]:
    """Node a's sweep claims `job` and lets the claim lapse; node b's takes it over. Acting as node b after."""
    _on(monkeypatch, "node-a")
    a = _store(root)
    assert a.claim(job, 60)
    _lapse(a, job)
    _on(monkeypatch, "node-b")
    b = _store(root)
    assert b.claim(job, 60)
    return a, b


def _claim_holder(store: SweepStore, job: PlannedJob) -> str | None:
    claim = store.jobs / f"{job.key}.claim"
    return json.loads(claim.read_text())["host"] if claim.exists() else None


def test_a_claim_taken_over_is_neither_renewed_nor_let_go_by_its_old_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a's host was suspended past its claim's deadline and node b took the job over: a, waking up, must not
    overwrite b's claim with its own lease nor delete it (a third sweep would take the job again)."""
    job = PlannedJob("accuracy", 0)
    a, b = _taken_over(job, tmp_path, monkeypatch)
    _on(monkeypatch, "node-a")
    a.renew([job], 60)
    assert _claim_holder(a, job) == "node-b"
    a.release(job)
    assert _claim_holder(a, job) == "node-b"
    _on(monkeypatch, "node-b")
    b.renew([job], 60)  # still b's: renewed, then let go
    assert json.loads((b.jobs / f"{job.key}.claim").read_text())["until"] > time.time()
    b.release(job)
    assert _claim_holder(b, job) is None


def test_an_old_holder_letting_its_claims_go_leaves_the_one_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a is interrupted (Ctrl-C) after the claim of a job it runs lapsed and node b took it over: a lets the
    claims of its jobs in flight go without renewing them first, and must not delete b's (a third sweep would run
    the job again beside b)."""
    job = PlannedJob("accuracy", 0)
    a, _ = _taken_over(job, tmp_path, monkeypatch)
    _on(monkeypatch, "node-a")
    a.release(job)
    assert _claim_holder(a, job) == "node-b"


def test_a_job_whose_claim_was_taken_over_keeps_the_outcome_of_the_process_that_took_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While node a runs a job its claim lapses, node b takes it over, runs it and records its result: a's result
    comes too late and is dropped, and a's sweep reports b's outcome, as b's does."""
    jobs = [PlannedJob("latency", 0, (1, 16))]
    _on(monkeypatch, "node-a")
    a = _store(tmp_path)

    def taken_over_meanwhile(job: PlannedJob) -> dict[str, Any]:
        _lapse(a, job)
        _on(monkeypatch, "node-b")
        b = _store(tmp_path)
        assert b.claim(job, 60)
        sweep._store_result(job, b, {"values_ns": [2], "peak_rss_mb": 1.0})
        _on(monkeypatch, "node-a")
        return _result(job)

    outcomes = _run(jobs, a, taken_over_meanwhile)
    assert outcomes[jobs[0].key].result == {"values_ns": [2], "peak_rss_mb": 1.0}
    assert json.loads((a.jobs / f"{jobs[0].key}.json").read_text())["host"] == "node-b"


def test_a_result_dropped_for_a_lost_claim_takes_its_logits_file_and_leaves_the_new_holders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a's accuracy job ends after node b took its lapsed claim over, while b's job still runs: a drops its
    result and deletes its own logits file (else it stays in the work folder until the sweep is removed), and
    never b's, though both processes have one pid (as in two containers): b records its own afterwards."""
    job = PlannedJob("accuracy", 0)
    a, b = _taken_over(job, tmp_path, monkeypatch)
    ours, theirs = a.output(job).with_suffix(".npy"), b.output(job).with_suffix(".npy")
    np.save(ours, np.zeros((2, 2)))
    np.save(theirs, np.eye(2))
    _on(monkeypatch, "node-a")
    assert sweep._store_result(job, a, {"logits": str(ours), "runtime_details": {}}) is None
    assert not ours.exists()
    _on(monkeypatch, "node-b")
    outcome = sweep._store_result(job, b, {"logits": str(theirs), "runtime_details": {}})
    assert outcome is not None and outcome.ok
    np.testing.assert_array_equal(np.load(outcome.result["logits"]), np.eye(2))
    assert not list(a.work.iterdir())


def test_a_dead_claim_found_by_two_processes_at_once_is_taken_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sweeps find the same claim of a dead process: the first takes it over while the second is still
    judging it. The second must not then take the first's fresh claim for the dead one and replace it."""
    job = PlannedJob("accuracy", 0)
    first = _store(tmp_path)
    second = SweepStore(first.folder, first.run_id)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_claim(first, job, {**claims.lease(3600), "pid": int(finished.stdout)})
    is_dead = claims.is_dead
    taken: list[bool] = []

    def first_takes_it_meanwhile(holder: dict[str, Any]) -> bool:
        monkeypatch.setattr(claims, "is_dead", is_dead)  # once
        taken.append(first.claim(job, 60))
        return is_dead(holder)

    monkeypatch.setattr(claims, "is_dead", first_takes_it_meanwhile)
    taken.append(second.claim(job, 60))
    assert taken == [True, False]
    first.renew([job], 60)
    assert first.holds(job)
    assert not list(first.jobs.glob("*.gone"))  # the second put the fresh claim back and removed its copy


def test_a_claim_whose_pid_now_names_another_process_is_taken_over(tmp_path: Path) -> None:
    """The start time a claim records tells its process from a later one given its pid; pid 1 is a process too
    (optbench as a container's first one)."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _write_claim(store, job, {**claims.lease(3600), "pid": other.pid})  # this process's start time
        assert store.claim(job, 60)
    finally:
        other.kill()
        other.wait()
    _write_claim(store, job, {**claims.lease(3600), "pid": 1, "started": claims._process_start(1)})
    assert not store.claim(job, 60)


def test_a_claim_from_this_host_without_its_start_time_is_judged_by_its_pid(tmp_path: Path) -> None:
    """As a hand-edited claim may be: this process holds it, while a finished process or a pid of 0 or below (a
    process group) holds nothing."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    holder = claims.lease(3600)
    del holder["started"]
    _write_claim(store, job, holder)
    assert not store.claim(job, 60)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for pid in (int(finished.stdout), 0, -1):
        _write_claim(store, job, {**holder, "pid": pid})
        assert store.claim(job, 60), pid
        store.release(job)


def test_a_claim_whose_process_ends_as_it_is_judged_is_taken_over(tmp_path: Path, monkeypatch) -> None:
    """Its process ends after the check that its pid is alive and before its start time is read."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_claim(store, job, {**claims.lease(3600), "pid": int(finished.stdout)})
    monkeypatch.setattr(claims.os, "kill", lambda pid, signal: None)  # alive when checked
    assert store.claim(job, 60)


@pytest.mark.parametrize("host", ["this", "another-node"])
def test_a_claim_holds_until_the_moment_of_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    now = time.time()
    holder = {**claims.lease(0), "until": now}
    _write_claim(store, job, holder if host == "this" else {**holder, "host": host})
    monkeypatch.setattr(claims, "time", SimpleNamespace(time=lambda: now))
    assert not store.claim(job, 60)


def test_a_claim_let_go_while_another_process_found_it_is_taken_by_that_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    assert store.claim(job, 60)
    create = claims.create_json_exclusive

    def let_go_meanwhile(path: Path, data: dict[str, Any]) -> None:
        try:
            create(path, data)
        except FileExistsError:
            path.unlink()  # its holder lets it go before this process reads it
            raise

    monkeypatch.setattr(claims, "create_json_exclusive", let_go_meanwhile)
    assert SweepStore(store.folder, store.run_id).claim(job, 60)


def test_a_dead_claim_another_process_renamed_away_and_did_not_replace_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that renamed it away to take it over may die before making its own."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    _write_claim(store, job, {**claims.lease(3600), "until": time.time() - 1})
    is_live = claims._is_live

    def renamed_away_meanwhile(claim: bytes) -> bool:
        (store.jobs / f"{job.key}.claim").rename(tmp_path / "taken-by-a-process-that-died")
        return is_live(claim)

    monkeypatch.setattr(claims, "_is_live", renamed_away_meanwhile)
    assert store.claim(job, 60)
    assert json.loads((store.jobs / f"{job.key}.claim").read_text())["pid"] == os.getpid()


def test_an_unreadable_claim_is_taken_over(tmp_path: Path) -> None:
    """A claim the machine's crash left empty (its data never reached the disk) names no process that could hold
    it: the resumed sweep takes it instead of stopping on it."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    for damaged in ("", "[]"):  # empty, or JSON that names no holder
        (store.jobs / f"{job.key}.claim").write_text(damaged)
        assert store.claim(job, 60)
        store.release(job)
    (store.jobs / f"{job.key}.claim").write_text("")
    assert store.claim(job, 60)
    assert json.loads((store.jobs / f"{job.key}.claim").read_text())["pid"] == os.getpid()


def test_a_record_that_is_not_utf8_is_named_as_damaged(tmp_path: Path) -> None:
    """Bad bytes in a job's record get the same clear error as bad JSON, not a UnicodeDecodeError traceback."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    (store.jobs / f"{job.key}.json").write_bytes(b'{"status": "caf\xe9"}')
    with pytest.raises(OptbenchError, match=r"accuracy-pair0\.json is damaged .*delete it"):
        store.outcome(job)


def test_a_record_or_claim_that_is_json_but_no_object_is_named_as_damaged(tmp_path: Path) -> None:
    """A list where a record or a claim's holder should be is damage, named as such (it crashed on `.get`)."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    (store.jobs / f"{job.key}.json").write_text("[1]")
    with pytest.raises(OptbenchError, match=r"accuracy-pair0\.json is damaged \(not a JSON object\)"):
        store.outcome(job)
    assert store.claim(job, 60)
    (store.jobs / f"{job.key}.claim").write_text("[1]")
    with pytest.raises(OptbenchError, match=r"accuracy-pair0\.claim is damaged \(not a JSON object\)"):
        store.holds(job)


def test_a_record_or_sweep_file_that_lacks_its_fields_is_named_as_damaged(tmp_path: Path) -> None:
    """An object without the fields a record or sweep.json must have is damage, named as such (a KeyError before),
    and so is a result without what the benchmark reads of its job's kind (a KeyError once every job had run); the
    other kind's fields, and those only some runtimes record, are not asked for."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    record = store.jobs / f"{job.key}.json"
    for content, field in (({}, "status"), ({"status": "failed"}, "reason"), ({"status": "ok"}, "result")):
        record.write_text(json.dumps(content))
        with pytest.raises(OptbenchError, match=rf"accuracy-pair0\.json is damaged \(no '{field}' field\): delete it"):
            store.outcome(job)
    latency = PlannedJob("latency", 0, (1, 16))
    for kind, result, missing in (
        (latency, {"peak_rss_mb": 1}, "'values_ns' field"),
        (latency, {"values_ns": [1]}, "'peak_rss_mb' field"),
        (latency, {"startup": {}}, "'values_ns', 'peak_rss_mb' fields"),
        (job, {"runtime_details": {}}, "'logits' field"),
        (job, {"logits": "accuracy-pair0.npy"}, "'runtime_details' field"),
    ):
        (store.jobs / f"{kind.key}.json").write_text(json.dumps({"status": "ok", "result": result}))
        with pytest.raises(OptbenchError, match=rf"{kind.key}\.json is damaged \(no {missing}\): delete it"):
            store.outcome(kind)
    record.write_text(json.dumps({"status": "ok", "result": {"logits": "accuracy-pair0.npy", "runtime_details": {}}}))
    assert store.outcome(job).ok
    (store.folder / "sweep.json").write_text(json.dumps({"identity": {"plan": "test"}}))
    for opens in (lambda: _store(tmp_path), lambda: SweepStore.unfinished(tmp_path, {"plan": "test"})):
        with pytest.raises(OptbenchError, match=r"sweep\.json is damaged \(no 'run_id' field\): delete it"):
            opens()


@pytest.mark.parametrize(
    ("result", "why"),
    [
        # Latency.from_values' ValueError traceback, once every job had run
        ({"values_ns": [], "peak_rss_mb": 1}, "'values_ns' is not a non-empty list of durations (numbers, 0 or more)"),
        # a report of NaN (and, for a negative one, below-zero) percentiles, and exit 0
        ({"values_ns": [1, math.nan], "peak_rss_mb": 1}, "'values_ns' is not a non-empty list of durations"),
        ({"values_ns": [1, -1], "peak_rss_mb": 1}, "'values_ns' is not a non-empty list of durations"),
        ({"values_ns": [1], "peak_rss_mb": math.inf}, "'peak_rss_mb' is not a number"),
        ({"values_ns": [1], "peak_rss_mb": 1, "resolution_ns": math.nan}, "'resolution_ns' is not a number"),
    ],
)
def test_a_latency_record_whose_figures_give_no_statistics_is_named_as_damaged(
    result: dict, why: str, tmp_path: Path
) -> None:
    """Hand-damaged timings passed the record's check by kind (json reads NaN and Infinity as numbers): the statistics
    of no calls crashed, and those of NaN ones were NaN figures in the report."""
    store, job = _store(tmp_path), PlannedJob("latency", 0, (1, 16))
    (store.jobs / f"{job.key}.json").write_text(json.dumps({"status": "ok", "result": result}))
    with pytest.raises(OptbenchError, match=rf"{job.key}\.json is damaged \({re.escape(why)}"):
        store.outcome(job)
    good = {**result, "values_ns": [0, 1], "peak_rss_mb": 1, "resolution_ns": 1}  # a coarse clock reads 0 ns
    (store.jobs / f"{job.key}.json").write_text(json.dumps({"status": "ok", "result": good}))
    assert store.outcome(job).ok


def test_a_record_or_sweep_file_with_a_field_of_another_kind_is_named_as_damaged(tmp_path: Path) -> None:
    """A hand-edited field of another JSON kind is damage, named as such: a run id that is no folder name, a
    result that is a list, a number as a string crashed with a TypeError (or, a run id with a slash, after every
    job had run, when the run's reports were written)."""
    store, job = _store(tmp_path), PlannedJob("latency", 0, (1, 16))
    record = store.jobs / f"{job.key}.json"
    for content, why in (
        ({"status": 1, "result": {}}, "'status' is not a string"),
        ({"status": "done", "result": {}}, "'status' is 'done', not 'ok' or 'failed'"),
        ({"status": "failed", "reason": ["crashed"]}, "'reason' is not a string"),
        ({"status": "ok", "result": [1]}, "'result' is not an object"),
        (
            {"status": "ok", "result": {"values_ns": ["1"], "peak_rss_mb": 1}},
            "'values_ns' is not a non-empty list of durations (numbers, 0 or more)",
        ),
        (
            {"status": "ok", "result": {"values_ns": [1], "peak_rss_mb": 1, "gpu_memory": []}},
            "'gpu_memory' is not GPU memory figures (numbers of 0 or more, where given)",
        ),
        ({"status": "ok", "result": {"values_ns": [1], "peak_rss_mb": "100"}}, "'peak_rss_mb' is not a number"),
        ({"status": "ok", "result": {"values_ns": [1], "peak_rss_mb": True}}, "'peak_rss_mb' is not a number"),
        (
            {"status": "ok", "result": {"values_ns": [1], "peak_rss_mb": 1, "resolution_ns": "500"}},
            "'resolution_ns' is not a number",
        ),
    ):
        record.write_text(json.dumps(content))
        with pytest.raises(OptbenchError, match=rf"{job.key}\.json is damaged \({re.escape(why)}\): delete it"):
            store.outcome(job)
    accuracy = PlannedJob("accuracy", 0)
    latency = {"values_ns": [1], "peak_rss_mb": 1, "gpu_memory": {"process_used_mb": "big"}}
    record.write_text(json.dumps({"status": "ok", "result": latency}))
    with pytest.raises(OptbenchError, match=rf"{job.key}\.json is damaged \('gpu_memory' is not GPU memory figures"):
        store.outcome(job)
    # a string among the startup times, or the GPU memory, was published in the run's report, then refused as damaged
    for startup in (1, {"load_s": "fast", "first_call_s": 0.1}, {"load_s": 1.0, "first_call_s": -1}):
        result = {"logits": "accuracy-pair0.npy", "runtime_details": {}, "startup": startup}
        (store.jobs / f"{accuracy.key}.json").write_text(json.dumps({"status": "ok", "result": result}))
        with pytest.raises(OptbenchError, match=r"accuracy-pair0\.json is damaged \('startup' is not startup times"):
            store.outcome(accuracy)
    for run_id in (5, None, "", ".", "..", "../elsewhere", "run\0id"):
        (store.folder / "sweep.json").write_text(json.dumps({"run_id": run_id}))
        for opens in (lambda: _store(tmp_path), lambda: SweepStore.unfinished(tmp_path, {"plan": "test"})):
            with pytest.raises(OptbenchError, match=r"sweep\.json is damaged \('run_id' is not a folder name\)"):
                opens()


def test_a_participant_or_claim_that_names_no_holder_or_no_deadline_holds_nothing(tmp_path: Path) -> None:
    """A participant's entry as a machine's crash leaves it (empty), or hand-edited (a list, a deadline that is a
    string, a pid past any process), names no live process, as a claim's does: the published sweep it is left in
    starts a new run instead of stopping the run with an error or a TypeError (OverflowError for the pid); such a
    claim is taken over."""
    job, ghost = PlannedJob("accuracy", 0), claims.lease(3600)
    no_deadline, no_pid = {**ghost, "host": "elsewhere", "until": "tomorrow"}, {**ghost, "pid": 2**80}
    for n, damaged in enumerate(("", "[1]", json.dumps(no_deadline), json.dumps(no_pid))):
        store = _store(tmp_path, f"run-{n}")
        (store.folder / "participants" / "elsewhere-1.json").write_text(damaged)
        (tmp_path / store.run_id).mkdir()  # published
        assert _store(tmp_path, f"run-{n}-new").run_id == f"run-{n}-new"
        fresh = _store(tmp_path, "unused")
        (fresh.jobs / f"{job.key}.claim").write_text(damaged)
        assert fresh.claim(job, 60)
        fresh.release(job)
        fresh.leave()


def test_tidying_passes_over_a_sweep_whose_files_lack_their_fields(tmp_path: Path) -> None:
    """tidy_sweeps promises that no run stops on a damaged folder, but caught only OptbenchError, not the KeyError
    of a sweep.json without its run id; a participant without its pid names no live process."""
    damaged = SweepStore.open(tmp_path, {"plan": "damaged"}, lambda: "run-1", 60)
    (damaged.folder / "sweep.json").write_text("{}")
    published = SweepStore.open(tmp_path, {"plan": "published"}, lambda: "run-2", 60)
    (tmp_path / "run-2").mkdir()
    for path in (published.folder / "participants").glob("*.json"):
        path.write_text(json.dumps({**claims.lease(60), "pid": None}))
    sweep.tidy_sweeps(tmp_path, _store(tmp_path, "run-3"))
    assert damaged.folder.is_dir() and not published.folder.exists()


def test_a_claim_whose_holder_lacks_its_pid_is_taken_over(tmp_path: Path) -> None:
    """A claim from this host with no pid names no process that could hold it, as an empty claim does (KeyError)."""
    store, job = _store(tmp_path), PlannedJob("accuracy", 0)
    holder = claims.lease(3600)
    del holder["pid"]
    for damaged in (holder, {**holder, "pid": None}):
        _write_claim(store, job, damaged)
        assert store.claim(job, 60)
        store.release(job)


def test_the_last_live_participant_removes_the_sweep(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.join(60)
    other = {**claims.lease(60), "host": "another-node"}
    (store.folder / "participants" / "another-node-1.json").write_text(json.dumps(other))
    assert not store.leave() and store.folder.exists()  # another node still works on it
    (store.folder / "participants" / "another-node-1.json").write_text(
        json.dumps({**other, "host": claims.this_process()["host"], "started": "0"})
    )
    assert store.leave() and not store.folder.exists()  # that participant's process is gone


def test_a_participant_on_another_host_that_stopped_renewing_is_gone(tmp_path: Path) -> None:
    """A sweep killed on another host (a container replaced mid-run, with a new hostname) leaves its place in
    the sweep behind: once its deadline passes it no longer keeps the published sweep, and the next run of the
    recipe measures afresh instead of handing back the old run."""
    store = _store(tmp_path)
    job = PlannedJob("latency", 0, (1, 16))
    store.record(job, _result(job))
    ghost = {**claims.this_process(), "host": "replaced-container", "until": time.time() - 1}
    (store.folder / "participants" / "replaced-container-1.json").write_text(json.dumps(ghost))
    (tmp_path / "run-1").mkdir()  # published by the sweep that took its jobs over
    assert _store(tmp_path, "run-2").run_id == "run-2"


def test_a_sweep_opened_as_the_last_process_leaves_starts_a_new_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a publishes the run and leaves as node n opens its sweep: a, between n's reading the sweep and its
    registering, finds no one else and removes the folder. n must not go on in the removed folder (its
    registration and claims gone with it): it finds the run published and starts a new one."""
    monkeypatch.setattr(sweep, "WAIT_POLL_S", 0.0)
    _on(monkeypatch, "node-a")
    a = _store(tmp_path)
    (tmp_path / "run-1").mkdir()  # a published its run
    join = SweepStore.join

    def a_leaves_first(store: SweepStore, timeout_s: float) -> None:
        monkeypatch.setattr(SweepStore, "join", join)  # once
        _on(monkeypatch, "node-a")
        assert a.leave()
        _on(monkeypatch, "node-n")
        join(store, timeout_s)

    monkeypatch.setattr(SweepStore, "join", a_leaves_first)
    _on(monkeypatch, "node-n")
    n = _store(tmp_path, "run-2")
    assert n.run_id == "run-2" and json.loads((n.folder / "sweep.json").read_text())["run_id"] == "run-2"
    assert n._participant().exists() and n.claim(PlannedJob("accuracy", 0), 60)


def test_a_process_leaving_late_leaves_the_next_sweep_at_its_path_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes a and b leave a published sweep at once and neither sees the other: a removes the folder, and a new
    sweep opens at its path before b acts. b must not remove that one, which its process has not yet joined."""
    _on(monkeypatch, "node-b")
    b = _store(tmp_path)
    _on(monkeypatch, "node-a")
    a = _store(tmp_path)
    (tmp_path / "run-1").mkdir()
    _on(monkeypatch, "node-b")
    b._participant().unlink()  # b has unregistered, and is about to look for others
    _on(monkeypatch, "node-a")
    assert a.leave()
    join = SweepStore.join

    def b_acts_first(store: SweepStore, timeout_s: float) -> None:
        monkeypatch.setattr(SweepStore, "join", join)  # once
        _on(monkeypatch, "node-b")
        assert not b.leave()
        _on(monkeypatch, "node-c")
        join(store, timeout_s)

    monkeypatch.setattr(SweepStore, "join", b_acts_first)
    _on(monkeypatch, "node-c")
    c = _store(tmp_path, "run-2")
    assert json.loads((c.folder / "sweep.json").read_text())["run_id"] == "run-2"
    assert c.claim(PlannedJob("accuracy", 0), 60)


def test_a_sweep_being_removed_by_another_process_is_left_to_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (tmp_path / "run-1").mkdir()
    remover = {**claims.lease(0), "host": "another-node"}
    (store.folder / "removal.claim").write_text(json.dumps(remover))
    assert not store.leave() and (store.folder / "sweep.json").exists()


@pytest.mark.parametrize("another_in_the_sweep", [True, False], ids=["another-in-it", "the-last"])
def test_a_removal_lock_taken_over_stays_its_new_holders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, another_in_the_sweep: bool
) -> None:
    """Node a takes the removal lock to leave and stalls past its lease while it checks; node b takes the lock
    over. Whether a then finds another process in the sweep (and lets its lock go) or finds itself the last (and
    would rename the folder away), it must leave b's lock and the folder in place: b decides (and may have removed
    the folder already, or a new sweep been opened at that path)."""
    _on(monkeypatch, "node-a")
    a = _store(tmp_path)
    lock = a.folder / "removal.claim"

    def stalled_past_its_lease(store: SweepStore) -> list[dict[str, Any]]:
        lock.write_text(json.dumps({**json.loads(lock.read_text()), "until": time.time() - 1}))
        _on(monkeypatch, "node-b")
        assert claims.take_claim(lock, 0.0) is not None
        _on(monkeypatch, "node-a")
        return [claims.lease(60)] if another_in_the_sweep else []

    monkeypatch.setattr(SweepStore, "_live_participants", stalled_past_its_lease)
    assert not a.leave()
    assert a.folder.is_dir() and json.loads(lock.read_text())["host"] == "node-b"


def test_a_sweep_joining_one_in_progress_takes_its_failures_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep on node a ran a job that failed and goes on without its pair: its run will list the failure.
    The sweep joining it on node b runs neither that job nor its pair's next ones, so that both publish the same
    outcome; a sweep resumed with no other process in it tries the job again."""
    jobs = plan(2, 0, [(1, 16)], rounds=1, aa_check=False)
    _on(monkeypatch, "node-a")
    _store(tmp_path).record_failure(jobs[1], "accuracy job failed: crashed with SIGSEGV")
    _on(monkeypatch, "node-b")
    calls: list[str] = []
    outcomes = _run(jobs, _store(tmp_path), _execute_counting(calls))
    assert [(o.job.key, o.reason) for o in failures(outcomes.values())] == [
        ("accuracy-pair1", "accuracy job failed: crashed with SIGSEGV")
    ]
    assert calls == ["accuracy-pair0", "latency-1x16-round0-pair0"]
    for participant in tmp_path.glob(".sweep-*/participants/*.json"):  # both stopped; their places lapsed
        participant.write_text(json.dumps({**json.loads(participant.read_text()), "until": time.time() - 1}))
    _on(monkeypatch, "node-c")
    calls.clear()
    outcomes = _run(jobs, _store(tmp_path), _execute_counting(calls))
    assert calls == ["accuracy-pair1", "latency-1x16-round0-pair1"] and all(o.ok for o in outcomes.values())


def test_each_shape_runs_all_its_rounds_before_the_next_shape() -> None:
    """A shape's rounds, every variant and the reference it is compared with are measured together, one shape after
    the other (on Ray each shape is one node's): rounds of two shapes interleaved would pass the plan's keys."""
    jobs = plan(2, 0, [(1, 16), (8, 32)], rounds=2, aa_check=False)
    assert [(j.shape, j.round) for j in jobs if j.kind == "latency"] == [
        *[((1, 16), 0)] * 2,
        *[((1, 16), 1)] * 2,
        *[((8, 32), 0)] * 2,
        *[((8, 32), 1)] * 2,
    ]


def _execute_counting(calls: list[str], seconds: float = 0.0):
    def execute(job: PlannedJob) -> dict[str, Any]:
        calls.append(job.key)
        time.sleep(seconds)
        return _result(job)

    return execute


def test_a_failed_job_is_stored_and_its_pair_skipped_while_the_others_go_on(tmp_path: Path) -> None:
    store, calls = _store(tmp_path), []
    jobs = plan(2, 0, [(1, 16)], rounds=2, aa_check=False)

    def execute(job: PlannedJob) -> dict[str, Any]:
        if job.pair == 1 and job.kind == "latency":
            raise JobFailed("latency job hung: no result after 10 s")
        return _execute_counting(calls)(job)

    outcomes = _run(jobs, store, execute)
    assert [(o.job.key, o.reason) for o in failures(outcomes.values())] == [
        ("latency-1x16-round0-pair1", "latency job hung: no result after 10 s")
    ]
    assert outcomes["latency-1x16-round1-pair1"].skipped
    assert calls == ["accuracy-pair0", "accuracy-pair1", "latency-1x16-round0-pair0", "latency-1x16-round1-pair0"]


def test_a_failed_a_a_repeat_leaves_the_reference_measured_in_later_rounds(tmp_path: Path) -> None:
    """A failed A/A repeat costs only its shape's noise floor: skipping the reference's later rounds would leave every
    variant with nothing to be compared with."""
    store, calls = _store(tmp_path), []
    jobs = plan(2, 0, [(1, 16)], rounds=2, aa_check=True)

    def execute(job: PlannedJob) -> dict[str, Any]:
        if job.repeat and job.round == 0:
            raise JobFailed("latency job failed: crashed with SIGSEGV")
        return _execute_counting(calls)(job)

    outcomes = _run(jobs, store, execute)
    assert [o.job.key for o in failures(outcomes.values())] == ["latency-1x16-round0-pair0-repeat"]
    assert not any(o.skipped for o in outcomes.values())
    assert "latency-1x16-round1-pair0" in calls and "latency-1x16-round1-pair0-repeat" in calls


def test_jobs_let_go_by_another_sweep_run_here_in_plan_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another sweep of the plan holds round 0's jobs and is stopped (Ctrl-C lets its claims go) while this one runs
    round 1: this one then runs round 0 in the plan's order (A B), not reversed, which would give both rounds the
    order B A and undo the rotation that puts each model in each slot."""
    monkeypatch.setattr(sweep, "WAIT_POLL_S", 0.01)
    jobs = plan(2, 0, [(1, 16)], rounds=2, aa_check=False)
    store = _store(tmp_path)
    other = SweepStore(store.folder, store.run_id)  # another sweep's claims, held by a live process (this one)
    round0 = [j for j in jobs if j.kind == "latency" and j.round == 0]
    assert all(other.claim(j, 60) for j in round0)
    calls: list[str] = []

    def execute(job: PlannedJob) -> dict[str, Any]:
        calls.append(job.key)
        if job.round == 1 and len(calls) == 4:  # round 1 done: the other sweep is stopped
            for held in round0:
                other.release(held)
        return _result(job)

    _run(jobs, store, execute)
    assert calls[2:] == [
        "latency-1x16-round1-pair1",
        "latency-1x16-round1-pair0",
        "latency-1x16-round0-pair0",
        "latency-1x16-round0-pair1",
    ]


def test_two_sweeps_of_one_plan_run_each_job_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "WAIT_POLL_S", 0.01)
    jobs = plan(3, 0, [(1, 16)], rounds=2, aa_check=True)
    calls: list[str] = []
    results: list[dict] = []
    sweeps = [
        threading.Thread(target=lambda: results.append(_run(jobs, _store(tmp_path), _execute_counting(calls, 0.02))))
        for _ in range(2)
    ]
    for thread in sweeps:
        thread.start()
    for thread in sweeps:
        thread.join()
    assert sorted(calls) == sorted(j.key for j in jobs)  # every job ran once, in one sweep or the other
    assert len(results) == 2, "a sweep raised (its thread's traceback is above)"
    assert all(all(o.ok for o in outcomes.values()) and len(outcomes) == len(jobs) for outcomes in results)


SWEEP_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from optbench.job import Job
    from optbench.executors.local import LocalExecutor
    from optbench.sweep import SweepStore, plan, run_sweep

    def run(spec, job_path, timeout_s):
        time.sleep(0.3)
        if spec.kind == "latency":
            return {"values_ns": [1], "peak_rss_mb": 1.0}
        logits = Path(spec.output).with_suffix(".npy")
        np.save(logits, np.eye(2))
        return {"logits": str(logits), "runtime_details": {}}

    def make_job(job):
        return Job(job.kind, {}, {}, 1, "inputs.npz", str(store.output(job)))

    store = SweepStore.open(Path(sys.argv[1]), {"plan": "test"}, lambda: "run-1", 60)
    run_sweep(plan(2, 0, [(1, 16), (2, 16)], rounds=2, aa_check=True), store, LocalExecutor(run), make_job)
    """
)


def test_a_sweep_killed_with_sigkill_resumes_and_ends_with_every_result_once(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(tmp_path)], env=env)
    store = _store(tmp_path)
    deadline = time.monotonic() + 120
    # at least 4 done and the next job claimed (killed between two jobs, it would hold no claim)
    while (store.done() < 4 or not list(store.jobs.glob("*.claim"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = {p.name: p.read_bytes() for p in store.jobs.glob("*.json")}
    assert 4 <= len(before) < 14, "the sweep was killed in the middle"
    assert list(store.jobs.glob("*.claim")), "it died holding the claim of the job it was running"

    jobs = plan(2, 0, [(1, 16), (2, 16)], rounds=2, aa_check=True)
    calls: list[str] = []
    outcomes = _run(jobs, store, _execute_counting(calls))
    assert all(o.ok for o in outcomes.values()) and len(outcomes) == len(jobs) == 14
    assert sorted(p.stem for p in store.jobs.glob("*.json")) == sorted(j.key for j in jobs)
    assert {
        p.name: p.read_bytes() for p in store.jobs.glob("*.json") if p.name in before
    } == before  # kept as they were
    assert set(calls) == {j.key for j in jobs} - {name.removesuffix(".json") for name in before}
    assert len(calls) == len(set(calls)) and not list(store.jobs.glob("*.claim"))


def test_the_local_executor_runs_a_job_when_submitted_with_the_sweep_s_timeout(tmp_path: Path) -> None:
    """The job process is stopped at the timeout the sweep gives, its spec written beside its output."""
    ran: list[tuple[Path, float]] = []

    def run(spec: Job, job_path: Path, timeout_s: float) -> dict[str, Any]:
        ran.append((job_path, timeout_s))
        return {"values_ns": [1]}

    executor, job = LocalExecutor(run), PlannedJob("latency", 0, (1, 16))
    handle = executor.submit(job, Job("latency", {}, {}, 1, "inputs.npz", str(tmp_path / "out.json")), 12.5)
    assert ran == [(tmp_path / "out.job.json", 12.5)]
    assert executor.wait([handle], 1.0) == (job.key, {"values_ns": [1]})


def test_a_job_that_exits_without_a_result_is_recorded_as_failed_by_the_local_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local executor writes the job's spec beside its output, not over it: a job that exits cleanly but writes
    nothing would hand its own spec back as its result, and the sweep would stop on a 'damaged' record."""
    from optbench import job as job_module
    from optbench.job import run_in_subprocess

    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, "-c", "pass"))
    store, job = _store(tmp_path), PlannedJob("latency", 0, (1, 16))

    def make_job(planned: PlannedJob) -> Job:
        return Job(planned.kind, {}, {}, 1, "inputs.npz", str(store.output(planned)))

    outcomes = run_sweep([job], store, LocalExecutor(run_in_subprocess), make_job)
    assert "exited cleanly but wrote no readable result" in outcomes[job.key].reason


class QueueingExecutor:
    """Stands in for Ray: every job in a lane of its own, all submitted at once, finishing one per wait after
    a first wait in which none does (all queued). Between two waits the time of the claims and of the sweep's place
    passes."""

    runs_here = False

    def __init__(self, store: SweepStore, interrupt_at: int = 0) -> None:
        self.store, self.interrupt_at, self.waits = store, interrupt_at, 0
        self.queued: dict[str, PlannedJob] = {}

    def lane(self, job: PlannedJob) -> str:
        return job.key

    def submit(self, job: PlannedJob, spec: Job, timeout_s: float) -> str:
        if len(self.queued) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.queued[job.key] = job
        return job.key

    def wait(self, handles: list[str], timeout_s: float) -> tuple[str, dict] | None:
        for key in handles:
            # renewed since the last wait: another sweep of the plan cannot take the job
            assert not self.store.claim(self.queued[key], 60), f"the claim of queued {key} lapsed"
            claim = self.store.jobs / f"{key}.claim"
            claim.write_text(json.dumps({**json.loads(claim.read_text()), "at": 0, "until": 0}))  # time passes
        # renewed too: past its deadline, another host takes the sweep for abandoned (removes it, once published)
        place = self.store._participant()
        assert json.loads(place.read_text())["until"] > time.time(), "the sweep's place lapsed"
        place.write_text(json.dumps({**json.loads(place.read_text()), "until": 0}))
        self.waits += 1
        return None if self.waits == 1 else (handles[0], _result(self.queued[handles[0]]))

    def close(self) -> None:
        pass


def test_claims_of_jobs_queued_by_the_executor_are_renewed_until_they_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job queued behind others (Ray) starts its timeout only when it runs: its claim must not lapse while
    it waits, or another sweep of the plan would take the job and run it a second time; nor may the sweep's place,
    or a sweep on another host that publishes the run would find itself the last and remove the folder."""
    monkeypatch.setattr(sweep, "CLAIM_RENEW_S", 0.0)  # each wait stands for a minute or more
    store, jobs = _store(tmp_path), plan(3, 0, [(1, 16)], rounds=1, aa_check=False)
    outcomes = run_sweep(jobs, store, QueueingExecutor(store), _spec)
    assert all(o.ok for o in outcomes.values()) and len(outcomes) == len(jobs)
    assert not list(store.jobs.glob("*.claim"))


def test_an_interrupted_sweep_lets_every_claim_it_holds_go(tmp_path: Path) -> None:
    """Ctrl-C while the third job is submitted: the two already queued are this sweep's too."""
    store, jobs = _store(tmp_path), plan(3, 0, [(1, 16)], rounds=1, aa_check=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, store, QueueingExecutor(store, interrupt_at=3), _spec)
    assert not list(store.jobs.glob("*.claim"))


# --- end to end: optbench run, killed and resumed; a crashing and a hanging job -------------------------

WRAPPER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from optbench.job import main

    job = json.loads(open(sys.argv[1]).read())
    steps = [step["name"] for step in job["artifact"]["lineage"]]
    if steps == ["onnx"] and job["kind"] == "latency":
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    if steps == ["onnx", "quantize-dynamic"]:
        time.sleep(600)  # hangs
    sys.exit(main(sys.argv[1:]))
    """
)


def test_run_records_a_crashing_and_a_hanging_job_and_finishes_the_others(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from test_cli import BENCH, write_recipe

    from optbench import job as job_module
    from optbench.cli import main

    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    monkeypatch.setattr(job_module, "JOB_COMMAND", (sys.executable, str(wrapper)))
    steps = (
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\nexporter = "torchscript"\n'
        '[[chains.steps]]\nname = "quantize-dynamic"\nweight_type = "int8"\n'
    )
    # the hang costs the whole job_timeout_s: short, yet twice what a torch job takes on 2 busy cores
    bench = BENCH.replace('seq_lens = [16, "data"]', "seq_lens = [16]").replace(
        "[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]\naa_check = false\njob_timeout_s = 30'
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=steps, bench=bench)
    results = tmp_path / "results"
    assert main(["run", str(recipe), "--results", str(results), "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert (
        "baseline+onnx on onnxruntime-cpu-fp32, latency-2x16-round0-pair1: latency job failed: killed by SIGKILL" in err
    )
    assert "baseline+onnx+quantize-dynamic on onnxruntime-cpu-fp32, accuracy-pair2: accuracy job hung" in err
    assert "2 failed (steps or jobs): their variants have no report" in err
    (run,) = (results / "tiny").iterdir()  # published, and the sweep's folder is gone
    assert sorted(p.name for p in run.glob("*.json")) == ["baseline.torch-cpu-fp32.json", "failures.json"]
    failed = json.loads((run / "failures.json").read_text())
    assert [f["job"] for f in failed] == ["accuracy-pair2", "latency-2x16-round0-pair1"]


def test_run_killed_with_sigkill_resumes_where_it_stopped(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    from test_cli import BENCH, write_recipe

    from optbench.cli import main

    # 1 accuracy + 2 rounds of one shape: killed after two jobs, the shape's rounds fall on both sides of the kill
    bench = BENCH.replace('seq_lens = [16, "data"]', "seq_lens = [16]").replace(
        "[bench]", "[bench]\nrounds = 2\naa_check = false"
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-m", "optbench", *args], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    stores = []
    while time.monotonic() < deadline and child.poll() is None:
        stores = list((tmp_path / "results" / "tiny").glob(".sweep-*"))
        if stores and len(list((stores[0] / "jobs").glob("*.json"))) >= 2:
            break
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (store,) = stores
    done_before = {p.name: p.read_bytes() for p in (store / "jobs").glob("*.json")}
    assert len(done_before) == 2, "killed in the middle of the sweep"
    run_id = json.loads((store / "sweep.json").read_text())["run_id"]

    assert main(args) == 0
    (run,) = (tmp_path / "results" / "tiny").iterdir()
    assert run.name == run_id  # the resumed sweep published under the run id it started with
    report = json.loads((run / "baseline.torch-cpu-fp32.json").read_text())
    assert [m["latency"]["n"] for m in report["measurements"]] == [6]  # 2 rounds x 3 calls: each round once


def test_run_stopped_with_sigterm_lets_its_claim_and_job_go(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path
) -> None:
    """SIGTERM (docker stop, a CI cancel) unwinds as Ctrl-C does: the running job's claim is let go (a container
    started again has another hostname, so the resumed sweep would wait the job timeout on it) and its process
    ends."""
    from test_cli import BENCH, write_recipe

    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import os, sys, time\nfrom pathlib import Path\n"
        f"Path({str(tmp_path / 'job.pid')!r}).write_text(str(os.getpid()))\ntime.sleep(600)\n"
    )
    launcher = (
        "import sys\nfrom optbench import job\n"
        f"job.JOB_COMMAND = (sys.executable, {str(wrapper)!r})\n"
        "from optbench.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, bench=BENCH)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", launcher, *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "job.pid").exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert (tmp_path / "job.pid").exists(), "the first job started"
    claims = list((tmp_path / "results" / "tiny").glob(".sweep-*/jobs/*.claim"))
    assert len(claims) == 1
    os.kill(child.pid, signal.SIGTERM)
    try:
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode != 0 and "interrupted" in err and "the same command resumes it" in err
    assert not claims[0].exists()
    with pytest.raises(ProcessLookupError):  # the job's process ended with the run
        os.kill(int((tmp_path / "job.pid").read_text()), 0)


def test_a_participant_entry_that_cannot_be_read_stops_the_run_naming_it(tmp_path: Path) -> None:
    """An entry the system will not open (another user's, a loop of links) may be a live process's: taken for none,
    the published sweep it is in would start a new run and be removed under that process."""
    store = _store(tmp_path, "run-1")
    entry = store.folder / "participants" / "elsewhere-1.json"
    entry.symlink_to(entry)
    (tmp_path / "run-1").mkdir()  # published
    with pytest.raises(OptbenchError, match=r"cannot read .*elsewhere-1\.json \(.*\): delete or restore the file"):
        _store(tmp_path, "run-2")
    assert store.folder.is_dir()
