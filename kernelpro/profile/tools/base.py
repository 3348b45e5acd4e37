"""The micro-profiling tool interface and the findings it produces.

A tool declares the bottleneck classes it applies to and the evidence it needs; `trigger`
decides whether it has something to say, `analyze` explains with numbers, `recommend` ranks
concrete changes with an expected gain (KernelPro paper, reference/kernelpro-paper.md). Tools
are pure: context in, finding out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from kernelpro.evaluate.device import ArchLimits
from kernelpro.profile.occupancy import Occupancy
from kernelpro.profile.sass import KernelSass

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
ALL_CLASSES = frozenset({"memory", "compute", "latency", "mixed"})


@dataclass(frozen=True)
class Recommendation:
    action: str  # a concrete change, phrased for the backend
    expected_gain: str  # e.g. "1.1-1.4x"; checked later against what happened when tried


@dataclass
class Finding:
    tool: str
    severity: Severity
    kernel: str
    message: str  # the analysis, with numbers
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendations: list[Recommendation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "severity": self.severity, "kernel": self.kernel,
                "message": self.message, "evidence": self.evidence,
                "recommendations": [{"action": r.action, "expected_gain": r.expected_gain}
                                    for r in self.recommendations]}


@dataclass(frozen=True)
class StaticContext:
    """What the static tools see about one kernel."""

    kernel: KernelSass
    limits: ArchLimits
    occupancy: Occupancy | None
    threads_per_block: int | None
    threads_assumed: bool  # True when the block size was not known and a default was used
    backend: str  # "triton" | "cuda" | "torch"
    task_dtype: str = "float32"
    matmul_like: bool = False
    bottleneck: str | None = None  # roofline class, when known

    @property
    def kernel_name(self) -> str:
        return self.kernel.name

    def has(self, evidence: str) -> bool:
        return evidence == "sass"


@dataclass(frozen=True)
class MetricContext:
    """What the measured tools see: the dominant kernel's ncu metrics (when counters could be
    read), the timing-tier numbers and the roofline of the task on this GPU."""

    kernel: Any  # ncu.KernelMetrics of the dominant kernel, or None (timing-only tier)
    spec: Any  # device.GPUSpec, or None when the GPU is not in the table
    roofline: Any  # roofline.Roofline of the reference, or None
    backend: str = "triton"
    task_dtype: str = "float32"
    matmul_like: bool = False
    bottleneck: str | None = None
    runtime_ms: float | None = None  # the candidate's measured median
    n_kernels: int | None = None  # kernels launched per forward

    @property
    def kernel_name(self) -> str:
        return self.kernel.name if self.kernel is not None else "(whole forward)"

    def has(self, evidence: str) -> bool:
        if evidence == "ncu":
            return self.kernel is not None
        if evidence == "timing":
            return self.runtime_ms is not None and self.roofline is not None
        return False

    def metric(self, name: str) -> float | None:
        return self.kernel.get(name) if self.kernel is not None else None


class Tool:
    """Base class: subclasses set the class attributes and implement the three methods."""

    name: ClassVar[str]
    classes: ClassVar[frozenset[str]] = ALL_CLASSES
    needs: ClassVar[frozenset[str]] = frozenset({"sass"})

    def applies(self, ctx: Any) -> bool:
        """Stage one: the tool is relevant to the class and its evidence is available."""
        return (ctx.bottleneck is None or ctx.bottleneck in self.classes) and all(
            ctx.has(e) for e in self.needs)

    def trigger(self, ctx: StaticContext) -> bool:
        raise NotImplementedError

    def analyze(self, ctx: StaticContext) -> tuple[Severity, str, dict[str, Any]]:
        raise NotImplementedError

    def recommend(self, ctx: StaticContext) -> list[Recommendation]:
        raise NotImplementedError

    def run(self, ctx: Any) -> Finding | None:
        if not self.applies(ctx) or not self.trigger(ctx):
            return None
        severity, message, evidence = self.analyze(ctx)
        return Finding(self.name, severity, ctx.kernel_name, message, evidence,
                       self.recommend(ctx))
