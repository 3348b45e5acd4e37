"""The judge's checks once both models exist: limits, the wall, the probes, then timing.

Everything here runs in the judge process. The candidate is a `RemoteModel`: each call sends
inputs to the runner and checks what comes back; nothing the runner says can pass a check.
"""

from __future__ import annotations

import ast
import os
import secrets
import time
from pathlib import Path
from typing import Any

from kernelpro.evaluate.remote import CandidateError, RemoteModel
from kernelpro.types import EvalResult, failure, one_line

MIN_CALL_LIMIT_S = 20.0  # per forward call, at least (the Triton interpreter is slow)
CALL_LIMIT_FACTOR = 50.0  # ... or this many times the reference's own time
INPUTS_BACK_BYTES = 256 << 20  # inputs sent back after every call when this small


def classify(exc: CandidateError, stage: str, gpu: bool, backend: str) -> EvalResult:
    """A typed failure for an exception the runner reports (its class and message are
    claims: they choose among failures, never make a candidate correct)."""
    err = exc.error
    where = f" (candidate.py:{err['line']})" if isinstance(err.get("line"), int) else ""
    text = f"{err['class']}: {err['message']}{where}"
    tail = str(err.get("traceback") or "")
    if err.get("gpu_required") and not gpu and backend == "cuda":
        return EvalResult(status="unverified", stage="compile", reason=one_line(err["message"]),
                          error_class="GpuRequired", log_tail=tail)
    if err.get("compile"):
        return failure("compile", err["class"], text, log_tail=tail)
    if err.get("memory"):
        return failure(stage, "OutOfMemory", text, log_tail=tail)  # type: ignore[arg-type]
    return failure(stage, err["class"], text, log_tail=tail)  # type: ignore[arg-type]


def collect_artifacts(ctx: Any, timeout_s: float) -> tuple[list[str], list[str]]:
    """The runner's binaries, checked and kept; recipes go to the trusted rebuild."""
    from kernelpro.evaluate.artifacts import keep

    reply, value = ctx.runner.request({"op": "artifacts", "scratch": ctx.runner.scratch,
                                       "arch": ctx.req["arch"]}, timeout_s=timeout_s,
                                      max_payload=1 << 30, what="collecting device binaries")
    names = reply.get("names") if isinstance(reply.get("names"), list) else []
    files = {str(n): bytes(t.numpy().tobytes()) for n, t in zip(names, value or [], strict=False)}
    cubins, notes = keep(files, Path(ctx.req["artifacts_dir"]))
    notes += [str(n)[:300] for n in (reply.get("notes") or [])][:8]
    recipes = reply.get("recipes")
    if isinstance(recipes, list) and recipes:
        ctx.req["_recipes"] = recipes[:64]
    return cubins, notes




def _nbytes(values: Any) -> int:
    import torch

    from kernelpro.evaluate.correctness import flatten_outputs

    try:
        return sum(t.numel() * t.element_size() for t in flatten_outputs(values)
                   if isinstance(t, torch.Tensor))
    except TypeError:
        return 0


def call_limits(ctx: Any, ref_model: Any, ref_mod: Any, device: Any, dtype: Any
                ) -> tuple[float, int, int]:
    """(seconds a candidate call may take, bytes a reply may hold, input bytes): the call
    limit follows the reference's own time on this device and scale, so a hung candidate
    costs max(20 s, 50x the reference) and not minutes."""
    import torch

    from kernelpro.evaluate.correctness import clone_all, prepare, set_seed
    from kernelpro.task import call_get_inputs

    set_seed(secrets.randbits(31))
    inputs = prepare(call_get_inputs(Path(ctx.req["task_path"]), ref_mod), device, dtype)
    times = []
    with torch.no_grad():
        for _ in range(2):  # the first call warms up (allocator, lazy init)
            t0 = time.perf_counter()
            out = ref_model(*clone_all(inputs))
            if ctx.gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    configured = ctx.req["limits"].get("call_timeout_s")
    call_s = float(configured) if configured else max(MIN_CALL_LIMIT_S,
                                                      CALL_LIMIT_FACTOR * times[-1])
    in_bytes = _nbytes(inputs)
    return call_s, 4 * (in_bytes + _nbytes(out)) + (64 << 20), in_bytes


class RaisingModel:
    """Stands for a ModelNew whose construction raised: every call raises the same error."""

    def __init__(self, error: CandidateError) -> None:
        self.error = error

    def seeded_call(self, args: list[Any], seed: int) -> Any:
        raise self.error


