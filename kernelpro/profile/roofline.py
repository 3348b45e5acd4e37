"""The roofline of a task: analytic work, the device's roofs, the floor time and the class.

FLOPs come from torch's flop counter (matmul, convolution, attention), plus one FLOP per output
element of every other work op (elementwise, reductions: a lower bound, and such work is
memory-bound on these GPUs anyway). Minimum bytes are the inputs and parameters read once plus
the outputs written once. Nothing here is measured: these are lower bounds that any honest
kernel is above, which is what the physics check of the correctness wall needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from kernelpro.evaluate.device import GPUSpec

Bound = Literal["memory", "compute", "latency", "mixed"]
LATENCY_FLOOR_MS = 0.01  # below this the launch itself (a few µs) dominates any kernel
MIXED_BAND = 2.0  # memory and compute times within this factor of each other: mixed
PHYSICS_MARGIN = 0.7  # reject a time under this fraction of the floor (clock boost, noise)


@dataclass(frozen=True)
class Work:
    """Analytic work of one forward call."""

    flops: float
    bytes_read: float  # inputs and parameters, once
    bytes_written: float  # outputs, once
    flops_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_min(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes_min if self.bytes_min else float("inf")


@dataclass(frozen=True)
class Roofline:
    """Where a task (or a measured call) sits against one GPU's roofs."""

    work: Work
    gpu: str
    dtype: str
    peak_flops: float  # FLOP/s used for the compute roof
    bandwidth: float  # bytes/s
    memory_ms: float
    compute_ms: float
    floor_ms: float
    ridge: float  # FLOP/byte
    bound: Bound

    def describe(self) -> str:
        return (f"{self.bound}-bound on {self.gpu}: {self.work.flops / 1e9:.3g} GFLOP, "
                f"{self.work.bytes_min / 1e6:.3g} MB, intensity {self.work.intensity:.3g} "
                f"FLOP/B (ridge {self.ridge:.3g}), floor {self.floor_ms:.4g} ms")


def _tensor_bytes(values: Any) -> int:
    if isinstance(values, torch.Tensor):
        return values.numel() * values.element_size()
    if isinstance(values, list | tuple):
        return sum(_tensor_bytes(v) for v in values)
    return 0


def measure_work(model: torch.nn.Module | Callable[..., Any], inputs: Sequence[Any]) -> Work:
    """Work of one call of `model` on `inputs` (real or meta tensors)."""
    from kernelpro.evaluate.delegation import TRIVIAL_OPS, AtenRecorder, flop_counts

    holder: dict[str, Any] = {}
    recorder = AtenRecorder()

    def call() -> None:
        with torch.no_grad(), recorder:
            holder["out"] = model(*inputs)

    flops = flop_counts(call)
    # torch's counter covers matmul/conv/attention; count other work ops at one FLOP per
    # output element (elementwise and reductions), so intensity is not zero for them.
    for op, elements in recorder.out_elements.items():
        if op not in TRIVIAL_OPS and op not in flops:
            flops[op] = int(elements)
    params = 0
    if isinstance(model, torch.nn.Module):
        params = sum(_tensor_bytes(p) for p in model.parameters())
        params += sum(_tensor_bytes(b) for b in model.buffers())
    return Work(flops=float(sum(flops.values())),
                bytes_read=float(_tensor_bytes(list(inputs)) + params),
                bytes_written=float(_tensor_bytes(holder.get("out"))),
                flops_by_op=flops)


def compute_roof(spec: GPUSpec, dtype: str, fastest: bool = False) -> float:
    """FLOP/s roof. fp32 uses the CUDA cores (TF32 fails the fp32 tolerance); `fastest` is the
    rate no passing kernel can beat (tensor cores, with 3xTF32 emulation for fp32)."""
    if dtype in ("float16", "bfloat16"):
        return spec.peak_flops(dtype, tensor_cores=True)
    return spec.tf32_flops if fastest else spec.fp32_flops


def roofline(work: Work, spec: GPUSpec, dtype: str) -> Roofline:
    peak = compute_roof(spec, dtype)
    memory_ms = work.bytes_min / spec.dram_bandwidth * 1e3
    compute_ms = work.flops / peak * 1e3
    floor = max(memory_ms, compute_ms)
    if floor < LATENCY_FLOOR_MS:
        bound: Bound = "latency"
    elif memory_ms and compute_ms and max(memory_ms, compute_ms) / min(memory_ms,
                                                                         compute_ms) < MIXED_BAND:
        bound = "mixed"
    else:
        bound = "memory" if memory_ms >= compute_ms else "compute"
    return Roofline(work, spec.name, dtype, peak, spec.dram_bandwidth, memory_ms, compute_ms,
                    floor, peak / spec.dram_bandwidth, bound)


