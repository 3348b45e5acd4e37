"""The micro-profiling tools and their registry; every tool relevant to the class runs.

Static tools read SASS (no GPU); metric tools read Nsight Compute counters of the dominant
kernel; timing tools need only a measured time and the analytic roofline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernelpro.profile.tools.achieved_occupancy import AchievedOccupancy
from kernelpro.profile.tools.atomics_in_loop import AtomicsInLoop
from kernelpro.profile.tools.bank_conflicts import SharedBankConflicts
from kernelpro.profile.tools.base import (
    SEVERITY_ORDER,
    Finding,
    MetricContext,
    StaticContext,
    Tool,
)
from kernelpro.profile.tools.compute_throughput import ComputeUnderused
from kernelpro.profile.tools.divergence import BranchDivergence
from kernelpro.profile.tools.dram_bandwidth import DramBandwidth
from kernelpro.profile.tools.excess_traffic import ExcessDramTraffic
from kernelpro.profile.tools.fp64 import FP64InFP32
from kernelpro.profile.tools.occupancy_limiter import OccupancyLimiter
from kernelpro.profile.tools.register_spill import RegisterSpill
from kernelpro.profile.tools.small_grid import SmallGrid
from kernelpro.profile.tools.special_function import SpecialFunction
from kernelpro.profile.tools.stalls import BarrierStall, MemoryLatencyStall, SharedMemoryPressure
from kernelpro.profile.tools.tensor_core import TensorCore
from kernelpro.profile.tools.timing_tier import LaunchOverhead, LowAchievedBandwidth
from kernelpro.profile.tools.uncoalesced import UncoalescedAccess
from kernelpro.profile.tools.vectorization import Vectorization

STATIC_TOOLS: tuple[Tool, ...] = (RegisterSpill(), Vectorization(), TensorCore(), FP64InFP32(),
                                  OccupancyLimiter(), SpecialFunction(), AtomicsInLoop())
METRIC_TOOLS: tuple[Tool, ...] = (
    DramBandwidth(), ExcessDramTraffic(), UncoalescedAccess(), AchievedOccupancy(),
    MemoryLatencyStall(), BarrierStall(), SharedMemoryPressure(), SharedBankConflicts(),
    ComputeUnderused(), SmallGrid(), BranchDivergence(), LowAchievedBandwidth(),
    LaunchOverhead())
ALL_TOOLS = STATIC_TOOLS + METRIC_TOOLS


def _run(contexts: Sequence[Any], tools: Sequence[Tool]) -> list[Finding]:
    findings = [f for ctx in contexts for tool in tools if (f := tool.run(ctx)) is not None]
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.tool, f.kernel))


def run_static_tools(contexts: Sequence[StaticContext],
                     tools: Sequence[Tool] = STATIC_TOOLS) -> list[Finding]:
    """All findings for all kernels, most severe first (two-stage: class filter, trigger)."""
    return _run(contexts, tools)


def run_metric_tools(ctx: MetricContext, tools: Sequence[Tool] = METRIC_TOOLS) -> list[Finding]:
    """Findings from counters and timing, most severe first (two-stage, like the static ones)."""
    return _run([ctx], tools)
