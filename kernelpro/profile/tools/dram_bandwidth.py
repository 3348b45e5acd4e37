"""DramBandwidth (ncu): a memory-bound kernel that moves data far below the DRAM roof."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

METRIC = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
LOW_PCT, CRITICAL_PCT = 60.0, 30.0


class DramBandwidth(Tool):
    name = "DramBandwidth"
    classes = frozenset({"memory", "mixed"})
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        pct = ctx.metric(METRIC)
        return pct is not None and pct < LOW_PCT

    def analyze(self, ctx: MetricContext):
        pct = ctx.metric(METRIC) or 0.0
        return ("critical" if pct < CRITICAL_PCT else "warning",
                f"DRAM throughput is {pct:.0f}% of peak in a memory-bound kernel: too few bytes "
                "in flight to saturate HBM", {"dram_pct": pct})

    def recommend(self, ctx: MetricContext):
        knob = ("larger BLOCK and num_warps=8, so each program moves more bytes"
                if ctx.backend == "triton" else
                "more elements per thread (unrolled, 128-bit loads) and a grid of several "
                "waves")
        return [Recommendation(f"put more memory requests in flight: {knob}", "1.3-2x"),
                Recommendation("use 128-bit vector loads/stores on contiguous data",
                               "1.1-1.5x")]
