"""Evaluate one candidate file against a task: guard, then the judge and its sandboxed runner.

This is the only entry point the rest of kernelpro uses; it decides the mode (GPU, or the CPU
dry run of DESIGN §10), the shapes (full on a GPU, scaled down for the Triton interpreter), and
where device binaries are kept. What it does with the candidate's text itself is bounded: the
file is read up to a size limit and parsed once (the guard); everything else happens in the
judge (judge.py), which never runs candidate code, and the runner (runner.py), which runs it
in an OS sandbox. Secrets of this process's environment are masked in every verdict.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kernelpro.build_cache import cache_root, default_root
from kernelpro.evaluate.compile import detect_backend
from kernelpro.evaluate.correctness import WallConfig
from kernelpro.evaluate.guard import check_source
from kernelpro.evaluate.timing import TimingPolicy
from kernelpro.evaluate.worker import Progress, WorkerLimits, run_worker
from kernelpro.redact import redact
from kernelpro.task import (
    DEFAULT_MAX_ELEMENTS,
    KERNELBENCH_SEED,
    PARSE_LOCK,
    TaskError,
    plan_scale,
)
from kernelpro.types import EvalResult, ScalePlan, Task, failure


@dataclass(frozen=True)
class EvalConfig:
    """How one candidate is evaluated; every field is a CLI option of `kernelpro eval`."""

    arch: str = "sm_90"  # target when compiling without a GPU
    device: Literal["auto", "cpu"] = "auto"  # cpu forces the dry run even on a GPU machine
    scale: Literal["auto", "full", "down"] = "auto"  # auto: full on a GPU, down on the CPU
    max_elements: int = DEFAULT_MAX_ELEMENTS  # budget of a scaled-down task
    wall: WallConfig = field(default_factory=WallConfig)
    timing: bool = True
    timing_policy: TimingPolicy = field(default_factory=TimingPolicy)
    compile_baseline: bool = True  # also time torch.compile of the reference
    guard: bool = True  # the AST guard; off only to test the worker's own isolation
    require_sandbox: bool = False  # an error, not an `unsandboxed` verdict, without a sandbox
    # Tests only: run the timing protocol's checks with the host clock on a machine without
    # a GPU (a stand-in for CUDA events; nothing it measures is reported as a time).
    host_timing_test: bool = False
    max_candidate_bytes: int = 1 << 20  # larger candidate files are bad input
    strict: bool = False  # reject (not just flag) a candidate that delegates the core op
    kernelbench_compat: bool = False  # KernelBench's own protocol instead of ours
    energy: bool = False  # also joules per call from NVML's energy counter (GPU)
    limits: WorkerLimits = field(default_factory=WorkerLimits)
    artifacts_dir: Path | None = None  # where cubins are kept; default under the cache
    keep_workdir: bool = False
    gpu_lock: bool = True  # correctness and timing alone on the GPU (a per-GPU file lock)


@functools.cache
def _gpu_present() -> bool:
    import torch

    return bool(torch.cuda.is_available())


_SCALE_PLANS: dict[tuple[str, int], ScalePlan] = {}


def _scale_plan(task: Task, max_elements: int) -> ScalePlan:
    """plan_scale runs the reference once; do it once per task and budget in a process."""
    key = (task.sha, max_elements)
    if key not in _SCALE_PLANS:
        _SCALE_PLANS[key] = plan_scale(task, max_elements)
    return _SCALE_PLANS[key]


def evaluate_candidate(task: Task, candidate_path: Path, cfg: EvalConfig,
                       progress: Progress | None = None) -> EvalResult:
    """The verdict on one candidate file. Never raises for anything the candidate does.

    `progress(stage, seconds)` is called while the worker runs, for a live status line.
    """
    result = _evaluate(task, Path(candidate_path), cfg, progress)
    return redact(result)


def read_candidate(path: Path, limit: int) -> str | EvalResult:
    """The candidate's text, or the failure that makes it unusable input (exit code 2)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        return failure("guard", "UnreadableCandidate", f"{path}: {exc}")
    if len(data) > limit:
        return failure("guard", "CandidateTooLarge", f"{path} is over {limit} bytes (a kernel "
                       "file is far smaller; --max-candidate-bytes raises the limit)")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        return failure("guard", "UnreadableCandidate", f"{path}: not UTF-8 ({exc})")


