"""Robust-mode probes after the correctness wall (DESIGN §4), each one check in the verdict.

They run in the judge against the candidate in its runner (`RemoteModel`): a second call on
the same inputs, an earlier output re-read after a later call (a buffer the model reuses),
new values in the very input tensors of an earlier call (a cache keyed by address or version
counter), a snapshot at return against one taken later (work still running), the runner's
reports of every call (a failed kernel launch followed by a normal return, threads left
running, a changed precision flag, a lazy tensor subclass), the core op handed back to
PyTorch, and the task rebuilt at other shapes. The reports are the runner's claims: they can
reject a candidate, never pass one.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kernelpro.evaluate import delegation as dlg
from kernelpro.evaluate.correctness import (
    clone_all,
    compare,
    flatten_outputs,
    invoke,
    output_rms,
    redistribute,
    set_seed,
)
from kernelpro.evaluate.remote import CandidateError
from kernelpro.evaluate.signatures import tag
from kernelpro.types import CheckResult

Forward = Callable[..., Any]
# Builds (reference, candidate, inputs, changes) at another shape, or returns why it cannot.
OtherShape = Callable[[], "tuple[Forward, Any, list[Any], str] | str"]
RUNNER_SAYS = "reported by the runner"


@dataclass
class ProbeContext:
    ref: Forward
    cand: Any  # a RemoteModel: call(), reread(), reports
    inputs: list[Any]  # trial 0's pristine inputs (never passed to a model directly)
    expected: Any  # the reference output on them
    tol: float
    strict: bool = False  # reject delegation of the core op instead of flagging it
    other_shape: OtherShape | None = None
    kernel_names: list[str] | None = None  # GPU kernels seen by the judge's observer


@dataclass
class ProbeReport:
    checks: list[CheckResult] = field(default_factory=list)
    reason: str | None = None  # the first rejection
    notes: list[str] = field(default_factory=list)
    delegation: dlg.Delegation | None = None

    def add(self, name: str, problem: str | None, rejects: bool = True) -> bool:
        """Record a check; True when it rejected the candidate."""
        self.checks.append(CheckResult(name, problem is None, problem or "", rejects))
        if problem and rejects and self.reason is None:
            self.reason = problem
        return bool(problem and rejects)


def _snapshot(out: Any) -> list[torch.Tensor]:
    return [t.detach().clone() for t in flatten_outputs(out)]


def _differs(before: list[torch.Tensor], out: Any) -> bool:
    now = flatten_outputs(out)
    return len(now) != len(before) or any(
        a.shape != b.shape or not torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
        for a, b in zip(before, now, strict=True))


def run_probes(ctx: ProbeContext) -> ProbeReport:
    """Every probe in order; stops at the first rejection."""
    rep = ProbeReport()
    for probe in (_reports, _repeat_call, _settled, _stale_cache, _reports, _delegation,
                  _other_shape):
        if probe(ctx, rep):
            break
    return rep


def _reports(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """What the runner saw during the calls so far."""
    found: dict[str, str | None] = {"plain_tensor_type": None, "no_fallback": None,
                                    "no_threads": None, "precision_flags": None,
                                    "op_trace_intact": None}
    for report in ctx.cand.reports:
        ops = report.get("ops")
        if isinstance(ops, dict) and ops.get("complete") is not True \
                and found["op_trace_intact"] is None:
            found["op_trace_intact"] = (
                f"the profiler's trace of a call was cut short or broken ({RUNNER_SAYS}): the "
                f"candidate stopped or tampered with it {tag(8)}")
        types = report.get("types") or []
        if types and found["plain_tensor_type"] is None:
            found["plain_tensor_type"] = (
                f"forward returned a {str(types[0])[:40]}, not a plain tensor ({RUNNER_SAYS}): "
                f"its work may be deferred until the values are read {tag(10)}")
        errors = report.get("launch_errors") or []
        if errors and found["no_fallback"] is None:
            found["no_fallback"] = (
                f"a kernel launch failed during forward ({str(errors[0])[:120]}) and forward "
                f"still returned ({RUNNER_SAYS}): the work was done another way {tag(14)}")
        threads = report.get("threads") or []
        if threads and found["no_threads"] is None:
            found["no_threads"] = (
                f"the candidate left {len(threads)} thread(s) running after forward "
                f"({', '.join(str(t)[:30] for t in threads[:3])}; {RUNNER_SAYS}): work can "
                f"happen outside the timed region {tag(11)}")
        flag = report.get("flags")
        if flag and found["precision_flags"] is None:
            found["precision_flags"] = f"{str(flag)[:160]} ({RUNNER_SAYS}) {tag(12)}"
    for name, problem in found.items():  # the second pass replaces the first one's checks
        rep.checks = [c for c in rep.checks if c.name != name]
        if rep.add(name, problem):
            return True
    return False


def _repeat_call(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """Two calls on the same inputs: the second must match the reference; then a call on
    other inputs, after which the first call's output, read again, must be unchanged."""
    seed = secrets.randbits(31)
    first, first_id = ctx.cand.call(clone_all(ctx.inputs), seed, keep=True)
    kept = _snapshot(first)
    again, _ = ctx.cand.call(clone_all(ctx.inputs), seed)
    cmp = compare(ctx.expected, again, ctx.tol)
    if rep.add("repeat_call", None if cmp.ok else
               f"second call on the same inputs: {cmp.reason} (state kept between calls, such "
               f"as a result cached from an earlier call, or a race) {tag(2)}"):
        return True
    set_seed(secrets.randbits(31))
    ctx.cand.call(redistribute(ctx.inputs, "normal"), seed)
    reread = ctx.cand.reread(first_id)
    return rep.add("outputs_independent", f"a later call changed an earlier call's output: it "
                   f"returns a buffer the model reuses {tag(10)}" if _differs(kept, reread)
                   else None)


