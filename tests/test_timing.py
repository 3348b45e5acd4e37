"""The timing core on the CPU: the pure summary, the interleaved adaptive loop, the checks.

`ScriptedTimer` is a test double for the CUDA event timer (no GPU here): it returns times
from a script, so the loop's stopping rules can be checked exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kernelpro.evaluate.timing import (
    CallTime,
    HostTimer,
    TimingPolicy,
    measure,
    rotating,
    summarize,
)


class ScriptedTimer:
    """Test double: per-call times drawn from a callable; records call order."""

    def __init__(self, next_ms):
        self.next_ms = next_ms
        self.calls = 0

    def time_call(self, fn):
        out = fn()
        self.calls += 1
        ms = self.next_ms()
        return CallTime(ms, ms), out


def test_summary_of_known_times():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert (s.median_ms, s.min_ms, s.trials) == (5.0, 1.0, 9)
    assert s.iqr_ms == pytest.approx(4.0)
    assert s.mean_ms == pytest.approx(5.0)


def test_summary_ci_is_infinite_below_six_samples_and_zero_for_constant_times():
    assert math.isinf(summarize([1.0, 1.0, 1.0]).rel_ci)
    assert summarize([2.5] * 50).rel_ci == 0.0


def test_summary_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    few = summarize(rng.normal(1.0, 0.05, 20)).rel_ci
    many = summarize(rng.normal(1.0, 0.05, 2000)).rel_ci
    assert many < few / 4


def test_summary_median_is_robust_to_one_huge_outlier():
    s = summarize([1.0] * 20 + [1000.0])
    assert s.median_ms == 1.0 and s.mean_ms > 40


def test_summary_rejects_empty_input():
    with pytest.raises(ValueError):
        summarize([])


def test_measure_interleaves_functions_abab():
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    policy = TimingPolicy(warmup_calls=0, min_trials=10, max_trials=10)
    measure(calls, ScriptedTimer(lambda: 1.0), policy)
    assert order == ["a", "b"] * 10


def test_measure_stops_at_min_trials_when_times_are_tight():
    policy = TimingPolicy(warmup_calls=2, min_trials=10, max_trials=1000, check_every=10)
    timer = ScriptedTimer(lambda: 1.0)
    times = measure({"a": lambda: None}, timer, policy)
    assert len(times["a"]) == 10


def test_measure_runs_to_max_trials_when_noise_never_settles():
    noise = itertools.cycle([1.0, 5.0, 0.2, 9.0])
    policy = TimingPolicy(warmup_calls=0, min_trials=10, max_trials=60, max_time_s=1e9)
    times = measure({"a": lambda: None}, ScriptedTimer(lambda: next(noise)), policy)
    assert len(times["a"]) == 60


def test_measure_stops_at_the_time_cap():
    ticks = itertools.count(0.0, 10.0)  # a fake clock: ten seconds per reading
    policy = TimingPolicy(warmup_calls=0, min_trials=10, max_trials=10_000, max_time_s=5,
                          check_every=10)
    noise = itertools.cycle([1.0, 3.0])
    times = measure({"a": lambda: None}, ScriptedTimer(lambda: next(noise)), policy,
                    clock=lambda: next(ticks))
    assert len(times["a"]) == 10


def test_measure_passes_outputs_of_timed_calls_for_rechecking():
    seen = []
    policy = TimingPolicy(warmup_calls=1, min_trials=10, max_trials=10)
    measure({"c": lambda: 42}, HostTimer(), policy, on_output=lambda n, o: seen.append((n, o)))
    assert seen == [("c", 42)] * 10


def test_host_timer_measures_real_cpu_work():
    (t, out) = HostTimer().time_call(lambda: sum(range(200_000)))
    assert out == sum(range(200_000)) and t.host_ms > 0 and t.device_ms == t.host_ms


def test_rotating_cycles_through_input_sets():
    call = rotating(lambda x: x, [[1], [2], [3]])
    assert [call() for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