def physics_floor_ms(work: Work, spec: GPUSpec, dtype: str, l2_bytes: int | None = None) -> float:
    """The time no correct kernel can beat with a cold L2: reads from DRAM at peak bandwidth,
    writes beyond what L2 can hold, and FLOPs at the fastest tolerance-passing rate."""
    l2 = spec.l2_bytes if l2_bytes is None else l2_bytes
    dram_bytes = work.bytes_read + max(0.0, work.bytes_written - l2)
    return max(dram_bytes / spec.dram_bandwidth,
               work.flops / compute_roof(spec, dtype, fastest=True)) * 1e3


def below_physics(runtime_ms: float, floor_ms: float) -> str | None:
    """A reason if a measured time is impossible for a kernel that does the work."""
    if floor_ms > 0 and runtime_ms < PHYSICS_MARGIN * floor_ms:
        from kernelpro.evaluate.signatures import tag

        return (f"measured {runtime_ms:.4g} ms is under the physical floor {floor_ms:.4g} ms "
                f"(minimum bytes at peak bandwidth, FLOPs at peak rate): the work was not done "
                f"during the timed call {tag(13)}")
    return None


def task_work(task: Any) -> tuple[Work, str]:
    """Analytic work of a task's reference at full size, and how it was obtained.

    First on the meta device (no memory, any size). Data-dependent references cannot run
    there; they run on small CPU tensors at two scales and the counts are extrapolated with
    the power law the two points give (FLOPs of a matmul grow faster than its bytes).
    """
    import math

    from kernelpro.evaluate.correctness import set_seed
    from kernelpro.task import (
        KERNELBENCH_SEED,
        call_get_inputs,
        describe_inputs,
        import_source,
        rewrite_constants,
        scaled_values,
    )

    def run(source: str, device: str) -> Work:
        module = import_source(task.path, source, f"kernelpro_roofline_{task.sha[:12]}")
        set_seed(KERNELBENCH_SEED)
        with torch.device(device):
            init = call_get_inputs(task.path, module, "get_init_inputs")
            model = module.Model(*init)
            inputs = call_get_inputs(task.path, module)
        return measure_work(model, inputs)

    try:
        return run(task.source, "meta"), "analytic at full size (meta tensors)"
    except Exception:  # data-dependent ops have no meta kernel: measure small, extrapolate
        pass
    full = sum(s.numel for s in task.inputs)
    points = []
    for k in (4, 5):
        source = rewrite_constants(task.source, scaled_values(task.shape_constants, k))
        module = import_source(task.path, source, f"kernelpro_roofline_s{k}")
        elements = sum(s.numel for s in describe_inputs(task.path, module))
        points.append((elements, run(source, "cpu")))
    (e1, w1), (e2, w2) = points

    def extrapolate(a: float, b: float) -> float:
        if a <= 0 or b <= 0 or e1 == e2:
            return a * full / e1
        power = math.log(a / b) / math.log(e1 / e2)
        return a * (full / e1) ** power

    work = Work(extrapolate(w1.flops, w2.flops), extrapolate(w1.bytes_read, w2.bytes_read),
                extrapolate(w1.bytes_written, w2.bytes_written), w1.flops_by_op)
    return work, "extrapolated from CPU runs at 1/16 and 1/32 of each size constant"


def measured_bound(sm_pct: float, dram_pct: float) -> Bound:
    """The class Nsight Compute's throughputs suggest (SM vs DRAM % of peak)."""
    if max(sm_pct, dram_pct) < 40:
        return "latency"
    if abs(sm_pct - dram_pct) < 15:
        return "mixed"
    return "memory" if dram_pct > sm_pct else "compute"


def timing_tier(work: Work, runtime_ms: float, spec: GPUSpec, dtype: str) -> dict[str, float]:
    """Achieved bandwidth and FLOP rate from the analytic counts and a measured time."""
    seconds = runtime_ms * 1e-3
    gbps = work.bytes_min / seconds / 1e9
    tflops = work.flops / seconds / 1e12
    return {"runtime_ms": runtime_ms, "achieved_gbps": gbps,
            "bandwidth_pct": 100 * gbps * 1e9 / spec.dram_bandwidth,
            "achieved_tflops": tflops,
            "compute_pct": 100 * tflops * 1e12 / compute_roof(spec, dtype)}
