"""The correctness wall (DESIGN §4): stricter than KernelBench, compatible with it.

KernelBench's protocol (reference/kernelbench.md): seed 42 before building each model; 5 trials
whose seeds are drawn from seed 42; inputs cast to the precision and moved to the device;
`allclose(atol=tol, rtol=tol)`. On top of that we give each side its own clone of the inputs,
keep integer/bool inputs' dtype, reject NaN/Inf, check the candidate left its inputs unchanged,
and in robust mode add inputs from other distributions and a repeated call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kernelpro.types import CheckResult

# allclose tolerance (atol = rtol) per precision; KernelBench since Nov 2025.
TOLERANCE = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
ROBUST_DISTRIBUTIONS = ("normal", "signed", "scaled")


@dataclass(frozen=True)
class WallConfig:
    trials: int = 5
    seed: int = 42
    tol: float | None = None  # None: the precision's default
    robust: bool = True
    distributions: tuple[str, ...] = ROBUST_DISTRIBUTIONS


def tolerance_for(dtype: str, override: float | None = None) -> float:
    if override is not None:
        return override
    return TOLERANCE.get(dtype, 1e-4)


def set_seed(seed: int) -> None:
    """KernelBench's set_seed: the CPU and CUDA generators."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)


def trial_seeds(base: int, n: int) -> list[int]:
    """Per-trial seeds drawn from the base seed, as KernelBench's eval does."""
    torch.manual_seed(base)
    return [int(torch.randint(0, 2**32 - 1, (1,)).item()) for _ in range(n)]


