"""A sweep: the benchmark's jobs in their planned order, each result stored the moment its job ends.

The store is a folder (hidden, beside the recipe's runs) named by a hash of what the sweep measures. Each
finished job leaves one result file, written atomically: a sweep killed at any point (kill -9 included)
and started again runs only the jobs with no stored result, and no file is ever half-written. A job that
crashes, hangs past its timeout or runs out of memory is stored as failed with its reason and the sweep
goes on; failed jobs are tried again when a sweep resumes with no other process working on it (one that
joins a sweep in progress takes its failures as they are, as the processes in it did). A job is claimed
(`optbench.claims`) while it runs, so two sweeps of the same plan share the work instead of running it twice; a
sweep whose claim lapsed and was taken over records no result for it. Each process working on a sweep holds its
place in it as it holds a claim, until a deadline it keeps renewing while it runs. A sweep no process works on
whose recipe now measures something else is kept, for a resume, and named when the recipe runs; one whose run was
published is removed then (`tidy_sweeps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from optbench.atomic import create_json_exclusive, write_json_atomic
from optbench.claims import holds_claim, is_dead, lease, read_holder, renew_claim, take_claim, this_process
from optbench.encoding import Shape
from optbench.errors import OptbenchError
from optbench.job import Job, JobFailed
from optbench.records import damaged, read_json, require_fields

log = logging.getLogger(__name__)

WAIT_POLL_S = 1.0
CLAIM_RENEW_S = 60.0  # how often a sweep renews its place and the claims of its jobs in flight
SUBFOLDERS = ("jobs", "inputs", "work", "participants")
SWEEP_FIELDS = {"run_id": "a folder name"}  # in sweep.json: its run's reports go to that folder
# what the benchmark reads of a stored job's result, by the job's kind: the fields every result of that kind has,
# and those it has where it has them
STARTUP = "startup times (load_s and first_call_s: numbers of 0 or more, where given)"
RESULT_FIELDS = {
    "accuracy": ({"logits": "a string", "runtime_details": "an object"}, {"startup": STARTUP}),
    "latency": (
        {"values_ns": "a non-empty list of durations (numbers, 0 or more)", "peak_rss_mb": "a number"},
        {
            "resolution_ns": "a number",
            "gpu_memory": "GPU memory figures (numbers of 0 or more, where given)",
            "environment": "an object",
            "startup": STARTUP,
        },
    ),
}


@dataclass(frozen=True)
class PlannedJob:
    """One job of the plan: an accuracy pass of a (model, runtime) pair, or one round of its latency at a shape
    (`repeat`: the reference measured again at the end of the round, the A/A check)."""

    kind: Literal["accuracy", "latency"]
    pair: int
    shape: Shape | None = None
    round: int = 0
    repeat: bool = False

    @property
    def key(self) -> str:
        """The job's name in the store: the same in every sweep of one plan."""
        if self.shape is None:
            return f"{self.kind}-pair{self.pair}"
        batch_size, seq_len = self.shape
        return f"{self.kind}-{batch_size}x{seq_len}-round{self.round}-pair{self.pair}{'-repeat' if self.repeat else ''}"


def plan(pairs: int, reference: int, shapes: list[Shape], rounds: int, aa_check: bool) -> list[PlannedJob]:
    """Every pair's accuracy pass, then per shape and round every pair once (interleaved), then the
    reference again when `aa_check` is on. Each round starts one pair later (A B C, B C A, C A B), so
    whatever the first or last slot of a round does to its timing (a warm cache, heat) falls on every
    model in turn."""
    jobs = [PlannedJob("accuracy", pair) for pair in range(pairs)]
    for shape in shapes:
        for round_index in range(rounds):
            order = [(round_index + offset) % pairs for offset in range(pairs)]
            jobs += [PlannedJob("latency", pair, shape, round_index) for pair in order]
            if aa_check:
                jobs.append(PlannedJob("latency", reference, shape, round_index, repeat=True))
    return jobs


