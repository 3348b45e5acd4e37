"""SmallGrid (ncu): the launch does not fill the GPU, or leaves a thin last wave."""

from __future__ import annotations

import math

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

WAVES = "launch__waves_per_multiprocessor"
TAIL = 0.5  # a last wave under half full wastes a large share of a few-wave launch


class SmallGrid(Tool):
    name = "SmallGrid"
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        waves = ctx.metric(WAVES)
        if waves is None or waves <= 0:
            return False
        tail = waves - math.floor(waves)
        return waves < 1 or (waves < 4 and 0 < tail < TAIL)

    def analyze(self, ctx: MetricContext):
        waves = ctx.metric(WAVES) or 0.0
        grid = ctx.metric("launch__grid_size")
        if waves < 1:
            return ("critical" if waves < 0.5 else "warning",
                    f"the grid ({grid:.0f} blocks) is {waves:.2f} waves: {100 * (1 - waves):.0f}% "
                    "of the SMs' block slots stay empty", {"waves": waves, "grid": grid})
        return ("warning", f"{waves:.2f} waves: the last wave is {waves % 1:.0%} full, so SMs "
                "idle while it runs (tail effect)", {"waves": waves, "grid": grid})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("more, smaller blocks (smaller BLOCK / split the reduction "
                               "dimension, split-K)", "1.2-3x"),
                Recommendation("a persistent grid of (SM count x blocks per SM) looping over "
                               "tiles", "1.1-1.5x")]
