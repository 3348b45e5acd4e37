"""Find the CUDA command-line tools: the system toolkit, the pip `nvidia-*` packages, Triton's.

Static analysis and CPU-side compilation need nvcc, cuobjdump and nvdisasm but no GPU; they can
come from a CUDA install (CUDA_HOME or PATH), the pip wheels (nvidia-cuda-nvcc,
nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm) or the copies Triton bundles.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    version: str  # e.g. "13.0.88", "" when the tool does not say


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]) / "bin")
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    dirs.append(Path("/usr/local/cuda/bin"))
    site = Path(sysconfig.get_paths()["purelib"])
    dirs += sorted(site.glob("nvidia/cu*/bin"), reverse=True)  # pip nvidia-cuda-* wheels
    dirs.append(site / "nvidia" / "cuda_nvcc" / "bin")
    dirs.append(site / "triton" / "backends" / "nvidia" / "bin")
    return dirs


@functools.cache
def find_tool(name: str) -> Tool | None:
    """The first working copy of a CUDA tool, or None."""
    for d in _candidate_dirs():
        exe = d / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return Tool(name, exe, _version(exe))
    found = shutil.which(name)
    return Tool(name, Path(found), _version(Path(found))) if found else None


def _version(exe: Path) -> str:
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"V(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else ""


def require_tool(name: str) -> Tool:
    tool = find_tool(name)
    if tool is None:
        raise FileNotFoundError(
            f"{name} not found: install the CUDA toolkit or `pip install nvidia-cuda-nvcc "
            "nvidia-cuda-cccl nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`")
    return tool
