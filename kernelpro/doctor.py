"""`kernelpro doctor`: what this machine can do (GPU, driver, compilers, profiler counters)."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from typing import Any

from kernelpro.toolchain import find_tool

NCU_PROBE_TIMEOUT_S = 180
# A tiny CUDA workload for ncu to profile; run with the same interpreter.
_NCU_PROBE = "import torch; x = torch.ones(1024, device='cuda'); (x + 1).sum().item()"


def find_ncu() -> str | None:
    tool = find_tool("ncu")
    if tool:
        return str(tool.path)
    hits = sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu")
                  + glob.glob("/usr/local/cuda*/nsight-compute*/ncu"))
    return hits[-1] if hits else None


def ncu_counter_access(ncu: str, python: str) -> str:
    """Run ncu on a tiny kernel: 'allowed', or why counters cannot be read."""
    cmd = [ncu, "--metrics", "sm__cycles_elapsed.avg", "--launch-count", "1", python, "-c",
           _NCU_PROBE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NCU_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"unknown (ncu probe timed out after {NCU_PROBE_TIMEOUT_S} s)"
    out = proc.stdout + proc.stderr
    if "ERR_NVGPUCTRPERM" in out:
        return ("blocked (ERR_NVGPUCTRPERM): run as admin or set "
                "NVreg_RestrictProfilingToAdminUsers=0; kernelpro falls back to timing-only "
                "and static profiling")
    if "sm__cycles_elapsed.avg" in out:
        return "allowed"
    return f"unknown (ncu exited {proc.returncode}: {out.strip()[-160:]})"


def _driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # nvidia-ml-py missing or no driver; fall back to nvidia-smi
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0] if out else None


def diagnose_machine(probe_counters: bool = True) -> dict[str, Any]:
    import sys

    import torch

    from kernelpro.evaluate.device import detect_gpu

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (CUDA build {torch.version.cuda or 'none: CPU only'})",
    }
    gpu = detect_gpu()
    if gpu is None:
        report["gpu"] = ("none: kernelpro runs the CPU dry run (guard, compile to cubin, "
                         "Triton interpreter correctness); timing needs a GPU")
    else:
        known = gpu.spec.name if gpu.spec else "not in the spec table: roofs unknown"
        report["gpu"] = (f"{gpu.name} (sm_{gpu.cc[0]}{gpu.cc[1]}, {gpu.sm_count} SMs, "
                         f"{gpu.memory_bytes / 2**30:.0f} GiB, L2 {gpu.l2_bytes / 2**20:.0f} MiB;"
                         f" spec: {known})")
    report["driver"] = _driver_version() or "not found"
    for name in ("nvcc", "cuobjdump", "nvdisasm"):
        tool = find_tool(name)
        report[name] = f"{tool.path} ({tool.version or 'version unknown'})" if tool else \
            "not found (pip install nvidia-cuda-nvcc nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)"
    ninja = shutil.which("ninja")
    report["ninja"] = ninja or ("not found: CUDA candidates (load_inline) cannot build; "
                                "pip install ninja")
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        report["triton"] = "not installed"
    ncu = find_ncu()
    report["ncu"] = ncu or "not found (Nsight Compute): profiling uses the timing and static tiers"
    if ncu and gpu is not None and probe_counters:
        report["ncu counters"] = ncu_counter_access(ncu, sys.executable)
    else:
        report["ncu counters"] = "n/a (needs a GPU and ncu)"
    report["sandbox"] = sandbox_report()
    report["api key set"] = "yes" if os.environ.get("OPENAI_API_KEY") else "no"
    return report


def sandbox_report() -> str:
    """Which OS sandbox candidates run in here, and with a GPU whether it passes the device
    nodes through (both tried for real)."""
    from kernelpro.evaluate import sandbox

    mech = sandbox.detect()
    text = mech.describe()
    if mech.sandboxed:
        nodes = sandbox.gpu_device_nodes()
        if nodes:
            text += f"; GPU device nodes passed in: {', '.join(nodes[:4])}; " + _cuda_inside(mech)
    else:
        text += " — `--require-sandbox` refuses to evaluate here"
    return text


def _cuda_inside(mech: Any) -> str:
    """Whether CUDA works for a process in the sandbox (driver libraries and device nodes
    visible to the unprivileged runner), tried for real."""
    import sys
    import tempfile
    from pathlib import Path

    from kernelpro.evaluate import sandbox

    probe = "import torch; torch.ones(1, device='cuda').add_(1); print('cuda ok')"
    with tempfile.TemporaryDirectory(prefix="kernelpro-doctor-") as tmp:
        layout = sandbox.Layout(tuple(sandbox.default_ro_paths()), gpu=True)
        argv = sandbox.wrap(mech, layout, [sys.executable, "-c", probe], Path(tmp) / "root")
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "PYTHONPATH")}
        env["HOME"] = sandbox.SCRATCH
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"CUDA inside the sandbox: unknown ({type(exc).__name__})"
    if "cuda ok" in proc.stdout:
        return "CUDA works inside the sandbox"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return f"CUDA FAILS inside the sandbox: {tail[0][:160]}"
