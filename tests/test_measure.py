"""Latency statistics, order-statistic intervals and the timing loop (with a fake clock)."""

from __future__ import annotations

import ctypes
import io
import json
import logging
import math
import sys
import time
import uuid
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from optbench import measure
from optbench.errors import OptbenchError
from optbench.measure import (
    CudaEventClock,
    GpuMemory,
    HostClock,
    Latency,
    Timing,
    gap_pct,
    peak_rss_mb,
    ratio_interval,
    throughput,
    time_calls,
)


@pytest.fixture
def values_ns() -> list[int]:
    rng = np.random.default_rng(1)
    return [int(v) for v in rng.integers(1_000_000, 9_000_000, size=1001)]


def test_latency_matches_numpy_percentiles(values_ns: list[int]) -> None:
    lat = Latency.from_values(values_ns)
    ms = np.asarray(values_ns) / 1e6
    assert lat.n == 1001
    assert lat.mean_ms == pytest.approx(ms.mean())
    assert lat.std_ms == pytest.approx(ms.std())
    assert lat.min_ms == pytest.approx(ms.min())
    for q, got in [
        (50, lat.p50_ms),
        (90, lat.p90_ms),
        (95, lat.p95_ms),
        (99, lat.p99_ms),
    ]:
        assert got == pytest.approx(np.percentile(ms, q))


def test_percentiles_interpolate_between_the_two_nearest_calls() -> None:
    """numpy's linear rule, as the README states: four calls of 1 to 4 ms have a p50 of 2.5 ms, not a call's own
    (1001 calls, as above, put every percentile on a call, where the rules agree)."""
    lat = Latency.from_values([4_000_000, 1_000_000, 3_000_000, 2_000_000])
    assert (lat.p50_ms, lat.p90_ms, lat.p95_ms, lat.p99_ms) == pytest.approx((2.5, 3.7, 3.85, 3.97))


def test_latency_ci_brackets_percentiles(values_ns: list[int]) -> None:
    lat = Latency.from_values(values_ns)
    assert lat.p50_ci_low <= lat.p50_ms <= lat.p50_ci_high
    assert lat.p99_ci_low <= lat.p99_ms <= lat.p99_ci_high
    assert lat.p50_ci_low < lat.p50_ci_high


def test_latency_of_constant_values_has_degenerate_ci() -> None:
    lat = Latency.from_values([2_000_000] * 7)
    assert lat.p50_ms == lat.p50_ci_low == lat.p50_ci_high == 2.0
    assert lat.p99_ci_low == 2.0 and lat.p99_ci_high == math.inf  # 7 calls cannot bound a p99 from above
    assert lat.std_ms == 0.0


@pytest.mark.parametrize(("n", "bounded"), [(2, False), (20, False), (367, False), (368, True), (5000, True)])
def test_p99_interval_is_bounded_above_only_from_368_calls(n: int, bounded: bool) -> None:
    """The chance that all n calls fall below the true p99 is 0.99**n: above 2.5% up to 367 calls, so no
    sample value can serve as the upper end (a bootstrap's upper end would be the sample maximum)."""
    lat = Latency.from_values(range(1_000_000, 1_000_000 * (n + 1), 1_000_000))
    assert math.isfinite(lat.p99_ci_high) == bounded
    assert lat.p99_ci_low <= lat.p99_ms <= lat.p99_ci_high
    if bounded:
        assert lat.p99_ci_high <= n  # an order statistic: one of the calls
    again = Latency.from_dict(json.loads(json.dumps(lat.to_dict())))
    assert again == lat and (lat.to_dict()["p99_ci_high"] is None) == (not bounded)


@pytest.mark.parametrize(("n", "bounded"), [(1, False), (5, False), (6, True), (40, True)])
def test_p50_interval_is_unbounded_below_6_calls(n: int, bounded: bool) -> None:
    """All n calls fall on one side of the true median with chance 2 * 0.5**n, above 5% up to 5 calls: no
    interval of their values covers it 95% of the time, so none is claimed (a bootstrap's would be)."""
    lat = Latency.from_values(range(1_000_000, 1_000_000 * (n + 1), 1_000_000))
    assert math.isfinite(lat.p50_ci_low) == math.isfinite(lat.p50_ci_high) == bounded
    assert lat.p50_ci_low <= lat.p50_ms <= lat.p50_ci_high
    again = Latency.from_dict(json.loads(json.dumps(lat.to_dict())))
    assert again == lat and (lat.to_dict()["p50_ci_low"] is None) == (not bounded)