@dataclass(frozen=True)
class Outcome:
    """A finished job: its result, or why it failed (or was skipped because an earlier job of its pair failed)."""

    job: PlannedJob
    result: dict[str, Any] | None
    reason: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass(frozen=True)
class Unfinished:
    """A sweep a run would resume: its run id (None: the run gives it a new one, its sweep.json deleted), and how
    many of its jobs are done (their outcomes kept)."""

    run_id: str | None
    done: int


class SweepStore:
    """One sweep's folder: `sweep.json` (what it measures and its run id), `inputs/`, `jobs/` with a
    `<key>.json` per finished job (an accuracy job's logits beside it as `<key>.npy`) and the claims of
    running jobs, `work/` where claimed jobs write their results (see `output`), and `participants/` naming the
    processes working on it (each until a deadline it renews); the last of them to leave removes it (holding
    `removal.claim` while it checks that it is the last)."""

    def __init__(self, folder: Path, run_id: str | None) -> None:
        self.folder = folder
        self.run_id = run_id  # None only as `unfinished` reads a sweep whose sweep.json is gone: `open` gives one
        self.jobs = folder / "jobs"
        self.inputs = folder / "inputs"
        self.work = folder / "work"
        self._tokens: dict[str, str] = {}  # the token of each job's claim this process holds, by job key

    @classmethod
    def open(cls, root: Path, identity: dict[str, Any], new_run_id: Callable[[], str], timeout_s: float) -> SweepStore:
        """The store of the sweep `identity` describes under `root`, resumed when it exists, else new, with this
        process registered in it (`join`). A sweep resumed with no other process working on it forgets its
        failed jobs (they run again) before registering, so that one seeing it registered finds them gone. One
        whose run is published, with no other process in it, is removed and a new run started."""
        folder = _folder(root, identity)
        meta = folder / "sweep.json"
        _check_folders(folder)
        while True:
            for sub in SUBFOLDERS:
                (folder / sub).mkdir(parents=True, exist_ok=True)
            # FileExistsError: resumed, or just created by a sweep of the same plan; FileNotFoundError: removed
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                create_json_exclusive(meta, {"run_id": new_run_id(), "identity": identity})
            stored = read_json(meta, required=SWEEP_FIELDS)
            if stored is None:  # removed by the last process of a published sweep as this one opened it
                continue
            store = cls(folder, stored["run_id"])
            if store._retries_failures(root) and (retried := store.forget_failures()):
                log.info("trying %d failed jobs again", retried)
            store.join(timeout_s)
            # registered, then checked: a process that leaves the sweep after this sees this one and keeps the
            # folder; one that left before published the run first. Published, with no other process in it: the
            # run is whole (its last process was stopped before it removed the folder, or is removing it now)
            if store._goes_on(root):
                return store
            if store.leave():
                log.info("the sweep of run %s was published and left behind: starting a new run", store.run_id)
            else:  # another process is removing it
                time.sleep(WAIT_POLL_S)

    @classmethod
    def unfinished(cls, root: Path, identity: dict[str, Any]) -> Unfinished | None:
        """The sweep that `open` would resume for `identity` under `root`, with the jobs it would keep (its failed
        ones, which it would try again, left out); None when `open` would start a new run. Writes nothing (`optbench
        run --dry-run`)."""
        folder = _folder(root, identity)
        _check_folders(folder)
        stored = read_json(folder / "sweep.json", required=SWEEP_FIELDS)
        # None: no sweep, or its sweep.json deleted: `open` makes one, for a new run, keeping its records
        store = cls(folder, None if stored is None else stored["run_id"])
        if not store._goes_on(root):
            return None
        kept = store.done() - (len(store._failed()) if store._retries_failures(root) else 0)
        if store.run_id is None and not kept:  # nothing to resume: a new run
            return None
        return Unfinished(store.run_id, kept)

    def _published(self, root: Path) -> bool:
        """Whether this sweep's run is published under `root` (a sweep without its run id never was)."""
        return self.run_id is not None and (root / self.run_id).is_dir()

    def _goes_on(self, root: Path) -> bool:
        """Whether a process opening this sweep carries it on: its run is not published yet, or another live
        process is in it (`open` otherwise removes it and starts a new run)."""
        return not self._published(root) or bool(self._live_participants())

    def _retries_failures(self, root: Path) -> bool:
        """Whether a process opening this sweep tries its failed jobs again: its run is not published yet and no
        other live process is in it (one that is takes their failures as they are)."""
        return not self._published(root) and not self._live_participants()

    def done(self) -> int:
        return len(list(self.jobs.glob("*.json")))

    def outcome(self, job: PlannedJob) -> Outcome | None:
        """The stored outcome of `job`, or None when it has none yet."""
        path = self._record(job)
        stored = read_json(path, required={"status": "a string"})
        if stored is None:
            return None
        if stored["status"] not in ("ok", "failed"):
            raise damaged(path, f"'status' is {stored['status']!r}, not 'ok' or 'failed'")
        # one written before records named their sweep and job has neither: taken as its name says, as it was then
        if stored.get("sweep", self.folder.name) != self.folder.name:
            raise damaged(path, f"the record of another sweep, {stored['sweep']}, not this one's")
        if stored.get("job", job.key) != job.key:
            raise damaged(path, f"the record of job {stored['job']}, not {job.key}")
        if stored["status"] == "failed":
            require_fields(path, stored, {"reason": "a string"})
            return Outcome(job, None, stored["reason"])
        require_fields(path, stored, {"result": "an object"})
        result = stored["result"]
        require_fields(path, result, *RESULT_FIELDS[job.kind])
        if "logits" in result:
            if result["logits"] != self._logits(job).name:  # a path elsewhere (/etc/passwd) or another job's file
                raise damaged(path, f"'logits' is not {self._logits(job).name}, the file beside it")
            result = {**result, "logits": str(self._logits(job))}
        return Outcome(job, result)

    def check_logits(self, jobs: Iterable[PlannedJob], rows: int) -> None:
        """Name as damaged the record of any stored accuracy job among `jobs` whose logits `logits` would refuse,
        from each file's header (mapped, not read): a resume finds the damage before it runs its first job, not
        once every remaining job has run."""
        for job in jobs:
            if job.kind == "accuracy" and (outcome := self.outcome(job)) is not None and outcome.ok:
                self._load_logits(job, rows, mmap_mode="r")

    def logits(self, job: PlannedJob, rows: int) -> np.ndarray:
        """The logits the accuracy job `job` stored beside its record: `rows` rows (one per test text) of class
        scores. A file cut short, not one array, or of another shape (hand-edited, another sweep's) names the
        record as damaged, whose deletion runs the job again: it ended the run in numpy's traceback, or in an error
        about the data's labels."""
        return self._load_logits(job, rows)

    def _load_logits(self, job: PlannedJob, rows: int, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
        """`logits`; with `mmap_mode` "r", its checks from the file's header, the array mapped but not read."""
        path, record = self._logits(job), self._record(job)
        try:
            logits = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            raise damaged(record, f"its logits, {path.name}, cannot be read: {exc}") from exc
        if not isinstance(logits, np.ndarray):  # a zip of arrays (.npz), which np.load opens as such
            logits.close()
            raise damaged(record, f"its logits, {path.name}, cannot be read: a zip of arrays, not one array")
        if logits.ndim != 2 or logits.shape[0] != rows or not np.issubdtype(logits.dtype, np.number):
            raise damaged(
                record,
                f"its logits, {path.name}, are {logits.dtype} of shape {logits.shape}, not {rows} rows of scores",
            )
        return logits

    def record(self, job: PlannedJob, result: dict[str, Any]) -> None:
        """Store a finished job's result (its logits file moved in first, so the record never points at nothing).
        A sweep records only the jobs whose claims it still `holds`."""
        if "logits" in result:
            os.replace(result["logits"], self._logits(job))
            result = {**result, "logits": self._logits(job).name}
        self._write_record(job, {"status": "ok", "result": result})

    def record_failure(self, job: PlannedJob, reason: str) -> None:
        self._write_record(job, {"status": "failed", "reason": reason})

    def _write_record(self, job: PlannedJob, outcome: dict[str, Any]) -> None:
        """Store `job`'s record, naming the sweep and job it is of: its file name is the job's key, which every sweep
        shares, so one copied from another sweep's folder (or under another job's name) was taken as this job's."""
        record = {**outcome, "sweep": self.folder.name, "job": job.key, **this_process()}
        write_json_atomic(self._record(job), record)

    def forget_failures(self) -> int:
        """Delete the failed records, so that a resumed sweep tries those jobs again; returns how many."""
        failed = self._failed()
        for path in failed:
            path.unlink(missing_ok=True)
        return len(failed)

    def _failed(self) -> list[Path]:
        """The records of the failed jobs."""
        return [p for p in self.jobs.glob("*.json") if (read_json(p) or {}).get("status") == "failed"]

    def claim(self, job: PlannedJob, timeout_s: float) -> bool:
        """Take the job for this process, until the job timeout and CLAIM_GRACE_S (`optbench.claims`) have passed
        (see `renew`); False while a live process of another sweep holds it. A claim left by a dead process on this
        host (a sweep killed mid-job) is taken over, and so is any claim past its deadline: its holder would have
        renewed it, so it is gone, on whichever host (a container that was replaced, with another hostname)."""
        token = take_claim(self._claim(job), timeout_s)
        if token is not None:
            self._tokens[job.key] = token
        return token is not None

    def output(self, job: PlannedJob) -> Path:
        """Where the job this process claimed writes its result (its logits beside it, as `.npy`): named by the
        claim's token, so that a process that took the job over (on another host, perhaps with the same pid)
        never writes or deletes the same file."""
        return self.work / f"{job.key}-{self._tokens[job.key]}.result.json"

    def holds(self, job: PlannedJob) -> bool:
        """Whether the claim of `job` is still this process's: one that lapsed while its holder lived (its host
        suspended past the deadline, or its clock behind) may have been taken over by another process, which runs
        the job now. A claim found lost is logged and forgotten: this process no longer renews it or lets it go."""
        token = self._tokens.get(job.key)
        if token is None:
            return False
        if holds_claim(self._claim(job), token):
            return True
        log.warning(
            "the claim of %s lapsed and another sweep of this plan took the job over: its outcome stands", job.key
        )
        del self._tokens[job.key]
        return False

    def renew(self, jobs: Iterable[PlannedJob], timeout_s: float) -> None:
        """Hold this process's place in the sweep, and its claims of `jobs` it still `holds`, as if taken now: a job
        queued behind others (Ray) has not yet started its timeout, so its claim must not lapse while it waits."""
        self.join(timeout_s)
        for job in jobs:
            if self.holds(job):
                renew_claim(self._claim(job), self._tokens[job.key], timeout_s)

    def release(self, job: PlannedJob) -> None:
        """Let the claim of `job` go, if it is still this process's."""
        if self.holds(job):
            self._claim(job).unlink(missing_ok=True)
            del self._tokens[job.key]

    def join(self, timeout_s: float) -> None:
        """Register this process as working on the sweep, until the job timeout and CLAIM_GRACE_S (`optbench.claims`)
        have passed (run_sweep renews it; see `leave`)."""
        write_json_atomic(self._participant(), lease(timeout_s))

    def leave(self) -> bool:
        """Unregister; the last live participant removes the folder (its run is published). True if removed."""
        self._participant().unlink(missing_ok=True)
        return self._remove()

    def _remove(self) -> bool:
        """Remove the folder if it still holds this store's run and no other live process works on it. One process
        at a time does (a lock file, taken over from a dead holder), and by a rename first: a sweep opened at
        this path afterwards gets a new folder, never one half removed, and never one removed by a process that
        checked the folder it replaced."""
        lock = self.folder / "removal.claim"
        try:
            token = take_claim(lock, 0.0)
        except FileNotFoundError:  # removed already
            return False
        if token is None:
            return False
        replaced = (read_json(self.folder / "sweep.json") or {}).get("run_id") != self.run_id
        in_use = replaced or bool(self._live_participants())  # by a new sweep at this path, or by other processes
        if not holds_claim(lock, token):  # stalled past the lock's lease while checking: the new holder's, to decide
            return False
        if in_use:
            lock.unlink(missing_ok=True)
            return False
        removed = self.folder.with_name(f"{self.folder.name}.{secrets.token_hex(4)}.removed")
        os.rename(self.folder, removed)
        shutil.rmtree(removed, ignore_errors=True)
        return True

    def _live_participants(self) -> list[dict[str, Any]]:
        """The other processes registered in the sweep that are alive (this one's own entry left out)."""
        paths = [p for p in (self.folder / "participants").glob("*.json") if p != self._participant()]
        holders = [read_holder(p) for p in paths]
        return [h for h in holders if h is not None and not is_dead(h)]

    def _participant(self) -> Path:
        return self.folder / "participants" / f"{socket.gethostname()}-{os.getpid()}.json"

    def _record(self, job: PlannedJob) -> Path:
        return self.jobs / f"{job.key}.json"

    def _claim(self, job: PlannedJob) -> Path:
        return self.jobs / f"{job.key}.claim"

    def _logits(self, job: PlannedJob) -> Path:
        return self.jobs / f"{job.key}.npy"


def tidy_sweeps(root: Path, current: SweepStore) -> None:
    """Tidy the sweep folders under `root` (a recipe's results) other than `current`. Remove those no process can
    resume: one whose run was published and which no live process works on (its last process was stopped before
    it removed it; removed as `leave` would, under its removal lock), and one renamed for removal whose deletion
    was cut short. Log each other sweep no live process works on, with its size and when it last changed: a sweep
    interrupted before the recipe changed what it measures (models, data, [bench]). That one is kept: a run that
    measures the same again on its machine resumes it, and only the user knows whether one will. A folder being
    made, or whose records are damaged, is passed over: no run stops for this."""
    for folder in sorted(root.glob(".sweep-*")):
        if folder.suffix == ".removed":
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if folder == current.folder:
            continue
        try:
            stored = read_json(folder / "sweep.json", required=SWEEP_FIELDS)
            if stored is None:
                continue
            store = SweepStore(folder, stored["run_id"])
            if store._live_participants():
                continue
        except OptbenchError:  # damaged
            continue
        if store._published(root):
            if store._remove():
                log.info("removed %s, the sweep of run %s, published and left behind", folder, store.run_id)
            continue
        size, touched = _footprint(folder)
        log.info(
            "%s (%.1f MB, last changed %s, jobs done: %d) is the unfinished sweep of run %s, and no process works "
            "on it: a run of this recipe that measures the same again (models, data, [bench]) on its machine "
            "resumes it; if none will, deleting it is safe",
            folder,
            size / 1e6,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(touched)),
            store.done(),
            store.run_id,
        )


