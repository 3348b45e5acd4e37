"""CUDA templates for elementwise chains, in both forms a CUDA candidate can take:
`cuda` (KernelBench's load_inline, PyTorch's headers) and `cuda-nvrtc` (kernelpro.nvrtc: only
the kernel is compiled). The chain comes from the same fx recognition as the Triton template;
its Triton statements are translated to CUDA C. The knobs are the Triton template's: BLOCK
elements per thread block, num_warps * 32 threads striding over them.
"""

from __future__ import annotations

import re

from kernelpro.propose.recognise import Pattern

# Triton calls the recognised vocabulary uses, and their CUDA single-precision functions.
CALLS = {"tl.maximum(": "fmaxf(", "tl.minimum(": "fminf(", "tl.exp(": "expf(",
         "tl.abs(": "fabsf(", "tl.math.erf(": "erff("}
_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.])")


class NoCudaTemplate(Exception):
    """This pattern has no CUDA template; the message says why."""


def to_cuda(expr: str) -> str:
    """A Triton expression of the elementwise vocabulary as CUDA C on floats."""
    for tri, cu in CALLS.items():
        expr = expr.replace(tri, cu)
    if "tl." in expr:
        raise NoCudaTemplate(f"no CUDA translation for {expr!r}")
    return _FLOAT.sub(lambda m: m.group(1) + "f", expr)


def kernel_source(p: Pattern, knobs: dict[str, int]) -> str:
    """`extern "C" __global__ void fused_elementwise(...)` for the chain."""
    if p.kind != "elementwise":
        raise NoCudaTemplate("only elementwise chains have CUDA templates")
    params = ", ".join(f"const float* __restrict__ X{i}" for i in range(p.inputs))
    body = [f"float v{i} = X{i}[i];" for i in range(p.inputs)]
    for line in p.statements:
        name, _, expr = line.partition(" = ")
        body.append(f"float {name.strip()} = {to_cuda(expr.strip())};")
    block = knobs["BLOCK"]
    inner = "\n".join(f"        {line}" for line in [*body, f"OUT[i] = {p.result};"])
    return (f'extern "C" __global__ void fused_elementwise({params}, float* __restrict__ OUT,\n'
            "                                             long long n) {\n"
            f"    long long start = (long long)blockIdx.x * {block};\n"
            f"    long long end = start + {block} < n ? start + {block} : n;\n"
            "    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {\n"
            f"{inner}\n    }}\n}}\n")


def render(p: Pattern, knobs: dict[str, int], args: list[str], init_src: str, describe: str,
           form: str) -> str:
    """A complete candidate file for `form` = "cuda" (load_inline) or "cuda-nvrtc"."""
    kernel = kernel_source(p, knobs)
    threads = 32 * knobs["num_warps"]
    block = knobs["BLOCK"]
    knob_line = ", ".join(f"{k}={v}" for k, v in knobs.items())
    sig = ", ".join(["self", *args])
    init = "    " + init_src.strip() + "\n"
    if form == "cuda-nvrtc":
        conts = "\n".join(f"        {a} = {a}.contiguous()" for a in args)
        return (f"# kernelpro template ({form}): {describe} ({knob_line})\n"
                "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"
                "from kernelpro.nvrtc import CudaKernel\n\n"
                f'SOURCE = r"""\n{kernel}"""\n'
                'fused = CudaKernel(SOURCE, "fused_elementwise")\n\n\n'
                f"class ModelNew(nn.Module):\n{init}\n    def forward({sig}):\n{conts}\n"
                f"        out = torch.empty_like({args[0]})\n        n = out.numel()\n"
                f"        fused(grid=((n + {block - 1}) // {block},), block=({threads},),\n"
                f"              args=({', '.join(args)}, out, n))\n        return out\n")
    tensors = ", ".join(f"torch::Tensor {a}" for a in args)
    ptrs = ", ".join(f"{a}c.data_ptr<float>()" for a in args)
    conts = "\n".join(f"    auto {a}c = {a}.contiguous();" for a in args)
    # The stream comes from Python (torch.cuda.current_stream()): no ATen CUDA headers needed.
    host = (f"torch::Tensor fused_forward({tensors}, int64_t stream) {{\n{conts}\n"
            f"    auto out = torch::empty_like({args[0]}c);\n"
            "    long long n = out.numel();\n"
            f"    long long blocks = (n + {block - 1}) / {block};\n"
            "    if (blocks > 0)\n"
            f"        fused_elementwise<<<blocks, {threads}, 0, "
            "reinterpret_cast<cudaStream_t>(stream)>>>(\n"
            f"            {ptrs}, out.data_ptr<float>(), n);\n"
            "    return out;\n}\n")
    return (f"# kernelpro template ({form}): {describe} ({knob_line})\n"
            "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
            "from torch.utils.cpp_extension import load_inline\n\n"
            'CUDA_SOURCE = r"""\n#include <torch/extension.h>\n'
            "#include <cuda_runtime.h>\n"
            f'{kernel}\n{host}"""\n'
            f'CPP_SOURCE = "torch::Tensor fused_forward({tensors}, int64_t stream);"\n'
            'ext = load_inline(name="kernelpro_fused_' + "_".join(map(str, knobs.values()))
            + '", cpp_sources=CPP_SOURCE,\n'
            '                  cuda_sources=CUDA_SOURCE, functions=["fused_forward"])\n\n\n'
            f"class ModelNew(nn.Module):\n{init}\n    def forward({sig}):\n"
            f"        return ext.fused_forward({', '.join(args)}, "
            "torch.cuda.current_stream().cuda_stream)\n")
