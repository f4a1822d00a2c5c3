"""Peers: the peer steps' configs and labels, their separate environment, their failures (recorded while the
run goes on), the torchao peer on the tiny model, and the speedup over the fastest peer in the table."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from conftest import _save_tiny_onnx, _write_fp16_weights_only
from report_fixtures import make_report
from test_cli import BENCH, write_recipe

from optbench.artifact import HF_FILES
from optbench.cli import main
from optbench.errors import OptbenchError, StepFailed
from optbench.failures import FailedJob, load_failures
from optbench.peers import is_peer, venv
from optbench.peers.optimum import PeerOptimumConfig, default_requirements
from optbench.peers.speedup import add_speedup_vs_peers, budget_words
from optbench.report import write_report
from optbench.runtimes import RuntimeSpec
from optbench.steps import parse_step
from optbench.steps.cache import run_step
from optbench.table import render, to_frame

# --- configs and labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "label"),
    [
        ({"name": "peer-optimum"}, "optimum-export"),
        ({"name": "peer-optimum", "level": "O2"}, "optimum-O2"),
        ({"name": "peer-optimum", "quantization": "dynamic"}, "optimum-int8-dynamic"),
        ({"name": "peer-optimum", "level": "O1", "quantization": "static"}, "optimum-O1-int8-static"),
        ({"name": "peer-optimum", "level": "O2", "label": "hf-o2"}, "hf-o2"),
        ({"name": "peer-torchao"}, "torchao-int8"),
    ],
)
def test_peer_steps_name_their_variants(table: dict, label: str) -> None:
    assert parse_step(table, "[[steps]] #1").label == label


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"level": "O4"}, r'level = "O4" is not one of the choices: expected "none" or "O1" or "O2" or "O3"'),
        ({"quantization": "int4"}, 'quantization = "int4" is not one of the choices'),
        ({"calibration_samples": 0}, "calibration_samples and calibration_batch_size must be 1 or more"),
        ({"calibration_batch_size": 0}, "calibration_samples and calibration_batch_size must be 1 or more"),
        ({"isa": "sse"}, 'isa = "sse" is not one of the choices'),
    ],
)
def test_bad_peer_optimum_settings_fail_when_the_recipe_is_read(table: dict, message: str) -> None:
    with pytest.raises(OptbenchError, match=message):
        parse_step({"name": "peer-optimum", **table}, "[[steps]] #1")


def test_peer_optimum_pins_optbench_s_own_torch_and_onnxruntime_and_a_concrete_isa() -> None:
    from importlib import metadata

    requirements = default_requirements()
    assert requirements[0] == "optimum-onnx==0.1.0"
    assert f"torch=={metadata.version('torch').split('+')[0]}" in requirements
    assert sum(r.startswith("onnxruntime==") for r in requirements) == 1
    assert PeerOptimumConfig().isa in ("arm64", "avx2", "avx512", "avx512_vnni")  # "auto" resolved: in the key


def test_peers_are_told_by_their_steps() -> None:
    assert is_peer(["peer-optimum"]) and is_peer(["peer-torchao", "onnx"])
    assert not is_peer([]) and not is_peer(["onnx", "quantize-dynamic"])


# --- the separate environment ------------------------------------------------------------------------


@pytest.fixture()
def no_failed_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(venv, "_failed_builds", {})


@pytest.fixture(scope="module")
def bare_env_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache whose peer-envs folder holds a built environment with nothing installed in it."""
    root = tmp_path_factory.mktemp("cache")
    venv.peer_env(root / "peer-envs", "optimum", ())
    return root


