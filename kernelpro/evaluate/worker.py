"""Run one candidate in an isolated worker process and turn whatever happens into a verdict.

The worker is a fresh interpreter (`python -m kernelpro.evaluate.child`), not a fork: it has a
scrubbed environment (no API keys, no user variables), its own temporary directory as HOME and
cwd, its own Triton and torch-extension caches, no core dumps, and a session of its own so the
whole process group is killed on timeout. Compile and run stages have separate time limits;
the parent also watches resident memory. A segfault, abort, os._exit, hang or memory blow-up
becomes an EvalResult naming the stage and the reason; the parent never dies with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.types import EvalResult, failure

POLL_S = 0.02
LOG_TAIL_CHARS = 2000
# Variables a worker may inherit; everything else (API keys, tokens, user settings) is dropped.
ENV_ALLOWLIST = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES", "CUDA_HOME",
    "CUDA_PATH", "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "TORCH_CUDA_ARCH_LIST", "CC", "CXX", "TRITON_PTXAS_PATH", "TRITON_CUOBJDUMP_PATH",
    "TRITON_NVDISASM_PATH", "TRITON_LIBCUDA_PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX",
)
COMPILE_STAGES = ("start", "load", "compile")
# Called while the worker runs with (stage, seconds since the worker started).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class WorkerLimits:
    compile_timeout_s: float = 600.0  # load_inline builds torch headers: minutes on 2 cores
    run_timeout_s: float = 600.0  # correctness + timing (the Triton interpreter is slow)
    memory_bytes: int = 0  # resident-set limit; 0 = half the machine's memory


def default_memory_limit() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return total // 2


def worker_env(work_dir: Path, interpret: bool) -> dict[str, str]:
    """The worker's whole environment: allowlisted variables plus its own directories."""
    env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
    project_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [project_root, env.get("PYTHONPATH")] if p)
    for sub in ("tmp", "triton", "torch_ext", "cache"):
        (work_dir / sub).mkdir(exist_ok=True)
    env.update(HOME=str(work_dir), TMPDIR=str(work_dir / "tmp"),
               TRITON_CACHE_DIR=str(work_dir / "triton"),
               TORCH_EXTENSIONS_DIR=str(work_dir / "torch_ext"),
               XDG_CACHE_HOME=str(work_dir / "cache"), PYTHONDONTWRITEBYTECODE="1",
               TRITON_DEFAULT_FP_FUSION="1",  # Triton 3.9's default, stated to silence its warning
               PYTHONNOUSERSITE="1", MAX_JOBS=str(os.cpu_count() or 1))
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    from kernelpro.build_cache import default_root

    env["KERNELPRO_BUILD_CACHE"] = str(default_root())  # NVRTC builds are shared across runs
    return env


def _limit_resources(address_space: int) -> None:
    """preexec_fn: no core files; a hard address-space cap where CUDA is not in use."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if address_space:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _read_stage(work_dir: Path, default: str) -> tuple[str, float]:
    try:
        stage, since = (work_dir / "stage").read_text().split()
        return stage, float(since)
    except (OSError, ValueError):
        return default, 0.0


def _log_tail(log: Path) -> str:
    try:
        data = log.read_bytes()[-LOG_TAIL_CHARS:]
    except OSError:
        return ""
    return data.decode(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_worker(request: dict[str, Any], work_dir: Path, limits: WorkerLimits,
               progress: Progress | None = None) -> EvalResult:
    """Evaluate one request in a fresh worker process; always returns a verdict."""
    work_dir.mkdir(parents=True, exist_ok=True)
    req_path, result_path, log_path = (work_dir / "request.json", work_dir / "result.json",
                                       work_dir / "worker.log")
    req_path.write_text(json.dumps(request))
    gpu = request["mode"] == "gpu"
    memory = limits.memory_bytes or default_memory_limit()
    # CUDA reserves huge virtual ranges, so RLIMIT_AS is only safe without a GPU; the RSS
    # watchdog below covers both cases.
    address_space = 0 if gpu else memory + (2 << 30)
    t_start = time.time()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernelpro.evaluate.child", str(req_path), str(result_path)],
            cwd=work_dir, env=worker_env(work_dir, interpret=not gpu), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: _limit_resources(address_space))
        try:
            verdict = _watch(proc, work_dir, limits, memory, t_start, progress)
        except BaseException:  # Ctrl-C or anything else: never leave a worker behind
            _kill_group(proc)
            raise
    _kill_group(proc)  # grandchildren (compilers, anything the candidate started)
    if verdict is None:
        verdict = _verdict_after_exit(proc.returncode, result_path, work_dir)
    verdict.log_tail = verdict.log_tail or _log_tail(log_path)
    verdict.wall_s = time.time() - t_start
    return verdict


def _watch(proc: subprocess.Popen[bytes], work_dir: Path, limits: WorkerLimits, memory: int,
           t_start: float, progress: Progress | None) -> EvalResult | None:
    """Poll until the worker exits (None) or must be killed (a failure verdict)."""
    run_since: float | None = None
    while proc.poll() is None:
        time.sleep(POLL_S)
        stage, _ = _read_stage(work_dir, "start")
        now = time.time()
        if progress is not None:
            progress(_stage_name(stage), now - t_start)
        if stage == "queued":  # waiting for the GPU lock: neither compiling nor running
            run_since = None
        elif stage in COMPILE_STAGES:
            if now - t_start > limits.compile_timeout_s:
                _kill_group(proc)
                return failure(_stage_name(stage), "Timeout",
                               f"{stage} exceeded the compile limit of "
                               f"{limits.compile_timeout_s:g} s; worker killed")
        else:
            run_since = run_since or now
            if now - run_since > limits.run_timeout_s:
                _kill_group(proc)
                return failure(_stage_name(stage), "Timeout",
                               f"{stage} exceeded the run limit of {limits.run_timeout_s:g} s "
                               "(hung or very slow kernel); worker killed")
        rss = _rss_bytes(proc.pid)
        if rss > memory:
            _kill_group(proc)
            return failure(_stage_name(stage), "OutOfMemory",
                           f"worker used {rss / 2**30:.1f} GiB of host memory (limit "
                           f"{memory / 2**30:.1f} GiB) during {stage}; killed")
    return None


def _stage_name(stage: str) -> Any:
    return "load" if stage == "start" else stage


def _verdict_after_exit(returncode: int, result_path: Path, work_dir: Path) -> EvalResult:
    stage, _ = _read_stage(work_dir, "start")
    if result_path.is_file():
        try:
            return EvalResult.from_dict(json.loads(result_path.read_text()))
        except (ValueError, TypeError) as exc:
            return failure(_stage_name(stage), "HarnessError", f"unreadable verdict: {exc}")
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return failure(_stage_name(stage), "Signal",
                       f"worker died with {sig} during {stage} (a crash in candidate code or "
                       "a kernel it launched)")
    return failure(_stage_name(stage), "Exited",
                   f"worker exited with code {returncode} during {stage} without a verdict "
                   "(the candidate ended the process: os._exit, sys.exit or similar)")
