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

from kernelpro.types import CheckResult, EvalResult, failure, one_line

STAGE_FILE = "stage"


def enter(stage: str) -> None:
    tmp = Path(STAGE_FILE + ".tmp")
    tmp.write_text(f"{stage} {time.time()}")
    os.replace(tmp, STAGE_FILE)


COMPILE_ERRORS = ("CompilationError", "CalledProcessError", "NvrtcError")


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
    if isinstance(exc, CompileError) or name in COMPILE_ERRORS \
            or "triton.compiler" in type(exc).__module__:
        return failure("compile", name, text)
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError":
        return failure(stage, "OutOfMemory", text)  # type: ignore[arg-type]
    return failure(stage, name, text)  # type: ignore[arg-type]


# When this process started, asked for the GPU and got it (see take_gpu).
PHASES: dict[str, float] = {"start": time.time()}
_GPU_LOCK_FD: list[int] = []


def take_gpu(lock_dir: Path) -> None:
    """Wait for this GPU's lock (one file per device UUID, shared by every kernelpro process on
    the machine): correctness, timing and profiling run alone on the GPU, while other workers
    compile."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    ident = str(getattr(props, "uuid", "")) or os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    enter("queued")
    PHASES["asked"] = time.time()
    _GPU_LOCK_FD.append(acquire_lock(lock_dir / f"gpu-{ident.replace('/', '_')}.lock"))
    PHASES["got"] = time.time()


def acquire_lock(path: Path) -> int:
    """Block until this process holds an exclusive flock on `path`; the OS releases it when
    the process ends (however it ends), so a killed worker never leaves the GPU locked."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def phases() -> dict[str, float]:
    if "got" not in PHASES:
        return {}
    return {"load_s": PHASES["asked"] - PHASES["start"],
            "queue_s": PHASES["got"] - PHASES["asked"], "gpu_s": time.time() - PHASES["got"]}