def test_an_environment_is_built_once_then_reused(
    bare_env_root: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    monkeypatch.setattr(venv, "_build", lambda *a: pytest.fail("a built environment was built again"))
    env = venv.peer_env(bare_env_root / "peer-envs", "optimum", ())
    assert env.python.is_file() and env.packages() == {}  # nothing asked, nothing installed (not even pip)
    assert env.path == venv.env_path(bare_env_root / "peer-envs", "optimum", ())
    assert venv.env_path(bare_env_root, "optimum", ("x==1",)) != venv.env_path(bare_env_root, "optimum", ("x==2",))


def test_an_environment_that_cannot_be_built_is_a_step_failure_tried_once(
    tmp_path: Path, no_failed_builds: None
) -> None:
    requirements = ("this is not a requirement!",)
    with pytest.raises(StepFailed, match=r"cannot build the optimum environment: could not install .*The full log is"):
        venv.peer_env(tmp_path, "optimum", requirements)
    path = venv.env_path(tmp_path, "optimum", requirements)
    assert not path.exists()  # nothing half-built is left to be taken for a built environment
    log = path.with_name(f"{path.name}.install.log")
    assert "not a requirement" in log.read_text()
    assert "/bin/python -I -m pip install --disable-pip-version-check --no-input" in log.read_text()  # isolated
    commands = log.read_text().count("$ ")
    with pytest.raises(StepFailed, match="cannot build the optimum environment"):
        venv.peer_env(tmp_path, "optimum", requirements)  # the next chain's peer step: no second build
    assert log.read_text().count("$ ") == commands


def test_an_interrupted_build_is_redone(tmp_path: Path, no_failed_builds: None) -> None:
    path = venv.env_path(tmp_path, "optimum", ())
    (path / "bin").mkdir(parents=True)  # what a build killed half-way leaves: no marker
    (path / "bin" / "half-installed").touch()
    env = venv.peer_env(tmp_path, "optimum", ())
    assert (env.path / venv.READY).is_file() and env.python.is_file()
    assert not (path / "bin" / "half-installed").exists()  # built afresh, not over what was left


def test_an_interrupted_build_leaves_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    def interrupted(command: list[str], *args) -> None:
        (Path(command[-1]) / "lib").mkdir(parents=True)  # `python -m venv PATH` under way
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(venv, "_logged", interrupted)
    with pytest.raises(KeyboardInterrupt):
        venv.peer_env(tmp_path, "optimum", ("x==1",))
    assert not venv.env_path(tmp_path, "optimum", ("x==1",)).exists()


def test_a_build_removes_the_environments_of_killed_builds_but_not_of_live_ones(
    tmp_path: Path, no_failed_builds: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Builds killed outright (kill -9) leave their folder without a marker, and their lock free; a live build
    holds its lock (here, this process's own open file of it) and keeps its folder."""
    import fcntl

    killed, live, removed = (venv.env_path(tmp_path, "optimum", (f"x=={n}",)) for n in (1, 2, 3))
    for path in (killed, live):
        (path / "bin").mkdir(parents=True)
        path.with_name(f".{path.name}.lock").touch()
    removed.with_name(f".{removed.name}.lock").touch()  # its folder removed by hand: no build to clear away
    with live.with_name(f".{live.name}.lock").open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with caplog.at_level(logging.INFO, logger="optbench.peers.venv"):
            venv.peer_env(tmp_path, "optimum", ())
    assert not killed.exists() and (live / "bin").is_dir()
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("removing")] == [
        f"removing {killed}: its build was cut short"
    ]


def test_an_environment_whose_build_ends_while_the_sweep_looks_at_it_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """The sweep for killed builds sees a folder without its marker, but by the time it takes the lock the other
    run has written the marker and let go: that environment is built, and the other run's peer runs from it."""
    other = venv.env_path(tmp_path, "optimum", ("x==1",))
    (other / "bin").mkdir(parents=True)
    other.with_name(f".{other.name}.lock").touch()

    def build_ends_now(handle: int) -> bool:
        (other / venv.READY).write_text('{"requirements": ["x==1"], "packages": {"x": "1"}}')
        return True

    monkeypatch.setattr(venv, "try_lock", build_ends_now)
    venv.peer_env(tmp_path, "optimum", ())
    assert (other / venv.READY).is_file() and (other / "bin").is_dir()


def test_on_a_filesystem_without_locks_no_environment_is_built_and_the_step_fails_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """Two runs building one environment unlocked would remove each other's half-built folder: the peer fails,
    as a step (the other chains go on), where the build died of an uncaught OSError traceback."""
    import errno

    def no_locks(*args) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    killed = venv.env_path(tmp_path, "optimum", ("x==1",))
    (killed / "bin").mkdir(parents=True)  # a killed build's: with no lock to take, nothing tells it is not live
    killed.with_name(f".{killed.name}.lock").touch()
    monkeypatch.setattr("fcntl.flock", no_locks)
    with pytest.raises(
        StepFailed,
        match=r"cannot build the optimum environment: the filesystem of .* refuses file "
        r"locks \(No locks available\): put the cache \(--cache or \$OPTBENCH_CACHE\) on one",
    ):
        venv.peer_env(tmp_path, "optimum", ())
    assert not venv.env_path(tmp_path, "optimum", ()).exists() and (killed / "bin").is_dir()


def test_a_new_python_gets_an_environment_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment's interpreter belongs to the Python that built it: after an upgrade, one keyed by the
    requirements alone would be reused and fail to start."""
    before = venv.env_path(Path("cache"), "optimum", ("x==1",))
    monkeypatch.setattr(venv, "sys", SimpleNamespace(version_info=(3, 99, 0)))
    assert venv.env_path(Path("cache"), "optimum", ("x==1",)) != before


def test_an_environment_another_run_built_while_this_one_waited_is_not_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """Two runs starting at once: the second waits for the lock, then finds the first's build done; building
    again would remove the folder the first run's peer is running from."""
    from contextlib import contextmanager

    path = venv.env_path(tmp_path, "optimum", ("x==1",))

    @contextmanager
    def waited(lock_file: Path, name: str):  # type: ignore[no-untyped-def]
        path.mkdir()
        (path / venv.READY).write_text('{"requirements": ["x==1"], "packages": {"x": "1"}}')  # the other run's build
        yield

    monkeypatch.setattr(venv, "_locked", waited)
    monkeypatch.setattr(venv, "_build", lambda *a: pytest.fail("a built environment was built again"))
    env = venv.peer_env(tmp_path, "optimum", ("x==1",))
    assert (env.path, env.packages()) == (path, {"x": "1"})


def test_a_new_environment_whose_python_does_not_run_fails_the_build() -> None:
    with pytest.raises(StepFailed, match="the new environment's Python does not run"):
        venv._installed(Path("/bin/false"))


def test_a_pip_killed_by_a_signal_fails_the_build(tmp_path: Path) -> None:
    """Killed by the out-of-memory killer, pip exits with a negative code: taken for success, the half-installed
    environment was marked built and reused by every later run."""
    with pytest.raises(StepFailed, match=r"could not install x==1 \(exit code -9: "):
        pip = ["sh", "-c", "echo Collecting x==1; kill -9 $$"]
        venv._logged(pip, tmp_path / "install.log", "optimum", "install x==1")


def test_a_built_environment_is_used_where_the_filesystem_refuses_locks(
    bare_env_root: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """Only a build takes the lock: a cache whose filesystem lost its locks still runs what was built there."""
    import errno

    def no_locks(*args) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("fcntl.flock", no_locks)
    assert venv.peer_env(bare_env_root / "peer-envs", "optimum", ()).python.is_file()


def test_a_build_killed_outright_is_removed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """kill -9 leaves the folder, no marker, and the lock file free: the next build finds it by its lock file."""
    with monkeypatch.context() as killed_build:
        killed_build.setattr(venv, "_build", lambda path, *args: (path / "bin").mkdir(parents=True))
        killed = venv.peer_env(tmp_path, "optimum", ("x==1",)).path
    assert killed.is_dir()
    venv.peer_env(tmp_path, "optimum", ())
    assert not killed.exists()


def test_an_environment_is_marked_built_only_once_pip_has_installed_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_failed_builds: None
) -> None:
    """A build killed outright while pip installs (kill -9, out of memory) keeps what is on disk: a marker already
    written would have every later run take the half-installed environment for a built one."""
    path = venv.env_path(tmp_path, "optimum", ("x==1",))
    marked_during: list[str] = []

    def fake_logged(command: list[str], install_log: Path, name: str, what: str) -> None:
        (path / "bin").mkdir(parents=True, exist_ok=True)  # `python -m venv`, then pip, each as if killed now
        if (path / venv.READY).exists():
            marked_during.append(what)

    monkeypatch.setattr(venv, "_logged", fake_logged)
    monkeypatch.setattr(venv, "_installed", lambda python: {"x": "1"})
    env = venv.peer_env(tmp_path, "optimum", ("x==1",))
    assert marked_during == [] and env.packages() == {"x": "1"}


def test_the_environment_s_package_list_is_its_own_in_name_order(
    bare_env_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package on PYTHONPATH (the run's, here) is not the environment's; the list is sorted, as the artifact
    records it."""
    (tmp_path / "elsewhere-1.0.dist-info").mkdir()
    (tmp_path / "elsewhere-1.0.dist-info" / "METADATA").write_text("Name: elsewhere\nVersion: 1.0\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    env = venv.peer_env(bare_env_root / "peer-envs", "optimum", ())
    assert venv._installed(env.python) == {}
    packages = venv._installed(Path(sys.executable))  # this environment's: many, listed in no order of their own
    assert len(packages) > 10 and list(packages) == sorted(packages)


def test_a_new_python_that_fails_says_how_its_error_ends(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho Traceback >&2; printf '%0400d' 0 >&2; echo ' the cause' >&2; exit 1\n")
    python.chmod(0o755)
    with pytest.raises(StepFailed) as failed:
        venv._installed(python)
    assert str(failed.value).endswith(" the cause)") and "Traceback" not in str(failed.value)


def test_pip_s_output_is_logged_by_its_progress_lines_and_a_failure_names_its_last_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long = "Collecting " + "x" * 200
    pip = ["sh", "-c", f"echo {long}; echo noise; echo ERROR: {'y' * 400}; echo; exit 1"]
    with caplog.at_level(logging.INFO, logger="optbench.peers.venv"), pytest.raises(StepFailed) as failed:
        venv._logged(pip, tmp_path / "install.log", "optimum", "install x")
    assert [r.getMessage() for r in caplog.records] == [f"optimum environment: {long[:160]}"]
    # the last line that says something, cut at 300 characters
    assert f"(exit code 1: ERROR: {'y' * 293}). The full log is {tmp_path / 'install.log'};" in str(failed.value)


def test_a_command_that_cannot_start_fails_the_build_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"cannot build the optimum environment: could not install x \(\[Errno 2\]"):
        venv._logged([str(tmp_path / "no-python")], tmp_path / "install.log", "optimum", "install x")


def test_pip_reads_nothing_from_the_terminal(tmp_path: Path) -> None:
    """A private index's password prompt (or any question) gets end of input: it fails, where it would wait."""
    saved = os.dup(0)
    read, write = os.pipe()
    os.write(write, b"typed at the terminal\n")
    os.close(write)
    os.dup2(read, 0)
    try:
        venv._logged([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], tmp_path / "log", "x", "y")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read)
    assert (tmp_path / "log").read_text().splitlines()[-1] == "''"


def test_an_interrupted_install_stops_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while pip installs: pip is killed before its folder is removed, not left writing into it."""
    started: list[subprocess.Popen[str]] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            started.append(self)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(venv.subprocess, "Popen", Recorded)
    monkeypatch.setattr(venv.log, "info", interrupted)
    with pytest.raises(KeyboardInterrupt):
        venv._logged(["sh", "-c", "echo Collecting x; sleep 5"], tmp_path / "log", "optimum", "install x")
    assert started[0].returncode == -signal.SIGKILL


def test_when_optimum_fails_the_step_fails_with_its_reason(
    bare_env_root: Path, tiny_artifact, reviews, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "elsewhere"))  # run_step's cache folder wins
    step = parse_step({"name": "peer-optimum", "level": "O2", "requirements": []}, "[[steps]] #1")
    with pytest.raises(
        StepFailed,
        match=r"peer-optimum \(optimum-O2\) failed: optimum export failed: ModuleNotFoundError: No module named",
    ):
        run_step(step.config, tiny_artifact, reviews, bare_env_root, label=step.label)
    assert not any(bare_env_root.glob("peer-optimum-*"))  # no output folder: nothing to mistake for a result
    assert not (tmp_path / "elsewhere").exists()  # the environment is the one in the cache the step was given


def test_a_peer_model_onnxruntime_refuses_fails_the_step_with_onnxruntime_s_reason(
    tmp_path: Path, tiny_artifact, reviews
) -> None:
    """The failure quoted open_session's error, whose advice (delete the file from the cache, re-run the onnx step)
    is for a cached file: optimum writes this one the same way on every run."""
    from optbench.peers import optimum

    folder = _save_tiny_onnx(tmp_path / "peer").path
    _write_fp16_weights_only(folder / "model.onnx")
    with pytest.raises(StepFailed) as raised:
        optimum._check_runs(folder, tiny_artifact, reviews)
    message = str(raised.value)
    assert message.startswith("peer-optimum wrote a model onnxruntime cannot load (") and "Type Error" in message
    assert "delete" not in message and "re-run" not in message


@pytest.mark.skipif(
    os.environ.get("OPTBENCH_SLOW_TESTS") != "1",
    reason="builds optimum-onnx's 1.3 GB environment (about 2 minutes, over the suite's time budget): "
    "OPTBENCH_SLOW_TESTS=1 runs it; recipes/peers.toml's committed run covers the same path",
)
def test_optimum_s_own_pipeline_runs_in_its_own_environment(tmp_path: Path, tiny_artifact, reviews) -> None:
    """The real peer: optbench builds optimum-onnx's environment (about 1.5 minutes, torch from the local
    wheel), then optimum exports, fuses and statically quantizes the tiny model there."""
    cases = [({"level": "O2"}, "Attention"), ({"quantization": "static", "calibration_samples": 32}, "QuantizeLinear")]
    for table, operator in cases:
        step = parse_step({"name": "peer-optimum", **table}, "[[steps]] #1")
        out = run_step(step.config, tiny_artifact, reviews, tmp_path / "steps", label=step.label)
        assert out.format == "onnx" and out.details["operators"].get(operator, 0) > 0
        assert out.details["versions"]["transformers"].startswith("4.")  # optimum's pin, not optbench's 5
        assert sorted(p.name for p in out.path.iterdir() if p.suffix == ".onnx") == ["model.onnx"]
    assert out.variant == "baseline+optimum-int8-static" and is_peer(s.name for s in out.lineage)


def test_a_worker_stopped_at_its_timeout_leaves_no_intermediate_models(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker is killed at the timeout (no cleanup of its own runs): its scratch is in the step's temporary
    folder, which the step removes."""
    from optbench.peers import optimum

    seen = tmp_path / "scratch-was"
    hanging = tmp_path / "hanging_worker.py"
    hanging.write_text(
        "import json, sys, time; from pathlib import Path\n"
        "work = Path(json.loads(Path(sys.argv[1]).read_text())['scratch'])\n"
        "(work / 'export').mkdir(parents=True); (work / 'export' / 'model.onnx').write_bytes(b'an export')\n"
        f"Path({str(seen)!r}).write_text(str(work))\n"
        "time.sleep(600)\n"
    )
    env = SimpleNamespace(python=Path(sys.executable), path=tmp_path / "env")
    monkeypatch.setattr(optimum, "peer_env", lambda *args: env)
    monkeypatch.setattr(optimum, "WORKER", hanging)
    monkeypatch.setattr(optimum, "TIMEOUT_S", 3)
    where = re.escape(str(Path(sys.executable).parent.parent))  # the environment's folder, not its bin
    with pytest.raises(StepFailed, match=rf"gave no result after 3 s .*: run hanging_worker\.py by hand in {where} "):
        optimum.apply(PeerOptimumConfig(level="O2"), tiny_artifact, reviews, tmp_path / "out")
    assert seen.is_file() and not Path(seen.read_text()).exists()


def test_the_worker_is_handed_the_files_a_checkpoint_is_read_with(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker cannot import optbench: it copies the vocabulary and config files its job names, artifact.HF_FILES
    (it kept a copy of the list, which a new tokenizer file would have left behind)."""
    from optbench.peers import optimum

    seen = tmp_path / "hf-files.json"
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import json, sys; from pathlib import Path\n"
        f"Path({str(seen)!r}).write_text(json.dumps(json.loads(Path(sys.argv[1]).read_text())['hf_files']))\n"
        "sys.exit(1)\n"
    )
    env = SimpleNamespace(python=Path(sys.executable), path=tmp_path / "env")
    monkeypatch.setattr(optimum, "peer_env", lambda *args: env)
    monkeypatch.setattr(optimum, "WORKER", worker)
    with pytest.raises(StepFailed, match="exit code 1"):
        optimum.apply(PeerOptimumConfig(level="O2"), tiny_artifact, reviews, tmp_path / "out")
    assert json.loads(seen.read_text()) == list(HF_FILES)


@pytest.mark.parametrize(
    ("quantization", "asked", "calibration"),
    [("static", 12, {"samples": 12, "batch_size": 4}), ("static", 100_000, "all"), ("dynamic", 12, None)],
)
def test_the_manifest_says_how_many_rows_calibrated_optimum_s_static_int8(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, quantization, asked, calibration
) -> None:
    """As quantize-static's manifest does: the report of a peer calibrated on fewer rows than asked (a small train
    split) said nothing of it. The worker here copies a ready model; the rows it was handed are what it counts."""
    from optbench.peers import optimum

    ready = _save_tiny_onnx(tmp_path / "ready").path / "model.onnx"
    _ready_worker(tmp_path, monkeypatch, ready, {"seconds": {}, "versions": {}, "operators": {}})
    config = PeerOptimumConfig(quantization=quantization, calibration_samples=asked, calibration_batch_size=4)
    out = optimum.apply(config, tiny_artifact, reviews, tmp_path / "out")
    if calibration == "all":  # more than the train split holds: its every row, as calibration_texts warns
        calibration = {"samples": len(reviews.train), "batch_size": 4}
    expected = None if calibration is None else {**calibration, "split": "train"}
    assert out.details.get("calibration") == expected


def test_the_worker_does_not_import_optbench() -> None:
    source = (Path(sys.modules["optbench.peers.optimum"].__file__).with_name("optimum_worker.py")).read_text()
    assert "import optbench" not in source and "from optbench" not in source


@pytest.mark.parametrize(
    ("machine", "flags", "isa"),
    [
        ("x86_64", ["avx2", "avx512f", "avx512_vnni"], "avx512_vnni"),
        ("x86_64", ["avx2", "avx512f"], "avx512"),
        ("x86_64", ["avx2"], "avx2"),
        ("aarch64", [], "arm64"),
        ("arm64", [], "arm64"),
        ("ARM64", [], "arm64"),  # Windows on ARM
    ],
)
def test_optimum_quantizes_with_the_preset_of_this_machine_s_instruction_set(
    monkeypatch: pytest.MonkeyPatch, machine: str, flags: list[str], isa: str
) -> None:
    """A VNNI machine given the plain AVX-512 preset (or an ARM one the x86 preset) measures a handicapped peer."""
    from optbench.peers import optimum

    monkeypatch.setattr(optimum.platform, "machine", lambda: machine)
    monkeypatch.setattr(optimum, "cpu_flags", lambda: flags)
    assert optimum.detect_isa() == isa and PeerOptimumConfig().isa == isa


def _worker_job(tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, config) -> dict:
    """The job `apply` hands the worker for `config` (a worker that only records it)."""
    from optbench.peers import optimum

    jobs: list[dict] = []

    def fake_worker(python: Path, job_path: Path, config: PeerOptimumConfig) -> None:
        jobs.append(job := json.loads(job_path.read_text()))
        Path(job["result"]).write_text(json.dumps({"seconds": {}, "versions": {}, "operators": {}}))

    monkeypatch.setattr(optimum, "peer_env", lambda *args: venv.PeerEnv(tmp_path / "env", ()))
    monkeypatch.setattr(optimum, "_run_worker", fake_worker)
    monkeypatch.setattr(optimum, "_check_runs", lambda *args: None)
    tmp_path.mkdir(parents=True, exist_ok=True)  # the output folder a worker would have written
    optimum.apply(config, tiny_artifact, reviews, tmp_path)
    return jobs[0]


def test_the_worker_is_handed_the_step_s_settings(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker optimizes when `level` is truthy: the string "none" would have it run ORTOptimizer at a level
    optimum does not have, failing every plain export and quantize-only peer."""
    plain = _worker_job(tmp_path / "a", tiny_artifact, reviews, monkeypatch, PeerOptimumConfig(quantization="dynamic"))
    assert plain["level"] is None and plain["quantization"] == "dynamic"
    config = PeerOptimumConfig("O2", "static", "avx2", False, calibration_samples=8, calibration_batch_size=4)
    job = _worker_job(tmp_path / "b", tiny_artifact, reviews, monkeypatch, config)
    assert (job["level"], job["isa"], job["per_channel"]) == ("O2", "avx2", False)
    assert (job["calibration_batch_size"], len(job["calibration_texts"])) == (4, 8)
    assert job["max_length"] == reviews.max_length


def _failing_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, python: Path = Path(sys.executable)):
    """Make the step's worker the script `body`, run by `python`."""
    from optbench.peers import optimum

    worker = tmp_path / "worker.py"
    worker.write_text(body)
    monkeypatch.setattr(optimum, "peer_env", lambda *args: SimpleNamespace(python=python, path=tmp_path / "env"))
    monkeypatch.setattr(optimum, "WORKER", worker)


def _ready_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path, result: dict) -> None:
    """Make the step's worker a script that copies `model` into its output and reports `result`, as optimum's
    pipeline would, exiting 0."""
    _failing_worker(
        tmp_path,
        monkeypatch,
        "import json, shutil, sys; from pathlib import Path\n"
        "job = json.loads(Path(sys.argv[1]).read_text())\n"
        f"Path(job['output']).mkdir(parents=True); shutil.copy({str(model)!r}, Path(job['output']) / 'model.onnx')\n"
        f"Path(job['result']).write_text(json.dumps({result!r}))\n",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # a crash outside optimum's stages: the traceback's last line is the reason, not "Traceback (most recent...)"
        ("raise RuntimeError('the job says nothing')\n", r"failed: RuntimeError: the job says nothing$"),
        # killed by a signal (out of memory): a negative exit code, and no result file to read
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n", r"failed: exit code -9$"),
    ],
)
def test_a_worker_that_dies_fails_the_step_with_why(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, body: str, reason: str
) -> None:
    from optbench.peers import optimum

    _failing_worker(tmp_path, monkeypatch, body)
    with pytest.raises(StepFailed, match=r"^peer-optimum \(optimum-O2\) " + reason):
        optimum.apply(PeerOptimumConfig(level="O2"), tiny_artifact, reviews, tmp_path / "out")


