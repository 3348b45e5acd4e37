"""CUDA candidates compiled to a real cubin without a GPU, and backend detection."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.evaluate.compile import (
    CompileError,
    compile_cuda_to_cubin,
    detect_backend,
    first_compiler_errors,
)
from kernelpro.task import load_task
from kernelpro.toolchain import find_tool
from tests.conftest import CANDIDATES, FIXTURES, SOLUTIONS

TINY = FIXTURES / "tasks" / "tiny_relu.py"

needs_nvcc = pytest.mark.skipif(find_tool("nvcc") is None, reason="needs nvcc")

PLAIN_KERNEL = r"""
__global__ void scale(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
"""


def sass(cubin: Path) -> str:
    tool = find_tool("cuobjdump")
    assert tool is not None, "cuobjdump is needed to read SASS"
    return subprocess.run([str(tool.path), "-sass", str(cubin)], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("path, backend", [
    (SOLUTIONS / "level1" / "2_ReLU.py", "triton"),
    (CANDIDATES / "cuda_relu.py", "cuda"),
    (CANDIDATES / "relu_stateful.py", "torch"),
])
def test_backend_is_detected_from_the_source(path: Path, backend: str):
    assert detect_backend(path.read_text()) == backend


@needs_nvcc
def test_plain_kernel_compiles_to_sm90_sass(tmp_path: Path):
    cubin = compile_cuda_to_cubin(PLAIN_KERNEL, tmp_path / "scale.cubin", "sm_90")
    listing = sass(cubin)
    assert "code for sm_90" in listing and "scale" in listing
    assert "FMUL" in listing and "LDG.E" in listing


@needs_nvcc
def test_compile_cache_returns_the_same_cubin(tmp_path: Path):
    cache = tmp_path / "cache"
    first = compile_cuda_to_cubin(PLAIN_KERNEL, tmp_path / "a.cubin", "sm_90", cache_dir=cache)
    second = compile_cuda_to_cubin(PLAIN_KERNEL, tmp_path / "b.cubin", "sm_90", cache_dir=cache)
    assert first.read_bytes() == second.read_bytes()
    assert len(list(cache.rglob("*.cubin"))) == 1  # content-addressed: one entry


@needs_nvcc
def test_compile_error_carries_nvcc_words(tmp_path: Path):
    with pytest.raises(CompileError, match="error"):
        compile_cuda_to_cubin(PLAIN_KERNEL.replace("a * x[i];", "a * x[i]"),
                              tmp_path / "bad.cubin", "sm_90")


def test_first_compiler_errors_picks_error_lines():
    log = "warning: x\nfoo.cu(3): error: expected a \";\"\nbar\nfoo.cu(9): error: undefined\n"
    assert first_compiler_errors(log) == 'foo.cu(3): error: expected a ";" | ' \
                                         "foo.cu(9): error: undefined"


@needs_nvcc
@pytest.mark.slow
def test_load_inline_candidate_is_compiled_to_cubin_but_not_run(tmp_path: Path):
    """KernelBench-style CUDA (torch headers, nvcc): compiled for sm_90, verdict unverified."""
    task = load_task(TINY)
    result = evaluate_candidate(task, CANDIDATES / "cuda_relu.py",
                                EvalConfig(artifacts_dir=tmp_path))
    assert (result.status, result.stage, result.backend) == ("unverified", "compile", "cuda")
    assert not result.correct and not result.timed and result.runtime_ms is None
    assert "no GPU" in result.reason and "sm_90" in result.reason
    assert len(result.cubins) == 1
    listing = sass(Path(result.cubins[0]))
    assert "relu_kernel" in listing and "code for sm_90" in listing


@needs_nvcc
@pytest.mark.slow
def test_load_inline_compile_error_is_a_compile_failure(tmp_path: Path):
    task = load_task(TINY)
    result = evaluate_candidate(task, CANDIDATES / "cuda_compile_error.py",
                                EvalConfig(artifacts_dir=tmp_path))
    assert (result.status, result.stage, result.error_class) == ("failed", "compile",
                                                                 "CompileError")
    assert "error" in result.reason
