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


class Tool:
    """Base class: subclasses set the class attributes and implement the three methods."""

    name: ClassVar[str]
    classes: ClassVar[frozenset[str]] = ALL_CLASSES
    needs: ClassVar[frozenset[str]] = frozenset({"sass"})

    def applies(self, ctx: StaticContext) -> bool:
        return ctx.bottleneck is None or ctx.bottleneck in self.classes

    def trigger(self, ctx: StaticContext) -> bool:
        raise NotImplementedError

    def analyze(self, ctx: StaticContext) -> tuple[Severity, str, dict[str, Any]]:
        raise NotImplementedError

    def recommend(self, ctx: StaticContext) -> list[Recommendation]:
        raise NotImplementedError

    def run(self, ctx: StaticContext) -> Finding | None:
        if not self.applies(ctx) or not self.trigger(ctx):
            return None
        severity, message, evidence = self.analyze(ctx)
        return Finding(self.name, severity, ctx.kernel.name, message, evidence,
                       self.recommend(ctx))
