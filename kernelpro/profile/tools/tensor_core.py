"""TensorCore (SASS): matmul-like work done with FFMA loops and no tensor-core instruction."""

from __future__ import annotations

from kernelpro.profile.sass import TENSOR_FAMILIES
from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool


class TensorCore(Tool):
    name = "TensorCore"
    classes = frozenset({"compute", "mixed"})

    def _looped_ffma(self, ctx: StaticContext) -> int:
        k = ctx.kernel
        return sum(1 for i in k.instructions if i.opcode == "FFMA" and k.in_loop(i))

    def trigger(self, ctx: StaticContext) -> bool:
        return (ctx.matmul_like and ctx.kernel.count(*TENSOR_FAMILIES) == 0
                and self._looped_ffma(ctx) > 0)

    def analyze(self, ctx: StaticContext):
        ffma = self._looped_ffma(ctx)
        return "critical", (
            f"matmul-like task, but the kernel has no HMMA/HGMMA (wgmma) instruction: "
            f"{ffma} FFMA in loops do the products on CUDA cores"), {"looped_ffma": ffma}

    def recommend(self, ctx: StaticContext):
        fp32 = ctx.task_dtype == "float32"
        precision = (" For an fp32 task at tolerance 1e-4, plain TF32 is too coarse: split "
                     "each operand into high and low TF32 parts (3xTF32) to keep accuracy."
                     if fp32 else "")
        if ctx.backend == "triton":
            how = ("tl.dot(a, b, input_precision='tf32x3') runs fp32 tiles on tensor cores "
                   "with near-fp32 accuracy (3xTF32)" if fp32 else
                   "tl.dot on fp16/bf16 tiles runs on tensor cores")
            return [Recommendation(f"compute tile products with {how}", "2-8x")]
        return [Recommendation("use tensor cores: WMMA/mma.sync (wgmma on sm_90) on "
                               "fp16/bf16 tiles with fp32 accumulation." + precision, "2-8x")]
