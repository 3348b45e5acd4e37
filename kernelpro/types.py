"""The plain dataclasses passed between stages (DESIGN §3).

Everything here is JSON-serialisable through `to_dict`, so results cross the worker process
boundary and land in the run store without custom encoders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Backend = Literal["triton", "cuda", "torch"]
Stage = Literal["guard", "load", "compile", "correctness", "timing", "profile"]
Status = Literal["correct", "incorrect", "failed", "unverified"]


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one value returned by get_inputs (tensors) or its Python type."""

    kind: Literal["tensor", "scalar"]
    shape: tuple[int, ...] = ()
    dtype: str = ""

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Task:
    """A KernelBench-format reference program, loaded and validated."""

    name: str  # file stem, e.g. "19_ReLU"
    level: int | None  # from a `level{N}` parent folder, if any
    problem_id: int | None  # the integer before the first "_" of the file name
    path: Path
    source: str
    sha: str  # sha256 of the source text
    dtype: str  # precision of the floating-point inputs, e.g. "float32"
    inputs: tuple[InputSpec, ...]
    shape_constants: dict[str, int] = field(default_factory=dict)  # module-level int literals


@dataclass(frozen=True)
class ScalePlan:
    """Module shape constants replaced for a smaller run; empty means full size."""

    overrides: dict[str, int] = field(default_factory=dict)  # name -> new value
    original: dict[str, int] = field(default_factory=dict)  # name -> value in the file
    input_elements: int = 0  # total tensor elements of get_inputs() after scaling

    @property
    def scaled(self) -> bool:
        return bool(self.overrides)

    def changes(self) -> str:
        return ", ".join(f"{k} {self.original[k]}->{v}" for k, v in sorted(self.overrides.items()))

    def describe(self) -> str:
        return f"scaled down: {self.changes()}" if self.overrides else "full size"


@dataclass
class CheckResult:
    """One check of the correctness wall: its name, whether it passed, and why not.

    A failed check with `rejects` False is a warning (delegation without --strict).
    """

    name: str
    passed: bool
    detail: str = ""
    rejects: bool = True


@dataclass
class TimingStats:
    """Summary of per-call times in milliseconds (see evaluate/timing.py)."""

    median_ms: float
    iqr_ms: float
    min_ms: float
    mean_ms: float
    trials: int
    rel_ci: float  # half-width of the ~95% CI of the median, relative to the median


@dataclass
class EvalResult:
    """The verdict on one candidate. `stage` is the last stage reached."""

    status: Status
    stage: Stage
    correct: bool = False
    reason: str | None = None  # one line; None when correct and nothing to say
    error_class: str | None = None  # e.g. "CompilationError", "Timeout", "Signal"
    backend: Backend | None = None
    device: str = "cpu"  # "cpu" or the GPU name
    timed: bool = False
    runtime_ms: float | None = None
    timing: TimingStats | None = None
    eager_ms: float | None = None
    compile_ms: float | None = None
    speedup_eager: float | None = None
    speedup_compile: float | None = None
    energy_j: float | None = None  # joules per call (NVML energy counter), when asked
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)  # per-trial errors
    checks: list[CheckResult] = field(default_factory=list)
    scale: str = "full size"
    notes: list[str] = field(default_factory=list)  # what was skipped and why
    cubins: list[str] = field(default_factory=list)  # kept device binaries
    log_tail: str = ""  # last lines of the runner's stdout/stderr, for the next prompt
    sandbox: str = ""  # how the candidate was confined, or `unsandboxed: why`
    wall_s: float = 0.0
    # Seconds per phase on a GPU: load_s (start to asking for the GPU: imports, compile),
    # queue_s (waiting for the per-GPU lock), gpu_s (holding it: correctness, timing).
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        data = dict(data)
        data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        if data.get("timing"):
            data["timing"] = TimingStats(**data["timing"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def failure(stage: Stage, error_class: str, reason: str, **extra: Any) -> EvalResult:
    """A typed failure value: no exception crosses a stage boundary."""
    return EvalResult(status="failed", stage=stage, reason=one_line(reason),
                      error_class=error_class, **extra)


def one_line(text: str, limit: int = 300) -> str:
    """Collapse a message to one line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
