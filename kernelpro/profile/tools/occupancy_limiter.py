"""OccupancyLimiter (static): theoretical occupancy under half, bounded by registers or
shared memory (not by the block size itself)."""

from __future__ import annotations

from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool

LOW_OCCUPANCY = 0.5  # the paper's threshold, as a share of the device's warp slots


class OccupancyLimiter(Tool):
    name = "OccupancyLimiter"

    def trigger(self, ctx: StaticContext) -> bool:
        occ = ctx.occupancy
        return (occ is not None and occ.occupancy < LOW_OCCUPANCY
                and bool({"registers", "shared memory"} & set(occ.limiters)))

    def analyze(self, ctx: StaticContext):
        occ = ctx.occupancy
        assert occ is not None
        k = ctx.kernel
        assumed = " (block size unknown statically; assumed)" if ctx.threads_assumed else ""
        severity = "critical" if occ.occupancy <= 0.25 else "warning"
        return severity, (
            f"theoretical occupancy {occ.describe()}: {k.registers} registers/thread, "
            f"{k.shared_bytes} B shared/block, {ctx.threads_per_block} threads/block"
            f"{assumed}"), {
            "occupancy": occ.occupancy, "limiters": list(occ.limiters),
            "registers": k.registers, "shared_bytes": k.shared_bytes,
            "threads_per_block": ctx.threads_per_block}

    def recommend(self, ctx: StaticContext):
        occ = ctx.occupancy
        assert occ is not None
        recs = []
        if "registers" in occ.limiters:
            recs.append(Recommendation(
                "cap registers: smaller per-thread tiles"
                + (" or num_warps" if ctx.backend == "triton"
                   else ", __launch_bounds__(threads, min_blocks)"), "1.1-1.5x"))
        if "shared memory" in occ.limiters:
            recs.append(Recommendation(
                "use less shared memory per block: smaller tiles"
                + (" or fewer num_stages" if ctx.backend == "triton" else
                   " or fewer buffered stages"), "1.1-1.5x"))
        return recs
