"""The timer (DESIGN §5): one timing core with a device interface and a pure summary beside it.

- `Timer.time_call(fn)` times one call. `CudaEventTimer` flushes L2 (a buffer twice the L2
  size, zeroed outside the timed region), records CUDA events around the call on the current
  stream, then synchronises the whole device and also takes the host time. `HostTimer` times
  with the host clock only; tests use it to exercise the loop on the CPU.
- `measure` interleaves the functions (A B A B ...) so clock and thermal drift hit all of them,
  and stops when every median's relative confidence interval is under the target or the time
  cap is reached.
- `summarize` is pure: raw times in, statistics out.
- `escaped_work` compares event and host times: work the events did not see (a side stream, a
  background thread) shows up as host time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

from kernelpro.types import TimingStats


@dataclass(frozen=True)
class CallTime:
    device_ms: float  # what the CUDA events saw on the timed stream
    host_ms: float  # host wall time from launch to a device-wide synchronize


class Timer(Protocol):
    def time_call(self, fn: Callable[[], Any]) -> tuple[CallTime, Any]: ...


@dataclass(frozen=True)
class TimingPolicy:
    warmup_calls: int = 3  # KernelBench does 3 warm-up calls
    min_trials: int = 10
    max_trials: int = 1000
    target_rel_ci: float = 0.01  # stop when the median's 95% CI half-width is under 1%
    max_time_s: float = 10.0  # per measure() call, all functions together
    check_every: int = 10


class HostTimer:
    """Host-clock timer for CPU functions (tests and dry runs); never reported as GPU time."""

    def time_call(self, fn: Callable[[], Any]) -> tuple[CallTime, Any]:
        t0 = time.perf_counter()
        out = fn()
        ms = (time.perf_counter() - t0) * 1e3
        return CallTime(ms, ms), out


class CudaEventTimer:
    """CUDA events on the current stream, L2 flushed before every call, host time beside."""

    def __init__(self, l2_bytes: int, device: Any = None):
        import torch

        self._torch = torch
        self._device = device or torch.device("cuda")
        # Twice the L2 size, so no line of the previous call survives the flush.
        flush_bytes = max(2 * l2_bytes, 64 * 1024 * 1024)
        self._flush = torch.empty(flush_bytes, dtype=torch.int8, device=self._device)

    def time_call(self, fn: Callable[[], Any]) -> tuple[CallTime, Any]:
        torch = self._torch
        self._flush.zero_()
        torch.cuda.synchronize(self._device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(self._device)  # every stream of the device, not just ours
        host_ms = (time.perf_counter() - t0) * 1e3
        return CallTime(start.elapsed_time(end), host_ms), out


def summarize(times_ms: Sequence[float]) -> TimingStats:
    """Median, IQR, min, mean and the relative 95% CI half-width of the median.

    The CI is distribution-free: order statistics whose ranks come from Binomial(n, 1/2)
    (e.g. Conover, Practical Nonparametric Statistics, 3rd ed., §3.2). Fewer than 6 samples
    give an infinite CI.
    """
    if len(times_ms) == 0:
        raise ValueError("summarize() needs at least one time")
    x = np.sort(np.asarray(times_ms, dtype=float))
    n = len(x)
    median = float(np.median(x))
    q1, q3 = np.percentile(x, [25, 75])
    rel_ci = math.inf
    if n >= 6 and median > 0:
        lo_rank = int(stats.binom.ppf(0.025, n, 0.5))  # 1-based rank of the lower bound
        lo = x[max(lo_rank - 1, 0)]
        hi = x[min(n - lo_rank, n - 1)]
        rel_ci = float((hi - lo) / 2 / median)
    return TimingStats(median_ms=median, iqr_ms=float(q3 - q1), min_ms=float(x[0]),
                       mean_ms=float(x.mean()), trials=n, rel_ci=rel_ci)


def measure(calls: dict[str, Callable[[], Any]], timer: Timer, policy: TimingPolicy,
            on_output: Callable[[str, Any], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, list[CallTime]]:
    """Time every function, interleaved, until all medians are tight or time runs out."""
    for fn in calls.values():
        for _ in range(policy.warmup_calls):
            fn()
    times: dict[str, list[CallTime]] = {name: [] for name in calls}
    t_start = clock()
    for trial in range(1, policy.max_trials + 1):
        for name, fn in calls.items():
            t, out = timer.time_call(fn)
            times[name].append(t)
            if on_output is not None:
                on_output(name, out)
        if trial >= policy.min_trials and trial % policy.check_every == 0:
            tight = all(summarize([t.device_ms for t in ts]).rel_ci <= policy.target_rel_ci
                        for ts in times.values())
            if tight or clock() - t_start > policy.max_time_s:
                break
    return times


def escaped_work(times: Sequence[CallTime], min_gap_ms: float = 0.05,
                 rel_gap: float = 0.5) -> str | None:
    """A reason if the host saw much more time than the events did, else None.

    Honest calls differ by launch and synchronize latency (tens of µs). A side stream or a
    thread makes the events time nothing while the device-wide synchronize waits for the work.
    """
    device = float(np.median([t.device_ms for t in times]))
    host = float(np.median([t.host_ms for t in times]))
    gap = host - device
    if gap > max(min_gap_ms, rel_gap * device):
        return (f"host time {host:.3f} ms vs event time {device:.3f} ms: work escaped the "
                "timed stream (side stream or background thread)")
    return None


def rotating(fn: Callable[..., Any], input_sets: Sequence[Sequence[Any]]) -> Callable[[], Any]:
    """A zero-argument call that cycles through input sets (for inputs that fit in cache)."""
    state = {"i": 0}

    def call() -> Any:
        args = input_sets[state["i"] % len(input_sets)]
        state["i"] += 1
        return fn(*args)

    return call


def measure_energy(fn: Callable[[], Any], read_mj: Callable[[], int],
                   sync: Callable[[], None], min_seconds: float = 1.0,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """Joules per call from a cumulative energy counter in millijoules (NVML's).

    The counter updates every few tens of milliseconds, so calls repeat for at least
    `min_seconds` (and 10 calls) to outlast its sampling; returns (J per call, calls).
    """
    sync()
    start_mj, t0, calls = read_mj(), clock(), 0
    while calls < 10 or clock() - t0 < min_seconds:
        fn()
        calls += 1
    sync()
    return (read_mj() - start_mj) / 1000.0 / calls, calls
