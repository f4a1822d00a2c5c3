"""Environment fingerprint: shape, JSON safety, probes that fail quietly, stable machine key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from optbench import environment
from optbench.environment import LIBRARIES, fingerprint, fingerprint_key

KEYS = {
    "hostname",
    "cpu",
    "memory_mib",
    "os",
    "python",
    "libraries",
    "threads",
    "cpu_settings",
    "gpu",
    "gpu_settings",
    "git",
    "calibration_gflops",
}


@pytest.fixture(autouse=True)
def quick_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_CALIBRATION_SECONDS", 0.01)


def _fake_tool(directory: Path, name: str, script: str) -> None:
    exe = directory / name
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(0o755)


def test_fingerprint_has_keys_and_is_json_serializable() -> None:
    env = fingerprint(threads=4)
    assert set(env) == KEYS
    assert json.loads(json.dumps(env)) == env
    assert set(env["libraries"]) == set(LIBRARIES)
    assert env["libraries"]["numpy"] is not None
    assert env["libraries"]["optbench"] is not None
    assert env["threads"]["requested"] == 4
    assert env["cpu"]["logical_cores"] >= 1
    assert set(env["cpu"]["flags"]) <= set(environment.INFERENCE_FLAGS)
    assert env["calibration_gflops"] > 0
    assert env["python"] == "{}.{}.{}".format(*sys.version_info[:3])


def test_gpu_distributions_are_recorded_under_their_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime-gpu and TensorRT's wheels are separate distributions: a GPU machine whose fingerprint
    # read only "onnxruntime" would record no onnxruntime version at all.
    installed = {"onnxruntime-gpu": "1.23.2", "tensorrt": "10.13.0.35", "optbench": "0.1.0"}

    def version(name: str) -> str:
        if name not in installed:
            raise environment.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(environment.metadata, "version", version)
    libraries = fingerprint()["libraries"]
    assert libraries["onnxruntime-gpu"] == "1.23.2"
    assert libraries["tensorrt"] == "10.13.0.35"
    assert libraries["onnxruntime"] is None


def test_tensorrt_is_recorded_under_any_of_its_distribution_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # without the `tensorrt` meta-package (a container's own install), the wheels for one CUDA major carry it
    installed = {"tensorrt-cu12-libs": "10.13.3.9", "tensorrt-cu12": "10.13.3.9"}

    def version(name: str) -> str:
        if name not in installed:
            raise environment.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(environment.metadata, "version", version)
    assert fingerprint()["libraries"]["tensorrt"] == "10.13.3.9"


def test_tf32_override_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA_TF32_OVERRIDE=0 keeps TF32 out of fp32 GPU matmuls (README, GPU machines): a reader comparing GPU
    figures must see whether it was set."""
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert fingerprint()["gpu_settings"] == {"NVIDIA_TF32_OVERRIDE": "0"}
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE")
    assert fingerprint()["gpu_settings"] == {"NVIDIA_TF32_OVERRIDE": None}


