"""Environment fingerprint recorded with every figure, and a key that groups results by machine.

Every probe is best effort: a missing tool or an unreadable file yields None (or an empty list),
never an exception, because losing a run's figures to a failed probe is worse than a gap. A probe that
fails (rather than finding nothing to probe) is warned, since its gap lands in every report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")

INFERENCE_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "fma",
    "f16c",
    "avx_vnni",
    "asimd",
    "sve",
)
LIBRARIES = (
    "optbench",
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",  # read through TENSORRT_DISTRIBUTIONS
    "numpy",
    "pandas",
)
# NVIDIA ships TensorRT's Python API under several distribution names: the `tensorrt` meta-package, the wheels
# it pulls for a CUDA major version, or those alone (as some containers install them)
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-libs", "tensorrt-cu12-libs")
_CALIBRATION_SECONDS = 0.3
# NVIDIA's process-wide switch: =0 keeps TF32 out of float32 matmuls, TensorRT's builds included (README, GPU
# machines); it changes GPU figures as much as a thread count changes CPU ones
TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"
_CALIBRATION_SIZE = 512
_TIMEOUT_S = 5
# where Linux's cpufreq says how the cores are clocked; absent in most VMs and some containers
SYSFS_CPU = Path("/sys/devices/system/cpu")


def _best_effort(probe: Callable[[], T], default: T) -> T:
    """probe(), or default when it fails for any reason: warned, since the gap lands in every report (a GPU
    machine whose nvidia-smi fails would otherwise read as a machine without GPUs)."""
    try:
        return probe()
    except Exception as exc:
        name = getattr(probe, "__name__", probe)
        log.warning("environment probe %s failed (%s): the fingerprint records %r for it", name, exc, default)
        return default


def _cpu() -> dict:
    """CPU model, logical and usable cores, and inference-relevant flags.

    Reads the first processor block of /proc/cpuinfo: x86 lists `flags`, arm64 `Features`.
    """
    model = None
    flags: set[str] = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            block = f.read().split("\n\n", 1)[0]
        for line in block.splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and model is None:
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "model": model or platform.processor() or platform.machine() or None,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "flags": [flag for flag in INFERENCE_FLAGS if flag in flags],
    }


def _cpu_or_unknown() -> dict:
    """`_cpu()`, or its entries unknown but the core count os.cpu_count() still gives: one default for the
    fingerprint and `machine_key`, whose keys must agree when the probe fails too."""
    return _best_effort(_cpu, {"model": None, "logical_cores": os.cpu_count(), "usable_cores": None, "flags": []})


def usable_cores() -> int:
    """The logical cores this process may run on: its affinity set where the OS has one (docker --cpuset-cpus,
    taskset, a scheduler's cpuset), else every core. os.cpu_count() counts the whole machine, and that many
    threads on fewer cores oversubscribe them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _memory_total_mib() -> int:
    """Physical memory of the machine in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)


def installed_version(*distributions: str) -> str | None:
    """The version of the first of `distributions` that is installed, from package metadata (the library is not
    imported); None when none is. One library may install under several names (onnxruntime-gpu, tensorrt-cu12)."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, under the first of its distribution names installed, else None."""
    return installed_version(*TENSORRT_DISTRIBUTIONS)


def cuda_gpu() -> dict[str, str] | None:
    """The CUDA GPU torch runs on (the first one visible): its name and compute capability, or None when torch sees
    none. TensorRT engines are built for this GPU model and run only on it."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def cuda_gpu_name() -> str | None:
    """The name of the first CUDA GPU this process sees (CUDA_VISIBLE_DEVICES applies), from the NVIDIA driver's
    own library (`cuDeviceGetName`, whose name torch's `get_device_name` reports too), or None without a driver or
    a GPU. Unlike `cuda_gpu`, it imports no torch: an onnxruntime job must not count torch's few hundred MiB."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, name = ctypes.c_int(), ctypes.create_string_buffer(256)
    if (
        driver.cuInit(0)  # each returns a CUresult: 0 is success
        or driver.cuDeviceGet(ctypes.byref(device), 0)
        or driver.cuDeviceGetName(name, len(name), device)
    ):
        return None
    return name.value.decode(errors="replace") or None


def _library_versions() -> dict[str, str | None]:
    """Installed versions from package metadata, so no heavy library is imported.

    onnxruntime-gpu installs the same `onnxruntime` module under its own distribution name, so both
    names are probed; TensorRT, under any of its names, reads as "tensorrt"; a library that is not
    installed reads None."""
    versions = {name: tensorrt_version() if name == "tensorrt" else installed_version(name) for name in LIBRARIES}
    if versions["optbench"] is None:  # running from a source checkout that is not installed
        from optbench import __version__

        versions["optbench"] = __version__
    return versions


def job_thread_variables(threads: int) -> dict[str, str]:
    """The thread variables every job process runs with, whatever this process has (a Ray worker sets
    OMP_NUM_THREADS to the CPUs its task holds): OMP_NUM_THREADS = the run's threads."""
    return {"OMP_NUM_THREADS": str(threads)}


def _threads(threads: int | None) -> dict:
    """Thread settings as the jobs run them: the requested count and the thread variables their processes get
    (this process's, with `job_thread_variables(threads)` when `threads` is given). Each job sets its runtime's
    own thread counts from `threads` (the report's runtime details record them); this process's torch counts
    are whatever its steps left, not the jobs', so they are not recorded."""
    variables = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        variables.update(job_thread_variables(threads))
    return {"requested": threads, **variables}


def _sys_value(path: Path) -> str | None:
    """A sysfs file's stripped text, or None where the kernel does not expose it."""
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _cpu_settings() -> dict:
    """How the cores this process may use are clocked: their cpufreq `governor` (the distinct ones, comma-joined)
    and whether `boost` (turbo) is on, from intel_pstate's no_turbo or cpufreq's boost. A powersave governor or
    turbo off changes every CPU latency as much as a thread count does. None where the kernel exposes nothing."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    governors = {_sys_value(SYSFS_CPU / f"cpu{core}" / "cpufreq" / "scaling_governor") for core in cores}
    no_turbo = _sys_value(SYSFS_CPU / "intel_pstate" / "no_turbo")
    boost = _sys_value(SYSFS_CPU / "cpufreq" / "boost")
    if no_turbo is not None:
        boosting: bool | None = no_turbo == "0"
    else:
        boosting = None if boost is None else boost == "1"
    return {"governor": ", ".join(sorted(g for g in governors if g)) or None, "boost": boosting}


def _gpus() -> list[dict]:
    """One {name, memory_mib, driver} per GPU that nvidia-smi reports; [] without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    out = subprocess.run(
        [
            exe,
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=True,
    ).stdout
    gpus = []
    for line in out.splitlines():
        if not line.strip():
            continue
        name, memory, driver = (part.strip() for part in line.rsplit(",", 2))
        gpus.append(
            {
                "name": name,
                "memory_mib": int(memory) if memory.isdigit() else None,
                "driver": driver,
            }
        )
    return gpus


def _git_output(*args: str) -> str | None:
    """stdout of a git command in the current directory, or None when it fails."""
    exe = shutil.which("git")
    if exe is None:
        return None
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    return result.stdout if result.returncode == 0 else None


def _git() -> dict:
    """Commit and dirty flag of the checkout holding the current directory.

    Dirty means tracked files changed; untracked files (such as new results) do not count.
    A checkout without commits yet has commit None but still a dirty flag.
    """
    status = _git_output("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return {"commit": None, "dirty": None}
    head = _git_output("rev-parse", "--verify", "--quiet", "HEAD")
    return {"commit": head.strip() if head else None, "dirty": bool(status.strip())}


def _calibration_gflops() -> float:
    """fp32 GEMM rate from repeated 512x512 numpy matmuls for about 0.3 s: a figure to tell a
    busy or throttled machine from a quiet one when two runs disagree."""
    n = _CALIBRATION_SIZE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)  # warm-up: the first call pays for BLAS thread start-up
    calls = 0
    start = time.perf_counter()
    while True:
        np.matmul(a, b, out=c)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= _CALIBRATION_SECONDS:
            break
    return round(2 * n**3 * calls / elapsed / 1e9, 1)


def fingerprint(threads: int | None = None) -> dict:
    """What a reader needs to know to trust or compare a figure: hardware (cpu, memory, gpu),
    software (os, python, library versions, git), thread settings (`threads` as given, and the
    OMP/MKL variables the jobs get), the CPU's governor and boost, NVIDIA_TF32_OVERRIDE, hostname,
    and `calibration_gflops`.
    JSON-serializable; never raises."""
    return {
        "hostname": _best_effort(socket.gethostname, None),
        "cpu": _cpu_or_unknown(),
        "memory_mib": _best_effort(_memory_total_mib, None),
        "os": {
            "system": platform.system(),
            "kernel": platform.release(),
            "platform": platform.platform(),
        },
        "python": platform.python_version(),
        "libraries": _best_effort(_library_versions, dict.fromkeys(LIBRARIES)),
        "threads": _threads(threads),
        "cpu_settings": _best_effort(_cpu_settings, {"governor": None, "boost": None}),
        "gpu": _best_effort(_gpus, []),
        "gpu_settings": {TF32_OVERRIDE: os.environ.get(TF32_OVERRIDE)},
        "git": _best_effort(_git, {"commit": None, "dirty": None}),
        "calibration_gflops": _best_effort(_calibration_gflops, None),
    }


def cpu_flags() -> list[str]:
    """The inference-relevant CPU flags alone, without the rest of the fingerprint's probes."""
    return _cpu_or_unknown()["flags"]


def cpu_model() -> str | None:
    """The CPU's model name alone (None when it cannot be read)."""
    return _cpu_or_unknown()["model"]


def machine_key() -> str:
    """This machine's `fingerprint_key`, from its hardware probes alone (no calibration run)."""
    hardware = {
        "cpu": _cpu_or_unknown(),
        "memory_mib": _best_effort(_memory_total_mib, None),
        "gpu": _best_effort(_gpus, []),
    }
    return fingerprint_key(hardware)


def hardware(env: Mapping[str, Any]) -> dict[str, Any]:
    """The hardware part of an environment fingerprint, what tells machines apart: cpu model, cores, flags, memory
    rounded to GiB, gpu names."""
    cpu = env.get("cpu") or {}
    memory = env.get("memory_mib")
    return {
        "cpu_model": cpu.get("model"),
        "cores": cpu.get("logical_cores"),
        "flags": sorted(cpu.get("flags") or []),
        "memory_gib": None if memory is None else round(memory / 1024),
        "gpus": [gpu.get("name") for gpu in env.get("gpu") or []],
    }


def fingerprint_key(env: dict) -> str:
    """Short stable hash of the `hardware` part only — used to group results by machine."""
    blob = json.dumps(hardware(env), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
