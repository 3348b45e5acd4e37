"""The judge: computes the verdict on one candidate and never imports or runs candidate code.

Started by worker.py as `python -m kernelpro.evaluate.judge REQUEST STATUS_FD`. It loads the
task (the reference module, under a random name), starts the candidate runner in the OS
sandbox (runner.py, sandbox.py), builds the inputs from a secret seed, computes the reference
outputs itself, sends the runner the calls to make and checks what comes back: the wall
(correctness.py), the probes (probes.py) and, on a GPU, the timing claims (timed.py). Its
stage and its verdict go to the parent over STATUS_FD, a pipe the runner never holds; no file,
stage or exit code of the runner can make a candidate correct.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.evaluate.remote import (
    CandidateError,
    RemoteModel,
    RunnerFailure,
    RunnerProcess,
    start_runner,
)
from kernelpro.evaluate.verdict import (
    INPUTS_BACK_BYTES,
    call_limits,
    classify,
    collect_artifacts,
    correctness_and_timing,
)
from kernelpro.types import EvalResult, failure


class Status:
    """The judge's channel to the parent: one JSON line per stage, then the verdict."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "w", buffering=1)
        self.stage = "start"
        self.started = time.time()
        self.phases: dict[str, float] = {}

    def enter(self, stage: str) -> None:
        self.stage = stage
        self.out.write(json.dumps({"stage": stage, "t": time.time()}) + "\n")

    def verdict(self, result: EvalResult) -> None:
        self.out.write(json.dumps({"verdict": result.to_dict()}) + "\n")
        self.out.flush()


@dataclass
class Context:
    """What the judge knows while it judges."""

    req: dict[str, Any]
    status: Status
    runner: RunnerProcess
    gpu: bool
    candidate_inside: str  # the candidate file's path as the runner sees it

    @property
    def backend(self) -> str:
        return self.req["backend"]


def judge(req: dict[str, Any], status: Status, work_dir: Path) -> EvalResult:
    from kernelpro.evaluate import sandbox

    mech = sandbox.detect()
    if req.get("require_sandbox") and not mech.sandboxed:
        return failure("load", "SandboxUnavailable", f"--require-sandbox: {mech.describe()}")
    runner, inside = start_runner(req, work_dir, req["candidate_file"])
    total = float(req["limits"].get("total_timeout_s") or 0)
    if total:
        runner.deadline_cap = time.monotonic() + total
    ctx = Context(req, status, runner, req["mode"] == "gpu", inside)
    try:
        result = _judge(ctx)
    except RunnerFailure as exc:
        stage = "load" if status.stage in ("start", "queued") else status.stage
        result = failure(stage, exc.error_class, exc.during(status.stage))  # type: ignore
    except CandidateError as exc:
        result = classify(exc, status.stage, ctx.gpu, ctx.backend)
    finally:
        runner.close()
    result.phases.update({f"runner_{op}_s": round(t, 4) for op, t in runner.seconds.items()})
    result.phases["runner_start_s"] = round(runner.ready_s, 4)
    result.phases["bytes_moved"] = float(runner.bytes_moved)
    result.sandbox = mech.describe()
    if not mech.sandboxed:
        result.notes.insert(0, f"UNSANDBOXED: {mech.why}; the candidate ran as an ordinary "
                               "process of this user (--require-sandbox makes this an error)")
    result.log_tail = (result.log_tail + "\n" + runner.log_tail()).strip()[-4000:]
    return result