def _median_ranks(n: int) -> tuple[int, int]:
    """The 1-based ranks (l, u) of the p50's 95% interval from n values, by exact fractions: x_(l) lies above
    the true median when at most l - 1 values fall below it, P(B <= l - 1) for B ~ Binomial(n, 1/2), and
    x_(u) below it when at least u do; l is the highest and u the lowest rank that keeps each at 2.5% or less."""
    below = [Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n) for k in range(n + 1)]  # P(B <= k)
    low = max(k + 1 for k in range(n) if below[k] <= Fraction(1, 40))
    high = min(k + 1 for k in range(n) if 1 - below[k] <= Fraction(1, 40))
    return low, high


@pytest.mark.parametrize("n", [6, 8, 9, 10, 20, 51, 200, 300])
def test_p50_interval_is_the_binomial_order_statistic_interval(n: int) -> None:
    """With calls of 1, 2, ..., n ms the interval's ends are the ranks themselves."""
    lat = Latency.from_values(range(1_000_000, 1_000_000 * (n + 1), 1_000_000))
    assert (lat.p50_ci_low, lat.p50_ci_high) == _median_ranks(n)


def test_p50_interval_ranks_match_the_published_table() -> None:
    """Nonparametric tables give the 95% interval of a median from 20 values as [x_(6), x_(15)] (95.9%)."""
    assert _median_ranks(20) == (6, 15)


def test_p50_interval_of_tied_middle_calls_is_not_zero_width() -> None:
    """Eight calls, six on one tick of a coarse clock: from eight calls the median's 95% interval with at most
    2.5% on each side is [fastest, slowest] (the second fastest lies above the median 9 times in 256), ties or
    not. A percentile bootstrap gave [50, 50] here: a p50 pinned to one tick on the word of two calls."""
    lat = Latency.from_values([1_000_000] + [50_000_000] * 6 + [100_000_000])
    assert (lat.p50_ci_low, lat.p50_ci_high) == (1.0, 100.0)


@pytest.mark.parametrize("clock", ["exact", "two ticks"])
def test_p50_interval_covers_the_true_median_at_least_95_percent_of_the_time(clock: str) -> None:
    """Lognormal calls with a median of 1.02 ms read exactly, or an integer-microsecond clock whose readings fall
    on 1.000 ms with chance 0.48 and otherwise on 1.001 ms (the readings' median). A seeded percentile bootstrap
    covered 90-95% of either here, at each of 6, 8 and 10 calls."""
    rng = np.random.default_rng(11)
    true_p50 = 1.02 if clock == "exact" else 1.001
    for n in (6, 8, 10):
        covered = 0
        for _ in range(400):
            if clock == "exact":
                values_ns = np.round(1.02e6 * rng.lognormal(0, 0.05, n)).astype(int)
            else:
                values_ns = np.where(rng.random(n) < 0.48, 1_000_000, 1_001_000)
            lat = Latency.from_values(values_ns)
            covered += lat.p50_ci_low <= true_p50 <= lat.p50_ci_high
        assert covered / 400 >= 0.95, n


def test_p99_interval_covers_the_true_p99_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    true_p99 = float(np.exp(2.3263 * 0.5))  # lognormal(0, 0.5)
    for n in (20, 400):
        covered = 0
        for _ in range(400):
            values = rng.lognormal(0, 0.5, n)
            lat = Latency.from_values(np.round(values * 1e6).astype(int))
            covered += lat.p99_ci_low <= true_p99 <= lat.p99_ci_high
        assert covered / 400 >= 0.95


def test_tied_readings_of_a_coarse_clock_give_intervals_a_tick_wide_on_each_side() -> None:
    """A clock of 0.5 us ticks reads every call of a steady kernel as 10 us: each duration lies within a tick of
    its reading, so the p50 and p99 do too. Unwidened, the intervals were [10, 10] us, as if the clock could
    tell 10.0 from 10.4."""

    class CoarseClock:
        resolution_ns = 500

        def start(self) -> None:
            pass

        def stop(self) -> int:
            return 10_000

    clock = CoarseClock()
    readings = time_calls(lambda: None, Timing(warmup=0, min_iters=400, min_seconds=0), clock)
    lat = Latency.from_values(readings, clock.resolution_ns)
    assert lat.p50_ms == lat.p99_ms == 0.01 and lat.clock_resolution_ms == 0.0005
    assert (lat.p50_ci_low, lat.p50_ci_high) == (lat.p99_ci_low, lat.p99_ci_high) == pytest.approx((0.0095, 0.0105))