def unfinished_note(folder: Path) -> str:
    """For a command that found no reports under `folder` (results, or a recipe's): the unfinished runs it holds (a
    run going, or one stopped or killed before it published its reports), whose sweeps a run of their recipe resumes,
    or ""."""
    sweeps = sorted(
        sweep
        for sweep in (*folder.glob(".sweep-*"), *folder.glob("*/.sweep-*"))
        if sweep.is_dir() and sweep.suffix != ".removed"
    )
    if not sweeps:
        return ""
    runs, its, it = (
        ("an unfinished run", "its recipe", "it")
        if len(sweeps) == 1
        else (f"{len(sweeps)} unfinished runs", "their recipes", "them")
    )
    return (
        f"; it holds only {runs} ({', '.join(str(sweep) for sweep in sweeps)}), not published yet: let a run still "
        f"going finish, or run {its} again (optbench run RECIPE) to resume {it}"
    )


def _footprint(folder: Path) -> tuple[int, float]:
    """The bytes of the files under `folder`, and the last time anything in it changed (what vanishes meanwhile is
    left out)."""
    size, touched = 0, 0.0
    for parent, _, names in os.walk(folder):
        with contextlib.suppress(FileNotFoundError):
            touched = max(touched, os.stat(parent).st_mtime)  # a file added or removed
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                info = os.lstat(os.path.join(parent, name))
                size, touched = size + info.st_size, max(touched, info.st_mtime)
    return size, touched


