"""BranchDivergence (ncu): warps whose threads take different branch targets."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

UNIFORM = "smsp__sass_average_branch_targets_threads_uniform.pct"
LOW_PCT = 80.0


class BranchDivergence(Tool):
    name = "BranchDivergence"
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        pct = ctx.metric(UNIFORM)
        return pct is not None and pct < LOW_PCT

    def analyze(self, ctx: MetricContext):
        pct = ctx.metric(UNIFORM) or 0.0
        return ("warning", f"only {pct:.0f}% of branches are uniform across the warp: divergent "
                "paths run one after the other", {"uniform_branch_pct": pct})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("replace data-dependent branches with predication "
                               "(tl.where / selects) and masks", "1.1-1.5x"),
                Recommendation("handle the ragged edge in a separate tail block instead of a "
                               "per-element branch", "1.05-1.2x")]
