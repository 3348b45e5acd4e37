"""Timing a correct candidate against its baselines on the GPU (runs inside the worker).

Reference (eager) and candidate are timed interleaved in one `measure` call, so drift hits
both; the torch.compile baseline is timed once per (task, GPU, torch version) and cached by the
parent. Outputs of timed calls are re-checked against the reference afterwards, and the event
time is cross-checked against the host time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from kernelpro.evaluate.correctness import (
    clone_all,
    compare,
    output_rms,
    prepare,
    set_seed,
    tolerance_for,
)
from kernelpro.evaluate.device import detect_gpu
from kernelpro.evaluate.signatures import tag
from kernelpro.evaluate.timing import (
    CudaEventTimer,
    TimingPolicy,
    escaped_work,
    measure,
    measure_energy,
    rotating,
    summarize,
)
from kernelpro.profile.roofline import below_physics, measure_work, physics_floor_ms
from kernelpro.task import call_get_inputs
from kernelpro.types import CheckResult

MAX_INPUT_SETS = 4  # rotated when the inputs fit in L2, so no call finds them cached
THROTTLE_DROP = 0.10  # warn when the SM clock fell by more than this during timing


def _bytes(values: list[Any]) -> int:
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def _sm_clock_mhz() -> int | None:
    try:
        import pynvml  # nvidia-ml-py, the [cuda] extra
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
    except pynvml.NVMLError:
        return None


def time_candidate(ref_model: Any, cand_model: Any, ref_mod: Any, task_path: Path,
                   device: torch.device, dtype: torch.dtype, req: dict[str, Any],
                   checks: list[CheckResult], notes: list[str]) -> dict[str, Any]:
    gpu = detect_gpu()
    assert gpu is not None, "time_candidate runs only on a GPU"
    policy = TimingPolicy(**req.get("timing_policy", {}))
    tol = tolerance_for(str(dtype).removeprefix("torch."), req["wall"].get("tol"))

    set_seed(req["seed"])
    first = prepare(call_get_inputs(task_path, ref_mod), device, dtype)
    n_sets = 1 if _bytes(first) >= gpu.l2_bytes else MAX_INPUT_SETS
    sets = [first]
    for i in range(1, n_sets):
        set_seed(req["seed"] + i)
        sets.append(prepare(call_get_inputs(task_path, ref_mod), device, dtype))
    with torch.no_grad():
        expected = [ref_model(*clone_all(s)) for s in sets]
    ref_sets = [clone_all(s) for s in sets]
    cand_sets = [clone_all(s) for s in sets]

    seen: dict[int, Any] = {}
    counter = {"candidate": 0}

    def keep_output(name: str, out: Any) -> None:
        if name == "candidate":
            seen[counter["candidate"] % n_sets] = out
            counter["candidate"] += 1

    timer = CudaEventTimer(gpu.l2_bytes, device)
    clock_before = _sm_clock_mhz()
    with torch.no_grad():
        calls = {"eager": rotating(ref_model, ref_sets), "candidate": rotating(cand_model,
                                                                               cand_sets)}
        times = measure(calls, timer, policy, on_output=keep_output)
    clock_after = _sm_clock_mhz()
    if clock_before and clock_after and clock_after < (1 - THROTTLE_DROP) * clock_before:
        notes.append(f"SM clock fell from {clock_before} to {clock_after} MHz during timing "
                     "(throttling); times may be pessimistic")

    for idx, out in seen.items():
        cmp = compare(expected[idx], out, tol)
        if not cmp.ok:
            checks.append(CheckResult("timed_outputs", False, cmp.reason))
            return dict(status="incorrect", stage="timing", error_class="TimedOutputMismatch",
                        reason=f"an output produced during timing was wrong: {cmp.reason}")
    checks.append(CheckResult("timed_outputs", True))
    stale = fresh_values_check(ref_model, cand_model, cand_sets[0], tol, req["seed"])
    checks.append(CheckResult("fresh_values_after_timing", stale is None, stale or ""))
    if stale:
        return dict(status="incorrect", stage="timing", error_class="MemoisedCalls",
                    reason=stale)
    escaped = escaped_work(times["candidate"])
    checks.append(CheckResult("host_time_crosscheck", escaped is None, escaped or ""))
    if escaped:
        return dict(status="incorrect", stage="timing", error_class="EscapedWork",
                    reason=escaped)

    cand = summarize([t.device_ms for t in times["candidate"]])
    eager = summarize([t.device_ms for t in times["eager"]])
    if gpu.spec is None:
        notes.append(f"physics check skipped: {gpu.name} is not in the spec table")
    else:
        work = measure_work(ref_model, clone_all(sets[0]))
        floor = physics_floor_ms(work, gpu.spec, str(dtype).removeprefix("torch."),
                                 gpu.l2_bytes)
        impossible = below_physics(cand.min_ms, floor)
        checks.append(CheckResult("physics_floor", impossible is None, impossible or ""))
        if impossible:
            return dict(status="incorrect", stage="timing", error_class="BelowPhysics",
                        reason=impossible)
    energy_j = None
    if req.get("energy"):
        energy_j = _energy_per_call(rotating(cand_model, cand_sets), notes)
    compile_ms = req.get("compile_ms")
    if compile_ms is None and req.get("compile_baseline", True):
        compile_ms = _compile_baseline(ref_model, ref_sets, timer, policy, notes)
    return dict(status="correct", stage="timing", correct=True, timed=True,
                runtime_ms=cand.median_ms, timing=cand, eager_ms=eager.median_ms,
                compile_ms=compile_ms, speedup_eager=eager.median_ms / cand.median_ms,
                speedup_compile=(compile_ms / cand.median_ms) if compile_ms else None,
                energy_j=energy_j)


def _energy_per_call(call: Any, notes: list[str]) -> float | None:
    """NVML's energy counter around repeated calls (--objective energy)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        read = lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))  # noqa: E731
        read()
    except Exception as exc:  # no nvidia-ml-py, or a GPU without the counter
        notes.append(f"energy not measured: {type(exc).__name__}: {exc}"[:200])
        return None
    with torch.no_grad():
        joules, _ = measure_energy(call, read, torch.cuda.synchronize)
    return joules