def test_thread_settings_are_the_jobs_not_this_process_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report's thread settings are those its jobs ran with: OMP_NUM_THREADS as every job process gets it, not
    this process's (a Ray worker's is the CPUs its task holds), and not this process's torch counts, which its
    steps leave as they please (committed runs at threads = 2 recorded torch_intra_op 1 or 2, inter-op 1 or 2)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    fake_torch = SimpleNamespace(get_num_threads=lambda: 1, get_num_interop_threads=lambda: 2)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert fingerprint(threads=6)["threads"] == {"requested": 6, "OMP_NUM_THREADS": "6", "MKL_NUM_THREADS": "5"}
    assert environment.job_thread_variables(6) == {"OMP_NUM_THREADS": "6"}  # what job.run_in_subprocess sets
    # without a thread count (optbench env): the variables as this process has them
    assert fingerprint()["threads"] == {"requested": None, "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "5"}


def _sysfs(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")


def test_cpu_governor_and_boost_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A powersave governor or turbo off slows every CPU latency on the same hardware: a reader comparing two runs
    must see it, as they see thread counts. The governors are those of the cores this process may use."""
    monkeypatch.setattr(environment, "SYSFS_CPU", tmp_path)
    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    governors = {"cpu0/cpufreq/scaling_governor": "performance", "cpu1/cpufreq/scaling_governor": "powersave"}
    _sysfs(tmp_path, {**governors, "cpu2/cpufreq/scaling_governor": "schedutil", "intel_pstate/no_turbo": "1"})
    assert fingerprint()["cpu_settings"] == {"governor": "performance, powersave", "boost": False}
    (tmp_path / "intel_pstate" / "no_turbo").unlink()  # acpi-cpufreq and amd-pstate say it in cpufreq/boost
    _sysfs(tmp_path, {"cpu1/cpufreq/scaling_governor": "performance", "cpufreq/boost": "1"})
    assert fingerprint()["cpu_settings"] == {"governor": "performance", "boost": True}


def test_cpu_governors_are_those_of_the_cores_this_process_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker --cpuset-cpus 1,2: the jobs run on cores 1 and 2, so their governors are recorded, not core 0's (the
    first cores of the machine)."""
    monkeypatch.setattr(environment, "SYSFS_CPU", tmp_path)
    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: {1, 2}, raising=False)
    governors = {"cpu0": "performance", "cpu1": "powersave", "cpu2": "schedutil"}
    _sysfs(tmp_path, {f"{cpu}/cpufreq/scaling_governor": governor for cpu, governor in governors.items()})
    assert fingerprint()["cpu_settings"]["governor"] == "powersave, schedutil"


def test_a_machine_without_cpufreq_records_no_cpu_settings_and_warns_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Most VMs expose no cpufreq: nothing to probe, not a failed probe."""
    monkeypatch.setattr(environment, "SYSFS_CPU", tmp_path / "absent")
    assert fingerprint()["cpu_settings"] == {"governor": None, "boost": None}
    assert "cpu_settings" not in caplog.text


def test_gpu_list_parsed_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(
        tmp_path,
        "nvidia-smi",
        'echo "NVIDIA H200, 143771, 550.54.15"\necho "Tesla T4, [N/A], 550.54.15"\n'
        'echo "GPU, rev 2, 81920, 550.54.15"\necho',  # a blank line is no GPU, and must not lose the others
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    assert fingerprint()["gpu"] == [
        {"name": "NVIDIA H200", "memory_mib": 143771, "driver": "550.54.15"},
        {"name": "Tesla T4", "memory_mib": None, "driver": "550.54.15"},
        {"name": "GPU, rev 2", "memory_mib": 81920, "driver": "550.54.15"},  # a name's own comma stays in it
    ]


def test_gpu_list_empty_when_nvidia_smi_fails_or_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level("WARNING", logger="optbench.environment"):
        assert fingerprint()["gpu"] == []
    assert "_gpus" not in caplog.text  # no nvidia-smi: a machine without NVIDIA GPUs, nothing to say
    _fake_tool(tmp_path, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    with caplog.at_level("WARNING", logger="optbench.environment"):
        assert fingerprint()["gpu"] == []
    assert "environment probe _gpus failed" in caplog.text  # a broken driver must not pass for no GPU


def test_git_outside_a_checkout_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert fingerprint()["git"] == {"commit": None, "dirty": None}


def test_git_commit_and_dirty_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    ident = [
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run([git, "init", "-q"], check=True)
    Path("a.txt").write_text("one\n")
    subprocess.run([git, "add", "a.txt"], check=True)
    subprocess.run([git, *ident, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    Path("untracked.json").write_text("{}")
    assert environment._git() == {"commit": head, "dirty": False}
    Path("a.txt").write_text("two\n")
    assert environment._git() == {"commit": head, "dirty": True}


@pytest.mark.parametrize(
    ("probe", "entry", "default"),
    [
        ("_cpu", "cpu", {"model": None, "logical_cores": os.cpu_count(), "usable_cores": None, "flags": []}),
        ("_memory_total_mib", "memory_mib", None),
        ("_library_versions", "libraries", dict.fromkeys(LIBRARIES)),
        ("_cpu_settings", "cpu_settings", {"governor": None, "boost": None}),
        ("_gpus", "gpu", []),
        ("_git", "git", {"commit": None, "dirty": None}),
        ("_calibration_gflops", "calibration_gflops", None),
    ],
)
def test_a_failed_probe_leaves_a_warned_gap_not_a_lost_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, probe: str, entry: str, default: Any
) -> None:
    """Every probe, not only some: one that raised through the fingerprint (a container without sysconf, a broken
    git) lost the whole run's figures for one gap. A failed cpu probe gave the sweep's machine key no core count
    and the reports' key the machine's: one machine, two keys."""

    def broken() -> None:
        raise PermissionError("no /proc here")

    monkeypatch.setattr(environment, probe, broken)
    with caplog.at_level("WARNING", logger="optbench.environment"):
        env = fingerprint()
        assert env[entry] == default
        assert environment.machine_key() == fingerprint_key(env)  # the sweep's key is still its reports'
    assert "failed (no /proc here)" in caplog.text


def test_calibration_counts_two_flops_per_multiply_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 512x512 GEMM is 2 * 512**3 floating-point operations (a multiply and an add each): counted once, every
    report's calibration_gflops read half the machine's rate."""
    clock = iter([0.0, 1.0])  # one call, timed at 1 s: past the calibration's time, whatever it is set to
    monkeypatch.setattr(environment, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert environment._calibration_gflops() == round(2 * 512**3 / 1e9, 1) == 0.3


def test_fingerprint_key_is_stable_and_hardware_only() -> None:
    env = fingerprint(threads=1)
    key = fingerprint_key(env)
    assert len(key) == 12
    assert int(key, 16) >= 0
    assert fingerprint_key(fingerprint(threads=8)) == key
    assert fingerprint_key(json.loads(json.dumps(env))) == key


def test_fingerprint_key_ignores_software_and_small_memory_changes() -> None:
    env = dict(fingerprint(), memory_mib=16384)
    key = fingerprint_key(env)
    changed = json.loads(json.dumps(env))
    changed.update(hostname="elsewhere", calibration_gflops=1.0, python="0.0.0")
    changed["memory_mib"] = 16384 + 100  # still 16 GiB
    assert fingerprint_key(changed) == key
    changed["memory_mib"] = 16384 - 100  # a 16 GiB machine's kernel keeps some: rounded, not cut, to 16 GiB
    assert fingerprint_key(changed) == key
    in_order, reordered = (
        {**env, "cpu": {**env["cpu"], "flags": flags}} for flags in (["avx2", "fma"], ["fma", "avx2"])
    )
    assert fingerprint_key(in_order) == fingerprint_key(reordered)  # the flags' order tells no machines apart

    changed["cpu"]["model"] = "Some Other CPU"
    assert fingerprint_key(changed) != key
    gpu = dict(env, gpu=[{"name": "NVIDIA H200", "memory_mib": 143771, "driver": "1"}])
    assert fingerprint_key(gpu) != key
    upgraded = dict(env, gpu=[{"name": "NVIDIA H200", "memory_mib": 143770, "driver": "2"}])
    assert fingerprint_key(upgraded) == fingerprint_key(gpu)  # a driver update moves no GPU to another machine


def test_fingerprint_key_tolerates_sparse_records() -> None:
    assert len(fingerprint_key({})) == 12


HARDWARE = {"cpu": {"model": "Some CPU", "logical_cores": 8, "flags": ["avx2", "fma"]}, "memory_mib": 16384, "gpu": []}


@pytest.mark.parametrize(
    "change",
    [
        lambda env: env["cpu"].update(logical_cores=16),
        lambda env: env["cpu"].update(flags=["avx2", "avx512_vnni", "fma"]),
        lambda env: env.update(memory_mib=32768),
    ],
    ids=["cores", "flags", "memory"],
)
def test_fingerprint_key_tells_machines_apart_by_cores_flags_and_memory(change: Any) -> None:
    """Figures of a machine with more cores, other instructions (VNNI: another INT8 kernel) or twice the memory are
    not one machine's: the key must differ, or a gate compares them as one machine's."""
    changed = json.loads(json.dumps(HARDWARE))
    change(changed)
    assert fingerprint_key(changed) != fingerprint_key(HARDWARE)


def test_the_machine_key_counts_the_gpus_as_the_reports_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key a run files its results under is the one its reports carry: two machines alike but for their GPU
    must not share it, or one's cached results and figures are taken for the other's."""
    monkeypatch.setenv("PATH", str(tmp_path))
    without_gpu = environment.machine_key()
    _fake_tool(tmp_path, "nvidia-smi", 'echo "NVIDIA H200, 143771, 550.54.15"')
    assert environment.machine_key() == fingerprint_key(fingerprint()) != without_gpu


def test_cpu_flags_match_the_fingerprint() -> None:
    from optbench.environment import cpu_flags

    assert cpu_flags() == fingerprint()["cpu"]["flags"]


def test_env_command_prints_the_fingerprint_and_refuses_a_bad_thread_count(capsys: pytest.CaptureFixture[str]) -> None:
    from optbench.cli import main

    assert main(["env", "--threads", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"]["requested"] == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exited:
            main(["env", "--threads", bad])
        assert exited.value.code == 2
        assert "is not a thread count: give a whole number, 1 or more" in capsys.readouterr().err


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 fma avx2 f16c avx512_vnni avx512f

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu sse2 fma avx2 f16c avx512_vnni avx512f amx_tile
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
"""


def _fake_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    """/proc/cpuinfo reads as `text` (the probe opens it by name)."""
    import builtins

    fake = tmp_path / "cpuinfo"
    fake.write_text(text)
    real_open, real_exists = builtins.open, os.path.exists

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real_open(fake if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr(environment, "open", fake_open, raising=False)
    monkeypatch.setattr(environment.os.path, "exists", lambda path: path == "/proc/cpuinfo" or real_exists(path))


def test_cpu_model_and_flags_come_from_the_first_processor_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block names the CPU and its flags; only the inference-relevant ones are kept, in INFERENCE_FLAGS'
    order, and another block's (amx_tile) do not leak in. The model is what quantize records as `timed_on`."""
    _fake_cpuinfo(monkeypatch, tmp_path, X86_CPUINFO)
    cpu = fingerprint()["cpu"]
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu["flags"] == ["avx2", "avx512f", "avx512_vnni", "fma", "f16c"]
    assert environment.cpu_model() == cpu["model"]
    assert environment.cpu_flags() == cpu["flags"]


def test_arm64_features_are_its_flags_and_its_model_falls_back_to_the_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arm64's cpuinfo lists `Features` and names no model: NEON (asimd) and SVE must still reach quantize's
    preflight, and the model reads as the architecture rather than nothing."""
    _fake_cpuinfo(monkeypatch, tmp_path, ARM_CPUINFO)
    monkeypatch.setattr(environment.platform, "processor", lambda: "")
    monkeypatch.setattr(environment.platform, "machine", lambda: "aarch64")
    cpu = fingerprint()["cpu"]
    assert cpu["flags"] == ["asimd", "sve"]
    assert cpu["model"] == "aarch64"


def test_cores_record_the_machine_s_count_and_the_ones_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker --cpuset-cpus 3,5 on a 64-core machine: logical_cores (the machine key's) stays 64, while usable_cores
    and `usable_cores()` (the default thread count) are the 2 the jobs may run on."""
    monkeypatch.setattr(environment.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    cpu = fingerprint()["cpu"]
    assert (cpu["logical_cores"], cpu["usable_cores"]) == (64, 2)
    assert environment.usable_cores() == 2


def test_memory_is_recorded_in_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 GiB of 4 KiB pages reads 16384: the key rounds it to GiB, so a unit off by 1024 parts machines wrongly."""
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 16 * (1 << 30) // 4096}
    monkeypatch.setattr(environment.os, "sysconf", lambda name: pages[name])
    assert fingerprint()["memory_mib"] == 16384


def test_the_kernel_recorded_is_its_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """The release (6.8.0-49-generic) tells two kernels apart; `platform.version()` is the build banner."""
    monkeypatch.setattr(environment.platform, "release", lambda: "6.8.0-49-generic")
    monkeypatch.setattr(environment.platform, "version", lambda: "#49-Ubuntu SMP PREEMPT_DYNAMIC")
    assert fingerprint()["os"]["kernel"] == "6.8.0-49-generic"


def test_optbench_s_version_is_recorded_from_a_checkout_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a source checkout, package metadata has no optbench: its own __version__ stands in; an installed
    optbench reports the installed version."""
    import optbench

    installed: dict[str, str] = {}

    def version(name: str) -> str:
        if name not in installed:
            raise environment.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(environment.metadata, "version", version)
    assert fingerprint()["libraries"]["optbench"] == optbench.__version__
    installed["optbench"] = "9.9.9"
    assert fingerprint()["libraries"]["optbench"] == "9.9.9"


class _FakeDriver:
    """libcuda's three calls that `cuda_gpu_name` makes, under the driver's names, each answering `results[call]`
    (0 is CUDA_SUCCESS)."""

    def __init__(self, name: bytes, **results: int) -> None:
        self.name, self.results = name, results

    def cuInit(self, flags: int) -> int:
        return self.results.get("cuInit", 0)

    def cuDeviceGet(self, device: Any, ordinal: int) -> int:
        return self.results.get("cuDeviceGet", 0)

    def cuDeviceGetName(self, buffer: Any, length: int, device: Any) -> int:
        buffer.value = self.name
        return self.results.get("cuDeviceGetName", 0)


@pytest.mark.parametrize(
    ("driver", "name"),
    [
        (_FakeDriver(b"NVIDIA H200"), "NVIDIA H200"),
        (_FakeDriver(b"NVIDIA H200", cuInit=100), None),  # CUDA_ERROR_NO_DEVICE
        (_FakeDriver(b"NVIDIA H200", cuDeviceGet=101), None),  # CUDA_ERROR_INVALID_DEVICE
        (_FakeDriver(b""), None),
        (None, None),  # no libcuda.so.1: a machine without the NVIDIA driver
    ],
    ids=["gpu", "no-device", "invalid-device", "empty-name", "no-driver"],
)
def test_cuda_gpu_name_is_the_driver_s_or_none(
    monkeypatch: pytest.MonkeyPatch, driver: _FakeDriver | None, name: str | None
) -> None:
    """The name keys TensorRT's engine cache and gpu-check's report: a failed driver call must read as no GPU, not
    as a GPU named by whatever the buffer held, and a machine without the driver must not raise."""
    import ctypes

    def cdll(library: str) -> _FakeDriver:
        if driver is None:
            raise OSError(f"{library}: cannot open shared object file")
        return driver

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert environment.cuda_gpu_name() == name


def test_cuda_gpu_records_the_name_and_the_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT engines are built for one compute capability, written major.minor (9.0, not 90); None without CUDA."""
    cuda = SimpleNamespace(
        is_available=lambda: True, get_device_capability=lambda: (9, 0), get_device_name=lambda: "NVIDIA H200"
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    assert environment.cuda_gpu() == {"gpu": "NVIDIA H200", "compute_capability": "9.0"}
    cuda.is_available = lambda: False
    assert environment.cuda_gpu() is None
