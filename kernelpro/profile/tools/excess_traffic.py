"""ExcessDramTraffic (ncu + roofline): DRAM bytes well above the task's minimum."""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

EXCESS_RATIO, CRITICAL_RATIO = 1.5, 3.0


def _ratio(ctx: MetricContext) -> float | None:
    read, write = ctx.metric("dram__bytes_read.sum"), ctx.metric("dram__bytes_write.sum")
    if read is None or write is None or ctx.roofline is None:
        return None
    minimum = ctx.roofline.work.bytes_min
    return (read + write) / minimum if minimum else None


class ExcessDramTraffic(Tool):
    name = "ExcessDramTraffic"
    classes = frozenset({"memory", "mixed"})
    needs = frozenset({"ncu"})

    def trigger(self, ctx: MetricContext) -> bool:
        ratio = _ratio(ctx)
        return ratio is not None and ratio > EXCESS_RATIO

    def analyze(self, ctx: MetricContext):
        ratio = _ratio(ctx) or 0.0
        moved = (ctx.metric("dram__bytes_read.sum") or 0) + (ctx.metric("dram__bytes_write.sum")
                                                              or 0)
        return ("critical" if ratio > CRITICAL_RATIO else "warning",
                f"DRAM traffic {moved / 1e6:.1f} MB is {ratio:.1f}x the minimum "
                f"{ctx.roofline.work.bytes_min / 1e6:.1f} MB: data is read more than once or "
                "intermediates round-trip through memory", {"traffic_ratio": ratio})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("fuse the passes: keep a row (or tile) in registers/shared "
                               "memory between the reduction and the elementwise step",
                               f"up to {ratio_gain(ctx)}"),
                Recommendation("tile so each input element is loaded once per block",
                               "1.2-2x")]


def ratio_gain(ctx: MetricContext) -> str:
    ratio = _ratio(ctx) or 1.0
    return f"{min(ratio, 4.0):.1f}x"
