"""Compile candidates and keep their device binaries (cubins).

- CUDA candidates call `torch.utils.cpp_extension.load_inline` at import. On a GPU machine the
  real `load_inline` builds them in the worker's own extensions directory and we extract the
  cubins from its objects. Without a GPU, `capture_load_inline` replaces it: the CUDA sources
  are compiled with nvcc to a cubin for the chosen architecture (real compiler errors, real
  SASS), and the functions it would have bound refuse to run.
- Triton candidates compile at first launch; their cubins are collected from the worker's own
  Triton cache directory.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sysconfig
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.toolchain import find_tool, require_tool
from kernelpro.types import Backend, one_line

NVCC_TIMEOUT_S = 600


class CompileError(Exception):
    """A candidate's kernel source did not compile; the message holds the compiler's words."""


class GpuRequired(RuntimeError):
    """Raised by CUDA functions compiled on a machine without a GPU if the candidate calls them."""


def detect_backend(source: str) -> Backend:
    """triton if the file defines a @triton.jit kernel, cuda if it builds an extension or
    uses the NVRTC helper."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "torch"
    text_names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    text_names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            text_names |= {a.name for a in node.names}
    if text_names & {"load_inline", "cpp_extension", "CudaKernel"} or "kernelpro" in imported:
        return "cuda"  # load_inline, or the NVRTC fast path (kernelpro.nvrtc)
    if "triton" in imported:
        return "triton"
    return "torch"


@dataclass
class CapturedExtension:
    """One load_inline call seen without a GPU, and what nvcc made of it."""

    name: str
    cuda_sources: list[str]
    functions: list[str]
    cubin: Path | None = None
    nvcc_log: str = ""


@dataclass
class CaptureLoadInline:
    """Stands in for load_inline on a machine without a GPU: nvcc to cubin, functions refuse."""

    out_dir: Path
    arch: str = "sm_90"
    extensions: list[CapturedExtension] = field(default_factory=list)

    def __call__(self, name: str, cpp_sources: Any = (), cuda_sources: Any = None,
                 functions: Any = None, extra_cuda_cflags: Sequence[str] | None = None,
                 **_: Any) -> types.ModuleType:
        cuda = [cuda_sources] if isinstance(cuda_sources, str) else list(cuda_sources or [])
        funcs = [functions] if isinstance(functions, str) else list(functions or [])
        if isinstance(functions, dict):
            funcs = list(functions)
        ext = CapturedExtension(name, cuda, funcs)
        self.extensions.append(ext)
        if cuda:
            ext.cubin = compile_cuda_to_cubin("\n".join(cuda), self.out_dir / f"{name}.cubin",
                                              self.arch, list(extra_cuda_cflags or []))
        return _refusing_module(name, funcs, self.arch)


def _refusing_module(name: str, functions: list[str], arch: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def make(fn_name: str):
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise GpuRequired(f"{name}.{fn_name} was compiled for {arch} but there is no GPU "
                              "to run it")
        return refuse

    for fn_name in functions:
        setattr(module, fn_name, make(fn_name))
    return module


def torch_include_flags() -> list[str]:
    """Include paths a load_inline source expects: torch's headers and Python's."""
    from torch.utils.cpp_extension import include_paths

    paths = [*include_paths(), sysconfig.get_paths()["include"]]
    return [f"-I{p}" for p in paths]


# User flags that may be passed through to nvcc when only a cubin is built.
_PASSTHROUGH_PREFIXES = ("-O", "--use_fast_math", "-use_fast_math", "-D", "--maxrregcount",
                         "-maxrregcount", "-lineinfo", "--extra-device-vectorization",
                         "-Xptxas", "--ptxas-options", "-ftz", "-prec", "-fmad")


def compile_cuda_to_cubin(source: str, out: Path, arch: str = "sm_90",
                          extra_flags: Sequence[str] = (), cache_dir: Path | None = None) -> Path:
    """nvcc -cubin for one architecture; raises CompileError with nvcc's first errors."""
    nvcc = require_tool("nvcc")
    flags = ["-std=c++17", "-O3", f"-arch={arch}", "-cubin",
             *[f for f in extra_flags if f.startswith(_PASSTHROUGH_PREFIXES)]]
    out.parent.mkdir(parents=True, exist_ok=True)
    if cache_dir is None:
        return _nvcc(nvcc.path, source, flags, out)
    from kernelpro.build_cache import BuildCache, CachedCompileError, build_key

    key = build_key("nvcc", "\n".join([source, *torch_include_flags()]), flags, arch,
                    nvcc.version)

    def build() -> bytes:
        return _nvcc(nvcc.path, source, flags, out).read_bytes()
    try:
        cached, hit = BuildCache(cache_dir).get_or_build(
            key, build, lambda e: isinstance(e, CompileError))
    except CachedCompileError as exc:
        raise CompileError(str(exc)) from None
    if hit:
        shutil.copyfile(cached, out)
    return out


def _nvcc(nvcc: Path, source: str, flags: Sequence[str], out: Path) -> Path:
    src = out.with_suffix(".cu")
    src.write_text(source)
    cmd = [str(nvcc), *flags, *torch_include_flags(), "-o", str(out), str(src)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CompileError(f"nvcc timed out after {NVCC_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise CompileError(first_compiler_errors(proc.stderr + proc.stdout))
    return out


def first_compiler_errors(log: str, limit: int = 3) -> str:
    """The first `limit` error lines of a compiler log, joined; the whole tail if none match."""
    errors = [line.strip() for line in log.splitlines() if "error" in line.lower()]
    if not errors:
        return one_line(log[-400:])
    return " | ".join(errors[:limit])


def collect_triton_cubins(cache_dir: Path, out_dir: Path) -> list[Path]:
    """Copy the cubins Triton wrote to its cache during this worker's run."""
    return _copy_all(sorted(cache_dir.rglob("*.cubin")), out_dir)


def collect_extension_cubins(build_root: Path, out_dir: Path) -> list[Path]:
    """Extract device ELF (cubins) from the objects load_inline built, with cuobjdump."""
    cuobjdump = find_tool("cuobjdump")
    if cuobjdump is None:
        return []
    found: list[Path] = []
    for obj in sorted(build_root.rglob("*.o")):
        dest = out_dir / obj.stem
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(cuobjdump.path), "-xelf", "all", str(obj.resolve())],
                       cwd=dest, capture_output=True, timeout=60)
        found += _copy_all(sorted(dest.glob("*.cubin")), out_dir)
        shutil.rmtree(dest, ignore_errors=True)
    return found


def _copy_all(files: Sequence[Path], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for f in files:
        dest = out_dir / f.name
        if dest.resolve() != f.resolve():
            shutil.copyfile(f, dest)
        kept.append(dest)
    return kept