def test_readings_below_one_tick_give_intervals_that_start_at_zero() -> None:
    """Calls a 0.5 us clock reads as 0 or 0.5 us: widened by a tick, the low ends would be -0.5 us, a duration
    no call can take."""
    lat = Latency.from_values([0] * 300 + [500] * 100, resolution_ns=500)
    assert lat.p50_ci_low == lat.p99_ci_low == 0.0
    assert lat.p50_ci_high == pytest.approx(0.0005) and lat.p99_ci_high == pytest.approx(0.001)


def test_clocks_state_their_resolution() -> None:
    assert HostClock.resolution_ns == max(1, round(time.get_clock_info("perf_counter").resolution * 1e9))
    assert CudaEventClock.resolution_ns == 500  # cudaEventElapsedTime's documented "around 0.5 microseconds"


def test_cuda_event_clock_reads_the_events_milliseconds_as_nanoseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's Event.elapsed_time is in milliseconds: events 1.5 ms apart are 1,500,000 ns, both recorded on the
    runtime's stream, read once the end event has completed (the call's queued work is done). Only a GPU test
    read CUDA events, and it checked that a reading was positive, so a clock 1000x off (every GPU latency in
    microseconds read as milliseconds) passed on every machine."""
    recorded: list[tuple[object, object]] = []

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing

        def record(self, stream: object) -> None:
            recorded.append((self, stream))

        def synchronize(self) -> None:
            self.done = True

        def elapsed_time(self, end: Event) -> float:
            assert getattr(end, "done", False), "read before the end event completed"  # CUDA: cudaErrorNotReady
            return 1.5

    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(Event=Event)))
    clock = CudaEventClock(stream="runtime stream")
    clock.start()
    assert clock.stop() == 1_500_000
    assert recorded == [(clock.begin, "runtime stream"), (clock.end, "runtime stream")]


def test_latency_round_trips_through_json(values_ns: list[int]) -> None:
    lat = Latency.from_values(values_ns, resolution_ns=500)
    d = lat.to_dict()
    assert type(d["n"]) is int
    assert all(type(v) is float for k, v in d.items() if k != "n")
    assert Latency.from_dict(json.loads(json.dumps(d))) == lat


def test_a_latency_record_without_the_clock_resolution_reads_as_unknown(values_ns: list[int]) -> None:
    """Reports written before the resolution was recorded keep their intervals as written."""
    d = Latency.from_values(values_ns).to_dict()
    del d["clock_resolution_ms"]
    assert Latency.from_dict(d) == Latency.from_values(values_ns)


def test_latency_from_dict_names_missing_fields(values_ns: list[int]) -> None:
    d = Latency.from_values(values_ns).to_dict()
    del d["p99_ci_high"]
    with pytest.raises(OptbenchError, match="p99_ci_high"):
        Latency.from_dict(d)


def test_latency_of_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Latency.from_values([])


def test_latency_of_a_table_of_durations_is_an_error_naming_its_shape() -> None:
    """Durations come as one flat sequence; a 2-D table (rounds by calls, say) is refused by its shape, not
    pooled into a median whose intervals were ranked along one row."""
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        Latency.from_values([[1, 2, 3], [4, 5, 6]])


class FakeClock:
    """perf_counter_ns stand-in: each call to `work` takes `step_ns` of fake time."""

    def __init__(self, step_ns: int) -> None:
        self.now = 0
        self.step_ns = step_ns
        self.calls = 0

    def perf_counter_ns(self) -> int:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += self.step_ns


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(step_ns=10_000_000)  # 10 ms a call
    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter_ns=fake.perf_counter_ns))
    return fake


def test_time_calls_runs_warmup_then_min_iters(clock: FakeClock) -> None:
    times = time_calls(clock.work, Timing(warmup=3, min_iters=5, min_seconds=0, max_seconds=10))
    assert times == [10_000_000] * 5
    assert clock.calls == 8
    assert all(type(t) is int for t in times)


@pytest.mark.parametrize("min_seconds", [0.095, 0.1])
def test_time_calls_runs_until_min_seconds(clock: FakeClock, min_seconds: float) -> None:
    """Ten 10 ms calls reach 0.1 s on the dot: reached is enough, no eleventh call."""
    times = time_calls(clock.work, Timing(warmup=0, min_iters=1, min_seconds=min_seconds, max_seconds=10))
    assert len(times) == 10


def test_time_calls_stops_at_max_seconds_with_warning(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="optbench.measure"):
        times = time_calls(clock.work, Timing(warmup=0, min_iters=100, min_seconds=0, max_seconds=0.045))
    assert len(times) == 5
    assert "max_seconds" in caplog.text


def test_time_calls_times_at_least_three_calls_past_max_seconds(
    clock: FakeClock,
) -> None:
    times = time_calls(clock.work, Timing(warmup=0, min_iters=100, min_seconds=0, max_seconds=0.001))
    assert len(times) == 3


def test_time_calls_with_a_cycle_stops_after_whole_passes_only(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A fast model and a slow one over the same 7 batches of different cost: both are timed on whole passes."""
    timing = Timing(warmup=0, min_iters=10, min_seconds=0, max_seconds=10)
    assert len(time_calls(clock.work, timing, cycle=7)) == 14
    assert len(time_calls(clock.work, timing, cycle=1)) == 10
    with caplog.at_level(logging.WARNING, logger="optbench.measure"):  # max_seconds still stops mid-pass
        cut = time_calls(clock.work, Timing(warmup=0, min_iters=10, min_seconds=0, max_seconds=0.045), cycle=7)
    assert len(cut) == 5 and "the end of a pass over the 7 inputs" in caplog.text