def _kept(paths: list[Path], out_dir: Path) -> list[str]:
    """Copies of cached cubins in the artifacts directory (the cache may be pruned)."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for p in dict.fromkeys(paths):
        dest = out_dir / f"nvrtc-{p.name}"
        shutil.copyfile(p, dest)
        kept.append(str(dest))
    return kept


def run(req: dict[str, Any]) -> EvalResult:
    enter("load")
    import torch

    from kernelpro.evaluate import compile as compile_mod
    from kernelpro.evaluate.correctness import WallConfig, prepare, run_wall, set_seed
    from kernelpro.evaluate.integrity import HarnessSnapshot
    from kernelpro.task import TaskError, call_get_inputs, import_file, import_source

    gpu = req["mode"] == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        # Same precision flags for reference and candidate: no silent TF32 (exploit 12).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    task_path = Path(req["task_path"])
    # A name the candidate cannot guess: it must not import the reference (separate namespaces).
    ref_name = f"kernelpro_reference_{os.urandom(6).hex()}"
    try:
        ref_mod = import_source(task_path, req["task_source"], ref_name)
    except TaskError as exc:
        return failure("load", "TaskError", str(exc))
    dtype = getattr(torch, req["dtype"])
    snapshot = HarnessSnapshot.take()

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
        os.environ["KERNELPRO_ARCH"] = req["arch"]  # what kernelpro.nvrtc compiles for
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
    nvrtc_mod = sys.modules.get("kernelpro.nvrtc")
    if capture is not None and nvrtc_mod is not None:  # the NVRTC fast path's builds
        cubins += _kept(nvrtc_mod.BUILT, Path(req["artifacts_dir"]))
    tampered = snapshot.tampered()  # before the wall: its comparisons use these functions
    if tampered:
        return EvalResult(status="incorrect", stage="compile", reason=tampered,
                          error_class="ExploitDetected", backend=req["backend"],
                          checks=[CheckResult("harness_intact", False, tampered)])

    if capture is not None:
        what = f"{len(cubins)} cubin(s) for {req['arch']}" if cubins else "no CUDA sources"
        return EvalResult(
            status="unverified", stage="compile", backend="cuda", cubins=cubins,
            reason=f"not run: no GPU on this machine; compiled {what}, but correctness and "
                   "timing need a GPU")

    if gpu and req.get("gpu_lock_dir"):
        take_gpu(Path(req["gpu_lock_dir"]))
    enter("correctness")
    sync = (lambda: torch.cuda.synchronize()) if gpu else (lambda: None)
    wall_cfg = WallConfig(**req["wall"])
    get_inputs = lambda: call_get_inputs(task_path, ref_mod)  # noqa: E731
    compat = bool(req.get("compat"))
    try:
        if compat:
            from kernelpro.evaluate.compat import kernelbench_wall
            from kernelpro.evaluate.correctness import tolerance_for

            report = kernelbench_wall(ref_model, cand_model, get_inputs, device, dtype,
                                      wall_cfg.trials, wall_cfg.seed,
                                      tolerance_for(req["dtype"], wall_cfg.tol), sync)
        else:
            report = run_wall(ref_model, cand_model, get_inputs, device, dtype, wall_cfg, sync,
                              lowered=_lowered(ref_model, gpu))
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
    if wall_cfg.robust and not compat:
        from kernelpro.evaluate.probes import ProbeContext, run_probes

        ctx = ProbeContext(
            ref=ref_model, cand=cand_model, inputs=report.first_inputs,
            expected=report.first_expected, tol=_tol(req), seed=req["seed"],
            candidate_file=candidate, snapshot=snapshot, sync=sync,
            modules=(cand_mod, ref_mod), strict=bool(req.get("strict")),
            other_shape=_other_shape_builder(req, cand_mod, device, dtype),
            kernel_names=_kernel_names if gpu else None)
        try:
            probes = run_probes(ctx)
        except Exception as exc:  # the candidate runs again in every probe
            return classify(exc, "correctness", candidate)
        base["checks"] = base["checks"] + probes.checks
        base["notes"] = base["notes"] + probes.notes
        if probes.reason:
            return EvalResult(status="incorrect", stage="correctness", reason=probes.reason,
                              error_class="ExploitDetected", **base)
    if not gpu:
        return EvalResult(status="correct", stage="correctness", correct=True, **base,
                          reason="not timed: no GPU on this machine (correctness checked under "
                                 "the Triton interpreter / on the CPU)")
    if not req["timing"]:
        return EvalResult(status="correct", stage="correctness", correct=True, **base)

    enter("timing")
    try:
        if compat:
            timed = _time_kernelbench(ref_model, cand_model, get_inputs, device, dtype, req)
        else:
            from kernelpro.evaluate.gpu_timing import time_candidate

            timed = time_candidate(ref_model, cand_model, ref_mod, task_path, device, dtype,
                                   req, base["checks"], base["notes"])
    except Exception as exc:  # candidate code runs again under timing
        return classify(exc, "timing", candidate)
    return EvalResult(**base, **timed)


def _tol(req: dict[str, Any]) -> float:
    from kernelpro.evaluate.correctness import tolerance_for

    return tolerance_for(req["dtype"], req["wall"].get("tol"))


def _lowered(ref_model: Any, gpu: bool) -> Any:
    """The reference at lower precisions, to recognise a precision downgrade (exploit 12):
    inputs and weights rounded to tf32/fp16/bf16 with fp32 math (what tensor cores do), and
    the whole model run in fp16/bf16."""
    import copy

    import torch

    from kernelpro.evaluate.correctness import flatten_outputs

    def as_float(out: Any) -> list[Any]:
        return [t.float() if t.is_floating_point() else t for t in flatten_outputs(out)]

    def rounded(model: Any, args: list[Any], to: Any) -> list[Any]:
        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in [*model.parameters(), *model.buffers()]:
                if p.dtype == torch.float32:
                    p.copy_(to(p))
            return as_float(model(*[to(v) if isinstance(v, torch.Tensor) and
                                    v.dtype == torch.float32 else v for v in args]))

    def lowered(inputs: list[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if not any(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in inputs):
            return found
        tries = {"tf32-rounded inputs": _round_tf32}
        for low in (torch.bfloat16, torch.float16):
            tries[f"{str(low).removeprefix('torch.')}-rounded inputs"] = \
                lambda t, low=low: t.to(low).float()
        for name, to in tries.items():
            try:
                found[name] = rounded(ref_model, inputs, to)
            except Exception:  # an op the rounding does not fit: no explanation from it
                continue
        for low in (torch.bfloat16, torch.float16):
            try:
                model = copy.deepcopy(ref_model).to(low)
                args = [v.to(low) if isinstance(v, torch.Tensor) and v.is_floating_point()
                        else v for v in inputs]
                with torch.no_grad():
                    found[f"{str(low).removeprefix('torch.')} throughout"] = \
                        as_float(model(*args))
            except Exception:  # an op without a kernel at that precision: no explanation
                continue
        return found

    return lowered


def _round_tf32(t: Any) -> Any:
    """fp32 rounded to TF32's 10-bit mantissa (round to nearest), still stored as fp32."""
    import torch

    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view(t.shape)


