"""What the runner watches in its own process while the candidate runs; all of it is a claim.

The runner shares its process with the candidate, so a determined candidate can hide from
everything here: these observations may reject a candidate (a failed kernel launch followed
by a normal return, a thread left running, a changed precision flag, an aten op doing the
core work, a trace stopped mid-call) but never make one correct. The judge says so in the
verdict ("reported by the runner").
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

LAUNCH_ERRORS_KEPT = 4


@dataclass
class LaunchObserver:
    """Counts kernel launches (Triton, CUDA extension functions, kernelpro.nvrtc) during a
    call and keeps the exceptions that escaped the outermost launch: inner failures a Triton
    autotuner handles itself are not the candidate's fallback."""

    active: bool = False
    launches: int = 0
    errors: list[str] = field(default_factory=list)
    _depth: int = 0

    def wrap(self, fn: Any, name: str) -> Any:
        observer = self

        @functools.wraps(fn)
        def launch(*args: Any, **kwargs: Any) -> Any:
            if not observer.active:
                return fn(*args, **kwargs)
            observer._depth += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if observer._depth == 1 and len(observer.errors) < LAUNCH_ERRORS_KEPT:
                    observer.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
                raise
            finally:
                observer._depth -= 1
            if observer._depth == 0:
                observer.launches += 1
            return result

        return launch

    def install_triton(self) -> None:
        """Wrap the `run` of every Triton launcher class (JIT, autotuner, heuristics,
        interpreter) that is importable."""
        for module, cls in (("triton.runtime.jit", "JITFunction"),
                            ("triton.runtime.autotuner", "Autotuner"),
                            ("triton.runtime.autotuner", "Heuristics"),
                            ("triton.runtime.interpreter", "InterpretedFunction")):
            with contextlib.suppress(ImportError, AttributeError):
                klass = getattr(__import__(module, fromlist=[cls]), cls)
                klass.run = self.wrap(klass.run, cls)

    def wrap_module_functions(self, module: Any, name: str) -> Any:
        """A load_inline module whose functions are counted as launches."""
        for attr in dir(module):
            value = getattr(module, attr)
            if callable(value) and not attr.startswith("_"):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(module, attr, self.wrap(value, f"{name}.{attr}"))
        return module

    @contextlib.contextmanager
    def during_call(self) -> Iterator[None]:
        self.active, self.launches, self.errors, self._depth = True, 0, [], 0
        try:
            yield
        finally:
            self.active = False


def precision_flags() -> dict[str, Any]:
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.get_float32_matmul_precision()": torch.get_float32_matmul_precision(),
        "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction":
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    }


def changed_flag(before: dict[str, Any]) -> str | None:
    for flag, value in precision_flags().items():
        if value != before.get(flag):
            return f"`{flag}` was changed from {before.get(flag)!r} to {value!r}"
    return None


def _harmless(thread: threading.Thread) -> bool:
    """Threads PyTorch, Triton or kernelpro start themselves."""
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", "") or ""
    return module.startswith(("torch.", "triton.", "kernelpro.", "concurrent.futures"))


def new_threads(before: set[threading.Thread]) -> list[str]:
    return sorted(t.name for t in threading.enumerate()
                  if t not in before and t.is_alive() and not _harmless(t))


TIMED_RANGE = "kernelpro::timed_"  # one profiler range per timed call, named by its slot


class OpTrace:
    """The aten ops (and, on a GPU, the kernels) of one call, from PyTorch's profiler.

    Not a dispatch mode: its callbacks see every thread (profile_all_threads) and survive
    `_disable_current_modes()`, so popping a recorder or working in a thread does not hide
    an op. Sentinel ranges open and close the trace; a trace without both was stopped or
    tampered with during the call. Still in the candidate's process, so a candidate that
    patches the profiler itself can hide from it: best effort, and said so.
    """

    BEGIN, END = "kernelpro::call_begin", "kernelpro::call_end"

    def __init__(self, cuda: bool = False) -> None:
        # The autograd profiler's Kineto mode: the same events as torch.profiler.profile,
        # without its first start importing torch._inductor (over a second per runner).
        from torch.autograd.profiler import profile

        options: dict[str, Any] = {"use_device": "cuda"} if cuda else {}
        self.all_threads = False
        try:
            from torch._C._profiler import _ExperimentalConfig

            options["experimental_config"] = _ExperimentalConfig(profile_all_threads=True)
            self.all_threads = True
        except (ImportError, TypeError):  # an older torch: this thread only, said so
            pass
        self.prof = profile(use_kineto=True, with_flops=True, **options)

    def __enter__(self) -> OpTrace:
        self.prof.__enter__()
        with torch.profiler.record_function(self.BEGIN):
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        with torch.profiler.record_function(self.END):
            pass
        self.prof.__exit__(*exc)

    def report(self) -> dict[str, Any]:
        calls: dict[str, int] = {}
        flops: dict[str, int] = {}
        kernels: set[str] = set()
        names: set[str] = set()
        try:
            events = list(self.prof.function_events)
        except Exception as exc:  # a trace the candidate broke
            return {"complete": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        for e in events:
            names.add(e.name)
            kernels |= {k.name for k in getattr(e, "kernels", []) or []}
            if str(getattr(e, "device_type", "")).endswith("CUDA"):
                kernels.add(e.name)
            elif e.name.startswith("aten::"):
                op = e.name.removeprefix("aten::")
                calls[op] = calls.get(op, 0) + 1
                if getattr(e, "flops", 0):
                    flops[op] = flops.get(op, 0) + int(e.flops)
        return {"calls": calls, "flops": flops, "kernels": sorted(kernels)[:64],
                "complete": self.BEGIN in names and self.END in names,
                "all_threads": self.all_threads,
                "ranges": sorted(n for n in names if n.startswith(TIMED_RANGE))[:4096]}


def warm_up_profiler() -> None:
    """Pay the profiler's first start (a tenth of a second) before the candidate loads."""
    with OpTrace():
        torch.empty(0)


def output_types(out: Any) -> list[str]:
    """Names of output objects that are not plain tensors (a subclass can defer its work
    until it is read, exploit 10/23)."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, list | tuple):
            for x in v:
                walk(x)
        elif isinstance(v, torch.Tensor) and type(v) not in (torch.Tensor, torch.nn.Parameter):
            found.append(type(v).__name__)

    walk(out)
    return found

