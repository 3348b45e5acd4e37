"""Robust-mode probes after the correctness wall (DESIGN §4), each one check in the verdict.

The wall compares outputs; these calls look for behaviour a comparison cannot see: a result
cached by input address, an output that is still being written after forward returns, a
second call that differs from the first, an exception swallowed inside the candidate, threads
left running, harness functions replaced, the core op handed back to PyTorch, and a kernel that
only works at the benchmark's one shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kernelpro.evaluate import delegation as dlg
from kernelpro.evaluate.correctness import (
    clone_all,
    compare,
    flatten_outputs,
    redistribute,
    set_seed,
)
from kernelpro.evaluate.integrity import (
    HandledExceptionTracer,
    HarnessSnapshot,
    namespace_reason,
    settle,
    threads_reason,
)
from kernelpro.evaluate.signatures import tag
from kernelpro.types import CheckResult

Forward = Callable[..., Any]
# Builds (reference, candidate, inputs) at another shape, or returns a reason it cannot.
OtherShape = Callable[[], "tuple[Forward, Forward, list[Any], str] | str"]


@dataclass
class ProbeContext:
    ref: Forward
    cand: Forward
    inputs: list[Any]  # trial 0's pristine inputs (never passed to a model directly)
    expected: Any  # the reference output on them
    tol: float
    seed: int
    candidate_file: str
    snapshot: HarnessSnapshot
    sync: Callable[[], None] = lambda: None
    modules: tuple[Any, Any] | None = None  # (candidate module, reference module)
    strict: bool = False  # reject delegation of the core op instead of flagging it
    other_shape: OtherShape | None = None
    kernel_names: Callable[[Callable[[], Any]], list[str]] | None = None  # GPU profiler


@dataclass
class ProbeReport:
    checks: list[CheckResult] = field(default_factory=list)
    reason: str | None = None  # the first rejection
    notes: list[str] = field(default_factory=list)
    delegation: dlg.Delegation | None = None
    cand_ops: dlg.AtenRecorder | None = None  # aten ops of the candidate's traced call

    def add(self, name: str, problem: str | None, rejects: bool = True) -> bool:
        """Record a check; True when it rejected the candidate."""
        self.checks.append(CheckResult(name, problem is None, problem or "", rejects))
        if problem and rejects and self.reason is None:
            self.reason = problem
        return bool(problem and rejects)


def _call(ctx: ProbeContext, fn: Forward, args: list[Any]) -> Any:
    set_seed(ctx.seed)
    with torch.no_grad():
        out = fn(*args)
    ctx.sync()
    return out


def _snapshot(out: Any) -> list[torch.Tensor]:
    return [t.detach().clone() for t in flatten_outputs(out)]


def _differs(before: list[torch.Tensor], out: Any) -> bool:
    now = flatten_outputs(out)
    return len(now) != len(before) or any(
        not torch.equal(torch.nan_to_num(a), torch.nan_to_num(b.detach()))
        for a, b in zip(before, now, strict=True))


def run_probes(ctx: ProbeContext) -> ProbeReport:
    """Every probe in order; stops at the first rejection."""
    rep = ProbeReport()
    for probe in (_namespaces, _repeat_and_trace, _settled, _stale_cache, _threads,
                  _harness, _delegation, _other_shape):
        if probe(ctx, rep):
            break
    return rep


def _namespaces(ctx: ProbeContext, rep: ProbeReport) -> bool:
    if ctx.modules is None:
        return False
    return rep.add("separate_namespaces", namespace_reason(*ctx.modules))


def _repeat_and_trace(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """Two calls on the same inputs: the second traced for swallowed exceptions and recorded
    for aten ops; the first call's output must survive the second."""
    first = _call(ctx, ctx.cand, clone_all(ctx.inputs))
    kept = _snapshot(first)
    tracer = HandledExceptionTracer(ctx.candidate_file)
    recorder = dlg.AtenRecorder()
    set_seed(ctx.seed)
    args = clone_all(ctx.inputs)
    with torch.no_grad(), tracer, recorder:
        again = ctx.cand(*args)
        ctx.sync()
    if rep.add("no_fallback", tracer.reason()):
        return True
    cmp = compare(ctx.expected, again, ctx.tol)
    if rep.add("repeat_call", None if cmp.ok else
               f"second call on the same inputs: {cmp.reason} (state kept between calls, such "
               f"as a result cached from an earlier call, or a race) {tag(2)}"):
        return True
    if rep.add("outputs_independent", f"a later call changed an earlier call's output: it "
               f"returns a buffer the model reuses {tag(10)}" if _differs(kept, first)
               else None):
        return True
    rep.cand_ops = recorder
    return False