def fresh_values_check(ref_model: Any, cand_model: Any, args: list[Any], tol: float,
                       seed: int) -> str | None:
    """After timing, new values in the very buffers the timed calls used must give a new,
    correct answer: a call counter or an address-keyed memo returns the old one."""
    floats = [i for i, v in enumerate(args) if isinstance(v, torch.Tensor)
              and v.is_floating_point()]
    if not floats:
        return None
    set_seed(seed + 11)
    for i in floats:
        args[i].copy_(torch.randn_like(args[i]))
    with torch.no_grad():
        expected = ref_model(*clone_all(args))
        out = cand_model(*args)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    cmp = compare(expected, out, tol, tol * max(1.0, output_rms(expected)))
    if cmp.ok:
        return None
    return (f"after timing, new values in the timed input buffers gave a wrong output "
            f"({cmp.reason}): timed calls were memoised {tag(13)}")


def _compile_baseline(ref_model: Any, sets: list[list[Any]], timer: CudaEventTimer,
                      policy: TimingPolicy, notes: list[str]) -> float | None:
    try:
        compiled = torch.compile(ref_model)
        with torch.no_grad():
            times = measure({"compile": rotating(compiled, sets)}, timer, policy)
    except Exception as exc:  # inductor can fail on odd models; the eager speedup still stands
        notes.append(f"torch.compile baseline failed: {type(exc).__name__}: {exc}"[:300])
        return None
    ms = summarize([t.device_ms for t in times["compile"]]).median_ms
    return ms if math.isfinite(ms) else None
