"""The CUDA fast path: kernelpro.nvrtc (real NVRTC, real cubins read back with cuobjdump), the
content-addressed build cache, the per-GPU lock, parallel evaluation, and the CUDA templates.
Launching needs a GPU: those tests are marked `gpu`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kernelpro.build_cache import BuildCache, CachedCompileError, build_key
from kernelpro.evaluate import EvalConfig, evaluate_candidate, evaluate_many
from kernelpro.evaluate.compile import detect_backend
from kernelpro.evaluate.guard import check_source
from kernelpro.task import load_task
from tests.conftest import CANDIDATES, FIXTURES, ROOT, SOLUTIONS, TASKS
from tests.test_compile import sass

nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings (NVRTC) not installed")
TINY = FIXTURES / "tasks" / "tiny_relu.py"
NVRTC_RELU = ROOT / "examples" / "solutions_nvrtc" / "level1" / "2_ReLU.py"
SCALE = r"""
extern "C" __global__ void scale(const float* x, float* y, float a, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
"""


# --- the build cache -------------------------------------------------------------------------

def test_key_changes_with_every_input():
    base = build_key("nvrtc", "src", ["-a"], "sm_90", "nvrtc 13.0")
    assert base == build_key("nvrtc", "src", ["-a"], "sm_90", "nvrtc 13.0")
    for other in (build_key("nvcc", "src", ["-a"], "sm_90", "nvrtc 13.0"),
                  build_key("nvrtc", "src ", ["-a"], "sm_90", "nvrtc 13.0"),
                  build_key("nvrtc", "src", ["-b"], "sm_90", "nvrtc 13.0"),
                  build_key("nvrtc", "src", ["-a"], "sm_80", "nvrtc 13.0"),
                  build_key("nvrtc", "src", ["-a"], "sm_90", "nvrtc 13.1")):
        assert other != base


def test_get_or_build_hits_and_remembers_compile_errors(tmp_path):
    cache, calls = BuildCache(tmp_path), []

    def build() -> bytes:
        calls.append(1)
        return b"cubin"
    path, hit = cache.get_or_build("ab" * 32, build)
    assert not hit and path.read_bytes() == b"cubin"
    path2, hit = cache.get_or_build("ab" * 32, build)
    assert hit and path2 == path and len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)

    def broken() -> bytes:
        calls.append(1)
        raise ValueError("error: nope")
    for _ in range(2):
        with pytest.raises((ValueError, CachedCompileError), match="error: nope"):
            cache.get_or_build("cd" * 32, broken, lambda e: isinstance(e, ValueError))
    assert len(calls) == 2  # the second failure came from the cache


def test_concurrent_builds_of_one_key_leave_one_whole_file(tmp_path):
    cache = BuildCache(tmp_path)
    data = bytes(range(256)) * 4096
    results = []

    def worker():
        results.append(cache.get_or_build("ef" * 32, lambda: data)[0].read_bytes())
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == data for r in results)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["ef" * 32 + ".cubin"]


# --- NVRTC -----------------------------------------------------------------------------------

def test_nvrtc_compiles_a_real_sm90_cubin_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELPRO_BUILD_CACHE", str(tmp_path / "cache"))
    from kernelpro.nvrtc import CudaKernel

    first = CudaKernel(SCALE, "scale", arch="sm_90")
    listing = sass(first.cubin)
    assert "code for sm_90" in listing and "scale" in listing and "FMUL" in listing
    started = time.perf_counter()
    second = CudaKernel(SCALE, "scale", arch="sm_90")
    assert second.cache_hit and not first.cache_hit and second.cubin == first.cubin
    assert time.perf_counter() - started < 1.0
    other_arch = CudaKernel(SCALE, "scale", arch="sm_80")
    assert not other_arch.cache_hit and "code for sm_80" in sass(other_arch.cubin)


def test_nvrtc_error_names_the_problem_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELPRO_BUILD_CACHE", str(tmp_path / "cache"))
    from kernelpro.nvrtc import CudaKernel, NvrtcError

    bad = SCALE.replace("a * x[i]", "a * undefined_name[i]")
    for _ in range(2):
        with pytest.raises(NvrtcError, match='identifier "undefined_name" is undefined'):
            CudaKernel(bad, "scale", arch="sm_90")
    assert len(list((tmp_path / "cache").rglob("*.err"))) == 1


def test_calling_without_a_gpu_raises_gpu_required(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("KERNELPRO_BUILD_CACHE", str(tmp_path))
    from kernelpro.evaluate.compile import GpuRequired
    from kernelpro.nvrtc import CudaKernel

    kernel = CudaKernel(SCALE, "scale")
    with pytest.raises(GpuRequired, match="no GPU"):
        kernel(grid=(1,), block=(32,), args=(torch.zeros(4), torch.zeros(4), 1.0, 4))


def test_nvrtc_candidate_is_cuda_guard_allows_only_the_helper():
    source = NVRTC_RELU.read_text()
    assert detect_backend(source) == "cuda" and check_source(source) == []
    for bad in ("import kernelpro.evaluate.correctness\n",
                "from kernelpro.evaluate import guard\n", "import kernelpro\n"):
        findings = check_source(bad + source)
        assert findings and findings[0].rule == "forbidden-import", bad
        assert "only kernelpro.nvrtc" in findings[0].render()


def test_nvrtc_candidate_on_the_cpu_is_compiled_and_unverified(tmp_path):
    result = evaluate_candidate(load_task(TINY), NVRTC_RELU, EvalConfig(artifacts_dir=tmp_path))
    assert (result.status, result.stage, result.backend) == ("unverified", "compile", "cuda")
    assert "no GPU" in result.reason and len(result.cubins) == 1
    listing = sass(Path(result.cubins[0]))
    assert "relu" in listing and "code for sm_90" in listing


def test_the_judge_rebuilds_a_runners_builds_into_the_shared_cache(tmp_path, monkeypatch):
    """The runner sees the shared cache read-only; what it built comes back as recipes, the
    judge compiles them in a runner with no candidate and files the result: the second
    evaluation of the same kernel is a cache hit."""
    import os

    shared = Path(os.environ["KERNELPRO_CACHE"]) / "builds"
    first = evaluate_candidate(load_task(TINY), NVRTC_RELU, EvalConfig(artifacts_dir=tmp_path))
    assert first.status == "unverified", first.reason
    assert any("rebuilt by the judge" in n for n in first.notes), first.notes
    cubins = list(shared.glob("*/*.cubin"))
    assert len(cubins) == 1 and cubins[0].read_bytes().startswith(b"\x7fELF")
    recipes = list(shared.glob("*/*.recipe.json"))
    assert recipes == []  # recipes live in the runners' scratch, not in the shared cache
    second = evaluate_candidate(load_task(TINY), NVRTC_RELU, EvalConfig(artifacts_dir=tmp_path))
    assert second.status == "unverified" and len(second.cubins) == 1  # the hit, read in the
    assert not any("rebuilt by the judge" in n for n in second.notes)  # sandbox; nothing new


def test_a_recipe_is_compiled_only_when_its_key_is_what_it_hashes_to():
    from kernelpro.evaluate.artifacts import valid_recipe

    recipe = {"kind": "nvrtc", "source": "extern \"C\" __global__ void k() {}", "name": "k",
              "options": ["--std=c++17"], "arch": "sm_90", "toolchain": "nvrtc 13.0"}
    recipe["key"] = build_key("nvrtc", recipe["source"], recipe["options"], recipe["arch"],
                              recipe["toolchain"])
    assert valid_recipe(recipe)
    assert not valid_recipe({**recipe, "source": recipe["source"] + " "})  # another key's
    assert not valid_recipe({**recipe, "name": "k; rm -rf /"})
    assert not valid_recipe({**recipe, "options": ["x"] * 100})
    assert not valid_recipe({**recipe, "arch": "compute_90 --foo"})


def test_evaluate_many_keeps_order(tmp_path):
    task = load_task(TINY)
    paths = [CANDIDATES / "relu_wrong_threshold.py", NVRTC_RELU]
    results = evaluate_many(task, paths, EvalConfig(artifacts_dir=tmp_path), jobs=2)
    assert [r.status for r in results] == ["incorrect", "unverified"]


def test_gpu_lock_serialises_two_processes(tmp_path):
    """Two processes take the lock the judge takes before correctness: the second gets it
    only after the first exits (the OS releases an flock with its process)."""
    script = ("import sys, time; from pathlib import Path\n"
              "from kernelpro.evaluate.judge import acquire_lock\n"
              "acquire_lock(Path(sys.argv[1])); t = time.time()\n"
              "print(t, flush=True); time.sleep(1.0)\n")
    lock = tmp_path / "gpu-test.lock"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(lock)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    got = sorted(float(p.communicate(timeout=60)[0]) for p in procs)
    assert got[1] - got[0] >= 0.95


# --- CUDA templates ---------------------------------------------------------------------------

@pytest.mark.parametrize("task_file", ["level1/2_ReLU.py", "level1/3_GELU_tanh.py"])
def test_cuda_nvrtc_templates_compile_with_nvrtc(task_file, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELPRO_BUILD_CACHE", str(tmp_path))
    from kernelpro.propose.base import ProposalRequest
    from kernelpro.propose.templates import TemplateProposer

    task = load_task(TASKS / task_file)
    props = TemplateProposer().propose(ProposalRequest(task=task, backend="cuda-nvrtc"), 2)
    assert len(props) == 2 and props[0].knobs != props[1].knobs
    for prop in props:
        assert "from kernelpro.nvrtc import CudaKernel" in prop.source
        assert check_source(prop.source) == []
        path = tmp_path / f"cand_{len(list(tmp_path.glob('cand_*')))}.py"
        path.write_text(prop.source)
        result = evaluate_candidate(task, path, EvalConfig(artifacts_dir=tmp_path / "a"))
        assert result.status == "unverified" and result.cubins, result.reason


def test_cuda_templates_refuse_what_they_cannot_express():
    from kernelpro.propose.base import ProposalRequest
    from kernelpro.propose.templates import TemplateProposer

    task = load_task(TASKS / "level1" / "4_Softmax.py")
    (prop,) = TemplateProposer().propose(ProposalRequest(task=task, backend="cuda"), 2)
    assert prop.source is None and "cannot handle" in prop.reason
    assert "elementwise" in prop.reason


def test_cuda_load_inline_template_shares_the_nvrtc_kernel(tmp_path, monkeypatch):
    """The load_inline form holds the same kernel as the NVRTC form (compiled here with NVRTC;
    building it with PyTorch's headers costs ~30 s and is covered for load_inline candidates
    in test_compile.py), a host function launching it on the stream Python passes, and the
    matching declaration."""
    monkeypatch.setenv("KERNELPRO_BUILD_CACHE", str(tmp_path))
    from kernelpro.nvrtc import CudaKernel
    from kernelpro.propose import cuda_templates
    from kernelpro.propose.base import ProposalRequest
    from kernelpro.propose.templates import TemplateProposer

    task = load_task(TASKS / "level1" / "3_GELU_tanh.py")
    (prop,) = TemplateProposer().propose(ProposalRequest(task=task, backend="cuda"), 1)
    tpl = TemplateProposer().template(task)
    kernel = cuda_templates.kernel_source(tpl.pattern, prop.knobs)
    assert kernel in prop.source and "load_inline" in prop.source
    assert "torch::Tensor fused_forward(torch::Tensor x, int64_t stream)" in prop.source
    assert "reinterpret_cast<cudaStream_t>(stream)>>>" in prop.source
    assert "torch.cuda.current_stream().cuda_stream" in prop.source
    assert "fused_elementwise" in sass(CudaKernel(kernel, "fused_elementwise").cubin)
    assert detect_backend(prop.source) == "cuda" and check_source(prop.source) == []


# --- on a GPU ---------------------------------------------------------------------------------

@pytest.mark.gpu
def test_nvrtc_relu_is_correct_and_timed_on_the_gpu(tmp_path):
    result = evaluate_candidate(load_task(TASKS / "level1" / "2_ReLU.py"), NVRTC_RELU,
                                EvalConfig(artifacts_dir=tmp_path))
    assert result.status == "correct" and result.timed and result.runtime_ms > 0
    assert {"load_s", "queue_s", "gpu_s"} <= set(result.phases) and result.cubins


@pytest.mark.gpu
def test_two_workers_never_hold_the_gpu_together(tmp_path):
    task = load_task(TASKS / "level1" / "2_ReLU.py")
    results = evaluate_many(task, [NVRTC_RELU, SOLUTIONS / "level1" / "2_ReLU.py"],
                            EvalConfig(artifacts_dir=tmp_path), jobs=2)
    assert all(r.status == "correct" for r in results)
    spans = sorted((r.phases["gpu_s"], r.phases["queue_s"]) for r in results)
    assert max(q for _, q in spans) > 0  # one of them waited for the other


@pytest.mark.parametrize("which", ["cuda-python", "cupy"])
def test_both_bindings_compile_the_same_kernel(which, tmp_path, monkeypatch):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc" if which == "cupy"
                        else "cuda.bindings.nvrtc")
    monkeypatch.setenv("KERNELPRO_NVRTC_BACKEND", which)
    from kernelpro.nvrtc import NvrtcError, binding, compile_cubin

    assert binding() == which
    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(compile_cubin(SCALE, "scale", "sm_90", ("--std=c++17",)))
    assert "scale" in sass(cubin) and "code for sm_90" in sass(cubin)
    with pytest.raises(NvrtcError, match="undefined"):
        compile_cubin(SCALE.replace("x[i]", "nope[i]"), "scale", "sm_90")


def test_launch_arguments_pass_cuda_pythons_packer():
    """The packer runs before the driver is needed: without a GPU the call fails only on the
    missing driver library, never on an argument type (a None type for an address would)."""
    import numpy as np
    import torch

    from kernelpro.nvrtc import _c_value, _Pointer, kernel_params

    values = [_Pointer(0x7F0000001000), _c_value(7, "k"), _c_value(1.5, "k"),
              _c_value(np.int32(3), "k")]
    plain, types = kernel_params(values)
    assert plain == (0x7F0000001000, 7, 1.5, 3)
    assert [t.__name__ for t in types] == ["c_void_p", "c_long", "c_float", "c_int"]
    with pytest.raises(TypeError, match="not CUDA"):
        _c_value(torch.zeros(2), "k")
    if torch.cuda.is_available():
        return
    from cuda.bindings import driver

    with pytest.raises(Exception) as info:
        driver.cuLaunchKernel(driver.CUfunction(0), 1, 1, 1, 1, 1, 1, 0, 0, (plain, types), 0)
    assert not isinstance(info.value, TypeError), info.value