def _settled(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """The output must be final when forward returns: snapshot it at once (no device-wide
    synchronize), wait, and compare."""
    set_seed(ctx.seed)
    with torch.no_grad():
        out = ctx.cand(*clone_all(ctx.inputs))
        early = _snapshot(out)  # ordered on the current stream only
    ctx.sync()
    settle()
    ctx.sync()
    late = _differs(early, out)
    return rep.add("output_ready_at_return", "the output changed after forward returned: work "
                   f"continued on another stream or thread {tag(1)} / {tag(10)}" if late
                   else None)


def _stale_cache(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """Same input buffers, new values: a result cached by address or by a fingerprint of a
    few elements comes back stale."""
    floats = [i for i, v in enumerate(ctx.inputs)
              if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not floats:
        rep.notes.append("stale-cache probe skipped: the task has no floating inputs")
        return False
    args = clone_all(ctx.inputs)
    first = _call(ctx, ctx.cand, args)
    del first
    set_seed(ctx.seed + 7)
    fresh = redistribute(ctx.inputs, "normal")
    for i in floats:
        args[i].copy_(fresh[i])
    expected = _call(ctx, ctx.ref, clone_all(args))
    out = _call(ctx, ctx.cand, args)
    cmp = compare(expected, out, ctx.tol, ctx.tol * max(1.0, _rms(expected)))
    if cmp.ok:
        return rep.add("stale_cache", None)
    return rep.add("stale_cache", f"new values written into the same input buffers gave a "
                   f"wrong output ({cmp.reason}): a result cached by input address or "
                   f"fingerprint {tag(2)}")


def _rms(out: Any) -> float:
    from kernelpro.evaluate.correctness import output_rms

    return output_rms(out)


def _threads(ctx: ProbeContext, rep: ProbeReport) -> bool:
    alive = ctx.snapshot.new_threads()
    return rep.add("no_threads", threads_reason(alive) if alive else None)


def _harness(ctx: ProbeContext, rep: ProbeReport) -> bool:
    return rep.add("harness_intact", ctx.snapshot.tampered())


def _delegation(ctx: ProbeContext, rep: ProbeReport) -> bool:
    cand_rec = rep.cand_ops
    if cand_rec is None:
        return False
    args = clone_all(ctx.inputs)
    with torch.no_grad():
        set_seed(ctx.seed)
        _, ref_rec = dlg.record(lambda: ctx.ref(*args))
        set_seed(ctx.seed)
        flops = dlg.flop_counts(lambda: ctx.ref(*clone_all(ctx.inputs)))
        names = ctx.kernel_names(lambda: ctx.cand(*clone_all(ctx.inputs))) \
            if ctx.kernel_names else []
    verdict = dlg.judge(flops, ref_rec, cand_rec, names)
    rep.delegation = verdict
    if not verdict.flagged:
        return rep.add("delegation", None)
    problem = f"the candidate {verdict.describe()} {tag(8)}"
    if not ctx.strict:
        rep.notes.append(f"delegation flagged, not rejected (use --strict to reject): {problem}")
    return rep.add("delegation", problem, rejects=ctx.strict)


def _other_shape(ctx: ProbeContext, rep: ProbeReport) -> bool:
    if ctx.other_shape is None:
        return False
    built = ctx.other_shape()
    if isinstance(built, str):
        rep.notes.append(f"other-shape probe skipped: {built}")
        return False
    ref, cand, inputs, changes = built
    expected = _call(ctx, ref, clone_all(inputs))
    try:
        out = _call(ctx, cand, clone_all(inputs))
    except Exception as exc:  # the candidate at a shape it did not expect
        return rep.add("other_shape", f"at other shapes ({changes}) the candidate raised "
                       f"{type(exc).__name__}: {str(exc)[:120]} {tag(7)}")
    cmp = compare(expected, out, ctx.tol)
    return rep.add("other_shape", None if cmp.ok else
                   f"correct at the task's shapes but not at ({changes}): {cmp.reason} "
                   f"{tag(7)}")
