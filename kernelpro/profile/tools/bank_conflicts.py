"""SharedBankConflicts (ncu): shared-memory wavefronts replayed for bank conflicts."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

CONFLICT_RATIO = 0.1  # conflicts per shared-load wavefront


def _ratio(ctx: MetricContext) -> float | None:
    ld = ctx.metric("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum")
    st = ctx.metric("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum")
    waves = ctx.metric("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum")
    if ld is None or not waves:
        return None
    return (ld + (st or 0.0)) / waves


class SharedBankConflicts(Tool):
    name = "SharedBankConflicts"
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        ratio = _ratio(ctx)
        return ratio is not None and ratio > CONFLICT_RATIO

    def analyze(self, ctx: MetricContext):
        ratio = _ratio(ctx) or 0.0
        return ("critical" if ratio > 1.0 else "warning",
                f"{ratio:.2f} bank conflicts per shared-memory wavefront: threads of a warp hit "
                "the same bank (column access of a 32-wide tile)", {"conflicts_per_wavefront":
                                                                    ratio})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("pad the shared tile's row by one element (e.g. [32][33]) or "
                               "swizzle the index", "1.1-2x")]
