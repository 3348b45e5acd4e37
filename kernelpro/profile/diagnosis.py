"""A Diagnosis: the roofline, the tiers that ran, and the tools' findings, for prompts and JSON.

The KernelPro paper's point (reference/kernelpro-paper.md) is that digested diagnoses help a
model where raw counters hurt it. `render` is what goes into a prompt: severity-ordered, with
numbers, each finding with its best recommendation, cut at a size limit with a count of what
was left out. `to_dict` keeps everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernelpro.profile.roofline import Roofline
from kernelpro.profile.tools.base import SEVERITY_ORDER, Finding

PROMPT_LIMIT = 1500  # characters


@dataclass
class Diagnosis:
    task: str
    gpu: str
    roofline: Roofline | None
    work_source: str = ""  # how the analytic counts were obtained
    tiers: list[str] = field(default_factory=list)  # "analytic", "static", "timing", "ncu"
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tiers skipped and why
    measured: dict[str, Any] = field(default_factory=dict)  # timing tier, ncu class

    def ordered(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.tool))

    def headline(self) -> str:
        if self.roofline is None:
            return f"{self.task}: no roofline (GPU not in the spec table)"
        text = f"{self.task}: {self.roofline.describe()}"
        if "runtime_ms" in self.measured:
            m = self.measured
            text += (f"; measured {m['runtime_ms']:.4g} ms = {m['bandwidth_pct']:.0f}% of peak "
                     f"bandwidth, {m['compute_pct']:.0f}% of peak compute")
        ncu_bound = self.measured.get("ncu_bound")
        if ncu_bound and ncu_bound != self.roofline.bound:
            text += (f"; counters suggest {ncu_bound}-bound (the analytic class is kept: it "
                     "does not depend on this kernel's inefficiencies)")
        return text

    def render(self, limit: int = PROMPT_LIMIT) -> str:
        """Compact text for a prompt: headline, then findings most severe first."""
        lines = [self.headline()]
        ordered = self.ordered()
        for i, f in enumerate(ordered):
            line = f"[{f.severity}] {f.tool} ({f.kernel}): {f.message}"
            if f.recommendations:
                r = f.recommendations[0]
                line += f" -> {r.action} (expected {r.expected_gain})"
            rest = len(ordered) - i
            if sum(len(s) + 1 for s in lines) + len(line) > limit - 40:
                lines.append(f"(+{rest} more finding(s) left out)")
                break
            lines.append(line)
        if not ordered:
            lines.append("no tool found a problem in the tiers that ran: "
                         + ", ".join(self.tiers))
        return "\n".join(lines)[:limit]

    def to_dict(self) -> dict[str, Any]:
        roof = None
        if self.roofline is not None:
            r = self.roofline
            roof = {"bound": r.bound, "gpu": r.gpu, "dtype": r.dtype, "flops": r.work.flops,
                    "bytes_min": r.work.bytes_min, "intensity": r.work.intensity,
                    "ridge": r.ridge, "memory_ms": r.memory_ms, "compute_ms": r.compute_ms,
                    "floor_ms": r.floor_ms, "peak_flops": r.peak_flops,
                    "bandwidth": r.bandwidth, "work_source": self.work_source}
        return {"task": self.task, "gpu": self.gpu, "roofline": roof, "tiers": self.tiers,
                "measured": self.measured, "notes": self.notes,
                "findings": [f.to_dict() for f in self.ordered()]}
