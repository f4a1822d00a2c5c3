"""Timing loop, latency statistics with confidence intervals, and peak memory.

Figures are only worth comparing with their uncertainty, so every percentile that a gate may
judge carries a 95% interval, from order statistics: the count of calls below a true quantile is
binomial whatever the latency's distribution, so the interval covers it at least 95% of the time
(a percentile bootstrap of the p50 covered it 90 to 95% of the time at 6 to 50 calls, and one of the
p99 cannot reach past the slowest call). Where too few calls were timed for any interval to reach 95%
(below 6 for the p50, 368 for the p99's upper end), the ends are unbounded. Each end is then widened by
the clock's resolution (a reading is known only to within one tick; a low end stops at 0), so no interval
is narrower than the clock can tell: a coarse clock's tied readings would otherwise give zero-width
intervals, and two runs one tick apart would look certainly different.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, Protocol
from uuid import UUID

import numpy as np

from optbench.errors import OptbenchError

log = logging.getLogger(__name__)


def quantile_interval(sorted_values: np.ndarray, q: float) -> tuple[float, float]:
    """Distribution-free 95% interval of the q-quantile from order statistics: the number of values below
    the true quantile is Binomial(n, q), so [x_(l), x_(u)] leaves at most 2.5% on each side. An end no
    sample value can vouch for is infinite: both ends of the p50's below 6 values, the p99's upper end below
    368 (a percentile bootstrap there never exceeds the sample maximum, and covers the true p99 about 1 time
    in 5 at 20). The count argument holds for tied values too, so a coarse clock's readings can give a
    zero-width interval only where ties fill the ranks from l to u, and then (95% of the time) that value is the
    readings' quantile; `Latency.from_values` widens it by the clock's resolution to cover the durations'."""
    n = sorted_values.size
    k = np.arange(n)
    steps = np.log((n - k) / (k + 1)) + math.log(q) - math.log1p(-q)  # log pmf(k+1) - log pmf(k)
    cdf = np.cumsum(np.exp(n * math.log1p(-q) + np.concatenate([[0.0], np.cumsum(steps)])))  # P(B <= k)
    below, above = np.flatnonzero(cdf <= 0.025), np.flatnonzero(1 - cdf <= 0.025)
    low = float(sorted_values[below[-1]]) if below.size else -math.inf
    high = float(sorted_values[above[0]]) if above[0] < n else math.inf
    return low, high


def _no_lower_than_zero(low: float) -> float:
    """An interval's low end widened by a tick, held at 0 (no call takes less); an unbounded one stays -inf."""
    return low if math.isinf(low) else max(0.0, low)


