"""Process plumbing shared by the judge and the parent: environments, limits, process trees.

Small pure-ish helpers with one job each: the allowlisted environment a runner starts with,
the death signal that ties a child to its parent, resource limits that respect inherited hard
limits, and the resident memory of a whole process tree (the watchdog where no cgroup is).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal

# Variables a runner may inherit; everything else (API keys, tokens, user settings) is dropped.
ENV_ALLOWLIST = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES", "CUDA_HOME",
    "CUDA_PATH", "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "TORCH_CUDA_ARCH_LIST", "CC", "CXX", "TRITON_PTXAS_PATH", "TRITON_CUOBJDUMP_PATH",
    "TRITON_NVDISASM_PATH", "TRITON_LIBCUDA_PATH", "KERNELPRO_NVRTC_BACKEND",
)
PR_SET_PDEATHSIG = 1
NPROC_LIMIT = 4096  # processes and threads of the runner's uid, where no cgroup counts them


def die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): the child dies when the thread that started it does,
    however that one ends (SIGKILL and the OOM killer included)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def limit_address_space(limit: int) -> None:
    """RLIMIT_AS to `limit`, never above an inherited hard limit (which we may not raise)."""
    cap_limit(resource.RLIMIT_AS, limit)


def cap_limit(which: int, limit: int) -> None:
    """Set a resource limit's soft and hard value, never above the inherited hard limit."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, hard))


def runner_env(scratch: str, gpu: bool, kernelpro_parent: str,
               shared_builds: str | None) -> dict[str, str]:
    """The runner's whole environment: allowlisted variables plus its own directories."""
    env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=scratch, TMPDIR=f"{scratch}/tmp", TRITON_CACHE_DIR=f"{scratch}/triton",
               TORCH_EXTENSIONS_DIR=f"{scratch}/torch_ext", XDG_CACHE_HOME=f"{scratch}/cache",
               KERNELPRO_BUILD_CACHE=f"{scratch}/builds", PYTHONPATH=kernelpro_parent,
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1",
               TRITON_DEFAULT_FP_FUSION="1", MAX_JOBS=str(os.cpu_count() or 1))
    if shared_builds:
        env["KERNELPRO_BUILD_SHARED"] = shared_builds
    if not gpu:
        env["TRITON_INTERPRET"] = "1"
    return env


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total