def test_an_environment_whose_python_is_gone_fails_the_step_naming_the_fix(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its base Python removed or upgraded: the step names the folder to delete, not an OSError traceback."""
    from optbench.peers import optimum

    gone = tmp_path / "env" / "bin" / "python"
    _failing_worker(tmp_path, monkeypatch, "", python=gone)
    with pytest.raises(StepFailed, match=rf"cannot start {gone} .*: delete {tmp_path / 'env'} to have it built again"):
        optimum.apply(PeerOptimumConfig(), tiny_artifact, reviews, tmp_path / "out")


def test_the_worker_runs_isolated_and_offline(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer's interpreter runs with -I (optbench's PYTHONPATH or the user's site-packages would put other
    releases under optimum's pins) and with the Hub offline (a checkpoint path must not become a download)."""
    from optbench.peers import optimum

    seen = tmp_path / "seen.json"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("OPTBENCH_TEST_MARK", "kept")
    body = (
        "import json, os, sys; from pathlib import Path\n"
        "keys = ('HF_HUB_OFFLINE', 'TRANSFORMERS_VERBOSITY', 'TOKENIZERS_PARALLELISM', 'OPTBENCH_TEST_MARK')\n"
        f"Path({str(seen)!r}).write_text(json.dumps([sys.flags.isolated, [os.environ.get(k) for k in keys]]))\n"
        "sys.exit(1)\n"
    )
    _failing_worker(tmp_path, monkeypatch, body)
    with pytest.raises(StepFailed, match="exit code 1"):
        optimum.apply(PeerOptimumConfig(level="O2"), tiny_artifact, reviews, tmp_path / "out")
    assert json.loads(seen.read_text()) == [1, ["1", "error", "false", "kept"]]


def test_a_failed_worker_is_told_by_its_own_last_line_not_by_optimum_s_logging(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason is the last stderr line starting "optimum " (the worker's `_stage` line): not an earlier line of
    optimum's own that starts so, nor a later warning from "optimum-onnx" or another package."""
    from optbench.peers import optimum

    lines = [
        "optimum export: a note logged before the failure",
        "optimum quantize failed: ValueError: no range for /MatMul_3",
        "optimum-onnx 0.1.0: a warning printed at exit",
    ]
    text = "\n".join(lines)
    _failing_worker(tmp_path, monkeypatch, f"import sys; print({text!r}, file=sys.stderr); sys.exit(1)\n")
    with pytest.raises(StepFailed, match=r"failed: optimum quantize failed: ValueError: no range for /MatMul_3$"):
        optimum.apply(PeerOptimumConfig(level="O2"), tiny_artifact, reviews, tmp_path / "out")


def test_a_peer_model_that_gives_one_row_for_a_batch_fails_the_step(tmp_path: Path, tiny_artifact, reviews) -> None:
    """The check counts rows as well as labels: a model whose logits do not follow its batch would be scored
    against the first row's label only."""
    import onnx

    from optbench.peers import optimum

    folder = _save_tiny_onnx(tmp_path / "peer").path
    model = onnx.load(str(folder / "model.onnx"))
    (mean,) = [node for node in model.graph.node if node.op_type == "ReduceMean"]
    (axes,) = [attribute for attribute in mean.attribute if attribute.name == "axes"]
    axes.ints[:] = [0, 1]  # the mean over the whole batch: one row of logits
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(StepFailed, match=r"logits of shape \(1, 2\), expected \(8, 2\)"):
        optimum._check_runs(folder, tiny_artifact, reviews)


def test_a_peer_model_with_the_wrong_number_of_labels_fails_the_step(tmp_path: Path, tiny_artifact, reviews) -> None:
    """Its logits would be scored against labels they do not stand for."""
    from dataclasses import replace

    from optbench.peers import optimum

    folder = _save_tiny_onnx(tmp_path / "peer").path  # two logits a row
    three = replace(tiny_artifact, label_names=("fresh", "rotten", "stale"))
    with pytest.raises(StepFailed, match=r"logits of shape \(8, 2\), expected \(8, 3\)"):
        optimum._check_runs(folder, three, reviews)


def test_a_worker_that_succeeds_with_a_model_of_other_labels_fails_the_step(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """optimum exiting 0 is not enough: its model must run in optbench's onnxruntime with one logit per label, or
    the peer is measured with a model whose logits are scored against labels they do not stand for."""
    from dataclasses import replace

    from optbench.peers import optimum

    two = _save_tiny_onnx(tmp_path / "ready").path / "model.onnx"  # two logits a row
    _ready_worker(tmp_path, monkeypatch, two, {"seconds": {}, "versions": {}, "operators": {}})
    three = replace(tiny_artifact, label_names=("fresh", "rotten", "stale"))
    with pytest.raises(StepFailed, match=r"logits of shape \(8, 2\), expected \(8, 3\)"):
        optimum.apply(PeerOptimumConfig(level="O2"), three, reviews, tmp_path / "out")


def test_the_peer_s_artifact_records_its_choices_and_what_optimum_reported(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report of the peer must say what was measured: its level, quantization, preset and per_channel (the
    step's config in the lineage), and the versions, output operators and stage seconds the worker reported."""
    from optbench.peers import optimum

    reported = {"seconds": {"export": 1.5}, "versions": {"optimum": "2.1.0"}, "operators": {"QuantizeLinear": 3}}
    _ready_worker(tmp_path, monkeypatch, _save_tiny_onnx(tmp_path / "ready").path / "model.onnx", reported)
    out = optimum.apply(PeerOptimumConfig("O2", "dynamic", "avx2", False), tiny_artifact, reviews, tmp_path / "out")
    step = out.lineage[-1]
    assert step.name == "peer-optimum"
    choices = ("level", "quantization", "isa", "per_channel")
    assert [step.config[key] for key in choices] == ["O2", "dynamic", "avx2", False]
    assert (out.details["peer"], out.details["isa"]) == ("optimum-onnx", "avx2")
    assert out.format == "onnx" and out.details["environment"] == str(tmp_path / "env")  # onnxruntime measures it
    assert {key: out.details[key] for key in reported} == reported


def _one_node_model(folder: Path, file: str, operator: str, count: int = 1) -> tuple[Path, str]:
    """An ONNX model of one `operator` node (`count` in a row when given), written as `folder / file`: a stand-in
    for an optimum stage's model."""
    import onnx
    from onnx import TensorProto, helper

    names = ["x", *(f"t{i}" for i in range(1, count)), "y"]
    nodes = [helper.make_node(operator, [a], [b]) for a, b in pairwise(names)]
    tensors = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, operator, tensors[:1], tensors[1:])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph), folder / file)
    return folder, file


def test_the_worker_hands_back_its_last_stage_s_model_with_the_export_s_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each optimum stage writes its own model in its own folder: the one handed back must be the last stage's (an
    INT8 peer measured as its plain export would be a handicapped peer under the wrong name), its operators counted,
    and the vocabulary and config the export wrote beside it. optimum itself is faked: its stages write one-node
    models named by their operator."""
    from importlib import metadata

    import onnx

    from optbench.peers import optimum_worker as worker

    def export(source: Path, folder: Path) -> tuple[Path, str]:
        folder.mkdir(parents=True)
        (folder / "vocab.txt").write_text("the export's vocabulary\n")
        (folder / "tokenizer.json").write_text("{}")
        return _one_node_model(folder, "model.onnx", "Identity")

    monkeypatch.setattr(worker, "_export", export)
    monkeypatch.setattr(
        worker, "_optimize", lambda folder, file, level, work: _one_node_model(work / "o", f"o-{file}", "Relu")
    )
    monkeypatch.setattr(
        worker, "_quantize", lambda folder, file, job, work: _one_node_model(work / "q", f"q-{file}", "Sign", count=2)
    )
    cases = [(None, "none", "Identity"), ("O2", "none", "Relu"), ("O2", "dynamic", "Sign"), (None, "static", "Sign")]
    for level, quantization, operator in cases:
        out = tmp_path / f"{level}-{quantization}"
        job = {"source": "the checkpoint", "output": str(out), "scratch": str(tmp_path / f"{out.name}-work")}
        result = worker.run(
            {**job, "level": level, "quantization": quantization, "hf_files": ["vocab.txt", "x.json", "tokenizer.json"]}
        )
        count = 2 if operator == "Sign" else 1  # the operators counted, not only named
        assert result["operators"] == {operator: count}
        assert [node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node] == [operator] * count
        assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "tokenizer.json", "vocab.txt"]
        stages = {"export"} | ({"optimize"} if level else set()) | ({"quantize"} if quantization != "none" else set())
        assert set(result["seconds"]) == stages
    assert sorted(result["versions"]) == ["onnx", "onnxruntime", "optimum", "optimum-onnx", "torch", "transformers"]
    assert result["versions"]["onnx"] == metadata.version("onnx")
    assert result["versions"]["optimum"] is None  # not installed here: recorded as missing, not as a version


def test_the_worker_writes_its_result_where_the_job_says_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step reads the result file once the worker exits 0; optimum itself is faked."""
    from optbench.peers import optimum_worker as worker

    reported = {"seconds": {"export": 1.0}, "versions": {}, "operators": {"MatMul": 2}}
    monkeypatch.setattr(worker, "run", lambda job: reported if job["source"] == "the checkpoint" else {})
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"source": "the checkpoint", "result": str(tmp_path / "result.json")}))
    assert worker.main([str(job)]) == 0
    assert json.loads((tmp_path / "result.json").read_text()) == reported


