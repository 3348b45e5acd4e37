"""The judge's half of timing (DESIGN §5, §12): fresh inputs per call, claims bounded by its
own clock, a secret sample of outputs checked, the physics floor.

Per timed call i the judge draws fresh inputs (a secret seed), stages them in the runner
masked, then sends the timed request with the key and measures, on its own clock, the time
until the reply: `wall_i`. The runner claims `claim_i` (its CUDA events) and a digest of the
output it keeps. Checks, all on data the judge holds:

- no claim exceeds its wall (a claim the clock forbids is forged);
- the median of `wall_i - claim_i - overhead` stays small, where `overhead` is what the
  judge measured itself for everything the request does besides forward (a round trip
  measured before the candidate loaded, unmasking, the L2 flush, the digest): work on
  another stream or thread, or claims shaved by a patched timer, shows up as excess;
- `wall_i - claim_i` does not fall below the round trip and flush: a runner that skips the
  flush (a warm cache) is caught;
- a secret quarter of the kept outputs (at least one per batch) is fetched after the batch
  and must match the reference on the same inputs and the digest given at the call: work
  deferred past the reply, skipped on unfetched calls or answered from a cache shows here;
- the median claim is above the roofline floor (physics).

The reference is timed in the judge the same way on the same inputs, interleaved call by call.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kernelpro.evaluate.correctness import clone_all, compare, prepare, set_seed
from kernelpro.evaluate.remote import RemoteModel, RunnerFailure
from kernelpro.evaluate.runner_timing import Clock, digest, flatten, mask
from kernelpro.evaluate.signatures import tag
from kernelpro.evaluate.timing import TimingPolicy, compile_baseline, sm_clock_mhz, summarize
from kernelpro.task import call_get_inputs
from kernelpro.types import CheckResult

SLACK_ABS_MS = 0.2  # excess the judge's clock tolerates per call (scheduling jitter)
SLACK_REL = 0.25  # ... or this share of the median claim, whichever is larger
CLAIM_EPS_MS = 0.02  # clocks differ slightly: a claim may exceed its wall by this much
FETCH_SHARE = 0.25
BATCH = 8  # timed calls whose outputs the runner keeps before the judge fetches some
THROTTLE_DROP = 0.10


@dataclass(frozen=True)
class Overhead:
    """What a timed request costs besides forward, measured by the judge itself (ms)."""

    round_trip_ms: float  # before the candidate loaded: the runner was still trusted
    unmask_ms: float
    flush_ms: float
    digest_ms: float

    @property
    def total_ms(self) -> float:
        return self.round_trip_ms + self.unmask_ms + self.flush_ms + self.digest_ms

    @property
    def floor_ms(self) -> float:
        """The least a request that follows the protocol can cost beyond forward."""
        return 0.5 * (self.round_trip_ms + self.flush_ms)


def clock_problem(claims: list[float], walls: list[float], overhead: Overhead) -> str | None:
    """Whether the runner's claims fit the judge's clock (pure: tested on made-up times)."""
    for i, (c, w) in enumerate(zip(claims, walls, strict=True)):
        if c > w * 1.01 + CLAIM_EPS_MS:
            return (f"timed call {i}: the runner claimed {c:.4g} ms but the whole request took "
                    f"{w:.4g} ms on the judge's clock: the claim is forged {tag(9)}")
    gaps = sorted(w - c for c, w in zip(claims, walls, strict=True))
    gap = gaps[len(gaps) // 2]
    claim = sorted(claims)[len(claims) // 2]
    excess = gap - overhead.total_ms
    if excess > max(SLACK_ABS_MS, SLACK_REL * claim):
        return (f"the judge's clock saw {gap:.4g} ms per call beyond the claimed {claim:.4g} ms "
                f"(the protocol itself costs {overhead.total_ms:.3g} ms): work escaped the "
                f"timed events (another stream or thread, or a patched timer) {tag(1)}")
    if gap < overhead.floor_ms:
        return (f"timed requests took only {gap:.4g} ms beyond the claimed time, less than the "
                f"round trip and L2 flush cost ({overhead.floor_ms:.3g} ms): the runner skipped "
                f"part of the protocol (the L2 flush) {tag(13)}")
    return None


def pick_fetches(n: int, share: float = FETCH_SHARE) -> set[int]:
    """A secret sample of the batch's calls (at least one) whose outputs are checked."""
    k = max(1, math.ceil(n * share))
    order = list(range(n))
    for i in range(n - 1, 0, -1):  # Fisher-Yates with a CSPRNG: the candidate cannot guess
        j = secrets.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    return set(order[:k])


