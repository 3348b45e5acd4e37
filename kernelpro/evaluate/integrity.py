"""Runtime checks that the candidate left the harness alone (the guard's second layer).

The AST guard rejects monkey-patching, thread imports and the like by reading the source;
a determined candidate hides them (`getattr` chains, re-exports such as
`torch.multiprocessing`). These checks look at the process itself after the candidate ran:
the harness functions and precision flags are the objects captured before it loaded, it
started no threads, its ModelNew is not the reference, and no exception was swallowed inside
its code during a forward (a fallback to PyTorch when its kernel fails).
"""

from __future__ import annotations

import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import torch

from kernelpro.evaluate.signatures import tag

# (owner, attribute) pairs whose identity the harness relies on; owners resolved lazily.
HARNESS_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("torch", "allclose"), ("torch", "equal"), ("torch", "isfinite"),
    ("torch.Tensor", "__eq__"), ("torch.Tensor", "clone"), ("torch.Tensor", "to"),
    ("torch.Tensor", "cpu"), ("torch.Tensor", "double"), ("torch.Tensor", "abs"),
    ("torch.Tensor", "max"), ("torch.Tensor", "sum"), ("torch.Tensor", "__sub__"),
    ("torch.cuda", "synchronize"), ("torch.cuda.Event", "elapsed_time"),
    ("torch.cuda.Event", "record"), ("torch.cuda.Event", "synchronize"),
    ("torch.cuda", "current_stream"), ("torch.cuda", "get_device_name"),
    ("time", "perf_counter"), ("time", "perf_counter_ns"), ("time", "time"),
    ("time", "sleep"),
)


def _resolve(dotted: str) -> Any:
    obj: Any = sys.modules[dotted.split(".")[0]]
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _precision_flags() -> dict[str, Any]:
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch.get_float32_matmul_precision()": torch.get_float32_matmul_precision(),
        "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction":
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    }


@dataclass
class HarnessSnapshot:
    """Identities of harness functions and values of precision flags, taken before loading."""

    functions: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    threads: set[threading.Thread] = field(default_factory=set)  # objects: idents recycle

    @classmethod
    def take(cls) -> HarnessSnapshot:
        functions = {}
        for owner, attr in HARNESS_FUNCTIONS:
            try:
                functions[f"{owner}.{attr}"] = getattr(_resolve(owner), attr)
            except (KeyError, AttributeError):
                continue
        return cls(functions, _precision_flags(), set(threading.enumerate()))

    def tampered(self) -> str | None:
        """A reason if a harness function or precision flag changed since the snapshot."""
        for name, original in self.functions.items():
            owner, attr = name.rsplit(".", 1)
            try:
                now = getattr(_resolve(owner), attr)
            except (KeyError, AttributeError):
                return f"`{name}` was deleted {tag(9)}"
            if now is not original:
                return f"`{name}` was replaced {tag(9)}"
        for flag, value in _precision_flags().items():
            if value != self.flags[flag]:
                return (f"`{flag}` was changed from {self.flags[flag]!r} to {value!r} "
                        f"{tag(12)}")
        return None

    def new_threads(self) -> list[threading.Thread]:
        """Python threads started since the snapshot and still alive (the candidate's)."""
        return [t for t in threading.enumerate()
                if t not in self.threads and t.is_alive() and not _harmless(t)]


def _harmless(thread: threading.Thread) -> bool:
    """Threads PyTorch or Triton start themselves (none of the candidate's code runs there)."""
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", "") or ""
    return module.startswith(("torch.", "triton.", "kernelpro."))


def threads_reason(threads: list[threading.Thread]) -> str:
    names = ", ".join(sorted(t.name for t in threads))
    return (f"the candidate started {len(threads)} thread(s) still running after forward "
            f"({names}): work can happen outside the timed region {tag(11)}")


def namespace_reason(cand_module: types.ModuleType, ref_module: types.ModuleType) -> str | None:
    """A reason if the candidate reaches the reference module or subclasses its Model."""
    ref_model = getattr(ref_module, "Model", None)
    new = getattr(cand_module, "ModelNew", None)
    if isinstance(new, type) and ref_model is not None and issubclass(new, ref_model):
        return f"ModelNew subclasses the reference Model {tag(9)}"
    for name, value in vars(cand_module).items():
        if value is ref_module or (ref_model is not None and value is ref_model):
            return f"the candidate holds the reference module or Model as `{name}` {tag(9)}"
    return None


class HandledExceptionTracer:
    """Sees exceptions raised in the candidate's frames; if the call still returns, one was
    swallowed inside the candidate: a try/except fallback around its kernel."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.raised: list[str] = []

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "exception":
            exc_type, exc, _ = arg
            if exc_type not in (StopIteration, GeneratorExit):
                line = frame.f_lineno
                self.raised.append(f"{exc_type.__name__}: {exc} (line {line})"[:160])
        return self._local

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code.co_filename == self.filename:
            frame.f_trace_lines = False  # only exception events matter; lines cost time
            return self._local
        return None

    def __enter__(self) -> HandledExceptionTracer:
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        threading.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)
        threading.settrace(None)  # type: ignore[arg-type]

    def reason(self) -> str | None:
        if not self.raised:
            return None
        return (f"an exception was raised and caught inside the candidate during forward "
                f"({self.raised[0]}): a try/except that falls back when its kernel fails "
                f"{tag(14)}")


def settle(seconds: float = 0.05) -> None:
    """Give background work (threads, unsynchronised streams) time to show itself."""
    time.sleep(seconds)