def prepare(values: Sequence[Any], device: torch.device, dtype: torch.dtype) -> list[Any]:
    """Move tensors to the device; floating tensors take the task precision, others keep theirs."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            v = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
        out.append(v)
    return out


def clone_all(values: Sequence[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def redistribute(values: Sequence[Any], dist: str) -> list[Any]:
    """Replace floating inputs with draws from another distribution (robust mode)."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            if dist == "normal":
                v = torch.randn_like(v)
            elif dist == "signed":
                v = torch.rand_like(v) * 2 - 1
            elif dist == "scaled":
                v = torch.randn_like(v) * 16
            else:
                raise ValueError(f"unknown input distribution {dist!r}")
        out.append(v)
    return out


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """A forward's result as a list of tensors (tensor, tuple/list, or Python number)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for item in out for t in flatten_outputs(item)]
    if isinstance(out, int | float | bool):
        return [torch.tensor(out)]
    raise TypeError(f"forward returned {type(out).__name__}, expected tensors")


@dataclass
class Comparison:
    ok: bool
    reason: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0


def compare(ref: Any, cand: Any, tol: float, atol: float | None = None) -> Comparison:
    """Compare two forward results: structure, dtype, shape, finiteness, then allclose.

    `tol` is rtol and, unless `atol` is given, atol too (KernelBench's convention).
    """
    atol = tol if atol is None else atol
    try:
        refs, cands = flatten_outputs(ref), flatten_outputs(cand)
    except TypeError as exc:
        return Comparison(False, f"output: {exc}", math.inf, math.inf)
    if len(refs) != len(cands):
        return Comparison(False, f"output count {len(cands)} != reference {len(refs)}",
                          math.inf, math.inf)
    worst = Comparison(True)
    for i, (r, c) in enumerate(zip(refs, cands, strict=True)):
        where = f"output {i}: " if len(refs) > 1 else ""
        if type(c) is not torch.Tensor and not isinstance(c, torch.nn.Parameter):
            return Comparison(False, f"{where}a {type(c).__name__}, not a plain tensor",
                              math.inf, math.inf)
        if c.shape != r.shape:
            return Comparison(False, f"{where}shape {tuple(c.shape)} != reference "
                                     f"{tuple(r.shape)}", math.inf, math.inf)
        if c.dtype != r.dtype:
            return Comparison(False, f"{where}dtype {c.dtype} != reference {r.dtype}",
                              math.inf, math.inf)
        c = c.detach().to("cpu")
        r = r.detach().to("cpu")
        if not r.is_floating_point() and not r.is_complex():
            mismatches = int((c != r).sum())
            if mismatches:
                return Comparison(False, f"{where}{mismatches} of {r.numel()} exact values "
                                         "differ", math.inf, math.inf)
            continue
        if not bool(torch.isfinite(c).all()):
            bad = int((~torch.isfinite(c)).sum())
            return Comparison(False, f"{where}{bad} NaN/Inf values", math.inf, math.inf)
        diff = (c.double() - r.double()).abs()
        max_abs = float(diff.max()) if diff.numel() else 0.0
        max_rel = float((diff / r.double().abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
        worst.max_abs = max(worst.max_abs, max_abs)
        worst.max_rel = max(worst.max_rel, max_rel)
        if not torch.allclose(c, r, atol=atol, rtol=tol):
            n_bad = int((diff > atol + tol * r.double().abs()).sum())
            return Comparison(False, f"{where}{n_bad} of {r.numel()} values outside "
                                     f"tolerance rtol={tol:g} atol={atol:.3g} "
                                     f"(max abs error {max_abs:.3g})",
                              worst.max_abs, worst.max_rel)
    return worst


def inputs_changed(pristine: Sequence[Any], after: Sequence[Any]) -> str | None:
    """Which input the candidate wrote into, or None if all are bit-identical to before."""
    for i, (p, a) in enumerate(zip(pristine, after, strict=True)):
        if isinstance(p, torch.Tensor):
            same = torch.equal(p, a) or (p.is_floating_point() and
                                         bool(torch.equal(p.isnan(), a.isnan())) and
                                         torch.equal(p.nan_to_num(), a.nan_to_num()))
            if not same:
                return f"input {i} was modified by the candidate"
    return None


def output_rms(out: Any) -> float:
    """Root-mean-square of the floating outputs (0 when there are none)."""
    floats = [t.detach().double() for t in flatten_outputs(out) if t.is_floating_point()]
    if not floats:
        return 0.0
    total = sum(float((t * t).sum()) for t in floats)
    return math.sqrt(total / max(sum(t.numel() for t in floats), 1))


def all_finite(out: Any) -> bool:
    try:
        return all(bool(torch.isfinite(t).all()) for t in flatten_outputs(out)
                   if t.is_floating_point())
    except TypeError:
        return False


@dataclass
class WallReport:
    passed: bool
    reason: str | None
    checks: list[CheckResult] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    max_abs: float = 0.0
    max_rel: float = 0.0
    notes: list[str] = field(default_factory=list)


Forward = Callable[..., Any]


def run_wall(ref: Forward, cand: Forward, get_inputs: Callable[[], list[Any]],
             device: torch.device, dtype: torch.dtype, cfg: WallConfig,
             sync: Callable[[], None] = lambda: None) -> WallReport:
    """Run every trial of the wall; stop at the first failing check."""
    tol = tolerance_for(str(dtype).removeprefix("torch."), cfg.tol)
    report = WallReport(True, None)
    seeds = trial_seeds(cfg.seed, cfg.trials)
    plans: list[tuple[str, int, str | None]] = [(f"trial {i}", s, None)
                                                for i, s in enumerate(seeds)]
    if cfg.robust:
        plans += [(f"inputs {d}", seeds[0] + 1 + j, d) for j, d in enumerate(cfg.distributions)]

    for label, seed, dist in plans:
        set_seed(seed)
        values = get_inputs()
        if dist is not None:
            values = redistribute(values, dist)
        pristine = prepare(values, device, dtype)
        ref_in, cand_in = clone_all(pristine), clone_all(pristine)
        set_seed(seed)
        with torch.no_grad():
            ref_out = ref(*ref_in)
        sync()
        if not all_finite(ref_out):
            if dist is None:
                return _fail(report, "reference_finite", f"{label}: the reference output has "
                                                         "NaN/Inf; the task is ill-posed")
            report.notes.append(f"{label}: skipped, the reference is not finite on them")
            continue
        set_seed(seed)
        with torch.no_grad():
            cand_out = cand(*cand_in)
        sync()
        # Extra distributions are ours, not KernelBench's: rounding error grows with the
        # magnitude of the values summed, so their atol scales with the output's RMS.
        atol = tol if dist is None else tol * max(1.0, output_rms(ref_out))
        cmp = compare(ref_out, cand_out, tol, atol)
        report.trials.append({"label": label, "seed": seed, "ok": cmp.ok,
                              "max_abs_error": cmp.max_abs, "max_rel_error": cmp.max_rel})
        report.max_abs = max(report.max_abs, cmp.max_abs)
        report.max_rel = max(report.max_rel, cmp.max_rel)
        check = "allclose" if dist is None else f"distribution_{dist}"
        if not cmp.ok:
            return _fail(report, check, f"{label}: {cmp.reason}")
        changed = inputs_changed(pristine, cand_in)
        if changed:
            return _fail(report, "inputs_unchanged", f"{label}: {changed}")
        _passed(report, check)
        _passed(report, "inputs_unchanged")
        if cfg.robust and label == "trial 0":
            again_in = clone_all(pristine)
            set_seed(seed)
            with torch.no_grad():
                again = cand(*again_in)
            sync()
            cmp2 = compare(ref_out, again, tol)
            if not cmp2.ok:
                return _fail(report, "repeat_call", f"second call on the same inputs: "
                                                    f"{cmp2.reason}")
            _passed(report, "repeat_call")
    return report


def _passed(report: WallReport, check: str) -> None:
    if all(c.name != check for c in report.checks):
        report.checks.append(CheckResult(check, True))


def _fail(report: WallReport, check: str, reason: str) -> WallReport:
    report.passed = False
    report.reason = reason
    report.checks.append(CheckResult(check, False, reason))
    return report