class Executor(Protocol):
    """Where jobs run. `submit` starts a job (or queues it) and returns a handle; `wait` returns one finished
    handle with the job's result, or the JobFailed that says why it failed, or None when none finished within
    `timeout_s` (so that the sweep can renew what it holds, then wait again). The sweep keeps one job in flight per
    lane and submits each lane's jobs in plan order, so an executor decides what may run side by side.
    `runs_here`: every job runs on this machine (so a sweep it runs belongs to this machine alone)."""

    runs_here: bool

    def lane(self, job: PlannedJob) -> Hashable: ...

    def submit(self, job: PlannedJob, spec: Job, timeout_s: float) -> Hashable: ...

    def wait(self, handles: list[Hashable], timeout_s: float) -> tuple[Hashable, dict[str, Any] | JobFailed] | None: ...

    def close(self) -> None: ...


def runs_here(executor: Executor | None) -> bool:
    """Whether `executor` runs every job on this machine (None: the default, the local executor)."""
    return executor is None or executor.runs_here


def run_sweep(
    jobs: list[PlannedJob],
    store: SweepStore,
    executor: Executor,
    make_job: Callable[[PlannedJob], Job],
    *,
    timeout_s: float = 1800.0,
    on_done: Callable[[Outcome, bool], None] = lambda outcome, ran: None,
) -> dict[str, Outcome]:
    """Run every job with no stored outcome and return every job's outcome by key.

    A failed job is stored with its reason and the sweep goes on; the later jobs of its pair are skipped
    (not stored), unless it was an A/A repeat: that loses only its shape's noise floor, and the reference,
    which every other pair is compared with, is still measured. Jobs claimed by another live sweep are
    waited for; this sweep's place and the claims of its jobs in flight are renewed every CLAIM_RENEW_S
    (checked each time it wakes), and the claims let go when it is interrupted. `on_done(outcome, ran)` is
    called once per job (ran: by this sweep).
    """
    lanes: dict[Hashable, deque[PlannedJob]] = {}
    for job in jobs:
        lanes.setdefault(executor.lane(job), deque()).append(job)
    outcomes: dict[str, Outcome] = {}
    failed_pairs: dict[int, str] = {}
    in_flight: dict[Hashable, PlannedJob] = {}
    busy: set[Hashable] = set()
    waiting: list[PlannedJob] = []
    renew_at = time.monotonic() + CLAIM_RENEW_S

    def finish(outcome: Outcome, ran: bool) -> None:
        outcomes[outcome.job.key] = outcome
        if not outcome.ok and not outcome.skipped and not outcome.job.repeat:
            failed_pairs.setdefault(outcome.job.pair, outcome.reason)
        on_done(outcome, ran)

    try:
        while any(lanes.values()) or in_flight or waiting:
            for lane, queue in lanes.items():
                while queue and lane not in busy:
                    job = queue.popleft()
                    if job.pair in failed_pairs:
                        reason = f"an earlier job of this pair failed ({failed_pairs[job.pair]})"
                        finish(Outcome(job, None, reason, skipped=True), False)
                    elif (outcome := store.outcome(job)) is not None:
                        finish(outcome, False)
                    elif not store.claim(job, timeout_s):
                        waiting.append(job)
                    elif (outcome := store.outcome(job)) is not None:  # another sweep finished it before the claim
                        store.release(job)
                        finish(outcome, False)
                    else:
                        try:
                            in_flight[executor.submit(job, make_job(job), timeout_s)] = job
                        except BaseException:  # not in flight: let its claim go here
                            store.release(job)
                            raise
                        busy.add(lane)
            if in_flight:
                finished = executor.wait(list(in_flight), CLAIM_RENEW_S)
                if finished is not None:
                    handle, result = finished
                    job = in_flight.pop(handle)
                    busy.discard(executor.lane(job))
                    if (outcome := _store_result(job, store, result)) is not None:
                        finish(outcome, True)
                    else:  # taken over by another sweep meanwhile: its outcome stands, waited for as any other
                        waiting.append(job)
            elif waiting:
                log.info(
                    "%d jobs are running in another sweep of this plan: waiting for them (their claims are in %s)",
                    len(waiting),
                    store.jobs,
                )
                time.sleep(WAIT_POLL_S)
                for job in reversed(waiting):
                    lanes[executor.lane(job)].appendleft(job)
                waiting = []
            if time.monotonic() >= renew_at:  # jobs in flight may be queued behind others: still this sweep's
                store.renew(in_flight.values(), timeout_s)
                renew_at = time.monotonic() + CLAIM_RENEW_S
    except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed: no claim may outlive this sweep's process
        for job in in_flight.values():
            store.release(job)
        raise
    return outcomes


