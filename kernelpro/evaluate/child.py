"""What runs inside the worker process: load, compile, correctness wall, timing.

Started by worker.py as `python -m kernelpro.evaluate.child REQUEST RESULT` in a scrubbed
environment and a temporary directory of its own. It writes the stage it is in to `stage` in
its working directory before each stage, so the parent can say where a crash or hang happened,
and the verdict to RESULT as JSON. Anything the candidate does to this process (segfault,
os._exit, hang) is the parent's to report.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from kernelpro.types import EvalResult, failure, one_line

STAGE_FILE = "stage"


def enter(stage: str) -> None:
    tmp = Path(STAGE_FILE + ".tmp")
    tmp.write_text(f"{stage} {time.time()}")
    os.replace(tmp, STAGE_FILE)


def where_in_candidate(exc: BaseException, candidate: str) -> str:
    """' (candidate.py:LINE)' for the innermost frame in the candidate file, or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == candidate]
    return f" ({Path(candidate).name}:{frames[-1].lineno})" if frames else ""


def classify(exc: BaseException, stage: str, candidate: str) -> EvalResult:
    """A typed failure for an exception raised by candidate code."""
    from kernelpro.evaluate.compile import CompileError, GpuRequired

    name = type(exc).__name__
    text = f"{name}: {exc}{where_in_candidate(exc, candidate)}"
    if isinstance(exc, GpuRequired):
        return EvalResult(status="unverified", stage="compile", reason=one_line(str(exc)),
                          error_class="GpuRequired")
    if isinstance(exc, CompileError) or name in ("CompilationError", "CalledProcessError") \
            or "triton.compiler" in type(exc).__module__:
        return failure("compile", name, text)
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError":
        return failure(stage, "OutOfMemory", text)  # type: ignore[arg-type]
    return failure(stage, name, text)  # type: ignore[arg-type]


def run(req: dict[str, Any]) -> EvalResult:
    enter("load")
    import torch

    from kernelpro.evaluate import compile as compile_mod
    from kernelpro.evaluate.correctness import WallConfig, prepare, run_wall, set_seed
    from kernelpro.task import TaskError, call_get_inputs, import_file, import_source

    gpu = req["mode"] == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        # Same precision flags for reference and candidate: no silent TF32 (exploit 12).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    task_path = Path(req["task_path"])
    try:
        ref_mod = import_source(task_path, req["task_source"], "kernelpro_reference")
    except TaskError as exc:
        return failure("load", "TaskError", str(exc))
    dtype = getattr(torch, req["dtype"])

    enter("compile")
    candidate = req["candidate_path"]
    capture = None
    recorder = None
    if req["backend"] == "triton" and not gpu and req.get("aot", True):
        from kernelpro.evaluate.triton_aot import LaunchRecorder

        recorder = LaunchRecorder()
        recorder.install()
    if req["backend"] == "cuda" and not gpu:
        import torch.utils.cpp_extension as cpp_ext

        capture = compile_mod.CaptureLoadInline(Path(req["artifacts_dir"]), req["arch"])
        cpp_ext.load_inline = capture  # type: ignore[assignment]
    try:
        cand_mod = import_file(Path(candidate), "kernelpro_candidate")
        if not hasattr(cand_mod, "ModelNew"):
            return failure("compile", "NoModelNew", "the candidate defines no ModelNew")
        set_seed(req["seed"])
        init = prepare(call_get_inputs(task_path, ref_mod, "get_init_inputs"), device, dtype)
        set_seed(req["seed"])
        ref_model = ref_mod.Model(*init).to(device)
        set_seed(req["seed"])
        cand_model = cand_mod.ModelNew(*init).to(device)
    except Exception as exc:  # candidate code at import/construction: anything can happen
        return classify(exc, "compile", candidate)
    cubins = [str(e.cubin) for e in capture.extensions if e.cubin] if capture else []

    if capture is not None:
        what = f"{len(cubins)} cubin(s) for {req['arch']}" if cubins else "no CUDA sources"
        return EvalResult(
            status="unverified", stage="compile", backend="cuda", cubins=cubins,
            reason=f"not run: no GPU on this machine; compiled {what}, but correctness and "
                   "timing need a GPU")

    enter("correctness")
    sync = (lambda: torch.cuda.synchronize()) if gpu else (lambda: None)
    wall_cfg = WallConfig(**req["wall"])
    try:
        report = run_wall(ref_model, cand_model,
                          lambda: call_get_inputs(task_path, ref_mod), device, dtype,
                          wall_cfg, sync)
    except Exception as exc:  # candidate forward: report, do not crash
        return classify(exc, "correctness", candidate)
    aot_cubins, aot_notes = [], []
    if recorder is not None:  # cubins for the target arch, from the launches just made
        aot_cubins = [str(p) for p in recorder.compile_all(
            Path(candidate), Path(req["artifacts_dir"]), req["arch"])]
        aot_notes = [f"ahead-of-time compile for {req['arch']} failed: {e}"
                     for e in recorder.errors]
    base = dict(backend=req["backend"], max_abs_error=report.max_abs,
                max_rel_error=report.max_rel, trials=report.trials, checks=report.checks,
                notes=report.notes + aot_notes, cubins=aot_cubins,
                device=torch.cuda.get_device_name() if gpu else "cpu")
    if not report.passed:
        return EvalResult(status="incorrect", stage="correctness", reason=report.reason,
                          error_class="Mismatch", **base)
    if not gpu:
        return EvalResult(status="correct", stage="correctness", correct=True, **base,
                          reason="not timed: no GPU on this machine (correctness checked under "
                                 "the Triton interpreter / on the CPU)")
    if not req["timing"]:
        return EvalResult(status="correct", stage="correctness", correct=True, **base)

    enter("timing")
    from kernelpro.evaluate.gpu_timing import time_candidate

    try:
        timed = time_candidate(ref_model, cand_model, ref_mod, task_path, device, dtype, req,
                               base["checks"], base["notes"])
    except Exception as exc:  # candidate code runs again under timing
        return classify(exc, "timing", candidate)
    return EvalResult(**base, **timed)


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[1]), Path(argv[2])
    req = json.loads(request_path.read_text())
    t0 = time.time()
    try:
        result = run(req)
    except Exception as exc:  # a harness bug must still produce a verdict, with its traceback
        traceback.print_exc()
        result = failure("load", "HarnessError", f"{type(exc).__name__}: {exc}")
    result.wall_s = time.time() - t0
    if req["mode"] == "gpu":  # without a GPU, capture and AOT compilation kept them already
        from kernelpro.evaluate.compile import collect_extension_cubins, collect_triton_cubins

        out = Path(req["artifacts_dir"])
        kept = collect_triton_cubins(Path(os.environ["TRITON_CACHE_DIR"]), out)
        kept += collect_extension_cubins(Path(os.environ["TORCH_EXTENSIONS_DIR"]), out)
        result.cubins = sorted(set(result.cubins) | {str(p) for p in kept})
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict()))
    os.replace(tmp, result_path)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
