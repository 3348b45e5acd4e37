"""Vectorization (SASS): global memory accessed 32 bits at a time where 128 bits would do.

The KernelPro paper found kernels silently falling back to scalar code that no utilization
metric showed; in SASS it is LDG.E / STG.E where LDG.E.128 / STG.E.128 were possible.
"""

from __future__ import annotations

from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool

MIN_ACCESSES = 4  # fewer global accesses than this: nothing worth vectorizing
SCALAR_SHARE = 0.75


class Vectorization(Tool):
    name = "Vectorization"
    classes = frozenset({"memory", "mixed", "latency"})

    def _counts(self, ctx: StaticContext) -> tuple[int, int, int]:
        h = ctx.kernel.histogram
        narrow = sum(h.get(f, 0) for f in ("ldg_8", "ldg_16", "ldg_32", "stg_8", "stg_16",
                                           "stg_32"))
        wide = h.get("ldg_128", 0) + h.get("stg_128", 0)
        total = narrow + wide + h.get("ldg_64", 0) + h.get("stg_64", 0)
        return narrow, wide, total

    def trigger(self, ctx: StaticContext) -> bool:
        narrow, wide, total = self._counts(ctx)
        return (not ctx.matmul_like and total >= MIN_ACCESSES and wide == 0
                and narrow / total >= SCALAR_SHARE)

    def analyze(self, ctx: StaticContext):
        narrow, wide, total = self._counts(ctx)
        return "warning", (
            f"{narrow} of {total} global loads/stores are 32-bit or narrower and none is "
            "128-bit: each thread moves 4 B per instruction instead of 16 B"), {
            "narrow": narrow, "wide": wide, "total": total}

    def recommend(self, ctx: StaticContext):
        if ctx.backend == "triton":
            return [Recommendation("let Triton prove 16-byte alignment: pass contiguous "
                                   "tensors and sizes that are multiples of 16, or mark "
                                   "offsets with tl.multiple_of/tl.max_contiguous", "1.1-1.4x")]
        return [Recommendation("load and store float4 (reinterpret_cast<const float4*>) "
                               "with a scalar loop for the tail", "1.1-1.4x")]
