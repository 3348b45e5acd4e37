"""AtomicsInLoop (SASS): global atomics or reductions executed inside a loop."""

from __future__ import annotations

from kernelpro.profile.sass import GLOBAL_ATOMICS
from kernelpro.profile.tools.base import Recommendation, StaticContext, Tool


class AtomicsInLoop(Tool):
    name = "AtomicsInLoop"

    def _looped(self, ctx: StaticContext) -> list[int]:
        k = ctx.kernel
        return [i.offset for i in k.instructions if i.opcode in GLOBAL_ATOMICS and k.in_loop(i)]

    def trigger(self, ctx: StaticContext) -> bool:
        return bool(self._looped(ctx))

    def analyze(self, ctx: StaticContext):
        offsets = self._looped(ctx)
        return "critical", (
            f"{len(offsets)} global atomic/reduction instruction(s) inside a loop (at "
            f"{', '.join(hex(o) for o in offsets[:4])}): every iteration of every thread "
            "serialises on the same addresses in L2"), {"offsets": offsets}

    def recommend(self, ctx: StaticContext):
        return [Recommendation("accumulate in registers across the loop, reduce within the "
                               "warp (shuffles) and the block (shared memory), then issue one "
                               "atomic per block", "2-10x")]
