"""RegisterSpill (SASS): local-memory stores and loads (STL/LDL) in the kernel."""

from __future__ import annotations

from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool

CRITICAL_SPILL_INSTRUCTIONS = 16


class RegisterSpill(Tool):
    name = "RegisterSpill"

    def trigger(self, ctx: StaticContext) -> bool:
        return ctx.kernel.count("stl", "ldl") > 0

    def analyze(self, ctx: StaticContext):
        k = ctx.kernel
        stores, loads = k.count("stl"), k.count("ldl")
        severity = "critical" if stores + loads >= CRITICAL_SPILL_INSTRUCTIONS else "warning"
        return severity, (
            f"{stores} STL / {loads} LDL local-memory instructions ({k.spill_bytes} B stored "
            f"per thread, stack frame {k.stack_bytes} B) at {k.registers} registers/thread: "
            "values spill to local memory (or a local array is indexed dynamically)"), {
            "stl": stores, "ldl": loads, "spill_bytes": k.spill_bytes,
            "stack_bytes": k.stack_bytes, "registers": k.registers}

    def recommend(self, ctx: StaticContext):
        if ctx.backend == "triton":
            return [Recommendation("shrink the tile (BLOCK_M/BLOCK_N/BLOCK_K) or raise "
                                   "num_warps so each thread holds fewer values", "1.2-2x"),
                    Recommendation("lower num_stages to free registers held by pipelining",
                                   "1.1-1.3x")]
        return [Recommendation("hold fewer live values per thread (smaller per-thread tile, "
                               "fewer accumulators); index local arrays only with constants",
                               "1.2-2x"),
                Recommendation("drop a tight --maxrregcount or __launch_bounds__ min-blocks "
                               "that forces the register cap", "1.1-1.5x")]
