"""The candidate set of bench/throughput.py: ReLU kernels, each written twice, once the
KernelBench way (load_inline, PyTorch's headers) and once the kernelpro way (kernelpro.nvrtc).

Kinds: correct (block sizes, grid-stride, float4), incorrect (wrong threshold, missed tail),
slow to compile (a long fully unrolled loop) and a compile error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str  # correct | incorrect | slow-compile | compile-error
    kernel: str  # CUDA source of `relu_kernel(const float*, float*, long long)`
    block: int = 256


SCALAR = """
extern "C" __global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       long long n) {{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) {{ float v = x[i]; y[i] = v > {thr}f ? v : 0.f; }}
}}
"""
NO_TAIL = """
extern "C" __global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n - 1) { float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
"""
VEC4 = """
extern "C" __global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       long long n) {
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    long long stride = (long long)gridDim.x * blockDim.x * 4;
    for (; i < n; i += stride) {
        if (i + 3 < n && ((reinterpret_cast<size_t>(x + i) | reinterpret_cast<size_t>(y + i))
                          & 15) == 0) {
            float4 v = *reinterpret_cast<const float4*>(x + i);
            v.x = fmaxf(v.x, 0.f); v.y = fmaxf(v.y, 0.f);
            v.z = fmaxf(v.z, 0.f); v.w = fmaxf(v.w, 0.f);
            *reinterpret_cast<float4*>(y + i) = v;
        } else {
            for (long long j = i; j < n && j < i + 4; ++j) y[j] = fmaxf(x[j], 0.f);
        }
    }
}
"""
# A long unrolled chain that the compiler must optimise away to an identity: slow to build.
SLOW = """
template <int N> __device__ __forceinline__ float chain(float v) {
    #pragma unroll
    for (int k = 0; k < N; ++k) { v = v * 1.0f + 0.0f; v = fmaxf(v, -1e30f); }
    return v;
}
extern "C" __global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) { float v = chain<%d>(x[i]); y[i] = v > 0.f ? v : 0.f; }
}
"""
BROKEN = """
extern "C" __global__ void relu_kernel(const float* x, float* y, long long n) {
    y[threadIdx.x] = undefined_helper(x[threadIdx.x]);
}
"""


def candidates(quick: bool = False) -> list[Candidate]:
    out = [Candidate(f"scalar_b{b}", "correct", SCALAR.format(thr="0.0"), b)
           for b in ((256,) if quick else (128, 256, 512, 1024))]
    if not quick:
        out.append(Candidate("float4_b256", "correct", VEC4, 256))
        out.append(Candidate("no_tail", "incorrect", NO_TAIL, 256))
    out.append(Candidate("threshold", "incorrect", SCALAR.format(thr="0.1"), 256))
    out.append(Candidate("slow_unroll", "slow-compile", SLOW % (2000 if quick else 8000), 256))
    if not quick:
        out.append(Candidate("broken", "compile-error", BROKEN, 256))
    return out


LOAD_INLINE = '''# {name} ({kind}): the KernelBench form: load_inline, with PyTorch's headers
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_source = r"""
#include <torch/extension.h>
{kernel}
torch::Tensor relu_forward(torch::Tensor x) {{
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    long long n = xc.numel();
    int block = {block};
    long long blocks = (n + block - 1) / block;
    if (blocks > 65535) blocks = 65535;
    relu_kernel<<<blocks, block>>>(xc.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}}
"""
cpp_source = "torch::Tensor relu_forward(torch::Tensor x);"
ext = load_inline(name="relu_{name}", cpp_sources=cpp_source, cuda_sources=cuda_source,
                  functions=["relu_forward"], verbose=False)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return ext.relu_forward(x)
'''

NVRTC = '''# {name} ({kind}): the kernelpro form, only the kernel compiled, by NVRTC
import torch
import torch.nn as nn

from kernelpro.nvrtc import CudaKernel

SOURCE = r"""
{kernel}
"""
relu = CudaKernel(SOURCE, "relu_kernel")


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        n = x.numel()
        blocks = min((n + {block} - 1) // {block}, 65535)
        relu(grid=(blocks,), block=({block},), args=(x, y, n))
        return y
'''


def render(c: Candidate, form: str) -> str:
    template = LOAD_INLINE if form == "load_inline" else NVRTC
    kernel = c.kernel.replace('extern "C" ', "") if form == "load_inline" else c.kernel
    return template.format(name=c.name, kind=c.kind, kernel=kernel.strip(), block=c.block)