def _store_result(job: PlannedJob, store: SweepStore, result: dict[str, Any] | JobFailed) -> Outcome | None:
    """Store what a job this sweep claimed came back with, and let the claim go; None (nothing stored, its logits
    file deleted) when the claim is no longer this sweep's (see `SweepStore.holds`)."""
    try:
        if not store.holds(job):
            if isinstance(result, dict) and "logits" in result:  # this claim's own file (`SweepStore.output`)
                Path(result["logits"]).unlink(missing_ok=True)
            return None
        if isinstance(result, JobFailed):
            log.warning("%s failed: %s", job.key, result)
            store.record_failure(job, str(result))
            return Outcome(job, None, str(result))
        store.record(job, result)
        return store.outcome(job) or Outcome(job, result)
    finally:
        store.release(job)


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The jobs that ran and failed (not those skipped after them)."""
    return [o for o in outcomes if not o.ok and not o.skipped]


def _check_folders(folder: Path) -> None:
    """Refuse a sweep folder (or one of its subfolders) that is a file (hand-made: a bare "File exists" stopped the
    run), or that this user cannot write: one a run as root, or as another user, left unfinished. Its resume failed
    naming a temporary file with a bare permission error, and a dry run said it would resume it."""
    for path in (folder, *(folder / sub for sub in SUBFOLDERS)):
        if path.exists() and not path.is_dir():
            raise damaged(path, "a file where the sweep keeps a folder")
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise OptbenchError(
                f"{path} is not writable by this user: the unfinished sweep {folder} was left by another user "
                f"({_owner(path)}); resume it as that user, give this user write access to it, or delete it to start "
                "the benchmark over (its finished jobs are lost)"
            )


def _owner(path: Path) -> str:
    """The name of the user who owns `path`, or its uid where the password file has none."""
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _folder(root: Path, identity: dict[str, Any]) -> Path:
    """The folder of the sweep `identity` describes under `root`: named by a hash of it."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return root / f".sweep-{digest}"
