"""Virtual environments for peers whose pins clash with optbench's own (optimum-onnx needs transformers<4.58).

An environment is built on first use under the cache, named by its requirements (so changing them builds a
new one), and reused after. It counts as built only once the marker file is written after every install
succeeded. A lock keeps two runs from building it at once; a build that fails or is interrupted removes its
folder, and one whose process was killed outright (its lock free, no marker) is removed by the next build.
Where the cache's filesystem refuses locks, no environment is built: two runs building one at once would
each remove the other's half-built folder, or mark a mix of both built, so the peer fails naming the fix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from optbench.atomic import write_json_atomic
from optbench.errors import StepFailed
from optbench.locks import LocksRefused, take_lock, try_lock

log = logging.getLogger(__name__)

READY = "optbench-env.json"
PROGRESS_PREFIXES = ("Collecting ", "Installing collected packages", "Successfully installed")
_failed_builds: dict[Path, str] = {}  # a build that failed once in this process is not retried by every chain


@dataclass(frozen=True)
class PeerEnv:
    """A built environment: its folder and what was asked of pip."""

    path: Path
    requirements: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def packages(self) -> dict[str, str]:
        """What the build installed, name -> version (recorded in the peer's artifact)."""
        return json.loads((self.path / READY).read_text())["packages"]


def env_path(root: Path, name: str, requirements: tuple[str, ...]) -> Path:
    """`<root>/<name>-<hash of this Python's version and the requirements>`."""
    identity = json.dumps([list(sys.version_info[:2]), list(requirements)])
    return root / f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def peer_env(root: Path, name: str, requirements: tuple[str, ...]) -> PeerEnv:
    """The environment with `requirements` installed, built now if it is not yet (a few minutes, once).

    A failure raises StepFailed naming the cause and the install log, which is kept beside the folder."""
    path = env_path(root, name, requirements)
    if (path / READY).is_file():
        return PeerEnv(path, requirements)
    if path in _failed_builds:
        raise StepFailed(_failed_builds[path])
    root.mkdir(parents=True, exist_ok=True)
    _remove_killed_builds(root)
    with _locked(root / f".{path.name}.lock", name):
        if not (path / READY).is_file():  # another run may have built it while this one waited
            try:
                _build(path, name, requirements)
            except StepFailed as exc:
                _failed_builds[path] = str(exc)
                raise
    return PeerEnv(path, requirements)


@contextmanager
def _locked(lock_file: Path, name: str) -> Iterator[None]:
    """Hold `lock_file`'s lock while the block runs (the kernel lets go when the process dies), waiting while
    another process holds it; where the filesystem refuses locks, StepFailed naming the fix."""
    with lock_file.open("w") as handle:
        try:
            take_lock(handle.fileno(), lock_file)
        except LocksRefused as exc:
            raise StepFailed(f"cannot build the {name} environment: {exc}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_killed_builds(root: Path) -> None:
    """Remove the environments in `root` whose build was killed (kill -9, out of memory): no marker, and no
    live process holds their lock. A live build holds it from start to end, so its folder is kept."""
    for lock_file in root.glob(".*.lock"):
        path = root / lock_file.name.removeprefix(".").removesuffix(".lock")
        if not path.is_dir() or (path / READY).is_file():
            continue
        with lock_file.open("w") as handle:  # closing it lets go of the lock
            if try_lock(handle.fileno()) and not (path / READY).is_file():
                log.info("removing %s: its build was cut short", path)
                shutil.rmtree(path, ignore_errors=True)


def _build(path: Path, name: str, requirements: tuple[str, ...]) -> None:
    shutil.rmtree(path, ignore_errors=True)  # what an interrupted build left
    install_log = path.with_name(f"{path.name}.install.log")
    log.info("building the %s environment in %s (first use only; a few minutes): %s", name, path, requirements)
    started = time.perf_counter()
    try:
        without_pip = [] if requirements else ["--without-pip"]  # nothing to install: no pip to bootstrap
        command = [sys.executable, "-m", "venv", *without_pip, str(path)]
        _logged(command, install_log, name, "create the virtual environment")
        if requirements:
            # -I: packages on this process's PYTHONPATH would read as installed and be skipped, and the
            # peer, run isolated, would then miss them; --no-input: a private index's prompt fails, never hangs
            pip = [str(path / "bin" / "python"), "-I", "-m", "pip", "install", "--disable-pip-version-check"]
            pip.append("--no-input")
            _logged([*pip, *requirements], install_log, name, "install " + " ".join(requirements))
        packages = _installed(path / "bin" / "python")
    except BaseException:  # a failure, or Ctrl-C: a half-built environment (GBs) is no use to anyone
        shutil.rmtree(path, ignore_errors=True)
        raise
    write_json_atomic(path / READY, {"requirements": list(requirements), "packages": packages})
    log.info("%s environment ready in %.0f s (%d packages)", name, time.perf_counter() - started, len(packages))


def _logged(command: list[str], install_log: Path, name: str, what: str) -> None:
    """Run `command`, its output appended to `install_log` and its progress lines logged; failing, StepFailed."""
    with install_log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # pip's lines as they come, not at the end
            )
        except OSError as exc:
            raise StepFailed(f"cannot build the {name} environment: could not {what} ({exc})") from exc
        last = ""
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sink.write(line)
                if line.strip():
                    last = line.strip()
                if line.startswith(PROGRESS_PREFIXES):
                    log.info("%s environment: %s", name, line.strip()[:160])
            code = process.wait()
        except BaseException:  # Ctrl-C: pip stops before the folder it installs into is removed
            process.kill()
            process.wait()
            raise
    if code != 0:
        raise StepFailed(
            f"cannot build the {name} environment: could not {what} (exit code {code}: {last[:300]}). "
            f"The full log is {install_log}; check the network or the package index pip uses, or the step's "
            "requirements"
        )


LIST_PACKAGES = (
    "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"
)


def _installed(python: Path) -> dict[str, str]:
    """The environment's own packages (-I: not the current folder's, nor the user's site-packages)."""
    done = subprocess.run(
        [str(python), "-I", "-c", LIST_PACKAGES],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise StepFailed(f"the new environment's Python does not run ({done.stderr.strip()[-300:]})")
    return dict(sorted(json.loads(done.stdout).items()))
