"""Run one evaluation in a judge process and turn whatever happens into a verdict.

The judge (`python -m kernelpro.evaluate.judge`) is a fresh interpreter with a scrubbed
environment and a private directory; it starts the candidate runner in the OS sandbox itself.
This parent only reads the judge's status pipe (its stages, then the verdict), shows progress,
enforces a backstop on the judge's total time and memory on its own clock, and makes sure the
judge and everything below it are gone afterwards. The judge dies with this process (SIGKILL
on parent death), the runner with the judge (bwrap --die-with-parent, a PID namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernelpro.evaluate.process import ENV_ALLOWLIST, die_with_parent, tree_rss
from kernelpro.types import EvalResult, failure

POLL_S = 0.1
LOG_TAIL_CHARS = 2000
BACKSTOP_S = 120.0  # beyond the judge's own total limit, before the parent kills it
# Called while the judge works with (stage, seconds since it started).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class WorkerLimits:
    compile_timeout_s: float = 300.0  # import and construction (load_inline: tens of seconds)
    run_timeout_s: float | None = None  # one forward call; None: max(20 s, 50x the reference)
    total_timeout_s: float = 1800.0  # the whole evaluation, on the judge's clock
    memory_bytes: int = 0  # the runner (all its processes) and the judge each; 0 = half RAM
    start_timeout_s: float = 120.0  # the runner's interpreter and torch import

    def for_judge(self) -> dict[str, Any]:
        limits = asdict(self)
        limits["memory_bytes"] = self.memory_bytes or default_memory_limit()
        limits["call_timeout_s"] = limits.pop("run_timeout_s")
        return limits


def default_memory_limit() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return total // 2


def judge_env(work_dir: Path) -> dict[str, str]:
    """The judge's environment: allowlisted variables, kernelpro importable, its own caches.
    The judge runs no candidate code, but it runs the task file: no secrets for that either."""
    import kernelpro

    env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
    parent = str(Path(kernelpro.__file__).resolve().parents[1])
    paths = [parent, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    for sub in ("tmp", "cache"):
        (work_dir / sub).mkdir(exist_ok=True)
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), HOME=str(work_dir),
               TMPDIR=str(work_dir / "tmp"), XDG_CACHE_HOME=str(work_dir / "cache"),
               TRITON_CACHE_DIR=str(work_dir / "cache" / "triton"),
               TORCHINDUCTOR_CACHE_DIR=str(work_dir / "cache" / "inductor"),
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1",
               TRITON_DEFAULT_FP_FUSION="1")
    for var in ("KERNELPRO_SANDBOX", "KERNELPRO_NVRTC_BACKEND"):
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def _judge_preexec() -> None:
    die_with_parent()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _log_tail(path: Path) -> str:
    try:
        return path.read_bytes()[-LOG_TAIL_CHARS:].decode(errors="replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stage_name(stage: str) -> Any:
    return "load" if stage in ("start", "queued") else stage


def run_worker(request: dict[str, Any], work_dir: Path, limits: WorkerLimits,
               progress: Progress | None = None) -> EvalResult:
    """Evaluate one request in a fresh judge process; always returns a verdict."""
    judge_dir = work_dir / "judge"
    judge_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    request = {**request, "limits": limits.for_judge()}
    req_path, log_path = judge_dir / "request.json", judge_dir / "judge.log"
    req_path.write_text(json.dumps(request))
    status_r, status_w = os.pipe()
    t_start = time.time()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernelpro.evaluate.judge", str(req_path), str(status_w)],
            cwd=judge_dir, env=judge_env(judge_dir), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=(status_w,), start_new_session=True,
            preexec_fn=_judge_preexec)
    os.close(status_w)
    try:
        verdict = _watch(proc, status_r, limits, t_start, progress)
    except BaseException:  # Ctrl-C or anything else: never leave a judge behind
        _kill_group(proc)
        raise
    finally:
        os.close(status_r)
    _kill_group(proc)
    if verdict is None:
        verdict = failure("load", "HarnessError", f"the judge ended without a verdict (exit "
                          f"{proc.returncode}); its log: {_log_tail(log_path)[-300:]}")
    verdict.wall_s = time.time() - t_start
    return verdict


def _watch(proc: subprocess.Popen[bytes], status_fd: int, limits: WorkerLimits,
           t_start: float, progress: Progress | None) -> EvalResult | None:
    """Read the judge's status lines until its verdict; None if it ends without one."""
    memory = limits.memory_bytes or default_memory_limit()
    backstop = t_start + limits.total_timeout_s + BACKSTOP_S
    buf, stage, queued_since = b"", "start", None
    while True:
        ready, _, _ = select.select([status_fd], [], [], POLL_S)
        if ready:
            chunk = os.read(status_fd, 1 << 20)
            if not chunk:
                return None
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                message = json.loads(line)
                if "verdict" in message:
                    return EvalResult.from_dict(message["verdict"])
                stage = str(message.get("stage", stage))
                if stage == "queued":
                    queued_since = time.time()
                elif queued_since is not None:  # the wait for the GPU counts against no limit
                    backstop += time.time() - queued_since
                    queued_since = None
        now = time.time()
        if progress is not None:
            progress(_stage_name(stage), now - t_start)
        if now > backstop and queued_since is None:
            _kill_group(proc)
            return failure(_stage_name(stage), "Timeout", f"the evaluation exceeded its total "
                           f"limit of {limits.total_timeout_s:g} s during {stage}; killed")
        rss = tree_rss(proc.pid)
        if rss > 2 * memory + (4 << 30):  # the judge plus a runner at its own limit
            _kill_group(proc)
            return failure(_stage_name(stage), "OutOfMemory",
                           f"the evaluation used {rss / 2**30:.1f} GiB of host memory during "
                           f"{stage}; killed")
