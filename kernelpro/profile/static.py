"""The static tier: compile a candidate without a GPU, read its SASS, run the SASS tools.

Compilation happens in the isolated worker (the candidate runs once under the Triton
interpreter so its launches can be compiled ahead of time; CUDA sources go through nvcc);
everything after that reads the cubins here.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.evaluate.device import ARCH_LIMITS, parse_arch
from kernelpro.profile.occupancy import Occupancy, occupancy
from kernelpro.profile.sass import KernelSass, analyze_cubin
from kernelpro.profile.tools import run_static_tools
from kernelpro.profile.tools.base import Finding, StaticContext

ASSUMED_THREADS = 256  # CUDA block size when neither __launch_bounds__ nor a launch says
_MATMUL_CALLS = {"matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "linear", "Linear",
                 "conv1d", "conv2d", "conv3d", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d",
                 "ConvTranspose3d", "ConvTranspose1d", "Bilinear", "MultiheadAttention",
                 "scaled_dot_product_attention", "tensordot"}


def is_matmul_like(task_source: str) -> bool:
    """Whether the reference multiplies matrices (matmul, linear, conv, attention, `@`)."""
    tree = ast.parse(task_source)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return True
        if isinstance(node, ast.Attribute) and node.attr in _MATMUL_CALLS:
            return True
        if isinstance(node, ast.Name) and node.id in _MATMUL_CALLS:
            return True
    return False


@dataclass
class KernelReport:
    sass: KernelSass
    threads_per_block: int
    threads_assumed: bool
    occupancy: Occupancy
    cubin: Path

    def to_dict(self) -> dict[str, Any]:
        return {**self.sass.to_dict(), "cubin": str(self.cubin),
                "threads_per_block": self.threads_per_block,
                "threads_assumed": self.threads_assumed,
                "occupancy": round(self.occupancy.occupancy, 4),
                "occupancy_limiters": list(self.occupancy.limiters)}


@dataclass
class StaticProfile:
    arch: str
    kernels: list[KernelReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "kernels": [k.to_dict() for k in self.kernels],
                "findings": [f.to_dict() for f in self.findings]}


def _launch_meta(cubin: Path) -> dict[str, Any]:
    sidecar = cubin.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}


def profile_cubins(cubins: list[Path], arch: str, backend: str, task_dtype: str = "float32",
                   matmul_like: bool = False, bottleneck: str | None = None) -> StaticProfile:
    """Kernels, occupancy and findings for a set of cubins compiled for `arch`."""
    limits = ARCH_LIMITS[parse_arch(arch)]
    profile = StaticProfile(arch)
    contexts = []
    for cubin in cubins:
        meta = _launch_meta(cubin)
        for kernel in analyze_cubin(cubin):
            threads = meta.get("threads_per_block") or kernel.max_threads
            assumed = threads is None
            threads = threads or ASSUMED_THREADS
            occ = occupancy(kernel.registers, threads, kernel.shared_bytes, limits)
            profile.kernels.append(KernelReport(kernel, threads, assumed, occ, cubin))
            contexts.append(StaticContext(kernel, limits, occ, threads, assumed, backend,
                                          task_dtype, matmul_like, bottleneck))
    profile.findings = run_static_tools(contexts)
    return profile
