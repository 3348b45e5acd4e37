"""UncoalescedAccess (ncu): global loads or stores that use a small part of each sector."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

LOAD = "smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.pct"
STORE = "smsp__sass_average_data_bytes_per_sector_mem_global_op_st.pct"
LOW_PCT, CRITICAL_PCT = 60.0, 30.0


class UncoalescedAccess(Tool):
    name = "UncoalescedAccess"
    classes = frozenset({"memory", "mixed", "latency"})
    needs = frozenset({"ncu"})

    def _worst(self, ctx: MetricContext) -> tuple[str, float] | None:
        pairs = [(k, v) for k, m in (("loads", LOAD), ("stores", STORE))
                 if (v := ctx.metric(m)) is not None]
        return min(pairs, key=lambda kv: kv[1]) if pairs else None

    def trigger(self, ctx: MetricContext) -> bool:
        worst = self._worst(ctx)
        return worst is not None and worst[1] < LOW_PCT

    def analyze(self, ctx: MetricContext):
        kind, pct = self._worst(ctx) or ("loads", 0.0)
        return ("critical" if pct < CRITICAL_PCT else "warning",
                f"global {kind} use {pct:.0f}% of each 32-byte sector fetched: neighbouring "
                "threads access addresses far apart (strided or transposed access)",
                {"kind": kind, "sector_use_pct": pct})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("make consecutive threads (the fastest-varying index, "
                               "tl.arange) walk the contiguous dimension", "1.5-4x"),
                Recommendation("stage transposed tiles through shared memory so both the "
                               "load and the store are contiguous", "1.3-3x")]
