"""The candidate runner: loads the candidate and runs the calls the judge asks for (DESIGN §12).

Started by the judge inside the OS sandbox as `python -m kernelpro.evaluate.runner REQ RESP`
(two pipe fds). It never sees the task file, the reference model or the judge's state: the
judge sends it the candidate's path, the constructor's inputs, the inputs of every call and a
seed to set before each call, and gets back outputs and reports. Everything it sends is a
claim; the judge checks the outputs and may reject on a report, never accept on one.

Requests (`op`): ping, load, build, call, reread, drop, artifacts, rebuild, exit; and for
timing stage, timed, fetch, forget (runner_timing.py).
Every reply has `ok`; a failure in candidate code is `{"ok": false, "error": {...}}` and the
runner keeps serving.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from kernelpro.evaluate import channel
from kernelpro.evaluate.observers import (
    LaunchObserver,
    OpTrace,
    changed_flag,
    new_threads,
    output_types,
    precision_flags,
    warm_up_profiler,
)

MAX_REQUEST_BYTES = 1 << 40  # the judge is trusted; its frames are as large as its inputs
SETTLE_S = 0.05  # how long a late-change check waits for work still running after return
KEPT_INPUTS = 2  # input sets kept for buffer reuse (the stale-cache probe)
COMPILE_ERRORS = ("CompilationError", "CalledProcessError", "NvrtcError", "CompileError")
TIMING_OPS = ("stage", "timed", "fetch", "forget", "trace", "kb_time")


def _error(exc: BaseException, candidate: str | None) -> dict[str, Any]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == candidate]
    name = type(exc).__name__
    return {"class": name, "message": str(exc)[:2000],
            "line": frames[-1].lineno if frames else None,
            "compile": name in COMPILE_ERRORS or "triton.compiler" in type(exc).__module__,
            "gpu_required": name == "GpuRequired",
            "memory": isinstance(exc, MemoryError) or name == "OutOfMemoryError",
            "traceback": "".join(traceback.format_exception(exc))[-3000:]}


class Runner:
    def __init__(self, req_fd: int, resp_fd: int) -> None:
        import torch

        self.torch = torch
        self.req_fd, self.resp_fd = req_fd, resp_fd
        self.device = torch.device("cpu")
        self.module: Any = None
        self.candidate: str | None = None
        self.models: dict[int, Any] = {}
        self.kept: dict[int, Any] = {}
        self.inputs: dict[int, list[Any]] = {}
        self.observer = LaunchObserver()
        self.capture: Any = None
        self.recorder: Any = None
        self.scratch, self.arch = Path(os.environ.get("HOME", ".")), "sm_90"
        self.threads: set[threading.Thread] = set()
        self.flags: dict[str, Any] = {}
        self.staged: dict[int, Any] = {}  # masked inputs of timed calls, by slot
        self.timed_out: dict[int, Any] = {}  # outputs of timed calls, until fetched
        self.flush: Any = None
        self.trace: Any = None  # the profiler across a batch of timed calls
        self.timed_errors: list[str] = []

    # --- the loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                header, payload = channel.read_frame(self.req_fd, MAX_REQUEST_BYTES)
            except channel.ChannelClosed:
                return
            op = header.get("op")
            if op == "exit":
                channel.write_frame(self.resp_fd, {"ok": True})
                return
            handler = getattr(self, f"op_{op}", None) or self._timing_op(str(op))
            if handler is None:
                channel.write_frame(self.resp_fd, {"ok": False, "error": {
                    "class": "UnknownRequest", "message": str(op)}})
                continue
            values = channel.unpack(header["value"], channel.decode_tensors(payload)) \
                if "value" in header else None
            try:
                reply, value = handler(header, values)
            except Exception as exc:  # candidate code raised: a reply, not a dead runner
                reply, value = {"ok": False, "error": _error(exc, self.candidate)}, None
            try:
                tree, tensors = value if isinstance(value, Packed) else channel.pack(value) \
                    if value is not None else (None, {})
            except TypeError as exc:  # forward returned something that is not data
                reply, tree, tensors = {"ok": False, "error": {
                    "class": "BadOutput", "message": str(exc)}}, None, {}
            if tree is not None:
                reply["value"] = tree
            channel.write_frame(self.resp_fd, reply, channel.encode_tensors(tensors))

    def _timing_op(self, op: str) -> Any:
        """stage, timed, fetch, forget, trace, kb_time: runner_timing.py's `op_*` functions,
        imported only when the judge times a candidate."""
        if op not in TIMING_OPS:
            return None
        import functools

        from kernelpro.evaluate import runner_timing

        return functools.partial(getattr(runner_timing, f"op_{op}"), self)

    def _seed(self, seed: int) -> None:
        self.torch.manual_seed(seed)
        if self.device.type == "cuda":
            self.torch.cuda.manual_seed(seed)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    # --- requests ---------------------------------------------------------------------------
    def op_ping(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        if req.get("sync"):
            self._sync()
        return {"ok": True, "pid": os.getpid(), "uid": os.getuid()}, None

    def op_load(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        torch = self.torch
        if req["mode"] == "gpu":
            self.device = torch.device("cuda")
            torch.backends.cuda.matmul.allow_tf32 = False  # the reference's flags (exploit 12)
            torch.backends.cudnn.allow_tf32 = False
        self.observer.install_triton()
        self._hook_load_inline(req)
        if req.get("aot") and req["backend"] == "triton" and req["mode"] == "cpu":
            from kernelpro.evaluate.triton_aot import LaunchRecorder

            self.recorder = LaunchRecorder()
            self.recorder.install()
            self.recorder.start_compiler()
        self.flags = precision_flags()
        self.threads = set(threading.enumerate())
        self.candidate = req["path"]
        self.scratch, self.arch = Path(req["scratch"]), req["arch"]
        spec = importlib.util.spec_from_file_location("kernelpro_candidate", self.candidate)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["kernelpro_candidate"] = module
        spec.loader.exec_module(module)
        self.module = module
        return {"ok": True, "has_model": hasattr(module, "ModelNew")}, None

    def _hook_load_inline(self, req: dict[str, Any]) -> None:
        """CUDA extensions: without a GPU, nvcc to cubin with functions that refuse to run;
        with one, the real build, its functions counted as launches."""
        import torch.utils.cpp_extension as cpp_ext

        if req["mode"] == "cpu":
            from kernelpro.evaluate.compile import CaptureLoadInline

            os.environ["KERNELPRO_ARCH"] = req["arch"]  # what kernelpro.nvrtc compiles for
            self.capture = CaptureLoadInline(Path(req["scratch"]) / "artifacts", req["arch"])
            cpp_ext.load_inline = self.capture  # type: ignore[assignment]
            return
        real = cpp_ext.load_inline
        observer = self.observer

        def load_inline(*args: Any, **kwargs: Any) -> Any:
            return observer.wrap_module_functions(real(*args, **kwargs), "extension")

        cpp_ext.load_inline = load_inline  # type: ignore[assignment]

    def op_build(self, req: dict[str, Any], init: Any) -> tuple[dict[str, Any], Any]:
        init = [v.to(self.device) if isinstance(v, self.torch.Tensor) else v for v in init]
        self._seed(req["seed"])
        model = self.module.ModelNew(*init)
        if isinstance(model, self.torch.nn.Module):
            model = model.to(self.device)
        self.models[req["model"]] = model
        return {"ok": True}, None

    def _arguments(self, req: dict[str, Any], values: list[Any]) -> list[Any]:
        """The call's inputs on the device: new tensors, or (`reuse`) the very tensors of an
        earlier call refilled through `.data`, so neither address nor version counter shows
        the change (a cache keyed on them returns a stale answer)."""
        previous = self.inputs.get(req.get("reuse", -1))
        args = []
        for i, v in enumerate(values):
            old = previous[i] if previous is not None and i < len(previous) else None
            if isinstance(v, self.torch.Tensor):
                if isinstance(old, self.torch.Tensor) and old.shape == v.shape \
                        and old.dtype == v.dtype:
                    old.data.copy_(v)
                    v = old
                else:
                    v = v.to(self.device)
            args.append(v)
        self.inputs[req["call"]] = args
        for stale in sorted(self.inputs)[:-KEPT_INPUTS]:
            del self.inputs[stale]
        return args

    def op_call(self, req: dict[str, Any], values: Any) -> tuple[dict[str, Any], Any]:
        torch = self.torch
        model = self.models[req["model"]]
        args = self._arguments(req, values)
        recorder = OpTrace(self.device.type == "cuda") if req.get("record") \
            else contextlib.nullcontext()
        self._seed(req["seed"])
        with torch.no_grad(), self.observer.during_call(), recorder:
            out = model(*args)
        report: dict[str, Any] = {
            "launches": self.observer.launches, "launch_errors": self.observer.errors,
            "types": output_types(out)}
        # The snapshot the judge checks is taken at return, ordered on the current stream
        # only: work left on another stream or thread shows as a wrong output.
        sent = Packed(*channel.pack([out, args if req.get("return_inputs") else None]))
        if req.get("settle"):
            self._sync()
            time.sleep(SETTLE_S)
            _, later = channel.pack(out)
            report["late_change"] = _differs(sent.tensors, later)
        self._sync()
        report["threads"] = new_threads(self.threads)
        report["flags"] = changed_flag(self.flags)
        if isinstance(recorder, OpTrace):
            report["ops"] = recorder.report()
        if req.get("keep"):
            self.kept[req["call"]] = out
        if self.recorder is not None and self.candidate:  # its launches are known now
            self.recorder.compile_early(Path(self.candidate), self.scratch / "aot", self.arch)
        return {"ok": True, "report": report}, sent

    def op_reread(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        time.sleep(SETTLE_S)
        self._sync()
        return {"ok": True}, self.kept[req["call"]]

    def op_drop(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        self.kept.pop(req["call"], None)
        return {"ok": True}, None

    def op_artifacts(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        from kernelpro.evaluate.artifacts import collect, recipes

        files, notes = collect(self, Path(req["scratch"]), req.get("arch", "sm_90"))
        names = sorted(files)
        tensors = [_bytes_tensor(files[n]) for n in names]
        return {"ok": True, "names": names, "notes": notes, "recipes": recipes()}, tensors

    def op_rebuild(self, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
        """Compile recipes with NVRTC in a process that has loaded no candidate."""
        if self.module is not None:
            return {"ok": False, "error": {"class": "Refused",
                                           "message": "rebuild after a candidate loaded"}}, None
        from kernelpro import nvrtc

        built, failed, names = [], {}, []
        for recipe in req["recipes"]:
            try:
                cubin = nvrtc.compile_cubin(recipe["source"], recipe["name"], recipe["arch"],
                                            recipe["options"])
            except nvrtc.NvrtcError as exc:
                failed[recipe["key"]] = str(exc)
                continue
            names.append(recipe["key"])
            built.append(_bytes_tensor(cubin))
        return {"ok": True, "names": names, "failed": failed,
                "toolchain": nvrtc.nvrtc_version()}, built


def _bytes_tensor(data: bytes) -> Any:
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
        torch.zeros(0, dtype=torch.uint8)


class Packed(tuple):
    """A value already packed (tree, tensors): sent as it was when it was packed."""

    def __new__(cls, tree: Any, tensors: dict[str, Any]) -> Packed:
        return super().__new__(cls, (tree, tensors))

    @property
    def tensors(self) -> dict[str, Any]:
        return self[1]


def _differs(first: dict[str, Any], later: dict[str, Any]) -> bool:
    """Whether an output's values changed between two snapshots (the first one may hold the
    inputs too: only the names both have are compared)."""
    import torch

    for name, b in later.items():
        a = first.get(name)
        if a is None or a.shape != b.shape:
            return True
        if a.is_floating_point():
            a, b = a.nan_to_num(), b.nan_to_num()
        if not torch.equal(a, b):
            return True
    return False


def main(argv: list[str]) -> int:
    req_fd, resp_fd = int(argv[1]), int(argv[2])
    for var in ("TMPDIR", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "XDG_CACHE_HOME",
                "KERNELPRO_BUILD_CACHE"):
        if os.environ.get(var):
            os.makedirs(os.environ[var], exist_ok=True)  # a fresh scratch tmpfs is empty
    for fd in (req_fd, resp_fd):
        os.set_inheritable(fd, False)  # compilers and candidate children do not get them
    runner = Runner(req_fd, resp_fd)
    warm_up_profiler()
    runner.serve()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