@dataclass(frozen=True)
class Latency:
    """Latency statistics in milliseconds over timed iterations."""

    n: int
    mean_ms: float
    std_ms: float  # population standard deviation (ddof=0)
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p50_ci_low: float  # order-statistic 95% CI of the p50; -inf, inf (null in JSON) below 6 calls
    p50_ci_high: float
    p99_ci_low: float  # order-statistic 95% CI of the p99; inf (null in JSON) where the calls cannot bound it
    p99_ci_high: float
    clock_resolution_ms: float = 0.0  # the timing clock's (both intervals include it); 0 where unknown (older reports)

    @classmethod
    def from_values(cls, values_ns: Sequence[int], resolution_ns: int = 0) -> Latency:
        """Statistics of per-call durations in nanoseconds (as `time_calls` returns them) read by a clock of
        `resolution_ns` (`Clock.resolution_ns`): the intervals are widened by it on each side."""
        ms = np.asarray(values_ns, dtype=np.float64) / 1e6
        tick = resolution_ns / 1e6
        if ms.ndim != 1 or ms.size == 0:
            raise ValueError(f"need a non-empty sequence of durations, got shape {ms.shape}")
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99], method="linear")
        ordered = np.sort(ms)
        low, high = quantile_interval(ordered, 0.5)
        p99_low, p99_high = quantile_interval(ordered, 0.99)
        return cls(
            n=int(ms.size),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std()),
            min_ms=float(ms.min()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p95_ms=float(p95),
            p99_ms=float(p99),
            p50_ci_low=_no_lower_than_zero(low - tick),
            p50_ci_high=high + tick,
            # at 2 calls the low end is the slower one and the interpolated p99 just below it: the interval
            # reaches down to its own estimate
            p99_ci_low=_no_lower_than_zero(min(p99_low, p99) - tick),
            p99_ci_high=p99_high + tick,
            clock_resolution_ms=tick,
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (int and floats; an unbounded interval end as None)."""
        return {f.name: None if math.isinf(v := getattr(self, f.name)) else _plain(f.name, v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Latency:
        """Inverse of `to_dict`; a record with missing fields is refused by name (a field with a default, added
        since, takes it)."""
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
        if missing:
            raise OptbenchError(f"latency record lacks {', '.join(missing)}; re-run the measurement or repair the file")
        unbounded = {end: math.inf if end.endswith("high") else -math.inf for end in _INTERVAL_ENDS}
        present = [f.name for f in fields(cls) if f.name in d]
        return cls(**{name: unbounded[name] if d[name] is None else _plain(name, d[name]) for name in present})


_INTERVAL_ENDS = ("p50_ci_low", "p50_ci_high", "p99_ci_low", "p99_ci_high")


def ratio_interval(numerator: tuple[Any, Any], denominator: tuple[Any, Any]) -> tuple[Any, Any]:
    """What two latency intervals allow for the ratio of their figures (a speedup: the reference's p50 over a
    row's): low over high, high over low. An unbounded end makes the ratio's end 0 or unbounded. Takes floats or
    pandas Series (ends elementwise)."""
    (top_low, top_high), (bottom_low, bottom_high) = numerator, denominator
    with np.errstate(divide="ignore"):
        return np.maximum(top_low, 0.0) / bottom_high, top_high / np.maximum(bottom_low, 0.0)


def gap_pct(a: float, b: float) -> float:
    """How far apart two timings (or two figures that move as one over a timing: throughput, speedup) are, in
    percent of their mean: the A/A noise floor's measure (`bench.noise_floor_pct`), so a change is held against the
    floor on the floor's own base. Symmetric, and the same for two figures as for their inverses."""
    return 200 * abs(a - b) / (a + b)


def _plain(name: str, value: object) -> int | float:
    """The count as int, every other Latency field as float (never a numpy scalar)."""
    return int(value) if name == "n" else float(value)


@dataclass(frozen=True)
class Timing:
    """How long to warm up and time: timing stops once BOTH min_iters and min_seconds are reached,
    or, with at least 3 calls timed, once max_seconds of timed time have passed."""

    warmup: int = 5
    min_iters: int = 20
    min_seconds: float = 2.0
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise OptbenchError(f"warmup must be 0 or more, got {self.warmup}; set warmup >= 0")
        if self.min_iters < 1:
            raise OptbenchError(f"min_iters must be at least 1, got {self.min_iters}; set min_iters >= 1")
        if self.min_seconds < 0:
            raise OptbenchError(f"min_seconds must be 0 or more, got {self.min_seconds}; set it >= 0")
        if self.max_seconds <= 0:
            raise OptbenchError(f"max_seconds must be positive, got {self.max_seconds}; set max_seconds > 0")
        if self.max_seconds < self.min_seconds:
            raise OptbenchError(
                f"max_seconds ({self.max_seconds}) is below min_seconds ({self.min_seconds}); "
                "raise max_seconds or lower min_seconds"
            )


class Clock(Protocol):
    """Times one call: `start()` just before it, `stop()` just after, returning the nanoseconds between;
    `resolution_ns`: how finely it reads (a reading is known only to within it)."""

    resolution_ns: int

    def start(self) -> None: ...

    def stop(self) -> int: ...


class HostClock:
    """The host's monotonic clock (time.perf_counter_ns), for runtimes whose calls return only once their
    work is done (the CPU, onnxruntime); runtimes that queue device work bring CUDA events instead."""

    resolution_ns = max(1, round(time.get_clock_info("perf_counter").resolution * 1e9))  # 1 on Linux

    def __init__(self) -> None:
        self.began = 0

    def start(self) -> None:
        self.began = time.perf_counter_ns()

    def stop(self) -> int:
        return time.perf_counter_ns() - self.began


class CudaEventClock:
    """CUDA events recorded on `stream` (torch's current stream when None): the GPU's own timeline from the
    call's first queued work to its last, read after the end event completes. For runtimes whose work runs
    on that stream."""

    resolution_ns = 500  # cudaEventElapsedTime: "with a resolution of around 0.5 microseconds" (CUDA runtime API)

    def __init__(self, stream: Any = None) -> None:
        import torch

        self.stream = stream
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self.begin.record(self.stream)

    def stop(self) -> int:
        self.end.record(self.stream)
        self.end.synchronize()
        return round(self.begin.elapsed_time(self.end) * 1e6)  # elapsed_time is in milliseconds


def time_calls(fn: Callable[[], object], timing: Timing, clock: Clock | None = None, cycle: int = 1) -> list[int]:
    """Run fn `timing.warmup` times untimed, then time each call with `clock` (the host clock unless the
    runtime brings its own, e.g. CUDA events) until the `timing` rule says stop. Returns per-call nanoseconds.

    With `cycle` > 1 (fn walks through that many inputs of different cost, e.g. batches of their own
    lengths), the min_iters / min_seconds rule stops only after whole passes, so every model is timed on
    the same inputs, however fast it is; max_seconds still stops mid-pass, with a warning."""
    clock = clock or HostClock()
    warmup, min_iters = timing.warmup, timing.min_iters
    min_seconds, max_seconds = timing.min_seconds, timing.max_seconds
    for _ in range(warmup):
        fn()
    min_ns, max_ns = min_seconds * 1e9, max_seconds * 1e9
    times: list[int] = []
    total = 0
    while True:
        clock.start()
        fn()
        elapsed = clock.stop()
        times.append(elapsed)
        total += elapsed
        whole_passes = len(times) % cycle == 0
        if whole_passes and len(times) >= min_iters and total >= min_ns:
            break
        if total >= max_ns and len(times) >= 3:
            log.warning(
                "stopped timing after %d calls: max_seconds=%s reached before min_iters=%d, min_seconds=%s%s; "
                "figures rest on fewer calls than asked",
                len(times),
                max_seconds,
                min_iters,
                min_seconds,
                "" if whole_passes else f" and the end of a pass over the {cycle} inputs",
            )
            break
    return times


def throughput(batch_size: int, latency: Latency) -> float:
    """Sequences per second at this batch size: batch_size / mean latency."""
    if batch_size < 1:
        raise OptbenchError(f"batch_size must be at least 1, got {batch_size}")
    if latency.mean_ms <= 0:
        raise ValueError(f"mean latency must be positive, got {latency.mean_ms} ms")
    return batch_size / (latency.mean_ms / 1e3)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Peak, not current, because it is what decides whether a model fits; measured in a fresh
    process so earlier work does not inflate it. On Linux it is VmHWM from /proc/self/status:
    `ru_maxrss` survives fork and exec, so a job started by a parent that once held 1.7 GB
    reported 1.7 GB whatever its own peak was.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kib = peak / 1024 if sys.platform == "darwin" else peak  # macOS reports bytes
    return kib / 1024


MIB = 2**20


@dataclass(frozen=True)
class GpuMemory:
    """GPU memory of one job's process, in MiB.

    torch's peak allocated and reserved bytes are recorded for models that run through torch's allocator
    (the torch runtime); TensorRT's engines and onnxruntime's CUDA arena are invisible to it, so for them
    they are None, and NVML's count of what the driver gives this process, recorded for every runtime with
    the device's total when nvidia-ml-py is installed, is the figure. A figure nobody could read is None,
    never 0.
    """

    peak_allocated_mb: float | None = None
    peak_reserved_mb: float | None = None
    process_used_mb: float | None = None
    device_total_mb: float | None = None

    @classmethod
    def measure(cls, device_index: int = 0, *, through_torch: bool = True) -> GpuMemory:
        """Read the figures now (call it after the timed calls: torch's are peaks, NVML's is current);
        `through_torch`: whether the model's memory came from torch's allocator."""
        torch = sys.modules.get("torch")
        allocated = reserved = None
        if through_torch and torch is not None and torch.cuda.is_initialized():
            allocated = torch.cuda.max_memory_allocated(device_index) / MIB
            reserved = torch.cuda.max_memory_reserved(device_index) / MIB
        used, total = _nvml_memory(device_index)
        return cls(allocated, reserved, used, total)

    def merged(self, other: GpuMemory) -> GpuMemory:
        """The larger of each figure, for pooling a model's rounds."""
        return GpuMemory(*(_larger(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, float | None]) -> GpuMemory:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


def _larger(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _nvml_memory(device_index: int) -> tuple[float | None, float | None]:
    """(MiB this process holds on the device, the device's total MiB) from NVML; (None, None) without
    nvidia-ml-py or a driver. The process figure is None where NVML cannot see this pid (some containers)."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
        try:
            handle = _nvml_handle(pynvml, device_index)
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total / MIB
            used = next(
                (p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()),
                None,
            )
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVMLError, no UUID from the driver: an optional figure never fails a job
        log.warning("NVML could not read the GPU's memory (%s): only torch's figures are recorded", exc)
        return None, None
    return (used / MIB if used is not None else None), total


def _nvml_handle(pynvml: Any, device_index: int) -> Any:
    """NVML's handle of CUDA's device `device_index`, found by the UUID the CUDA driver gives it. Indices do not
    carry over: NVML numbers every GPU on the machine by PCI bus, while CUDA numbers those CUDA_VISIBLE_DEVICES
    leaves in CUDA_DEVICE_ORDER, fastest first by default (so on a machine of mixed GPUs even
    CUDA_VISIBLE_DEVICES=1 need not be NVML's device 1). NVML writes a GPU's UUID "GPU-...", a MIG instance's
    "MIG-..."."""
    uuid = _cuda_uuid(device_index)
    if uuid is None:
        raise LookupError(f"the CUDA driver (libcuda) gives no UUID for CUDA device {device_index}")
    try:  # bytes: older pynvml releases pass the argument to ctypes as is, and take no str
        return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}".encode())
    except pynvml.NVMLError:
        return pynvml.nvmlDeviceGetHandleByUUID(f"MIG-{uuid}".encode())


def _cuda_uuid(device_index: int) -> str | None:
    """The UUID of CUDA's device `device_index` as this process numbers it, from the driver's own API (so it
    holds for every runtime, torch loaded or not): a MIG instance's own UUID where the device is one. None
    without a driver that says (libcuda before R470 has no cuDeviceGetUuid_v2)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        get_uuid = cuda.cuDeviceGetUuid_v2
    except (OSError, AttributeError):
        return None
    device = ctypes.c_int()
    raw = ctypes.create_string_buffer(16)  # CUuuid: 16 bytes
    if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.pointer(device), device_index) or get_uuid(raw, device):
        return None  # a CUresult other than CUDA_SUCCESS (0)
    return str(UUID(bytes=raw.raw))
