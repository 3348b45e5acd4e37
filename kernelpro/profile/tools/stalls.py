"""Warp-stall tools (ncu): what the warps wait on, as a share of all stall reasons.

MemoryLatencyStall: long scoreboard (global/local memory results). BarrierStall: __syncthreads
and memory barriers. SharedMemoryPressure: short scoreboard and MIO throttle (shared memory,
special functions).
"""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

SHARE = 0.35  # of the summed stall ratios


def stall_share(ctx: MetricContext, reasons: tuple[str, ...]) -> float:
    stalls = ctx.kernel.stalls() if ctx.kernel is not None else {}
    total = sum(v for k, v in stalls.items() if k != "selected")
    return sum(stalls.get(r, 0.0) for r in reasons) / total if total else 0.0


class _StallTool(Tool):
    reasons: tuple[str, ...] = ()
    what: str = ""
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        return stall_share(ctx, self.reasons) >= SHARE

    def analyze(self, ctx: MetricContext):
        share = stall_share(ctx, self.reasons)
        return ("critical" if share >= 0.6 else "warning",
                f"{share:.0%} of warp stalls are {self.what}",
                {"stall_share": round(share, 3), "stalls": ctx.kernel.stalls()})


class MemoryLatencyStall(_StallTool):
    name = "MemoryLatencyStall"
    classes = frozenset({"memory", "latency", "mixed"})
    reasons = ("long_scoreboard",)
    what = "waits for global/local memory (long scoreboard)"

    def recommend(self, ctx: MetricContext):
        stages = "num_stages=3-4 (software pipelining)" if ctx.backend == "triton" else \
            "cp.async double buffering"
        return [Recommendation(f"overlap loads with compute: {stages}", "1.2-1.8x"),
                Recommendation("issue independent loads early (unroll, more elements per "
                               "thread) so several are in flight", "1.1-1.5x")]


class BarrierStall(_StallTool):
    name = "BarrierStall"
    reasons = ("barrier", "membar")
    what = "at barriers (__syncthreads / memory fences)"

    def recommend(self, ctx: MetricContext):
        return [Recommendation("fewer barriers per tile: reduce with warp shuffles, "
                               "synchronise once per stage", "1.1-1.4x"),
                Recommendation("smaller blocks so fewer warps wait on each barrier", "1.05-1.2x")]


class SharedMemoryPressure(_StallTool):
    name = "SharedMemoryPressure"
    reasons = ("short_scoreboard", "mio_throttle")
    what = "on shared memory or special-function results (short scoreboard, MIO throttle)"

    def recommend(self, ctx: MetricContext):
        return [Recommendation("keep reused values in registers; read shared memory with "
                               "wider (128-bit) accesses", "1.1-1.5x"),
                Recommendation("pad shared arrays to avoid bank conflicts", "1.05-1.3x")]