def test_time_calls_reads_the_clock_around_every_timed_call_only() -> None:
    events: list[str] = []

    class Recording:
        def start(self) -> None:
            events.append("start")

        def stop(self) -> int:
            events.append("stop")
            return 1

    time_calls(lambda: events.append("call"), Timing(warmup=1, min_iters=2, min_seconds=0, max_seconds=10), Recording())
    assert events == ["call", "start", "call", "stop", "start", "call", "stop"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup": -1}, "warmup"),
        ({"min_iters": 0}, "min_iters"),
        ({"min_seconds": -0.1}, "min_seconds"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"min_seconds": 5, "max_seconds": 1}, "max_seconds"),
    ],
)
def test_timing_rejects_bad_settings(kwargs: dict, match: str) -> None:
    args = {"warmup": 0, "min_iters": 1, "min_seconds": 0, "max_seconds": 1} | kwargs
    with pytest.raises(OptbenchError, match=match):
        Timing(**args)


def test_max_seconds_may_equal_min_seconds() -> None:
    assert Timing(min_seconds=2.0, max_seconds=2.0).max_seconds == 2.0


def test_timing_defaults_are_the_readme_s() -> None:
    """A recipe that leaves [bench]'s timing keys out is timed as the README's example says: 5 untimed calls,
    then 20 calls and 2 s at least, 60 s at most."""
    assert Timing() == Timing(warmup=5, min_iters=20, min_seconds=2.0, max_seconds=60.0)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        ((8.0, 12.0), (2.0, 4.0), (2.0, 6.0)),
        ((8.0, 12.0), (-math.inf, math.inf), (0.0, math.inf)),  # a p50 from fewer than 6 calls
        ((-math.inf, math.inf), (2.0, 4.0), (0.0, math.inf)),
    ],
)
def test_ratio_interval_is_what_both_intervals_allow(numerator: tuple, denominator: tuple, expected: tuple) -> None:
    assert ratio_interval(numerator, denominator) == expected


def test_gap_pct_is_the_gap_in_percent_of_the_mean_either_way_round() -> None:
    """p50s of 9 and 11 ms are 2 ms apart, 20% of their 10 ms mean, whichever was measured first, and so are their
    rates (1/9 and 1/11 calls per ms): a noise floor taken on p50s holds for throughputs and speedups. Only the
    benchmark's and compare's tests checked it, through their own figures."""
    assert gap_pct(9.0, 11.0) == gap_pct(11.0, 9.0) == pytest.approx(20.0)
    assert gap_pct(1 / 9, 1 / 11) == pytest.approx(20.0)


def test_throughput_is_batch_over_mean_latency() -> None:
    lat = Latency.from_values([10_000_000, 10_000_000, 40_000_000])  # mean 20 ms, p50 10 ms
    assert throughput(8, lat) == pytest.approx(400.0)
    with pytest.raises(OptbenchError, match="batch_size"):
        throughput(0, lat)
    with pytest.raises(ValueError, match=r"mean latency must be positive, got 0\.0 ms"):  # every call read 0
        throughput(8, Latency.from_values([0, 0, 0]))


