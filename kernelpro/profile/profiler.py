"""`kernelpro profile`: the roofline of a task and the diagnosis of a candidate, by tier.

Tiers: analytic (the roofline from FLOP and byte counts; always), static (SASS rules on the
cubins; any machine with the CUDA tools), timing (achieved bandwidth and FLOP rate from one
measured time; GPU), ncu (Nsight Compute counters of the dominant kernel; GPU with counter
permission). Each tier that cannot run says why in the diagnosis' notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernelpro.evaluate.device import detect_gpu, spec_for_arch
from kernelpro.profile.diagnosis import Diagnosis
from kernelpro.profile.roofline import measured_bound, roofline, task_work, timing_tier
from kernelpro.types import Task


def _spec(arch: str) -> tuple[Any, str, bool]:
    gpu = detect_gpu()
    if gpu is not None:
        return gpu.spec, gpu.name, True
    spec = spec_for_arch(arch)
    return spec, f"{spec.name} (reference GPU for {arch}; no GPU on this machine)", False


def profile_task(task: Task, arch: str = "sm_90") -> Diagnosis:
    """The analytic tier for the reference alone."""
    spec, name, _ = _spec(arch)
    work, how = task_work(task)
    roof = roofline(work, spec, task.dtype) if spec is not None else None
    return Diagnosis(task.name, name, roof, how, tiers=["analytic"])


def profile_candidate(task: Task, candidate: Path, arch: str = "sm_90",
                      max_elements: int = 1 << 16, progress: Any = None) -> Diagnosis:
    """Every tier this machine allows, for one candidate."""
    from kernelpro.evaluate import EvalConfig, evaluate_candidate
    from kernelpro.evaluate.correctness import WallConfig
    from kernelpro.profile.static import is_matmul_like, profile_cubins
    from kernelpro.profile.tools import MetricContext, run_metric_tools

    diag = profile_task(task, arch)
    spec, roof = _spec(arch)[0], diag.roofline
    on_gpu = detect_gpu() is not None
    cfg = EvalConfig(arch=arch, device="auto" if on_gpu else "cpu", max_elements=max_elements,
                     wall=WallConfig(trials=1, robust=False), compile_baseline=False,
                     timing=on_gpu)
    result = evaluate_candidate(task, candidate, cfg, progress)
    diag.measured["verdict"] = {"status": result.status, "stage": result.stage,
                                "reason": result.reason}
    matmul = is_matmul_like(task.source)
    bound = roof.bound if roof else None
    if result.cubins:
        arch_used = detect_gpu().spec.arch if on_gpu and detect_gpu().spec else arch
        static = profile_cubins([Path(c) for c in result.cubins], arch_used,
                                result.backend or "cuda", task.dtype, matmul, bound)
        diag.findings += static.findings
        diag.tiers.append("static")
        diag.measured["kernels"] = [k.to_dict() for k in static.kernels]
    else:
        diag.notes.append(f"static tier skipped: no kernel was compiled ({result.status} at "
                          f"{result.stage}: {result.reason})")
    if not on_gpu:
        diag.notes.append("no GPU on this machine: analytic and static tiers only (no timing, "
                          "no counters)")
        return diag
    runtime = result.runtime_ms if result.timed else None
    if runtime and roof and spec:
        diag.measured.update(timing_tier(roof.work, runtime, spec, task.dtype))
        diag.tiers.append("timing")
    kernels, dominant_kernel = _ncu(task, candidate, diag)
    ctx = MetricContext(kernel=dominant_kernel, spec=spec, roofline=roof,
                        backend=result.backend or "triton", task_dtype=task.dtype,
                        matmul_like=matmul, bottleneck=bound, runtime_ms=runtime,
                        n_kernels=len(kernels) if kernels else None)
    diag.findings += run_metric_tools(ctx)
    return diag


def _ncu(task: Task, candidate: Path, diag: Diagnosis) -> tuple[list[Any], Any]:
    from kernelpro.profile.ncu import NcuUnavailable, dominant, run_ncu

    try:
        kernels = run_ncu(str(task.path), str(candidate.resolve()))
    except NcuUnavailable as exc:
        diag.notes.append(f"ncu tier skipped: {exc}")
        return [], None
    top = dominant(kernels)
    diag.tiers.append("ncu")
    if top is not None:
        sm = top.get("sm__throughput.avg.pct_of_peak_sustained_elapsed")
        dram = top.get("dram__throughput.avg.pct_of_peak_sustained_elapsed")
        if sm is not None and dram is not None:
            diag.measured["ncu_bound"] = measured_bound(sm, dram)
        diag.measured["ncu_kernel"] = top.to_dict()
    return kernels, top