def _evaluate(task: Task, candidate_path: Path, cfg: EvalConfig,
              progress: Progress | None) -> EvalResult:
    source = read_candidate(candidate_path, cfg.max_candidate_bytes)
    if isinstance(source, EvalResult):
        return source
    with PARSE_LOCK:  # parsing beside another thread (see task.py)
        try:
            ast.parse(source)
        except (RecursionError, MemoryError) as exc:
            return failure("guard", "UnparseableCandidate", f"the candidate cannot be parsed "
                           f"({type(exc).__name__}: nested or repeated too deeply)")
        except (SyntaxError, ValueError):
            pass  # the guard names the syntax error with its line
        backend = detect_backend(source)
        try:
            findings = check_source(source) if cfg.guard else []
        except (RecursionError, MemoryError) as exc:
            return failure("guard", "UnparseableCandidate", f"the guard cannot walk the "
                           f"candidate ({type(exc).__name__})", backend=backend)
    if findings:
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        return failure("guard", "GuardViolation", findings[0].render() + more,
                       backend=backend, checks=[])
    gpu = cfg.device == "auto" and _gpu_present()
    scale_down = cfg.scale == "down" or (cfg.scale == "auto" and not gpu)
    try:
        plan = _scale_plan(task, cfg.max_elements) if scale_down else ScalePlan()
    except TaskError as exc:
        return failure("load", "TaskError", str(exc), backend=backend)

    cand_sha = hashlib.sha256(source.encode()).hexdigest()
    artifacts = (cfg.artifacts_dir or cache_root() / "artifacts") / cand_sha[:16]
    artifacts.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="kernelpro-eval-"))
    candidate_copy = work_dir / "candidate.py"  # Triton reads kernel source from a real file
    candidate_copy.write_text(source)
    candidate_copy.chmod(0o644)  # the sandboxed runner reads it as another uid
    baseline_key = _baseline_key(task, plan) if gpu else None
    shared_builds = default_root()
    shared_builds.mkdir(parents=True, exist_ok=True)
    request = {
        "mode": "gpu" if gpu else "cpu",
        "task_path": str(task.path),
        "task_source": _scaled_source(task, plan),
        "dtype": task.dtype,
        "candidate_file": str(candidate_copy),
        "backend": backend,
        "arch": cfg.arch,
        "seed": KERNELBENCH_SEED,
        "wall": dataclasses.asdict(cfg.wall),
        "timing": cfg.timing,
        "timing_policy": dataclasses.asdict(cfg.timing_policy),
        "compile_baseline": cfg.compile_baseline and not cfg.kernelbench_compat,
        "strict": cfg.strict,
        "compat": cfg.kernelbench_compat,
        "energy": cfg.energy,
        "compile_ms": _cached_baseline(baseline_key),
        "artifacts_dir": str(artifacts),
        "gpu_lock_dir": str(cache_root() / "locks") if gpu and cfg.gpu_lock else None,
        "require_sandbox": cfg.require_sandbox,
        "host_timing": cfg.host_timing_test,
        "shared_builds": str(shared_builds),
    }
    try:
        result = run_worker(request, work_dir, cfg.limits, progress)
    finally:
        if not cfg.keep_workdir:
            shutil.rmtree(work_dir, ignore_errors=True)
    result.backend = result.backend or backend
    result.scale = plan.describe()
    if plan.scaled:
        result.notes.insert(0, f"checked at scaled-down shapes ({plan.changes()})")
    if baseline_key and result.compile_ms and request["compile_ms"] is None:
        _store_baseline(baseline_key, result.compile_ms)
    return result


def evaluate_many(task: Task, paths: Sequence[Path], cfg: EvalConfig, jobs: int = 1
                  ) -> list[EvalResult]:
    """Verdicts in the order of `paths`, `jobs` workers at a time: their imports and compiles
    overlap on the CPU cores while the per-GPU lock gives correctness and timing the GPU one
    worker at a time, so no measurement shares the GPU."""
    if jobs <= 1 or len(paths) <= 1:
        return [evaluate_candidate(task, Path(p), cfg) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kernelpro-eval") as pool:
        return list(pool.map(lambda p: evaluate_candidate(task, Path(p), cfg), paths))


def _scaled_source(task: Task, plan: ScalePlan) -> str:
    from kernelpro.task import rewrite_constants

    return rewrite_constants(task.source, plan.overrides)


# --- torch.compile baseline cache, per (task sha, GPU name, torch version, shapes) -----------

def _baseline_key(task: Task, plan: ScalePlan) -> str:
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return "|".join([task.sha, name, torch.__version__, plan.describe()])


def _baseline_file() -> Path:
    return cache_root() / "baselines.json"


def _cached_baseline(key: str | None) -> float | None:
    if key is None:
        return None
    try:
        return json.loads(_baseline_file().read_text()).get(key)
    except (OSError, ValueError):
        return None


def _store_baseline(key: str, compile_ms: float) -> None:
    path = _baseline_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = compile_ms
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