def _judge(ctx: Context) -> EvalResult:
    import torch

    from kernelpro.evaluate.correctness import prepare, set_seed
    from kernelpro.task import TaskError, call_get_inputs, import_source

    req, status, runner = ctx.req, ctx.status, ctx.runner
    status.enter("load")
    device = torch.device("cuda" if ctx.gpu else "cpu")
    if ctx.gpu:  # the reference's precision flags; the runner sets the same ones
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    task_path = Path(req["task_path"])
    try:
        ref_mod = import_source(task_path, req["task_source"],
                                f"kernelpro_reference_{os.urandom(6).hex()}")
    except TaskError as exc:
        return failure("load", "TaskError", str(exc))
    dtype = getattr(torch, req["dtype"])
    runner.request({"op": "ping"}, timeout_s=runner.spec.start_timeout_s,
                   what="starting the runner")
    runner.ready_s = time.monotonic() - runner.started
    if ctx.gpu or req.get("host_timing"):  # the round trip, while the runner is still ours
        runner.round_trip_ms = calibrate_round_trip(runner)

    status.enter("compile")
    limits = req["limits"]
    compile_s = float(limits["compile_timeout_s"])
    reply, _ = runner.request({"op": "load", "path": ctx.candidate_inside,
                               "backend": ctx.backend, "mode": req["mode"],
                               "arch": req["arch"], "aot": req.get("aot", True),
                               "scratch": runner.scratch}, timeout_s=compile_s,
                              what="importing the candidate")
    if not reply.get("has_model"):
        return failure("compile", "NoModelNew", "the candidate defines no ModelNew")
    seed = req["seed"]
    set_seed(seed)
    init = call_get_inputs(task_path, ref_mod, "get_init_inputs")
    if ctx.gpu and req.get("gpu_lock_dir"):
        waited = take_gpu(Path(req["gpu_lock_dir"]), status)
        if runner.deadline_cap is not None:  # waiting for the GPU counts against no limit
            runner.deadline_cap += waited
    set_seed(seed)
    ref_model = ref_mod.Model(*prepare(init, device, dtype)).to(device)
    runner.request({"op": "build", "model": 0, "seed": seed}, prepare(init, torch.device("cpu"),
                                                                      dtype),
                   timeout_s=compile_s, what="building ModelNew")
    if ctx.backend == "cuda" and not ctx.gpu:
        cubins, notes = collect_artifacts(ctx, compile_s)
        what = f"{len(cubins)} cubin(s) for {req['arch']}" if cubins else "no CUDA sources"
        return EvalResult(status="unverified", stage="compile", backend="cuda", cubins=cubins,
                          notes=notes, reason=f"not run: no GPU on this machine; compiled {what},"
                                              " but correctness and timing need a GPU")

    call_s, max_payload, in_bytes = call_limits(ctx, ref_model, ref_mod, device, dtype)
    cand = RemoteModel(runner, 0, call_s, max_payload, inputs_back=in_bytes <= INPUTS_BACK_BYTES)
    status.enter("correctness")
    return correctness_and_timing(ctx, ref_model, ref_mod, cand, device, dtype)


def calibrate_round_trip(runner: RunnerProcess, pings: int = 20) -> float:
    """Median milliseconds of a request that does nothing but synchronise, measured before
    any candidate code has run in the runner (so the candidate cannot inflate it)."""
    times = []
    for _ in range(pings):
        t0 = time.perf_counter()
        runner.request({"op": "ping", "sync": True}, timeout_s=60.0, what="calibration")
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def take_gpu(lock_dir: Path, status: Status) -> float:
    """Wait for this GPU's lock (one file per device UUID, shared by every kernelpro process
    on the machine): correctness, timing and profiling run alone on the GPU. Returns the
    seconds waited."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    ident = str(getattr(props, "uuid", "")) or os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    status.enter("queued")
    status.phases["asked"] = time.time()
    acquire_lock(lock_dir / f"gpu-{ident.replace('/', '_')}.lock")
    status.phases["got"] = time.time()
    status.enter("compile")  # building the models, now on the GPU
    return status.phases["got"] - status.phases["asked"]


def acquire_lock(path: Path) -> int:
    """Block until this process holds an exclusive flock on `path`; the OS releases it when
    the process ends (however it ends), so a killed judge never leaves the GPU locked."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def phases(status: Status) -> dict[str, float]:
    if "got" not in status.phases:
        return {}
    return {"load_s": status.phases["asked"] - status.started,
            "queue_s": status.phases["got"] - status.phases["asked"],
            "gpu_s": time.time() - status.phases["got"]}


def main(argv: list[str]) -> int:
    request_path, status_fd = Path(argv[1]), int(argv[2])
    status = Status(status_fd)
    req = json.loads(request_path.read_text())
    t0 = time.time()
    try:
        result = judge(req, status, request_path.parent)
    except Exception as exc:  # a harness bug must still produce a verdict, with its traceback
        traceback.print_exc()
        result = failure("load", "HarnessError", f"{type(exc).__name__}: {exc}")
    result.wall_s = time.time() - t0
    result.phases.update(phases(status))
    if req.get("_recipes"):
        from kernelpro.evaluate.artifacts import rebuild_shared

        result.notes += rebuild_shared(req)
    status.verdict(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
