"""AchievedOccupancy (ncu): active warps far below what the launch allows, or a low limit."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

ACHIEVED = "sm__warps_active.avg.pct_of_peak_sustained_active"
THEORETICAL = "sm__maximum_warps_per_active_cycle_pct"
LIMITS = {"registers": "launch__occupancy_limit_registers",
          "shared memory": "launch__occupancy_limit_shared_mem",
          "blocks per SM": "launch__occupancy_limit_blocks",
          "warps per SM": "launch__occupancy_limit_warps"}
GAP, LOW_THEORETICAL = 0.6, 35.0


class AchievedOccupancy(Tool):
    name = "AchievedOccupancy"
    classes = frozenset({"memory", "latency", "mixed"})
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        ach, theo = ctx.metric(ACHIEVED), ctx.metric(THEORETICAL)
        return ach is not None and theo is not None and (ach < GAP * theo
                                                         or theo < LOW_THEORETICAL)

    def _limiter(self, ctx: MetricContext) -> str | None:
        limits = {k: v for k, m in LIMITS.items() if (v := ctx.metric(m)) is not None}
        return min(limits, key=limits.get) if limits else None  # type: ignore[arg-type]

    def analyze(self, ctx: MetricContext):
        ach, theo = ctx.metric(ACHIEVED) or 0.0, ctx.metric(THEORETICAL) or 0.0
        limiter = self._limiter(ctx)
        if theo < LOW_THEORETICAL:
            return ("warning", f"theoretical occupancy is {theo:.0f}% (limited by {limiter}); "
                    f"achieved {ach:.0f}%: too few warps to hide latency",
                    {"achieved_pct": ach, "theoretical_pct": theo, "limiter": limiter})
        return ("warning", f"achieved occupancy {ach:.0f}% vs {theo:.0f}% theoretical: blocks "
                "finish unevenly or the grid leaves SMs idle (tail effect)",
                {"achieved_pct": ach, "theoretical_pct": theo, "limiter": limiter})

    def recommend(self, ctx: MetricContext):
        if (ctx.metric(THEORETICAL) or 100.0) < LOW_THEORETICAL:
            return [Recommendation(f"relieve the {self._limiter(ctx)} limit (smaller tiles, "
                                   "fewer registers per thread, less shared memory per block)",
                                   "1.1-1.5x")]
        return [Recommendation("balance work across blocks (grid-stride loop, or a grid that "
                               "is a multiple of the SM count)", "1.1-1.3x")]
