"""The micro-profiling tools and their registry; every tool relevant to the class runs."""

from __future__ import annotations

from collections.abc import Sequence

from kernelpro.profile.tools.atomics_in_loop import AtomicsInLoop
from kernelpro.profile.tools.base import SEVERITY_ORDER, Finding, StaticContext, Tool
from kernelpro.profile.tools.fp64 import FP64InFP32
from kernelpro.profile.tools.occupancy_limiter import OccupancyLimiter
from kernelpro.profile.tools.register_spill import RegisterSpill
from kernelpro.profile.tools.special_function import SpecialFunction
from kernelpro.profile.tools.tensor_core import TensorCore
from kernelpro.profile.tools.vectorization import Vectorization

STATIC_TOOLS: tuple[Tool, ...] = (RegisterSpill(), Vectorization(), TensorCore(), FP64InFP32(),
                                  OccupancyLimiter(), SpecialFunction(), AtomicsInLoop())


def run_static_tools(contexts: Sequence[StaticContext],
                     tools: Sequence[Tool] = STATIC_TOOLS) -> list[Finding]:
    """All findings for all kernels, most severe first (two-stage: class filter, trigger)."""
    findings = [f for ctx in contexts for tool in tools if (f := tool.run(ctx)) is not None]
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.tool, f.kernel))
