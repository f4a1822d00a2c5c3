"""Where a sweep's jobs run: `local` (this machine, one job at a time; the default) or `ray` (Ray tasks
on a local Ray runtime or a cluster). Both implement `optbench.sweep.Executor`."""

from __future__ import annotations

from optbench.errors import OptbenchError
from optbench.sweep import Executor

EXECUTORS = ("local", "ray")


def check_executor(name: str, address: str | None = None) -> tuple[str, bool]:
    """Refuse, without starting anything, what `make_executor` refuses before its executor starts: an empty
    `address`, one given to local, an unknown name; for ray, the package missing or nothing answering at
    `address`. Returns where the jobs would run, in words, and whether all on this machine (its `runs_here`)."""
    _check_arguments(name, address)
    if name == "local":
        from optbench.executors.local import LocalExecutor

        return "the local executor (this machine, one job at a time)", LocalExecutor.runs_here
    from optbench.executors.ray import RayExecutor, check_available

    check_available(address)
    cluster = (
        "a local Ray runtime"
        if address is None
        else f"the Ray cluster at {address}; its nodes are checked when the run starts"
    )
    return f"the ray executor ({cluster})", RayExecutor.runs_here


def make_executor(name: str, address: str | None = None, threads: int = 1, gpu: bool = False) -> Executor:
    """The executor called `name`; `address` is the Ray cluster's (ray only; default: start a local runtime).
    `threads` is the recipe's [bench] threads and `gpu` whether it has a CUDA runtime: Ray refuses at once a
    cluster with no node to time them on (one with a GPU, for `gpu`)."""
    _check_arguments(name, address)
    if name == "local":
        from optbench.executors.local import LocalExecutor
        from optbench.job import run_in_subprocess

        return LocalExecutor(run_in_subprocess)
    from optbench.executors.ray import RayExecutor

    return RayExecutor(address, threads=threads, gpu=gpu)


def _check_arguments(name: str, address: str | None) -> None:
    """Refuse an unknown executor, and an address it cannot take."""
    if name not in EXECUTORS:
        raise OptbenchError(f"unknown executor {name!r}: use one of {list(EXECUTORS)}")
    if address == "":  # an unset variable's, say: taken for none, it started a local runtime instead
        raise OptbenchError(
            "--address is empty: give the Ray cluster's (host:6379, ray://head:10001 or auto), or leave it out"
        )
    if name == "local" and address is not None:
        raise OptbenchError("--address is the Ray cluster's: use it with --executor ray")
