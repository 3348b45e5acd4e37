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

import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernelpro.build_cache import BuildCache, CachedCompileError, build_key

# Every cubin built in this process, for the worker to hand to the static tier.
BUILT: list[Path] = []
DEFAULT_OPTIONS = ("--std=c++17",)


class NvrtcError(Exception):
    """NVRTC rejected the source; the message holds its log."""


def binding() -> str:
    """Which NVRTC/driver binding is used: cuda-python (`cuda.bindings`) or CuPy's.
    KERNELPRO_NVRTC_BACKEND=cuda-python|cupy chooses; by default the first importable."""
    choice = os.environ.get("KERNELPRO_NVRTC_BACKEND")
    candidates = (("cuda-python", "cuda.bindings.nvrtc"),
                  ("cupy", "cupy_backends.cuda.libs.nvrtc"))
    for name, module in candidates:
        if choice in (None, name):
            try:
                __import__(module)
                return name
            except ImportError:
                continue
    raise ImportError("kernelpro.nvrtc needs cuda-python (pip install cuda-bindings "
                      "nvidia-cuda-nvrtc) or CuPy")


def nvrtc_version() -> str:
    if binding() == "cupy":
        from cupy.cuda import nvrtc as cnv

        major, minor = cnv.getVersion()
    else:
        from cuda.bindings import nvrtc

        _, major, minor = nvrtc.nvrtcVersion()
    return f"nvrtc {major}.{minor}"


def _check(result: Any, what: str) -> None:
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise NvrtcError(f"{what} failed: {err}")


def _first_errors(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "error" in ln]
    return "; ".join(lines[:3]) or log[-400:]


def compile_cubin(source: str, name: str, arch: str, options: Sequence[str] = ()) -> bytes:
    """NVRTC to a cubin for one architecture (no GPU needed)."""
    opts = [f"--gpu-architecture={arch}", *options]
    if binding() == "cupy":
        from cupy.cuda import nvrtc as cnv

        prog = cnv.createProgram(source, f"{name}.cu", [], [])
        try:
            try:
                cnv.compileProgram(prog, opts)
            except cnv.NVRTCError:
                raise NvrtcError(_first_errors(cnv.getProgramLog(prog))) from None
            # CuPy's getCUBIN treats the image as a C string and drops its last byte (a NUL
            # that belongs to the ELF image): put it back.
            return bytes(cnv.getCUBIN(prog)) + b"\0"
        finally:
            cnv.destroyProgram(prog)
    from cuda.bindings import nvrtc

    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], [])
    _check(err, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in opts]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        if int(err) != 0:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise NvrtcError(_first_errors(log.decode(errors="replace")))
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def target_arch() -> str:
    """The GPU's sm_XY, or KERNELPRO_ARCH (the dry run's --arch), or sm_90."""
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"sm_{major}{minor}"
    return os.environ.get("KERNELPRO_ARCH", "sm_90")


def build(source: str, name: str, arch: str | None = None, options: Sequence[str] = (),
          cache: BuildCache | None = None) -> tuple[Path, bool]:
    """(cubin path, cache hit) through the shared build cache."""
    arch = arch or target_arch()
    opts = (*DEFAULT_OPTIONS, *options)
    cache = cache or BuildCache()
    version = nvrtc_version()
    key = build_key("nvrtc", source, opts, arch, version)
    recipe = {"kind": "nvrtc", "source": source, "name": name, "options": list(opts),
              "arch": arch, "toolchain": version, "key": key}
    try:
        path, hit = cache.get_or_build(key, lambda: compile_cubin(source, name, arch, opts),
                                       lambda e: isinstance(e, NvrtcError), recipe)
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
        self._launch: Callable[..., None] | None = None

    def _load(self) -> Callable[..., None]:
        """Load the cubin once and return the launcher for the binding in use: the launch is
        on the timed path, so nothing is looked up again per call."""
        if not torch.cuda.is_available():
            from kernelpro.evaluate.compile import GpuRequired

            raise GpuRequired(f"CUDA kernel {self.name} was compiled ({self.cubin.name}) but "
                              "there is no GPU to run it")
        torch.cuda.init()
        torch.empty(1, device="cuda")  # makes torch's primary context current on this thread
        if binding() == "cupy":
            import cupy

            self._module = cupy.cuda.function.Module()
            self._module.load(self.cubin.read_bytes())
            function = self._module.get_function(self.name)

            def launch_cupy(g: tuple[int, ...], b: tuple[int, ...], values: list[Any],
                            shared_mem: int, stream: int) -> None:
                # CuPy passes numpy scalars by value; an address is a 64-bit value.
                args = tuple(np.uint64(v) if isinstance(v, _Pointer) else v for v in values)
                with cupy.cuda.ExternalStream(stream):
                    function(g, b, args, shared_mem=shared_mem)
            return launch_cupy
        from cuda.bindings import driver

        err, module = driver.cuModuleLoadData(self.cubin.read_bytes())
        _check(err, "cuModuleLoadData")
        err, function = driver.cuModuleGetFunction(module, self.name.encode())
        _check(err, f"cuModuleGetFunction({self.name})")
        self._module = module

        def launch_driver(g: tuple[int, ...], b: tuple[int, ...], values: list[Any],
                          shared_mem: int, stream: int) -> None:
            (err,) = driver.cuLaunchKernel(function, *g, *b, shared_mem, stream,
                                           kernel_params(values), 0)
            _check(err, f"cuLaunchKernel({self.name})")
        return launch_driver

    def __call__(self, grid: Sequence[int], block: Sequence[int], args: Sequence[Any],
                 shared_mem: int = 0) -> None:
        if self._launch is None:
            self._launch = self._load()
        self._launch((*grid, 1, 1)[:3], (*block, 1, 1)[:3],
                     [_c_value(a, self.name) for a in args], shared_mem,
                     torch.cuda.current_stream().cuda_stream)


def kernel_params(values: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """cuda-python's (values, ctypes types) form of launch arguments made by _c_value. An
    address travels as ctypes.c_void_p: its packer takes an int for that type (a None type is
    only for binding structures)."""
    types = tuple(ctypes.c_void_p if isinstance(v, _Pointer)
                  else np.ctypeslib.as_ctypes_type(v.dtype) for v in values)
    plain = tuple(int(v) if isinstance(v, _Pointer) else v.item() for v in values)
    return plain, types


class _Pointer(int):
    """A device address (passed as a pointer parameter)."""


def _c_value(a: Any, kernel: str) -> Any:
    """The C value of one launch argument: pointer, long long, float, or a numpy scalar's
    own type."""
    if isinstance(a, torch.Tensor):
        if not a.is_cuda:
            raise TypeError(f"CudaKernel {kernel}: tensor argument is on {a.device}, not CUDA")
        return _Pointer(a.data_ptr())
    if isinstance(a, np.generic):
        return a
    if isinstance(a, bool | int):
        return np.int64(a)
    if isinstance(a, float):
        return np.float32(a)
    raise TypeError(f"CudaKernel {kernel}: cannot pass {type(a).__name__}")
