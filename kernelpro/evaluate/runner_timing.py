"""The runner's half of timing (DESIGN §5, §12): staged inputs, one timed call, a digest.

Every timed call gets fresh inputs from the judge, sent ahead of the call masked (each
32-bit word XORed with a key the judge reveals only in the timed request), so nothing can be
computed from them before the clock starts. The timed request decodes them, flushes L2, times
forward with CUDA events (host clock on a CPU, only in the protocol's CPU tests), and replies
with the time and a salted digest of the output it keeps. The judge then fetches a secret
subset of kept outputs and checks them against the reference and against their digests: work
deferred past the reply, skipped on some calls or answered from a cache shows up there. All
of it is a claim the judge bounds with its own clock (timed.py).
"""

from __future__ import annotations

import time
from typing import Any

import torch

DIGEST_CHUNK = 1 << 24  # words per digest step: bounded temporary memory on big outputs
MIX = 0x9E3779B1  # Knuth's multiplicative hash constant (golden ratio * 2^32)


def mask(t: torch.Tensor, key: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """A tensor as int32 words XOR `key` (padded), and what is needed to undo it."""
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
    nbytes = raw.numel()
    padded = torch.zeros((nbytes + 3) // 4 * 4, dtype=torch.uint8, device=t.device)
    padded[:nbytes] = raw
    words = padded.view(torch.int32) ^ _int32(key)
    meta = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "nbytes": nbytes}
    return words, meta


def unmask(words: torch.Tensor, meta: dict[str, Any], key: int) -> torch.Tensor:
    words.bitwise_xor_(_int32(key))
    raw = words.view(torch.uint8)[: meta["nbytes"]]
    return raw.view(getattr(torch, meta["dtype"])).reshape(meta["shape"])


def _int32(key: int) -> int:
    key &= 0xFFFFFFFF
    return key - (1 << 32) if key >= 1 << 31 else key


def flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for item in out for t in flatten(item)]
    return []


def digest(tensors: list[torch.Tensor], salt: int) -> int:
    """A salted hash of the tensors' bytes, identical on CPU and GPU (integer arithmetic that
    wraps the same way on both): position-dependent and non-linear, so it cannot be computed
    from the inputs without the output, nor kept from an earlier call."""
    total = 0
    for n, t in enumerate(tensors):
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
        pad = (-raw.numel()) % 4
        if pad:
            raw = torch.cat([raw, torch.zeros(pad, dtype=torch.uint8, device=raw.device)])
        words = raw.view(torch.int32)
        for start in range(0, words.numel(), DIGEST_CHUNK):
            w = words[start:start + DIGEST_CHUNK].to(torch.int64)
            idx = torch.arange(start, start + w.numel(), dtype=torch.int64, device=w.device)
            h = (w ^ (salt + n)) * (idx * MIX + (salt | 1))
            h = h ^ (h >> 29)
            total += int(h.sum())
    return total & ((1 << 64) - 1)


class Clock:
    """CUDA events on the current stream, or the host clock where there is no GPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn: Any) -> tuple[float, Any]:
        if not self.cuda:
            t0 = time.perf_counter()
            out = fn()
            return (time.perf_counter() - t0) * 1e3, out
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end), out


def op_stage(runner: Any, req: dict[str, Any], values: Any) -> tuple[dict[str, Any], Any]:
    """Keep one call's masked inputs on the device until its timed request."""
    tensors = [v.to(runner.device) if isinstance(v, torch.Tensor) else v for v in values]
    runner.staged[req["slot"]] = (tensors, req["meta"])
    runner._sync()
    return {"ok": True}, None


def op_trace(runner: Any, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
    """Start the profiler before a batch of timed calls, or stop it and report: it is on
    during every timed call, and its start and stop are outside every call's clock."""
    from kernelpro.evaluate.observers import OpTrace

    if req["action"] == "start":
        runner.trace = OpTrace(runner.device.type == "cuda")
        runner.trace.__enter__()
        return {"ok": True}, None
    trace, runner.trace = runner.trace, None
    if trace is None:
        return {"ok": True, "report": {"complete": False}}, None
    trace.__exit__(None, None, None)
    return {"ok": True, "report": {"ops": trace.report(),
                                   "launch_errors": runner.timed_errors}}, None


def op_timed(runner: Any, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
    from kernelpro.evaluate.observers import TIMED_RANGE

    cuda = runner.device.type == "cuda"
    clock = Clock(cuda)
    staged, meta = runner.staged.pop(req["slot"])
    args = [unmask(v, m, req["key"]) if m is not None else v for v, m in zip(staged, meta,
                                                                            strict=True)]
    flush_bytes = int(req.get("flush_bytes") or 0)
    if flush_bytes:
        if getattr(runner, "flush", None) is None or runner.flush.numel() != flush_bytes:
            runner.flush = torch.empty(flush_bytes, dtype=torch.int8, device=runner.device)
        runner.flush.zero_()
    clock.sync()
    model = runner.models[req["model"]]
    repeat = max(1, int(req.get("repeat") or 1))
    runner._seed(req["seed"])
    with torch.no_grad(), runner.observer.during_call(), \
            torch.profiler.record_function(f"{TIMED_RANGE}{req['slot']}"):
        ms, out = clock.time(lambda: [model(*args) for _ in range(repeat)][-1])
    runner.timed_errors += runner.observer.errors
    reply: dict[str, Any] = {"ok": True, "ms": ms / repeat,
                             "digest": str(digest(flatten(out), req["salt"]))}
    runner.timed_out[req["slot"]] = out
    return reply, None


def op_fetch(runner: Any, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
    return {"ok": True}, runner.timed_out.pop(req["slot"])


def op_forget(runner: Any, req: dict[str, Any], _: Any) -> tuple[dict[str, Any], Any]:
    for slot in req["slots"]:
        runner.timed_out.pop(slot, None)
        runner.staged.pop(slot, None)
    return {"ok": True}, None


def op_kb_time(runner: Any, req: dict[str, Any], values: Any) -> tuple[dict[str, Any], Any]:
    """KernelBench's own timing loop on the inputs sent (--kernelbench-compat)."""
    from kernelpro.evaluate.compat import kernelbench_time_ms

    model = runner.models[req["model"]]
    args = [v.to(runner.device) if isinstance(v, torch.Tensor) else v for v in values]
    with torch.no_grad():
        mean, times = kernelbench_time_ms(lambda: model(*args), runner.device)
    return {"ok": True, "ms": mean, "trials": len(times)}, None
