"""Messages between the judge and the candidate runner: JSON headers, tensors as safetensors.

A frame is a 4-byte big-endian header length, the header (a UTF-8 JSON object), an 8-byte
big-endian payload length and the payload: safetensors bytes (parsed by the `safetensors`
library, which checks offsets, dtypes and sizes) or nothing. Nothing that crosses is code: no
pickle, no `torch.load`. The judge reads every frame from the runner with limits on both
lengths and a deadline on its own clock, so a runner that sends garbage, too much, or nothing
at all costs one verdict and never the judge.

Values (a forward's inputs and outputs) cross as a small JSON tree whose tensor leaves name
entries of the payload: `{"t": "0"}`, `{"tuple": [...]}`, `{"list": [...]}`, `{"v": 3}`,
`{"f": "nan"}` for non-finite floats.
"""

from __future__ import annotations

import json
import math
import os
import select
import time
from collections.abc import Callable
from typing import Any

MAX_HEADER_BYTES = 4 << 20  # JSON headers are small; anything larger is garbage
MAX_DEPTH = 8  # nesting of a value tree (a forward returns a tensor or a short tuple)
MAX_LEAVES = 4096
WAIT_TICK_S = 0.05  # how often a blocked reader calls its on_wait hook (the judge's watchdog)


class ChannelError(Exception):
    """The other side broke the protocol; the message says how, in one line."""


class ChannelClosed(ChannelError):
    """The other side closed its end (it exited or was killed)."""


class ChannelTimeout(ChannelError):
    """No whole frame before the deadline."""


def _tensors():
    import torch

    return torch


# --- frames -----------------------------------------------------------------------------------

def write_frame(fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    """Write one frame; blocks until the reader has taken it all."""
    blob = json.dumps(header, allow_nan=False).encode()
    _write_all(fd, len(blob).to_bytes(4, "big") + blob + len(payload).to_bytes(8, "big"))
    if payload:
        _write_all(fd, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 64 << 20])  # a blocking pipe write takes what fits, then more
        view = view[n:]


def read_frame(fd: int, max_payload: int, deadline: float | None = None,
               on_wait: Callable[[], None] | None = None) -> tuple[dict[str, Any], bytes]:
    """One frame: (header, payload). `deadline` is a time.monotonic() value; `on_wait` is
    called every WAIT_TICK_S while the reader waits and may raise to abandon the read."""
    size = int.from_bytes(_read_exact(fd, 4, deadline, on_wait), "big")
    if size > MAX_HEADER_BYTES:
        raise ChannelError(f"a header of {size} bytes (limit {MAX_HEADER_BYTES})")
    raw = _read_exact(fd, size, deadline, on_wait)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChannelError(f"a header that is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ChannelError(f"a header that is a {type(header).__name__}, not an object")
    length = int.from_bytes(_read_exact(fd, 8, deadline, on_wait), "big")
    if length > max_payload:
        raise ChannelError(f"a payload of {length} bytes where at most {max_payload} were "
                           "expected")
    return header, _read_exact(fd, length, deadline, on_wait) if length else b""


def _read_exact(fd: int, n: int, deadline: float | None,
                on_wait: Callable[[], None] | None) -> bytes:
    """Exactly n bytes, read straight into one buffer; select only when the pipe is empty."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    os.set_blocking(fd, False)
    try:
        while got < n:
            try:
                k = os.readv(fd, [view[got:]])
            except BlockingIOError:
                wait = WAIT_TICK_S if deadline is None else min(WAIT_TICK_S,
                                                                deadline - time.monotonic())
                if wait <= 0:
                    raise ChannelTimeout(f"no reply within the time limit ({got} of {n} bytes "
                                         "of a frame arrived)") from None
                ready, _, _ = select.select([fd], [], [], wait)
                if not ready and on_wait is not None:
                    on_wait()
                continue
            if k == 0:
                raise ChannelClosed("the other side closed the channel")
            got += k
    finally:
        os.set_blocking(fd, True)
    return bytes(buf)


def widen(*fds: int) -> None:
    """Pipe buffers of 1 MiB (Linux's default limit for F_SETPIPE_SZ) instead of 64 KiB:
    fewer wake-ups per frame when tensors cross."""
    import fcntl

    for fd in fds:
        try:
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            continue


# --- values: a JSON tree plus named tensors -----------------------------------------------------

def pack(value: Any) -> tuple[Any, dict[str, Any]]:
    """(tree, tensors): tensors become contiguous CPU copies named by their order."""
    tensors: dict[str, Any] = {}

    def walk(v: Any) -> Any:
        torch = _tensors()
        if isinstance(v, torch.Tensor):
            name = str(len(tensors))
            plain = v.detach()
            if type(plain) is not torch.Tensor:
                plain = plain.as_subclass(torch.Tensor)
            tensors[name] = plain.to("cpu").contiguous().clone()
            return {"t": name}
        if isinstance(v, tuple):
            return {"tuple": [walk(x) for x in v]}
        if isinstance(v, list):
            return {"list": [walk(x) for x in v]}
        if isinstance(v, float) and not math.isfinite(v):
            return {"f": repr(v)}
        if v is None or isinstance(v, bool | int | float | str):
            return {"v": v}
        raise TypeError(f"cannot send a {type(v).__name__}")

    return walk(value), tensors


def encode_tensors(tensors: dict[str, Any]) -> bytes:
    if not tensors:
        return b""
    from safetensors.torch import save

    return save(tensors)


def decode_tensors(payload: bytes) -> dict[str, Any]:
    """Tensors from safetensors bytes; ChannelError for anything the library rejects."""
    if not payload:
        return {}
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(payload)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ChannelError(f"a payload that is not safetensors ({exc})") from None


def unpack(tree: Any, tensors: dict[str, Any]) -> Any:
    """The value a tree describes; ChannelError for a tree that is malformed, too deep or
    too wide, or that names a tensor the payload lacks."""
    count = [0]

    def walk(node: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_LEAVES:
            raise ChannelError("a value nested too deeply or with too many parts")
        if not isinstance(node, dict) or len(node) != 1:
            raise ChannelError(f"a malformed value node {str(node)[:60]!r}")
        (kind, body), = node.items()
        if kind == "t":
            if not isinstance(body, str) or body not in tensors:
                raise ChannelError(f"a value naming a missing tensor {str(body)[:20]!r}")
            return tensors[body]
        if kind in ("tuple", "list"):
            if not isinstance(body, list):
                raise ChannelError(f"a {kind} node that is not a list")
            items = [walk(x, depth + 1) for x in body]
            return tuple(items) if kind == "tuple" else items
        if kind == "f" and body in ("nan", "inf", "-inf"):
            return float(body)
        if kind == "v" and (body is None or isinstance(body, bool | int | float | str)):
            return body
        raise ChannelError(f"an unknown value node {kind!r}")

    return walk(tree, 0)


def send_value(fd: int, header: dict[str, Any], value: Any, key: str = "value") -> int:
    """A header plus one value (its tree under `key`, its tensors as the payload); returns
    the payload's size."""
    tree, tensors = pack(value)
    payload = encode_tensors(tensors)
    write_frame(fd, {**header, key: tree}, payload)
    return len(payload)
