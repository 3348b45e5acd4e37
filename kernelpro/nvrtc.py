"""The fast path for CUDA candidates: compile only the kernel, with NVRTC, and launch it.

`load_inline` (KernelBench's form) compiles PyTorch's C++ headers for every candidate, tens of
seconds each. A candidate can instead import this small helper:

    from kernelpro.nvrtc import CudaKernel
    relu = CudaKernel(CUDA_SOURCE, "relu")            # compiled once, cached by content
    relu(grid=(blocks,), block=(256,), args=(x, y, n))  # on torch's current stream

Tensors are passed as device pointers, Python ints as 64-bit integers and floats as 32-bit
floats; wrap a value in numpy (np.int32(n), np.float64(a)) for another C type. Compilation goes
through the content-addressed build cache (build_cache.py), keyed by source, options,
architecture and NVRTC version. NVRTC comes from cuda-python (`cuda.bindings.nvrtc`, pip
`cuda-bindings` + `nvidia-cuda-nvrtc`), launches from `cuda.bindings.driver`. Without a GPU
the kernel still compiles (for the --arch of the dry run, default sm_90) and its cubin is kept
for the static tier; calling it raises GpuRequired, which the evaluator reports as unverified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernelpro.build_cache import BuildCache, CachedCompileError, build_key

# Every cubin built in this process, for the worker to hand to the static tier.
BUILT: list[Path] = []
DEFAULT_OPTIONS = ("--std=c++17",)


class NvrtcError(Exception):
    """NVRTC rejected the source; the message holds its log."""


def nvrtc_version() -> str:
    from cuda.bindings import nvrtc

    _, major, minor = nvrtc.nvrtcVersion()
    return f"nvrtc {major}.{minor}"


def _check(result: Any, what: str) -> None:
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise NvrtcError(f"{what} failed: {err}")


def compile_cubin(source: str, name: str, arch: str, options: Sequence[str] = ()) -> bytes:
    """NVRTC to a cubin for one architecture (no GPU needed)."""
    from cuda.bindings import nvrtc

    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], [])
    _check(err, "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            lines = [ln for ln in log.decode(errors="replace").splitlines() if "error" in ln]
            raise NvrtcError("; ".join(lines[:3]) or log.decode(errors="replace")[-400:])
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def target_arch() -> str:
    """The GPU's sm_XY, or KERNELPRO_ARCH (the dry run's --arch), or sm_90."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"sm_{major}{minor}"
    except Exception:
        pass
    return os.environ.get("KERNELPRO_ARCH", "sm_90")


def build(source: str, name: str, arch: str | None = None, options: Sequence[str] = (),
          cache: BuildCache | None = None) -> tuple[Path, bool]:
    """(cubin path, cache hit) through the shared build cache."""
    arch = arch or target_arch()
    opts = (*DEFAULT_OPTIONS, *options)
    cache = cache or BuildCache()
    key = build_key("nvrtc", source, opts, arch, nvrtc_version())
    try:
        path, hit = cache.get_or_build(key, lambda: compile_cubin(source, name, arch, opts),
                                       lambda e: isinstance(e, NvrtcError))
    except CachedCompileError as exc:
        raise NvrtcError(str(exc)) from None
    BUILT.append(path)
    return path, hit


class CudaKernel:
    """One `extern "C" __global__` function of a CUDA source, compiled by NVRTC."""

    def __init__(self, source: str, name: str, options: Sequence[str] = (),
                 arch: str | None = None) -> None:
        self.name = name
        self.cubin, self.cache_hit = build(source, name, arch, options)
        self._function: Any = None

    def _load(self) -> Any:
        import torch

        if not torch.cuda.is_available():
            from kernelpro.evaluate.compile import GpuRequired

            raise GpuRequired(f"CUDA kernel {self.name} was compiled ({self.cubin.name}) but "
                              "there is no GPU to run it")
        from cuda.bindings import driver

        torch.cuda.init()
        torch.empty(1, device="cuda")  # makes torch's primary context current on this thread
        err, module = driver.cuModuleLoadData(self.cubin.read_bytes())
        _check(err, "cuModuleLoadData")
        err, function = driver.cuModuleGetFunction(module, self.name.encode())
        _check(err, f"cuModuleGetFunction({self.name})")
        self._module = module
        return function

    def __call__(self, grid: Sequence[int], block: Sequence[int], args: Sequence[Any],
                 shared_mem: int = 0) -> None:
        if self._function is None:
            self._function = self._load()
        import ctypes

        import numpy as np
        import torch
        from cuda.bindings import driver

        values, types = [], []
        for a in args:
            if isinstance(a, torch.Tensor):
                values.append(a.data_ptr())
                types.append(None)  # a pointer
            elif isinstance(a, np.generic):
                values.append(a.item())
                types.append(np.ctypeslib.as_ctypes_type(a.dtype))
            elif isinstance(a, bool | int):
                values.append(int(a))
                types.append(ctypes.c_longlong)
            elif isinstance(a, float):
                values.append(a)
                types.append(ctypes.c_float)
            else:
                raise TypeError(f"CudaKernel {self.name}: cannot pass {type(a).__name__}")
        g = (*grid, 1, 1)[:3]
        b = (*block, 1, 1)[:3]
        stream = torch.cuda.current_stream().cuda_stream
        (err,) = driver.cuLaunchKernel(self._function, *g, *b, shared_mem, stream,
                                       (tuple(values), tuple(types)), 0)
        _check(err, f"cuLaunchKernel({self.name})")
