"""ComputeUnderused (ncu): a compute-bound kernel far below the SM's issue/pipe roofs."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

SM = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
TENSOR = "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
LOW_PCT = 60.0


class ComputeUnderused(Tool):
    name = "ComputeUnderused"
    classes = frozenset({"compute", "mixed"})
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        pct = ctx.metric(SM)
        return pct is not None and pct < LOW_PCT

    def analyze(self, ctx: MetricContext):
        pct, tensor = ctx.metric(SM) or 0.0, ctx.metric(TENSOR)
        extra = f", tensor pipe {tensor:.0f}% busy" if tensor is not None else ""
        return ("critical" if pct < 30 else "warning",
                f"SM throughput is {pct:.0f}% of peak in a compute-bound kernel{extra}",
                {"sm_pct": pct, "tensor_pct": tensor})

    def recommend(self, ctx: MetricContext):
        recs = []
        if ctx.matmul_like and ctx.task_dtype in ("float16", "bfloat16"):
            recs.append(Recommendation("use tensor cores (tl.dot on fp16/bf16 tiles, or "
                                       "wgmma/mma.sync)", "2-8x"))
        recs.append(Recommendation("raise arithmetic intensity per thread: larger output tile "
                                   "per thread (register blocking), unrolled inner loop",
                                   "1.3-2x"))
        recs.append(Recommendation("enough warps per SM to keep the FMA pipe fed (num_warps, "
                                   "occupancy)", "1.1-1.4x"))
        return recs