def _event_ms(fn: Any, cuda: bool, repeat: int = 3) -> float:
    clock = Clock(cuda)
    return sorted(clock.time(fn)[0] for _ in range(repeat))[repeat // 2]


def measure_overhead(runner_round_trip_ms: float, inputs: list[Any], expected: Any,
                     flush_bytes: int, cuda: bool) -> Overhead:
    """The judge's own cost for the non-forward parts of a timed request, on its device."""
    words = [mask(t, 1)[0] for t in inputs if isinstance(t, torch.Tensor)]
    unmask_ms = _event_ms(lambda: [w.bitwise_xor_(1) for w in words], cuda)
    flush = torch.empty(flush_bytes, dtype=torch.int8, device=inputs[0].device) \
        if flush_bytes and inputs and isinstance(inputs[0], torch.Tensor) else None
    flush_ms = _event_ms(flush.zero_, cuda) if flush is not None else 0.0
    digest_ms = _event_ms(lambda: digest(flatten(expected), 7), cuda)
    return Overhead(runner_round_trip_ms, unmask_ms, flush_ms, digest_ms)


@dataclass
class Sample:
    """One timed call: what the judge sent, measured and was told."""

    slot: int
    inputs: list[Any]
    seed: int
    salt: int
    wall_ms: float
    claim_ms: float
    digest: int
    eager_ms: float


def _stage_and_time(cand: RemoteModel, slot: int, inputs: list[Any], flush_bytes: int,
                    repeat: int = 1) -> tuple[float, float, int, int, int]:
    key, salt, seed = secrets.randbits(32), secrets.randbits(31), secrets.randbits(31)
    values, metas = [], []
    for v in inputs:
        if isinstance(v, torch.Tensor):
            words, meta = mask(v.to("cpu"), key)
            values.append(words)
            metas.append(meta)
        else:
            values.append(v)
            metas.append(None)
    runner = cand.runner
    runner.request({"op": "stage", "slot": slot, "meta": metas}, values, cand.timeout_s,
                   1 << 20, "staging inputs")
    t0 = time.perf_counter()
    reply, _ = runner.request({"op": "timed", "slot": slot, "model": cand.model, "key": key,
                               "salt": salt, "seed": seed, "flush_bytes": flush_bytes,
                               "repeat": repeat}, None, cand.timeout_s * repeat, 1 << 20,
                              "a timed call")
    wall = (time.perf_counter() - t0) * 1e3
    try:
        claim, claimed_digest = float(reply["ms"]), int(reply["digest"])
    except (KeyError, TypeError, ValueError):
        raise RunnerFailure("ProtocolError", "the runner's reply to a timed call was "
                            "malformed") from None
    if not math.isfinite(claim) or claim < 0:
        raise RunnerFailure("ProtocolError", f"the runner claimed a time of {claim} ms")
    return wall, claim, claimed_digest, salt, seed


def time_candidate(ctx: Any, ref_model: Any, ref_mod: Any, cand: RemoteModel, device: Any,
                   dtype: Any, tol: float, checks: list[CheckResult], notes: list[str]
                   ) -> dict[str, Any]:
    from kernelpro.evaluate.device import detect_gpu
    from kernelpro.evaluate.observers import OpTrace

    req = ctx.req
    cuda = device.type == "cuda"
    gpu = detect_gpu() if cuda else None
    policy = TimingPolicy(**req.get("timing_policy", {}))
    flush_bytes = max(2 * gpu.l2_bytes, 64 << 20) if gpu is not None else 0
    task_path = Path(req["task_path"])

    def fresh() -> list[Any]:
        set_seed(secrets.randbits(31))
        return prepare(call_get_inputs(task_path, ref_mod), device, dtype)

    def eager(inputs: list[Any], seed: int) -> float:
        if flush_bytes:
            flush.zero_()
        Clock(cuda).sync()
        set_seed(seed)
        with torch.no_grad():
            return Clock(cuda).time(lambda: ref_model(*inputs))[0]

    first = fresh()
    with torch.no_grad():
        expected = ref_model(*clone_all(first))
    flush = torch.empty(flush_bytes, dtype=torch.int8, device=device) if flush_bytes else None
    overhead = measure_overhead(ctx.runner.round_trip_ms, first, expected, flush_bytes, cuda)
    clock_before = sm_clock_mhz() if cuda else None
    for w in range(policy.warmup_calls):  # compiles and autotunes; claims ignored
        _stage_and_time(cand, -1 - w, fresh(), flush_bytes)
        ctx.runner.request({"op": "forget", "slots": [-1 - w]})
    samples: list[Sample] = []
    t_start, slot = time.perf_counter(), 0
    problem = None
    # The profiler is on through every timed call, the reference's too (the same cost per op
    # on both sides); its start and stop fall outside every call's clock.
    ctx.runner.request({"op": "trace", "action": "start"}, None, cand.timeout_s)
    with OpTrace(cuda):
        while problem is None:
            batch: list[Sample] = []
            for _ in range(BATCH):
                inputs = first if slot == 0 else fresh()
                wall, claim, dig, salt, seed = _stage_and_time(cand, slot, inputs, flush_bytes)
                batch.append(Sample(slot, inputs, seed, salt, wall, claim, dig,
                                    eager(clone_all(inputs), seed)))
                slot += 1
            problem = _check_batch(cand, ref_model, batch, tol, cuda)
            samples += batch
            n = len(samples)
            if n >= policy.min_trials:
                tight = max(summarize([s.claim_ms for s in samples]).rel_ci,
                            summarize([s.eager_ms for s in samples]).rel_ci) \
                    <= policy.target_rel_ci
                if tight or time.perf_counter() - t_start > policy.max_time_s \
                        or n >= policy.max_trials:
                    break
    reply, _ = ctx.runner.request({"op": "trace", "action": "stop"}, None, cand.timeout_s,
                                  16 << 20, "reading the timed calls' trace")
    clock_after = sm_clock_mhz() if cuda else None
    if clock_before and clock_after and clock_after < (1 - THROTTLE_DROP) * clock_before:
        notes.append(f"SM clock fell from {clock_before} to {clock_after} MHz during timing "
                     "(throttling); times may be pessimistic")
    checks.append(CheckResult("timed_outputs", problem is None, problem or ""))
    if problem:
        return dict(status="incorrect", stage="timing", error_class="TimedOutputMismatch",
                    reason=problem)
    report = reply.get("report") if isinstance(reply.get("report"), dict) else {}
    problem = clock_problem([s.claim_ms for s in samples], [s.wall_ms for s in samples],
                            overhead) or _timed_report(report, [s.slot for s in samples],
                                                       bool(req.get("strict")), notes)
    checks.append(CheckResult("judge_clock", problem is None, problem or ""))
    if problem:
        return dict(status="incorrect", stage="timing", error_class="ClaimRejected",
                    reason=problem)
    cand_stats = summarize([s.claim_ms for s in samples])
    eager_stats = summarize([s.eager_ms for s in samples])
    if cuda:
        wall = sorted(s.wall_ms for s in samples)[len(samples) // 2]
        notes.append(f"timing: {len(samples)} calls, each on fresh inputs; the judge's clock "
                     f"saw {wall:.4g} ms per timed request (protocol overhead "
                     f"{overhead.total_ms:.3g} ms); a secret {FETCH_SHARE:.0%} of the outputs "
                     f"(at least one in {BATCH}) checked against the reference and the digest")
    else:
        notes.append(f"timing protocol run with the host clock ({len(samples)} calls): a test "
                     "of the protocol without a GPU, not a measurement")
    floor_problem = _physics(ref_model, first, gpu, dtype, cand_stats.min_ms, notes)
    checks.append(CheckResult("physics_floor", floor_problem is None, floor_problem or ""))
    if floor_problem:
        return dict(status="incorrect", stage="timing", error_class="BelowPhysics",
                    reason=floor_problem)
    compile_ms = req.get("compile_ms")
    if compile_ms is None and req.get("compile_baseline", True) and cuda:
        compile_ms = compile_baseline(ref_model, [first], gpu, policy, notes)
    energy = _energy(ctx, cand, first, flush_bytes, cand_stats.median_ms, notes) \
        if req.get("energy") and cuda else None
    return dict(status="correct", stage="timing", correct=True, timed=cuda,
                runtime_ms=cand_stats.median_ms if cuda else None,
                timing=cand_stats if cuda else None,
                eager_ms=eager_stats.median_ms if cuda else None, compile_ms=compile_ms,
                speedup_eager=eager_stats.median_ms / cand_stats.median_ms if cuda else None,
                speedup_compile=(compile_ms / cand_stats.median_ms) if compile_ms else None,
                energy_j=energy)


def _check_batch(cand: RemoteModel, ref_model: Any, batch: list[Sample], tol: float,
                 cuda: bool) -> str | None:
    """Fetch a secret subset of the batch's outputs; check values and digests."""
    from kernelpro.evaluate.correctness import invoke, output_rms

    chosen = pick_fetches(len(batch))
    runner = cand.runner
    problem = None
    for i, s in enumerate(batch):
        if i not in chosen or problem:
            continue
        _, out = runner.request({"op": "fetch", "slot": s.slot}, None, cand.timeout_s,
                                cand.max_payload, "fetching a timed output")
        expected = invoke(ref_model, clone_all(s.inputs), s.seed)
        cmp = compare(expected, out, tol, tol * max(1.0, output_rms(expected)))
        if not cmp.ok:
            problem = (f"timed call {s.slot}: {cmp.reason}: an output of a timed call was "
                       f"wrong (work skipped on timed calls, or a cached answer) {tag(13)}")
            continue
        device_out = [t.to(s.inputs[0].device) if isinstance(s.inputs[0], torch.Tensor) else t
                      for t in flatten(out)]
        if digest(device_out, s.salt) != s.digest:
            problem = (f"timed call {s.slot}: the output fetched after the call differs from "
                       f"the one the runner digested at the call: the work was deferred past "
                       f"the timer or the output swapped {tag(10)}")
    runner.request({"op": "forget", "slots": [s.slot for s in batch]})
    return problem


def _timed_report(report: dict[str, Any], slots: list[int], strict: bool,
                  notes: list[str]) -> str | None:
    """The runner's profiler across the timed calls: a range for every call, no vendor
    kernels, no failed launches (claims: they can only reject)."""
    from kernelpro.evaluate.delegation import LIBRARY_KERNEL
    from kernelpro.evaluate.observers import TIMED_RANGE

    ops = report.get("ops") if isinstance(report.get("ops"), dict) else {}
    ranges = set(ops.get("ranges") or [])
    missing = [s for s in slots if f"{TIMED_RANGE}{s}" not in ranges]
    if ops.get("complete") is not True or missing:
        return (f"the profiler's trace of the timed calls was cut short or broken "
                f"({len(missing)} of {len(slots)} calls missing; reported by the runner) "
                f"{tag(8)}")
    if report.get("launch_errors"):
        return (f"a kernel launch failed during a timed call and forward still returned "
                f"(reported by the runner) {tag(14)}")
    kernels = {str(k)[:200] for k in ops.get("kernels") or [] if LIBRARY_KERNEL.search(str(k))}
    if kernels:
        problem = (f"timed calls launched vendor-library kernels ({', '.join(sorted(kernels)[:3])})"
                   f" {tag(8)}")
        if strict:
            return problem
        notes.append(f"delegation flagged, not rejected (use --strict to reject): {problem}")
    return None


def _physics(ref_model: Any, inputs: list[Any], gpu: Any, dtype: Any, min_ms: float,
             notes: list[str]) -> str | None:
    from kernelpro.profile.roofline import below_physics, measure_work, physics_floor_ms

    if gpu is None:
        return None
    if gpu.spec is None:
        notes.append(f"physics check skipped: {gpu.name} is not in the spec table")
        return None
    work = measure_work(ref_model, clone_all(inputs))
    floor = physics_floor_ms(work, gpu.spec, str(dtype).removeprefix("torch."), gpu.l2_bytes)
    return below_physics(min_ms, floor)


def energy_calls(median_ms: float, seconds: float = 1.0) -> int:
    """Forwards per energy measurement: at least `seconds` of them (NVML's counter updates
    every few tens of milliseconds), at least 10, at most 10,000."""
    return max(10, min(10_000, math.ceil(seconds * 1000.0 / max(median_ms, 1e-3))))


def _energy(ctx: Any, cand: RemoteModel, inputs: list[Any], flush_bytes: int, median_ms: float,
            notes: list[str]) -> float | None:
    """Joules per call from NVML's device-wide energy counter, read by the judge around
    timed requests (the candidate cannot touch the counter)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        read = lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))  # noqa: E731
        read()
    except Exception as exc:  # no nvidia-ml-py, or a GPU without the counter
        notes.append(f"energy not measured: {type(exc).__name__}: {exc}"[:200])
        return None
    calls = energy_calls(median_ms)
    slot = 10**6
    start = read()  # one request, `calls` forwards on the same inputs: at least a second,
    wall, claim, *_ = _stage_and_time(cand, slot, inputs, 0, repeat=calls)
    joules = (read() - start) / 1000.0 / calls  # (the counter updates every few tens of ms)
    ctx.runner.request({"op": "forget", "slots": [slot]})
    if claim * calls > wall * 1.01 + CLAIM_EPS_MS:
        notes.append("energy not reported: the runner's time claim does not fit the judge's "
                     "clock")
        return None
    return joules