def test_peak_rss_is_vmhwm_in_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/self/status gives kB (KiB): 524288 kB of high-water mark is 512 MiB, not the peak of the address
    space (VmPeak) nor what is resident now (VmRSS)."""
    status = "VmPeak:\t 9999999 kB\nVmHWM:\t  524288 kB\nVmRSS:\t  100000 kB\n"
    monkeypatch.setattr(measure, "open", lambda *args, **kwargs: io.StringIO(status), raising=False)
    assert peak_rss_mb() == 512.0


@pytest.mark.parametrize(("platform", "ru_maxrss"), [("linux", 512 * 1024), ("darwin", 512 * 2**20)])
def test_peak_rss_without_proc_is_ru_maxrss_in_mib(
    platform: str, ru_maxrss: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without /proc (macOS), the peak is getrusage's ru_maxrss: KiB on Linux, bytes on macOS; 512 MiB either way."""

    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(measure, "open", no_proc, raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(measure.resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=ru_maxrss))
    assert peak_rss_mb() == 512.0


def test_peak_rss_is_positive_and_never_falls() -> None:
    before = peak_rss_mb()
    block = np.ones(8 * 1024 * 1024)  # 64 MiB, touched
    after = peak_rss_mb()
    assert block.sum() > 0
    assert 0 < before <= after


def test_peak_rss_of_a_child_is_its_own_not_its_parents() -> None:
    import subprocess

    hog = np.ones(64 * 1024 * 1024)  # 512 MiB touched in this (parent) process
    code = "from optbench.measure import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert hog.sum() > 0
    assert child < peak_rss_mb() - 256


GPU_A = "aaaaaaaa-0000-4000-8000-00000000000a"
GPU_B = "bbbbbbbb-0000-4000-8000-00000000000b"
MIG_C = "cccccccc-0000-4000-8000-00000000000c"


class FakeNvml:
    """pynvml's calls that GpuMemory makes, on a made-up machine of two GPUs in PCI order (an 80 GiB one, then
    a 141 GiB one holding this process) and a MIG instance."""

    class NVMLError(Exception):
        pass

    def __init__(self, pid: int, fail: bool = False) -> None:
        self.pid, self.fail, self.opened = pid, fail, 0

    def nvmlInit(self) -> None:
        if self.fail:
            raise self.NVMLError("Driver Not Loaded")
        self.opened += 1

    def nvmlShutdown(self) -> None:
        self.opened -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: bytes) -> str:
        handles = {f"GPU-{GPU_A}": "gpu0", f"GPU-{GPU_B}": "gpu1", f"MIG-{MIG_C}": "mig"}
        uuid = uuid.decode()  # bytes, as every pynvml release takes them
        if uuid not in handles:
            raise self.NVMLError("Not Found")
        return handles[uuid]

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(total={"gpu0": 80 * 2**30, "gpu1": 141 * 2**30, "mig": 18 * 2**30}[handle])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        mine = [SimpleNamespace(pid=self.pid, usedGpuMemory=600 * 2**20)] if handle in ("gpu1", "mig") else []
        return [SimpleNamespace(pid=1, usedGpuMemory=2**30), *mine]


