"""FP64InFP32 (SASS): double-precision instructions in a kernel for a single/half task."""

from __future__ import annotations

from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool

LOW_PRECISION = ("float32", "float16", "bfloat16")


class FP64InFP32(Tool):
    name = "FP64InFP32"

    def trigger(self, ctx: StaticContext) -> bool:
        return ctx.task_dtype in LOW_PRECISION and ctx.kernel.count("fp64") > 0

    def analyze(self, ctx: StaticContext):
        k = ctx.kernel
        convert = sum(1 for i in k.instructions if i.opcode == "F2F" and "F64" in i.modifiers)
        n = k.count("fp64")
        return "warning", (
            f"{n} FP64 instructions ({convert} F32<->F64 conversions) in a {ctx.task_dtype} "
            "kernel: usually a double literal (0.5 instead of 0.5f) or a double math overload; "
            "FP64 runs at 1/2 the FP32 rate on H100/A100 and 1/64 on L4/L40S/RTX 4090"), {
            "fp64": n, "conversions": convert}

    def recommend(self, ctx: StaticContext):
        if ctx.backend == "triton":
            return [Recommendation("keep intermediates in tl.float32: cast float64 tensors "
                                   "and avoid float64 inputs to the kernel", "1.1-2x")]
        return [Recommendation("suffix float literals with f (0.5f) and call the float "
                               "overloads (expf, fmaxf, sqrtf)", "1.1-2x")]