def _stand_in_optimum(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Put a stand-in for optimum-onnx where the worker imports it (optimum is not installed in optbench's
    environment) and return what the worker calls it with. Its stages write one-node models named as optimum-onnx
    0.1.0 names them (`model_optimized.onnx`, `model_quantized.onnx`), beside the tokenizer and config they copy
    from their input's folder, as optimum's do; `written` lists every model file it wrote."""
    calls: dict[str, Any] = {"written": []}

    def write(folder: Path, file: str, operator: str, beside: Path | None = None) -> None:
        _one_node_model(folder, file, operator)
        calls["written"].append(folder / file)
        for other in beside.iterdir() if beside else ():
            if other.suffix != ".onnx":
                shutil.copy(other, folder)

    class Model:  # ORTModelForSequenceClassification
        def __init__(self, source: Path) -> None:
            self.source = source

        @classmethod
        def from_pretrained(cls, source: Path, export: bool) -> Model:
            calls["export"] = (Path(source), export)
            return cls(Path(source))

        def save_pretrained(self, folder: Path) -> None:
            write(Path(folder), "model.onnx", "Identity")
            shutil.copy(self.source / "config.json", folder)

    class Optimizer:  # ORTOptimizer
        @classmethod
        def from_pretrained(cls, folder: Path, file_names: list[str]) -> Optimizer:
            (calls["optimize_input"],) = [Path(folder) / name for name in file_names]
            return cls()

        def optimize(self, save_dir: Path, optimization_config: SimpleNamespace) -> None:
            calls["level"] = optimization_config.level
            source = calls["optimize_input"]
            write(Path(save_dir), f"{source.stem}_optimized.onnx", "Attention", source.parent)

    class Quantizer:  # ORTQuantizer
        @classmethod
        def from_pretrained(cls, folder: Path, file_name: str) -> Quantizer:
            calls["quantize_input"] = Path(folder) / file_name
            return cls()

        def fit(self, dataset, calibration_config, operators_to_quantize, batch_size, onnx_augmented_model_name):
            calls["fit"] = (dataset, calibration_config, operators_to_quantize, batch_size)
            augmented = Path(onnx_augmented_model_name)
            write(augmented.parent, augmented.name, "ReduceMax")
            return {"ranges": "from fit"}

        def quantize(self, save_dir: Path, quantization_config, calibration_tensors_range) -> None:
            calls["ranges"] = calibration_tensors_range
            source = calls["quantize_input"]
            write(Path(save_dir), f"{source.stem}_quantized.onnx", "QuantizeLinear", source.parent)

    def preset(isa: str):
        def config(**kwargs: Any) -> SimpleNamespace:
            calls["preset"] = (isa, kwargs)
            return SimpleNamespace(operators_to_quantize=["MatMul", "Add"])

        return config

    optimum, ort, configuration = (
        ModuleType(n) for n in ("optimum", "optimum.onnxruntime", "optimum.onnxruntime.configuration")
    )
    ort.ORTModelForSequenceClassification, ort.ORTOptimizer, ort.ORTQuantizer = Model, Optimizer, Quantizer
    configuration.AutoOptimizationConfig = SimpleNamespace(
        with_optimization_level=lambda level: SimpleNamespace(level=level)
    )
    configuration.AutoQuantizationConfig = SimpleNamespace(**{isa: preset(isa) for isa in ("arm64", "avx2", "avx512")})
    configuration.CalibrationConfig = SimpleNamespace
    optimum.onnxruntime, ort.configuration = ort, configuration
    for module in (optimum, ort, configuration):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return calls


@pytest.mark.parametrize(("level", "quantization"), [("O1", "static"), (None, "dynamic")])
def test_the_worker_runs_optimum_s_stages_as_its_job_says(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, level, quantization
) -> None:
    """Only the opt-in slow test ran optimum itself, and it checks an operator or two: a worker that optimized at
    another level, quantized the export instead of the optimized model, took another preset, per_channel or
    reduce_range, calibrated on other rows (fewer, uncut at max_length), with another method, on other operators,
    or threw the ranges away, or wrote its intermediate models outside the step's scratch folder (the augmented
    model into the user's working folder) passed every test while measuring another peer than the one named."""
    from onnxruntime.quantization import CalibrationMethod

    from optbench.encoding import load_tokenizer
    from optbench.peers import optimum_worker as worker

    calls = _stand_in_optimum(monkeypatch)
    monkeypatch.chdir(tmp_path)
    tokenizer = load_tokenizer(tiny_artifact.path)
    lengths = [len(ids) for ids in tokenizer(reviews.train.texts)["input_ids"]]
    texts = [text for text, length in zip(reviews.train.texts, lengths, strict=True) if length > 8][:9]
    texts.append("Great.")  # shorter than max_length: its batch of 4 pads it to the batch's longest
    static = quantization == "static"
    job = {"source": str(tiny_artifact.path), "output": str(tmp_path / "out"), "scratch": str(tmp_path / "scratch")}
    job |= {"level": level, "quantization": quantization, "isa": "avx2", "per_channel": False}
    job |= {"calibration_texts": texts if static else [], "calibration_batch_size": 4, "max_length": 8}
    assert worker.run({**job, "hf_files": list(HF_FILES)})["operators"] == {"QuantizeLinear": 1}
    export = tmp_path / "scratch" / "export" / "model.onnx"
    assert calls["export"] == (tiny_artifact.path, True) and calls.get("level") == level
    assert calls["quantize_input"] == (tmp_path / "scratch" / "optimized" / "model_optimized.onnx" if level else export)
    assert calls["preset"] == ("avx2", {"is_static": static, "per_channel": False})
    assert calls["ranges"] == ({"ranges": "from fit"} if static else None)
    assert all(path.is_relative_to(tmp_path / "scratch") for path in calls["written"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scratch"]
    if static:  # ten rows in their order, cut at max_length, padded in batches of 4, on the preset's operators
        rows, calibration, operators, batch_size = calls["fit"]
        assert len(texts) == 10  # nine longer than max_length: uncut rows would be told apart
        batches = [tokenizer(texts[s : s + 4], max_length=8, truncation=True, padding="longest") for s in (0, 4, 8)]
        assert [row["input_ids"] for row in rows] == [ids for batch in batches for ids in batch["input_ids"]]
        assert len(rows[-1]["input_ids"]) == 8  # "Great." padded: rows tokenized one at a time would not be
        assert (calibration.method, calibration.dataset_num_samples) == (CalibrationMethod.MinMax, 10)
        assert (operators, batch_size) == (["MatMul", "Add"], 4)
    else:
        assert "fit" not in calls


def test_a_failing_optimum_stage_exits_1_with_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """The step quotes the worker's last stderr line that starts with "optimum ": a message of several lines
    (onnxruntime's often are) lost what followed its first line, or had a line of its own quoted instead."""
    from optbench.peers import optimum_worker as worker

    def fails() -> None:
        raise ValueError("cannot quantize\n  optimum node /MatMul_3: no range")

    with pytest.raises(SystemExit) as exited:
        worker._stage("quantize", {}, fails)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == "optimum quantize failed: ValueError: cannot quantize optimum node /MatMul_3: no range\n"

    def fails_at_length() -> None:
        raise RuntimeError("word " * 200)

    with pytest.raises(SystemExit):
        worker._stage("export", {}, fails_at_length)
    assert capsys.readouterr().err == "optimum export failed: RuntimeError: " + "word " * 100 + "\n"  # cut at 500

    def fails_without_words() -> None:
        raise KeyError

    with pytest.raises(SystemExit):
        worker._stage("fit", {}, fails_without_words)
    assert capsys.readouterr().err == "optimum fit failed: KeyError\n"  # not "KeyError: KeyError"


def test_a_failed_peer_step_is_recorded_and_the_rest_of_the_run_goes_on(
    tmp_path: Path, tiny_classifier: Path, reviews_csv: Path, jobs_in_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # the peer's environment gets nothing installed (built at once; one with pip takes seconds), so optimum's
    # export fails in it, as in test_when_optimum_fails_the_step_fails_with_its_reason
    chains = (
        '[[chains]]\n[[chains.steps]]\nname = "peer-optimum"\nlevel = "O2"\nrequirements = []\n'
        '[[chains]]\n[[chains.steps]]\nname = "onnx"\nexporter = "torchscript"\n'
    )
    bench = BENCH.replace('seq_lens = [16, "data"]', "seq_lens = [16]").replace(
        "[bench]", '[bench]\nruntimes = ["torch", "onnxruntime"]\naa_check = false'
    )
    recipe = write_recipe(tmp_path, tiny_classifier, reviews_csv, extra=chains, bench=bench)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "failed: baseline+optimum-O2, step peer-optimum: peer-optimum (optimum-O2) failed: optimum export" in err
    (run,) = (tmp_path / "results" / "tiny").iterdir()
    assert sorted(p.name for p in run.glob("*.json")) == [
        "baseline+onnx.onnxruntime-cpu-fp32.json",
        "baseline.torch-cpu-fp32.json",
        "failures.json",
    ]
    (failure,) = load_failures(run)
    assert (failure.variant, failure.runtime, failure.job) == ("baseline+optimum-O2", "", "step peer-optimum")
    assert (tmp_path / "cache" / "peer-envs").is_dir()  # --cache holds the peers' environments too


# --- torchao ---------------------------------------------------------------------------------------


def test_torchao_peer_writes_the_quantized_checkpoint(tmp_path: Path, tiny_artifact, reviews) -> None:
    pytest.importorskip("torchao")
    step = parse_step({"name": "peer-torchao"}, "[[steps]] #1")
    out = run_step(step.config, tiny_artifact, reviews, tmp_path, label=step.label)
    assert out.variant == "baseline+torchao-int8" and out.format == "hf"
    assert is_peer(s.name for s in out.lineage)
    assert out.details["peer"] == "torchao" and out.details["validation_agreement"] >= 0.9
    assert json.loads((out.path / "optbench-quantization.json").read_text())["library"] == "torchao"


def test_when_torchao_fails_the_step_fails_with_its_reason(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optbench.steps import torch_int8

    def missing(package: str, needed_for: str, **_: str) -> None:
        raise OptbenchError(f"{needed_for} needs the {package} package: pip install torchao")

    monkeypatch.setattr(torch_int8, "require_package", missing)
    step = parse_step({"name": "peer-torchao"}, "[[steps]] #1")
    with pytest.raises(StepFailed, match="peer-torchao failed: peer-torchao needs the torchao package"):
        run_step(step.config, tiny_artifact, reviews, tmp_path, label=step.label)


@pytest.mark.parametrize(
    ("error", "reason"),
    [(RuntimeError("no kernel for\n  this layer"), "no kernel for this layer"), (RuntimeError(), "RuntimeError")],
)
def test_a_torchao_failure_reads_as_one_line_naming_at_least_its_type(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    from optbench.steps import torch_int8

    def fails(*args: Any) -> None:
        raise error

    monkeypatch.setattr(torch_int8, "write_torchao_int8", fails)
    step = parse_step({"name": "peer-torchao"}, "[[steps]] #1")
    with pytest.raises(StepFailed, match=rf"^peer-torchao failed: {reason}$"):
        run_step(step.config, tiny_artifact, reviews, tmp_path, label=step.label)


# --- the speedup over the fastest peer -------------------------------------------------------------


def _frame(drops: dict[str, float], p50s: dict[str, float]) -> pd.DataFrame:
    """A run's table: variants named `peer-*` are peers; each has a p50 and an accuracy drop."""
    rows = []
    for variant, p50 in p50s.items():
        rows.append(
            {
                "recipe": "r",
                "run_id": "1",
                "machine": "m",
                "device": "cpu",
                "batch_size": 1,
                "seq_len": 128,
                "variant": variant,
                "runtime": "onnxruntime",
                "p50_ms": p50,
                "accuracy_drop": drops[variant],
                "peer": variant.startswith("peer-"),
            }
        )
    return pd.DataFrame(rows)


def test_speedup_is_over_the_fastest_peer_within_the_budget() -> None:
    frame = _frame(
        {"ours": 0.3, "ours-lossy": 2.0, "peer-fast-lossy": 3.0, "peer-a": 0.5, "peer-b": 0.9},
        {"ours": 10.0, "ours-lossy": 5.0, "peer-fast-lossy": 4.0, "peer-a": 15.0, "peer-b": 20.0},
    )
    out = add_speedup_vs_peers(frame, budget_points=1.0).set_index("variant")
    assert out.loc["ours", "speedup_vs_peer"] == pytest.approx(1.5)  # peer-a: the fastest within 1 point
    assert (out["fastest_peer"] == "peer-a on onnxruntime").all()  # every row of the run names its bar
    assert pd.isna(out.loc["ours-lossy", "speedup_vs_peer"])  # beyond the budget: no claim
    assert out[out["peer"]]["speedup_vs_peer"].isna().all()
    loose = add_speedup_vs_peers(frame, budget_points=5.0).set_index("variant")
    assert loose.loc["ours", "speedup_vs_peer"] == pytest.approx(0.4)  # now the lossy peer counts: 4 / 10


def test_each_machine_and_shape_has_its_own_fastest_peer() -> None:
    here = _frame({"ours": 0.0, "peer-a": 0.0, "peer-b": 0.0}, {"ours": 10.0, "peer-a": 20.0, "peer-b": 30.0})
    there = here.assign(machine="n", p50_ms=[10.0, 40.0, 15.0])  # on machine n, peer-b is the faster
    longer = here.assign(seq_len="data", p50_ms=[5.0, float("nan"), 25.0])  # peer-a has no p50 at this shape
    out = add_speedup_vs_peers(pd.concat([here, there, longer]), budget_points=1.0)  # an index with repeats
    ours = out[out["variant"] == "ours"].set_index(["machine", "seq_len"])
    assert ours.loc[("m", 128), "speedup_vs_peer"] == pytest.approx(2.0)  # peer-a, 20 / 10
    assert ours.loc[("n", 128), "speedup_vs_peer"] == pytest.approx(1.5)  # peer-b, 15 / 10
    assert ours.loc[("m", "data"), "speedup_vs_peer"] == pytest.approx(5.0)  # peer-b, 25 / 5
    assert ours.loc[("n", 128), "fastest_peer"] == "peer-b on onnxruntime"
    from optbench.table import _fastest_peers

    lines = _fastest_peers(out, budget_points=1.0)  # one run on two machines: each line says where
    assert "peer-b on onnxruntime, p50 15.00 ms, at batch 1 x 128 on cpu, machine n (within 1 point" in "\n".join(lines)
    assert "machine" not in "\n".join(_fastest_peers(out[out["machine"] == "m"], budget_points=1.0))


def test_each_batch_size_has_its_own_fastest_peer() -> None:
    """A peer fast at batch 1 is not the bar at batch 8: there, ours is measured against the peers' batch-8 p50s."""
    one = _frame({"ours": 0.0, "peer-a": 0.0, "peer-b": 0.0}, {"ours": 10.0, "peer-a": 20.0, "peer-b": 30.0})
    eight = one.assign(batch_size=8, p50_ms=[40.0, 80.0, 60.0])  # at batch 8, peer-b is the faster
    out = add_speedup_vs_peers(pd.concat([one, eight]), budget_points=1.0)
    ours = out[out["variant"] == "ours"].set_index("batch_size")
    assert list(ours["speedup_vs_peer"]) == pytest.approx([2.0, 1.5])
    assert list(ours["fastest_peer"]) == ["peer-a on onnxruntime", "peer-b on onnxruntime"]


def test_the_fastest_peers_of_one_machine_on_two_devices_say_which_device() -> None:
    """A run of the peers on cpu and on cuda: one line a device, at one shape on one machine, each saying which."""
    from optbench.table import _fastest_peers

    cpu = _frame({"ours": 0.0, "peer-a": 0.0}, {"ours": 10.0, "peer-a": 20.0})
    out = add_speedup_vs_peers(pd.concat([cpu, cpu.assign(device="cuda", p50_ms=[1.0, 3.0])]), budget_points=1.0)
    lines = _fastest_peers(out, budget_points=1.0)
    assert [line.split(" (within")[0] for line in lines] == [
        "peer-a on onnxruntime, p50 20.00 ms, at batch 1 x 128 on cpu, machine m",
        "peer-a on onnxruntime, p50 3.00 ms, at batch 1 x 128 on cuda, machine m",
    ]


def test_the_fastest_peers_sub_millisecond_p50_keeps_the_digits_the_table_gives_it() -> None:
    """A GPU peer's p50 of 0.0761 ms read 0.08 ms under a table that writes it 0.0761 (`table.format_number`)."""
    from optbench.table import _fastest_peers

    frame = _frame({"ours": 0.0, "peer-a": 0.0}, {"ours": 0.0512, "peer-a": 0.0761})
    (line,) = _fastest_peers(add_speedup_vs_peers(frame, budget_points=1.0), budget_points=1.0)
    assert line.startswith("peer-a on onnxruntime, p50 0.0761 ms, at batch 1 x 128 (within 1 point")


def test_a_drop_on_the_budget_is_within_it() -> None:
    """ "At most the budget": a peer on it competes, and a variant on it gets a speedup."""
    frame = _frame({"ours": 1.0, "peer-a": 1.0}, {"ours": 10.0, "peer-a": 15.0})
    out = add_speedup_vs_peers(frame, budget_points=1.0).set_index("variant")
    assert out.loc["ours", "speedup_vs_peer"] == pytest.approx(1.5)


def test_the_default_budget_is_one_point() -> None:
    frame = _frame({"ours": 0.0, "peer-a": 1.0, "peer-b": 1.5}, {"ours": 10.0, "peer-a": 20.0, "peer-b": 5.0})
    assert add_speedup_vs_peers(frame).set_index("variant").loc["ours", "speedup_vs_peer"] == pytest.approx(2.0)
    assert (budget_words(1.0), budget_words(0.5), budget_words(2)) == ("1 point", "0.5 points", "2 points")


def test_without_peers_within_the_budget_there_is_no_speedup() -> None:
    frame = _frame({"ours": 0.0, "peer-a": 5.0}, {"ours": 10.0, "peer-a": 1.0})
    assert add_speedup_vs_peers(frame, budget_points=1.0)["speedup_vs_peer"].isna().all()


def test_a_shape_where_no_peer_has_a_p50_gets_no_speedup() -> None:
    """A peer measured for accuracy only, or not at this shape, has no p50: it is no bar (the report failed with
    "Encountered all NA values" where it was the only peer)."""
    frame = _frame({"ours": 0.0, "peer-a": 0.0}, {"ours": 10.0, "peer-a": float("nan")})
    out = add_speedup_vs_peers(frame, budget_points=1.0)
    assert out["speedup_vs_peer"].isna().all() and out["fastest_peer"].isna().all()
    assert out["fastest_peer_p50_ms"].isna().all()


def test_each_run_has_its_own_fastest_peer() -> None:
    """A results folder holds several runs: a variant is measured against its own run's peers, not against a
    faster peer measured in another run (another day, another load on the machine)."""
    first = _frame({"ours": 0.0, "peer-a": 0.0}, {"ours": 10.0, "peer-a": 20.0})
    second = first.assign(run_id="2", p50_ms=[10.0, 12.0])
    other_recipe = first.assign(recipe="q", p50_ms=[10.0, 30.0])  # a run id is a recipe's own
    out = add_speedup_vs_peers(pd.concat([first, second, other_recipe]), budget_points=1.0)
    assert list(out.loc[out["variant"] == "ours", "speedup_vs_peer"]) == pytest.approx([2.0, 1.2, 3.0])


def test_reports_without_a_machine_name_get_their_speedup() -> None:
    """A report may name no machine (`machine` is None): its rows are still one group, not left out."""
    frame = _frame({"ours": 0.0, "peer-a": 0.0}, {"ours": 10.0, "peer-a": 20.0}).assign(machine=None)
    out = add_speedup_vs_peers(frame, budget_points=1.0).set_index("variant")
    assert out.loc["ours", "speedup_vs_peer"] == pytest.approx(2.0)


def test_the_table_marks_peers_and_names_the_fastest(tmp_path: Path) -> None:
    ours = make_report(("onnx", "quantize-dynamic"), runtime=RuntimeSpec("onnxruntime"))
    peer = make_report(("peer-optimum",), runtime=RuntimeSpec("onnxruntime"))
    frame = to_frame([make_report(), ours, peer], peer_budget_points=100.0)
    assert list(frame["peer"]) == [False, False, True] * 2
    text = render(frame, "md")
    assert "| baseline+peer-optimum (peer) |" in text
    assert "| baseline+onnx+quantize-dynamic |" in text and "| baseline |" in text  # only the peer is marked
    assert "- **fastest peer**: baseline+peer-optimum on onnxruntime, p50 " in text
    assert "ms, at batch 1 x 128 (within 100 points of accuracy drop)" in text
    assert "speedup_vs_peer" in next(line for line in text.splitlines() if line.startswith("| variant"))
    assert "speedup_vs_peer" not in render(to_frame([make_report(), ours]), "md")  # no peers: no column


def test_report_peer_budget_on_the_command_line(tmp_path: Path, capsys) -> None:
    ours = make_report(("onnx", "quantize-dynamic"), runtime=RuntimeSpec("onnxruntime"))
    for report in (make_report(), ours, make_report(("peer-optimum",), runtime=RuntimeSpec("onnxruntime"))):
        write_report(report, tmp_path)
    assert main(["report", str(tmp_path), "--peer-budget", "100"]) == 0
    assert "within 100 points of accuracy drop" in capsys.readouterr().out
    # by-machine tables have no speedup_vs_peer: a budget given there was silently ignored
    assert main(["report", str(tmp_path), "--by-machine", "--peer-budget", "1"]) == 2
    assert "error: --by-machine tables have no speedup_vs_peer: drop --peer-budget" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--by-machine"]) == 0


def test_report_takes_a_peer_budget_of_zero_points(tmp_path: Path, capsys) -> None:
    """0 points (no accuracy drop allowed) is a budget, not "none given": it was once read as the default 1."""
    ours = make_report(("onnx", "quantize-dynamic"), runtime=RuntimeSpec("onnxruntime"))
    for report in (make_report(), ours, make_report(("peer-optimum",), runtime=RuntimeSpec("onnxruntime"))):
        write_report(report, tmp_path)
    assert main(["report", str(tmp_path), "--peer-budget", "0"]) == 0
    out = capsys.readouterr().out
    assert "within 0 points of accuracy drop" in out and "within 1 point" not in out
    # --by-machine refuses a given budget, 0 too: its table has no speedup_vs_peer to use it
    assert main(["report", str(tmp_path), "--by-machine", "--peer-budget", "0"]) == 2
    assert "error: --by-machine tables have no speedup_vs_peer: drop --peer-budget" in capsys.readouterr().err


def test_the_html_page_marks_peers_and_shows_their_speedup_column(tmp_path: Path) -> None:
    from optbench.html_report import write_html

    ours = make_report(("onnx",), runtime=RuntimeSpec("onnxruntime"))
    peer = make_report(("peer-torchao",), runtime=RuntimeSpec("torch", options={"compile": True}))
    page, plot = write_html(to_frame([make_report(), ours, peer], peer_budget_points=100.0), tmp_path / "p.html")
    text = page.read_text()
    assert "baseline+peer-torchao (peer)" in text and "<th>speedup_vs_peer</th>" in text and "torch-compile" in text
    assert plot.stat().st_size > 0


def test_a_step_failure_reads_as_one_line() -> None:
    failure = FailedJob("baseline+optimum-O2", "", "step peer-optimum", "optimum export failed: X")
    assert failure.describe() == "baseline+optimum-O2, step peer-optimum: optimum export failed: X"
    job = FailedJob("baseline", "torch-cpu-fp32", "accuracy-0", "crashed")
    assert job.describe() == "baseline on torch-cpu-fp32, accuracy-0: crashed"


def test_static_calibration_keys_the_cache_by_the_dataset_s_max_length(tiny_artifact, reviews) -> None:
    from dataclasses import replace

    from optbench.steps.cache import cache_key

    shorter = replace(reviews, max_length=16)  # the worker cuts calibration rows at it
    static, dynamic = PeerOptimumConfig(quantization="static"), PeerOptimumConfig(quantization="dynamic")
    assert cache_key(static, tiny_artifact, shorter) != cache_key(static, tiny_artifact, reviews)
    assert cache_key(dynamic, tiny_artifact, shorter) == cache_key(dynamic, tiny_artifact, reviews)


def test_optimum_calibrates_on_the_rows_optbench_s_static_quantization_draws(
    tmp_path: Path, tiny_artifact, reviews, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """The train split keeps the file's order (the built-in data is grouped by movie): its first rows are a few
    movies' reviews, so the peer must get the same random sample optbench's own static quantization takes."""
    from optbench.calibration import calibration_texts
    from optbench.peers import optimum
    from optbench.steps.quantize import StaticQuantizeConfig

    jobs: list[dict] = []

    def fake_worker(python: Path, job_path: Path, config: PeerOptimumConfig) -> None:
        job = json.loads(job_path.read_text())
        jobs.append(job)
        Path(job["result"]).write_text(json.dumps({"seconds": {}, "versions": {}, "operators": {}}))

    monkeypatch.setattr(optimum, "peer_env", lambda *args: venv.PeerEnv(tmp_path / "env", ()))
    monkeypatch.setattr(optimum, "_run_worker", fake_worker)
    monkeypatch.setattr(optimum, "_check_runs", lambda *args: None)
    optimum.apply(PeerOptimumConfig(quantization="static", calibration_samples=32), tiny_artifact, reviews, tmp_path)
    ours = StaticQuantizeConfig()
    assert jobs[0]["calibration_texts"] == calibration_texts(reviews, 32, ours.seed)
    assert jobs[0]["calibration_texts"] != reviews.train.texts[:32]
    # dynamic quantization calibrates nothing: no rows drawn, so no warning that the train split has too few
    with caplog.at_level("WARNING", logger="optbench"):
        optimum.apply(
            PeerOptimumConfig(quantization="dynamic", calibration_samples=10_000), tiny_artifact, reviews, tmp_path
        )
    assert jobs[1]["calibration_texts"] == [] and "calibration_samples" not in caplog.text


def test_optimum_calibration_pads_each_batch_to_its_own_longest_text(tiny_artifact, reviews) -> None:
    """Padding positions widen MinMax ranges (quantize-static measured 0.8114 accuracy with one length against
    0.8162 per batch): the peer padded every calibration row to max_length, which neither optimum's guide (one
    unpadded row at a time) nor optbench's own static quantization does, and so measured a handicapped peer."""
    from optbench.calibration import calibration_texts
    from optbench.encoding import load_tokenizer
    from optbench.peers.optimum_worker import calibration_rows

    tokenizer = load_tokenizer(tiny_artifact.path)
    texts = calibration_texts(reviews, 10, 0)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=reviews.max_length)["input_ids"]]
    assert max(lengths) < reviews.max_length and len(set(lengths)) > 1  # else nothing here tells padding apart
    rows = calibration_rows(tokenizer, texts, 4, reviews.max_length)
    assert len(rows) == 10 and set(rows[0]) == set(tokenizer("a"))
    for start in (0, 4, 8):  # optimum's reader stacks each 4 consecutive rows: one length per batch
        longest = max(lengths[start : start + 4])
        assert {len(value) for row in rows[start : start + 4] for value in row.values()} == {longest}
    assert [len(row["input_ids"]) for row in calibration_rows(tokenizer, texts, 1, reviews.max_length)] == lengths