class FakeLibcuda:
    """libcuda's calls that measure makes, numbering its devices as CUDA's default (fastest first) order does:
    NVML's second GPU is CUDA's device 0."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids

    def cuInit(self, flags: int) -> int:
        return 0

    def cuDeviceGet(self, device: ctypes._Pointer, ordinal: int) -> int:
        if ordinal >= len(self.uuids):
            return 101  # CUDA_ERROR_INVALID_DEVICE
        device.contents.value = ordinal
        return 0

    def cuDeviceGetUuid_v2(self, raw: ctypes.Array, device: ctypes.c_int) -> int:
        ctypes.memmove(raw, uuid.UUID(self.uuids[device.value]).bytes, 16)
        return 0


def fake_libcuda(monkeypatch: pytest.MonkeyPatch, *uuids: str) -> None:
    """Make this machine's CUDA driver one whose devices have these UUIDs, in CUDA's order; none: no driver.
    Other libraries (torch's, imported meanwhile) load as ever."""
    real = ctypes.CDLL

    def load(name: str, *args: Any, **kwargs: Any) -> Any:
        if name != "libcuda.so.1":
            return real(name, *args, **kwargs)
        if not uuids:
            raise OSError(f"{name}: cannot open shared object file")
        return FakeLibcuda(list(uuids))

    monkeypatch.setattr(ctypes, "CDLL", load)


def test_gpu_memory_reads_nvml_for_the_device_cuda_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    # CUDA numbers the faster GPU first, NVML by PCI bus: CUDA's device 0 is NVML's device 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    fake_libcuda(monkeypatch, GPU_B, GPU_A)
    nvml = FakeNvml(os.getpid())
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    memory = GpuMemory.measure(device_index=0)
    assert memory.device_total_mb == 141 * 1024 and memory.process_used_mb == 600
    assert GpuMemory.measure(device_index=1).device_total_mb == 80 * 1024
    assert nvml.opened == 0  # NVML shut down again
    if not torch_cuda_initialized():
        assert memory.peak_allocated_mb is None and memory.peak_reserved_mb is None
    fake_libcuda(monkeypatch, MIG_C)  # a MIG instance: NVML knows it by its "MIG-" UUID
    memory = GpuMemory.measure()
    assert memory.device_total_mb == 18 * 1024 and memory.process_used_mb == 600


def test_cuda_uuid_reads_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_libcuda(monkeypatch, GPU_B, GPU_A)
    assert [measure._cuda_uuid(i) for i in range(3)] == [GPU_B, GPU_A, None]  # 2: no such device
    fake_libcuda(monkeypatch)
    assert measure._cuda_uuid(0) is None


def test_gpu_memory_without_nvml_or_driver_is_unknown_not_zero(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    import os

    fake_libcuda(monkeypatch, GPU_A)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: nvidia-ml-py not installed
    assert GpuMemory.measure().device_total_mb is None
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(os.getpid(), fail=True))
    with caplog.at_level(logging.WARNING, logger="optbench.measure"):
        memory = GpuMemory.measure()
    assert memory.device_total_mb is None and memory.process_used_mb is None
    assert "Driver Not Loaded" in caplog.text
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(pid=-1))
    memory = GpuMemory.measure()  # a process NVML cannot see (another pid namespace): total only
    assert memory.device_total_mb == 80 * 1024 and memory.process_used_mb is None
    fake_libcuda(monkeypatch)  # no CUDA driver to name the device: unknown, never another GPU's figures
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optbench.measure"):
        memory = GpuMemory.measure()
    assert memory.device_total_mb is None and memory.process_used_mb is None
    assert "gives no UUID for CUDA device 0" in caplog.text


def test_gpu_memory_pools_rounds_by_the_larger_figure() -> None:
    first = GpuMemory(100.0, 200.0, None, 1000.0)
    second = GpuMemory(150.0, 180.0, 300.0, 1000.0)
    assert first.merged(second) == GpuMemory(150.0, 200.0, 300.0, 1000.0)
    assert GpuMemory.from_dict(first.to_dict()) == first


def torch_cuda_initialized() -> bool:
    import torch

    return torch.cuda.is_initialized()


def test_gpu_memory_leaves_out_torch_s_figures_for_models_outside_its_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    cuda = SimpleNamespace(
        is_initialized=lambda: True, max_memory_allocated=lambda i: 3 * 2**20, max_memory_reserved=lambda i: 4 * 2**20
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    through = GpuMemory.measure()
    assert (through.peak_allocated_mb, through.peak_reserved_mb) == (3.0, 4.0)
    outside = GpuMemory.measure(through_torch=False)  # a TensorRT engine: torch's counters miss it
    assert outside.peak_allocated_mb is None and outside.peak_reserved_mb is None


def test_gpu_memory_of_a_process_that_never_started_cuda_in_torch_is_unknown_not_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch imported but its CUDA never initialized: its counters read 0 though they saw nothing, so no figure."""
    cuda = SimpleNamespace(
        is_initialized=lambda: False, max_memory_allocated=lambda i: 0, max_memory_reserved=lambda i: 0
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert GpuMemory.measure() == GpuMemory()


def test_gpu_memory_of_a_process_nvml_sees_holding_nothing_is_zero_not_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A figure read as 0 MiB is a reading: only one nobody could read is None."""
    import os

    class HoldingNothing(FakeNvml):
        def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
            return [SimpleNamespace(pid=self.pid, usedGpuMemory=0)]

    fake_libcuda(monkeypatch, GPU_A)
    monkeypatch.setitem(sys.modules, "pynvml", HoldingNothing(os.getpid()))
    assert GpuMemory.measure(through_torch=False).process_used_mb == 0.0