def _settled(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """The output must be final when forward returns: the runner snapshots it at return
    (ordered on the current stream only) and again after a device-wide sync and a pause."""
    ctx.cand.call(clone_all(ctx.inputs), secrets.randbits(31), settle=True)
    late = bool(ctx.cand.reports[-1].get("late_change"))
    return rep.add("output_ready_at_return", "the output changed after forward returned: work "
                   f"continued on another stream or thread {tag(1)} / {tag(10)}" if late
                   else None)


def _stale_cache(ctx: ProbeContext, rep: ProbeReport) -> bool:
    """New values in the very input tensors of an earlier call, written so that neither the
    address nor the version counter changes: a cached result comes back stale."""
    floats = [i for i, v in enumerate(ctx.inputs)
              if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not floats:
        rep.notes.append("stale-cache probe skipped: the task has no floating inputs")
        return False
    seed = secrets.randbits(31)
    _, first_id = ctx.cand.call(clone_all(ctx.inputs), seed)
    set_seed(secrets.randbits(31))
    fresh = redistribute(ctx.inputs, "normal")
    args = [fresh[i] if i in floats else v for i, v in enumerate(clone_all(ctx.inputs))]
    expected = invoke(ctx.ref, clone_all(args), seed)
    out, _ = ctx.cand.call(args, seed, reuse=first_id)
    cmp = compare(expected, out, ctx.tol, ctx.tol * max(1.0, output_rms(expected)))
    if cmp.ok:
        return rep.add("stale_cache", None)
    return rep.add("stale_cache", f"new values written into the same input buffers gave a "
                   f"wrong output ({cmp.reason}): a result cached by input address or "
                   f"version {tag(2)}")


def recorded_ops(reports: list[dict[str, Any]]) -> tuple[dlg.AtenRecorder, int, list[str]]:
    """The union of the aten ops the runner's profiler saw over all calls, the most FLOPs
    one call's ops did, and the GPU kernels seen (malformed entries ignored: claims)."""
    rec = dlg.AtenRecorder()
    most = 0
    kernels: set[str] = set()
    for report in reports:
        ops = report.get("ops")
        if not isinstance(ops, dict):
            continue
        part = ops.get("calls")
        if isinstance(part, dict):
            rec.calls.update(Counter({str(k)[:80]: int(v) for k, v in part.items()
                                      if isinstance(v, int) and v > 0}))
        flops = ops.get("flops")
        if isinstance(flops, dict):
            most = max(most, sum(int(v) for v in flops.values() if isinstance(v, int)))
        if isinstance(ops.get("kernels"), list):
            kernels |= {str(k)[:200] for k in ops["kernels"][:64]}
    return rec, most, sorted(kernels)


def _delegation(ctx: ProbeContext, rep: ProbeReport) -> bool:
    cand_rec, cand_flops, kernels = recorded_ops(ctx.cand.reports)
    args = clone_all(ctx.inputs)
    with torch.no_grad():
        _, ref_rec = dlg.record(lambda: ctx.ref(*args))
        flops = dlg.flop_counts(lambda: ctx.ref(*clone_all(ctx.inputs)))
    verdict = dlg.judge(flops, ref_rec, cand_rec, [*kernels, *(ctx.kernel_names or [])],
                        cand_flops)
    rep.delegation = verdict
    rep.notes.append("delegation judged from the aten ops and kernels PyTorch's profiler saw "
                     "in the runner on every checked call, all threads included (best "
                     "effort: it runs in the candidate's process, and work outside PyTorch, "
                     "such as numpy, is not seen)")
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
    seed = secrets.randbits(31)
    expected = invoke(ref, clone_all(inputs), seed)
    try:
        out = invoke(cand, clone_all(inputs), seed)
    except CandidateError as exc:  # construction or forward at a shape it did not expect
        return rep.add("other_shape", f"at other shapes ({changes}) the candidate raised "
                       f"{str(exc)[:160]} {tag(7)}")
    cmp = compare(expected, out, ctx.tol)
    return rep.add("other_shape", None if cmp.ok else
                   f"correct at the task's shapes but not at ({changes}): {cmp.reason} "
                   f"{tag(7)}")
