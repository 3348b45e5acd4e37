"""The timing protocol's judge side: claims bounded by the judge's clock, fetched outputs
checked against the reference and their digests, inputs masked until the timed call.

The pure parts run on made-up numbers. The protocol end to end runs here with the host clock
standing in for CUDA events (EvalConfig.host_timing_test, a test double for the GPU clock:
nothing it measures is reported as a time); the same checks on a GPU are in tests/test_gpu.py.
"""

from __future__ import annotations

import torch

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.evaluate.runner_timing import digest, mask, unmask
from kernelpro.evaluate.timed import Overhead, clock_problem, pick_fetches
from kernelpro.evaluate.timing import TimingPolicy
from kernelpro.evaluate.worker import WorkerLimits
from kernelpro.task import load_task
from tests.conftest import CANDIDATES, FIXTURES, SOLUTIONS

OVERHEAD = Overhead(round_trip_ms=0.1, unmask_ms=0.02, flush_ms=0.05, digest_ms=0.03)
HOST_TIMED = EvalConfig(guard=False, host_timing_test=True,
                        timing_policy=TimingPolicy(warmup_calls=1, min_trials=8, max_trials=8),
                        limits=WorkerLimits(compile_timeout_s=60, run_timeout_s=30))


def test_claims_that_fit_the_clock_pass():
    claims = [1.0, 1.01, 0.99, 1.0]
    walls = [c + OVERHEAD.total_ms + 0.05 for c in claims]
    assert clock_problem(claims, walls, OVERHEAD) is None


def test_a_claim_longer_than_its_request_is_forged():
    assert "forged" in clock_problem([5.0, 1.0], [2.0, 1.3], OVERHEAD)


def test_work_outside_the_events_shows_as_excess_on_the_judges_clock():
    # A side stream: the events time nothing, the device-wide sync waits 3 ms for the work.
    claims = [0.01] * 8
    walls = [3.2] * 8
    assert "escaped the timed events" in clock_problem(claims, walls, OVERHEAD)


def test_a_skipped_flush_shows_as_a_too_short_request():
    claims = [1.0] * 8
    walls = [1.01] * 8  # less than the round trip measured before the candidate loaded
    assert "skipped part of the protocol" in clock_problem(claims, walls, OVERHEAD)


def test_noise_within_the_slack_is_not_a_rejection():
    claims = [10.0] * 8
    walls = [10.0 + OVERHEAD.total_ms + 2.0] * 8  # 2 ms jitter on a 10 ms call: under 25%
    assert clock_problem(claims, walls, OVERHEAD) is None


def test_fetches_are_a_nonempty_secret_sample():
    picks = [pick_fetches(8) for _ in range(200)]
    assert all(len(p) == 2 and p <= set(range(8)) for p in picks)
    assert len({frozenset(p) for p in picks}) > 10  # not a fixed pattern
    assert pick_fetches(1) == {0}


def test_masked_inputs_hold_nothing_until_unmasked():
    for t in (torch.randn(7, 5), torch.arange(11, dtype=torch.int64), torch.rand(3) > 0.5,
              torch.randn(4, dtype=torch.float16), torch.zeros(0)):
        words, meta = mask(t, 0xDEADBEEF)
        if t.numel() and t.dtype != torch.bool:
            assert not torch.equal(words.view(torch.uint8)[: meta["nbytes"]],
                                   t.contiguous().view(-1).view(torch.uint8))
        back = unmask(words.clone(), meta, 0xDEADBEEF)
        assert back.dtype == t.dtype and torch.equal(back, t)


def test_digests_depend_on_every_value_and_the_salt():
    x = torch.randn(1000)
    d = digest([x], 5)
    assert d == digest([x.clone()], 5)
    assert d != digest([x], 6)
    y = x.clone()
    y[777] = y[777] + 1e-3
    assert d != digest([y], 5)
    assert digest([x[:500], x[500:]], 5) != digest([x[500:], x[:500]], 5)


def test_an_honest_candidate_passes_the_protocol_with_the_host_clock():
    result = evaluate_candidate(load_task(FIXTURES / "tasks" / "tiny_relu.py"),
                                SOLUTIONS / "level1" / "2_ReLU.py", HOST_TIMED)
    assert result.status == "correct", result.reason
    assert not result.timed and result.runtime_ms is None  # no GPU: nothing is a time
    checks = {c.name: c for c in result.checks}
    assert checks["timed_outputs"].passed and checks["judge_clock"].passed
    assert "host clock" in result.reason


def test_a_patched_timer_that_shaves_claims_is_caught_by_the_judges_clock():
    result = evaluate_candidate(load_task(FIXTURES / "tasks" / "tiny_relu.py"),
                                CANDIDATES / "clock_shaver.py", HOST_TIMED)
    assert result.status == "incorrect" and result.error_class == "ClaimRejected", \
        result.reason
    assert "escaped the timed events" in result.reason


def test_claims_longer_than_the_judges_clock_are_forged():
    result = evaluate_candidate(load_task(FIXTURES / "tasks" / "tiny_relu.py"),
                                CANDIDATES / "clock_stretcher.py", HOST_TIMED)
    assert result.status == "incorrect" and "forged" in result.reason, result.reason
