"""KernelBench's own protocol (`--kernelbench-compat`), to compare verdicts with ours.

Reproduced from reference/kernelbench.md: seed 42 and five trial seeds drawn from it, the
reference and then the candidate called on the very same tensors, a shape check and
`torch.allclose(atol=tol, rtol=tol)`; timing with CUDA events on the current stream, 3 warm-up
calls, 101 trials with the first discarded, a 256 MiB buffer fill before each trial, the same
inputs every trial, and the mean rounded to 3 significant figures. One deliberate difference:
integer and bool inputs keep their dtype (KernelBench casts them to float, which breaks tasks
such as cross-entropy and masked cumsum); the verdict says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kernelpro.evaluate.correctness import WallReport, invoke, prepare, set_seed, trial_seeds
from kernelpro.types import CheckResult

KB_WARMUP = 3
KB_TRIALS = 100
KB_FLUSH_BYTES = 256 * 1024 * 1024
NOTE = ("KernelBench protocol (--kernelbench-compat): none of kernelpro's extra checks ran; "
        "integer/bool inputs keep their dtype (KernelBench casts them to float)")


def kernelbench_wall(ref: Callable[..., Any], cand: Callable[..., Any],
                     get_inputs: Callable[[], list[Any]], device: torch.device,
                     dtype: torch.dtype, trials: int, seed: int, tol: float,
                     sync: Callable[[], None] = lambda: None) -> WallReport:
    report = WallReport(True, None, notes=[NOTE])
    for i, s in enumerate(trial_seeds(seed, trials)):
        set_seed(s)
        inputs = prepare(get_inputs(), device, dtype)
        ref_out = invoke(ref, inputs, s)
        sync()
        cand_out = invoke(cand, inputs, s)
        sync()
        problem = _kb_compare(ref_out, cand_out, tol)
        report.trials.append({"label": f"trial {i}", "seed": s, "ok": problem is None})
        if problem:
            report.passed = False
            report.reason = f"trial {i}: {problem}"
            report.checks.append(CheckResult("kernelbench_allclose", False, report.reason))
            return report
    report.checks.append(CheckResult("kernelbench_allclose", True))
    return report


def _kb_compare(ref: Any, cand: Any, tol: float) -> str | None:
    if not isinstance(cand, torch.Tensor) or not isinstance(ref, torch.Tensor):
        return "output is not a tensor"
    if ref.shape != cand.shape:
        return f"output shape {tuple(cand.shape)} != reference {tuple(ref.shape)}"
    try:
        if torch.allclose(ref, cand, atol=tol, rtol=tol):
            return None
    except RuntimeError as exc:  # KernelBench counts an exception here as incorrect
        return f"allclose raised: {exc}"
    return f"outputs differ (max abs error {float((ref - cand).abs().max()):.3g})"


def kernelbench_time_ms(fn: Callable[[], Any], device: torch.device) -> tuple[float, list[float]]:
    """KernelBench's timing loop: the mean over trials, rounded to 3 significant figures."""
    flush = torch.empty(KB_FLUSH_BYTES // 4, dtype=torch.float32, device=device)
    for _ in range(KB_WARMUP):
        fn()
    torch.cuda.synchronize(device)
    times = []
    for trial in range(KB_TRIALS + 1):
        flush.fill_(float(trial))
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        if trial > 0:
            times.append(start.elapsed_time(end))
    mean = sum(times) / len(times)
    return _round3(mean), times


def _round3(x: float) -> float:
    if x <= 0 or not math.isfinite(x):
        return x
    return round(x, 2 - math.floor(math.log10(abs(x))))


def time_kernelbench(ctx: Any, ref_model: Any, ref_mod: Any, cand: Any, device: Any,
                     dtype: Any) -> dict[str, Any]:
    """KernelBench's timing (--kernelbench-compat): its loop in the judge for the reference
    and in the runner for the candidate, on the same inputs; the claim must fit the clock."""
    from kernelpro.evaluate.signatures import tag
    from kernelpro.task import call_get_inputs

    set_seed(42)
    inputs = prepare(call_get_inputs(Path(ctx.req["task_path"]), ref_mod), device, dtype)
    with torch.no_grad():
        eager, _ = kernelbench_time_ms(lambda: ref_model(*inputs), device)
    t0 = time.perf_counter()
    reply, _ = cand.runner.request({"op": "kb_time", "model": cand.model}, inputs,
                                   cand.timeout_s * (KB_TRIALS + 4), 1 << 20,
                                   "KernelBench's timing loop")
    wall = (time.perf_counter() - t0) * 1e3
    claim = float(reply.get("ms", -1))
    if not math.isfinite(claim) or claim <= 0 or claim * KB_TRIALS > wall * 1.01:
        return dict(status="incorrect", stage="timing", error_class="ClaimRejected",
                    reason=f"the runner claimed {claim:.4g} ms per call for {KB_TRIALS} calls "
                           f"that took {wall:.4g} ms on the judge's clock {tag(9)}")
    return dict(status="correct", stage="timing", correct=True, timed=True, runtime_ms=claim,
                eager_ms=eager, speedup_eager=eager / claim)