def other_shape_builder(ctx: Any, cand: RemoteModel, device: Any, dtype: Any) -> Any:
    """Reference and candidate rebuilt with every shape constant halved (exploit 7)."""
    import torch

    from kernelpro.evaluate.correctness import clone_all, prepare, set_seed
    from kernelpro.task import (
        call_get_inputs,
        import_source,
        rewrite_constants,
        scaled_values,
        shape_constants,
    )

    req = ctx.req

    def build() -> Any:
        source = req["task_source"]
        overrides = scaled_values(shape_constants(ast.parse(source)), 1)
        if not overrides:
            return "the task has no shape constants to vary"
        changes = ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        path = Path(req["task_path"])
        try:
            mod = import_source(path, rewrite_constants(source, overrides),
                                f"kernelpro_reference_{os.urandom(6).hex()}")
            set_seed(req["seed"])
            init = call_get_inputs(path, mod, "get_init_inputs")
            set_seed(req["seed"])
            ref = mod.Model(*prepare(init, device, dtype)).to(device)
            set_seed(secrets.randbits(31))
            inputs = prepare(call_get_inputs(path, mod), device, dtype)
            with torch.no_grad():
                ref(*clone_all(inputs))
        except Exception as exc:  # the task itself does not scale (TaskError included)
            return f"the reference does not run at {changes} ({type(exc).__name__})"
        try:
            ctx.runner.request({"op": "build", "model": 1, "seed": req["seed"]},
                               prepare(init, torch.device("cpu"), dtype),
                               timeout_s=float(req["limits"]["compile_timeout_s"]),
                               what="building ModelNew at other shapes")
        except CandidateError as exc:  # construction at another shape is part of the probe
            return ref, RaisingModel(exc), inputs, changes
        other = RemoteModel(ctx.runner, 1, cand.timeout_s, cand.max_payload, record=False,
                            inputs_back=False)
        return ref, other, inputs, changes

    return build


def correctness_and_timing(ctx: Any, ref_model: Any, ref_mod: Any, cand: RemoteModel,
                           device: Any, dtype: Any) -> EvalResult:
    import torch

    from kernelpro.evaluate.correctness import WallConfig, run_wall, tolerance_for
    from kernelpro.evaluate.signatures import lowered_references
    from kernelpro.task import call_get_inputs

    req = ctx.req
    wall_cfg = WallConfig(**req["wall"])
    tol = tolerance_for(req["dtype"], wall_cfg.tol)
    sync = torch.cuda.synchronize if ctx.gpu else (lambda: None)
    task_path = Path(req["task_path"])
    get_inputs = lambda: call_get_inputs(task_path, ref_mod)  # noqa: E731
    compat = bool(req.get("compat"))
    compile_s = float(req["limits"]["compile_timeout_s"])
    device_name = torch.cuda.get_device_name() if ctx.gpu else "cpu"
    try:
        if compat:
            from kernelpro.evaluate.compat import kernelbench_wall

            report = kernelbench_wall(ref_model, cand, get_inputs, device, dtype,
                                      wall_cfg.trials, 42 if wall_cfg.seed is None
                                      else wall_cfg.seed, tol, sync)
        else:
            report = run_wall(ref_model, cand, get_inputs, device, dtype, wall_cfg, sync,
                              lowered=lowered_references(ref_model))
    except CandidateError as exc:
        return classify(exc, "correctness", ctx.gpu, ctx.backend)
    base: dict[str, Any] = dict(
        backend=req["backend"], max_abs_error=report.max_abs, max_rel_error=report.max_rel,
        trials=report.trials, checks=report.checks, notes=list(report.notes),
        device=device_name)
    # Binaries now, from the launches at the task's own shapes (the probes try others).
    base["cubins"], art_notes = collect_artifacts(ctx, compile_s)
    base["notes"] += art_notes
    probe_reason = None
    if report.passed and wall_cfg.robust and not compat:
        from kernelpro.evaluate.probes import ProbeContext, run_probes

        probe_ctx = ProbeContext(ref=ref_model, cand=cand, inputs=report.first_inputs,
                                 expected=report.first_expected, tol=tol,
                                 strict=bool(req.get("strict")),
                                 other_shape=other_shape_builder(ctx, cand, device, dtype),
                                 kernel_names=None)
        try:
            probes = run_probes(probe_ctx)
        except CandidateError as exc:  # the candidate runs again in every probe
            return classify(exc, "correctness", ctx.gpu, ctx.backend)
        base["checks"] = base["checks"] + probes.checks
        base["notes"] += probes.notes
        probe_reason = probes.reason
    if not report.passed:
        return EvalResult(status="incorrect", stage="correctness", reason=report.reason,
                          error_class="Mismatch", **base)
    if probe_reason:
        return EvalResult(status="incorrect", stage="correctness", reason=probe_reason,
                          error_class="ExploitDetected", **base)
    untimed = ("not timed: no GPU on this machine (correctness checked under the Triton "
               "interpreter / on the CPU)")
    host_test = bool(req.get("host_timing")) and not ctx.gpu and not compat
    if not req["timing"] or not (ctx.gpu or host_test):
        return EvalResult(status="correct", stage="correctness", correct=True, **base,
                          reason=None if ctx.gpu else untimed)
    ctx.status.enter("timing")
    from kernelpro.evaluate.compat import time_kernelbench
    from kernelpro.evaluate.timed import time_candidate

    try:
        if compat:
            timed = time_kernelbench(ctx, ref_model, ref_mod, cand, device, dtype)
        else:
            timed = time_candidate(ctx, ref_model, ref_mod, cand, device, dtype, tol,
                                   base["checks"], base["notes"])
    except CandidateError as exc:  # candidate code runs again under timing
        return classify(exc, "timing", ctx.gpu, ctx.backend)
    if host_test and timed["status"] == "correct":
        timed["reason"] = untimed + "; the timing protocol's checks ran with the host clock"
    return EvalResult(**base, **timed)
