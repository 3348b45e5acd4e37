"""SpecialFunction (SASS): transcendentals (MUFU) are a large share of the arithmetic.

MUFU issues 16 results per clock per SM against 128 FP32 lanes on sm_80/sm_90 (CUDA C
Programming Guide, arithmetic instruction throughput), so a MUFU-heavy loop is bound by it.
"""

from __future__ import annotations

from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool

MIN_MUFU = 8
MUFU_SHARE = 0.2


class SpecialFunction(Tool):
    name = "SpecialFunction"
    classes = frozenset({"compute", "mixed", "latency"})

    def _share(self, ctx: StaticContext) -> float:
        mufu = ctx.kernel.count("mufu")
        return mufu / max(mufu + ctx.kernel.count("fp32"), 1)

    def trigger(self, ctx: StaticContext) -> bool:
        return ctx.kernel.count("mufu") >= MIN_MUFU and self._share(ctx) >= MUFU_SHARE

    def analyze(self, ctx: StaticContext):
        mufu = ctx.kernel.count("mufu")
        return "warning", (
            f"{mufu} MUFU (special-function) instructions, {self._share(ctx):.0%} of the "
            "floating-point work: the 16/clk/SM special-function units bound this kernel "
            "before the 128 FP32 lanes do"), {"mufu": mufu, "share": self._share(ctx)}

    def recommend(self, ctx: StaticContext):
        return [Recommendation("hoist transcendentals out of loops and reuse them (e.g. "
                               "exp(a)*exp(b) = exp(a+b), sin/cos of k*x by recurrence)",
                               "1.1-1.5x"),
                Recommendation("replace exp(x) with exp2(x * log2(e)) and drop divisions by "
                               "multiplying with a reciprocal", "1.05-1.2x")]
