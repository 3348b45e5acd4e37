"""Tools that need only a measured time and the analytic roofline (no counters).

LowAchievedBandwidth: the forward moves its minimum bytes at a small fraction of peak DRAM
bandwidth. LaunchOverhead: a latency-bound forward split into several kernel launches.
"""

from __future__ import annotations

from kernelpro.profile.tools.base import MetricContext, Recommendation, Tool

LOW_FRACTION = 0.5
LAUNCH_US = 4.0  # rough cost of one kernel launch on the host-side critical path


def achieved_fraction(ctx: MetricContext) -> float:
    """Fraction of the roofline floor's speed the measured time reaches (1.0 = at the roof)."""
    return ctx.roofline.floor_ms / ctx.runtime_ms if ctx.runtime_ms else 0.0


class LowAchievedBandwidth(Tool):
    name = "LowAchievedBandwidth"
    classes = frozenset({"memory", "mixed"})
    needs = frozenset({"timing"})

    def trigger(self, ctx: MetricContext) -> bool:
        return achieved_fraction(ctx) < LOW_FRACTION

    def analyze(self, ctx: MetricContext):
        frac = achieved_fraction(ctx)
        gbps = ctx.roofline.work.bytes_min / (ctx.runtime_ms * 1e-3) / 1e9
        return ("critical" if frac < 0.2 else "warning",
                f"the forward moves its minimum {ctx.roofline.work.bytes_min / 1e6:.1f} MB at "
                f"{gbps:.0f} GB/s, {frac:.0%} of the {ctx.roofline.bandwidth / 1e9:.0f} GB/s roof "
                f"({ctx.runtime_ms:.4g} ms vs floor {ctx.roofline.floor_ms:.4g} ms)",
                {"achieved_gbps": gbps, "fraction_of_roof": frac})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("fuse the forward into one pass over the data, with vector "
                               "loads and enough bytes in flight per SM",
                               f"up to {min(1 / max(achieved_fraction(ctx), 0.05), 10):.1f}x")]


class LaunchOverhead(Tool):
    name = "LaunchOverhead"
    classes = frozenset({"latency"})
    needs = frozenset({"timing"})

    def trigger(self, ctx: MetricContext) -> bool:
        return (ctx.n_kernels or 1) > 1

    def analyze(self, ctx: MetricContext):
        n = ctx.n_kernels or 1
        return ("warning", f"{n} kernel launches in a latency-bound forward of "
                f"{ctx.runtime_ms:.4g} ms: roughly {n * LAUNCH_US:.0f} us go to launches",
                {"kernels": n})

    def recommend(self, ctx: MetricContext):
        return [Recommendation("fuse the kernels into one launch", "1.2-3x"),
                Recommendation("capture the forward in a CUDA graph", "1.1-2x")]