def _other_shape_builder(req: dict[str, Any], cand_mod: Any, device: Any, dtype: Any) -> Any:
    """Reference and candidate rebuilt with every shape constant halved (exploit 7)."""
    import ast

    import torch

    from kernelpro.evaluate.correctness import prepare, set_seed
    from kernelpro.task import (
        call_get_inputs,
        import_source,
        rewrite_constants,
        scaled_values,
        shape_constants,
    )

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
            init = prepare(call_get_inputs(path, mod, "get_init_inputs"), device, dtype)
            set_seed(req["seed"])
            ref = mod.Model(*init).to(device)
            set_seed(req["seed"])
            inputs = prepare(call_get_inputs(path, mod), device, dtype)
            with torch.no_grad():
                ref(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs])
        except Exception as exc:  # the task itself does not scale (TaskError included)
            return f"the reference does not run at {changes} ({type(exc).__name__})"
        try:
            set_seed(req["seed"])
            cand = cand_mod.ModelNew(*init).to(device)
        except Exception as exc:  # construction at another shape is part of the probe

            def cand(*_: Any, _exc: Exception = exc) -> Any:
                raise _exc
        return ref, cand, inputs, changes

    return build


def _kernel_names(call: Any) -> list[str]:
    """Names of the GPU kernels one call launches (to spot vendor-library kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof, torch.no_grad():
        call()
        torch.cuda.synchronize()
    return sorted({e.key for e in prof.key_averages()})


def _time_kernelbench(ref_model: Any, cand_model: Any, get_inputs: Any, device: Any,
                      dtype: Any, req: dict[str, Any]) -> dict[str, Any]:
    import torch

    from kernelpro.evaluate.compat import kernelbench_time_ms
    from kernelpro.evaluate.correctness import prepare, set_seed

    set_seed(req["seed"])
    inputs = prepare(get_inputs(), device, dtype)
    with torch.no_grad():
        eager, _ = kernelbench_time_ms(lambda: ref_model(*inputs), device)
        cand, _ = kernelbench_time_ms(lambda: cand_model(*inputs), device)
    return dict(status="correct", stage="timing", correct=True, timed=True, runtime_ms=cand,
                eager_ms=eager, speedup_eager=eager / cand if cand else None)


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
    result.phases = phases()
    if req["mode"] == "gpu":  # without a GPU, capture and AOT compilation kept them already
        from kernelpro.evaluate.compile import collect_extension_cubins, collect_triton_cubins

        out = Path(req["artifacts_dir"])
        kept = collect_triton_cubins(Path(os.environ["TRITON_CACHE_DIR"]), out)
        kept += collect_extension_cubins(Path(os.environ["TORCH_EXTENSIONS_DIR"]), out)
        nvrtc_mod = sys.modules.get("kernelpro.nvrtc")
        if nvrtc_mod is not None:
            kept += [Path(p) for p in _kept(nvrtc_mod.BUILT, out)]
        result.cubins = sorted(set(result.cubins) | {str(p) for p in kept})
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict()))
    os.replace(tmp, result_path)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
