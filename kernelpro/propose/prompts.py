"""Prompts for the LLM proposer: task, backend rules, parent kernel, diagnosis, memory.

Everything goes in under a token budget (counted as characters / 4, which errs on the safe
side for code). When over budget the least useful parts shrink first: the search memory, then
the diagnosis (its lowest-severity lines), then the parent kernel (its middle). The task
source is never cut: without it the model cannot be right.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kernelpro.propose.base import ProposalRequest

CHARS_PER_TOKEN = 4
DEFAULT_BUDGET_TOKENS = 12_000

SYSTEM = ("You are an expert GPU kernel engineer. You rewrite PyTorch reference programs as "
          "faster custom kernels that produce the same outputs within tolerance.")

RULES = {
    "triton": """Write Triton kernels (`import triton`, `import triton.language as tl`,
`@triton.jit`).
- Output one complete Python file in a single ```python block defining `class ModelNew(nn.Module)`
  with the same __init__ arguments and forward signature as `Model`.
- Create the same parameters in the same order as Model (the harness seeds both identically).
- Do the task's main computation in your own kernels; do not call the PyTorch op it replaces.
- Inputs are contiguous CUDA tensors at the task's dtype; keep fp32 math for fp32 tasks
  (no TF32/fp16 shortcuts: the tolerance is 1e-4); return a plain tensor.
- No threads, subprocesses, file or network access, and no changes to torch or the harness.""",
    "cuda": """Write CUDA kernels compiled with `torch.utils.cpp_extension.load_inline`.
- Output one complete Python file in a single ```python block: the CUDA source as a string,
  `load_inline(name=..., cpp_sources=..., cuda_sources=..., functions=[...])` at import, and
  `class ModelNew(nn.Module)` with the same __init__ arguments and forward signature as `Model`.
- Create the same parameters in the same order as Model (the harness seeds both identically).
- Do the task's main computation in your own kernels; do not call ATen/cuBLAS for it.
- Keep fp32 math for fp32 tasks (tolerance 1e-4); launch on the current stream
  (at::cuda::getCurrentCUDAStream()); return a plain tensor.
- No threads, subprocesses, file or network access, and no changes to torch or the harness.""",
    "cuda-nvrtc": """Write CUDA kernels compiled by NVRTC through `kernelpro.nvrtc` (only the kernel
is compiled: no PyTorch headers, no host C++).
- Output one complete Python file in a single ```python block: the CUDA source as a string of
  `extern "C" __global__` functions, `k = CudaKernel(SOURCE, "name")` at import
  (`from kernelpro.nvrtc import CudaKernel`), and `class ModelNew(nn.Module)` with the same
  __init__ arguments and forward signature as `Model`.
- Launch with `k(grid=(gx,), block=(threads,), args=(tensor, ..., n), shared_mem=0)`: tensors
  pass as device pointers, Python ints as `long long`, floats as `float` (use np.int32(n) etc.
  for other C types); it runs on PyTorch's current stream. Allocate outputs with torch.
- Create the same parameters in the same order as Model (the harness seeds both identically).
- Do the task's main computation in your own kernels; do not call the PyTorch op it replaces.
- Keep fp32 math for fp32 tasks (tolerance 1e-4); return a plain tensor.
- No threads, subprocesses, file or network access, and no changes to torch or the harness.""",
}


def _tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _shrink_lines(text: str, max_chars: int) -> str:
    """Keep whole lines from the top (the diagnosis is severity-ordered)."""
    if len(text) <= max_chars:
        return text
    kept, used = [], 0
    for line in text.splitlines():
        if used + len(line) + 1 > max_chars - 30:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept) + "\n(... cut to fit the prompt)"


def _shrink_middle(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    half = max(max_chars // 2 - 40, 0)
    return text[:half] + "\n# ... (middle cut to fit the prompt) ...\n" + text[-half:]


def build_messages(request: ProposalRequest,
                   budget_tokens: int = DEFAULT_BUDGET_TOKENS) -> list[dict[str, str]]:
    task = request.task
    head = (f"{RULES[request.backend]}\n\nThe reference program ({task.name}, "
            f"{task.dtype}):\n```python\n{task.source}\n```\n")
    parent = request.parent_source or ""
    diagnosis = request.diagnosis or ""
    memory = "\n".join(f"- {m}" for m in request.memory)
    budget = budget_tokens * CHARS_PER_TOKEN - len(SYSTEM) - len(head) - 400
    for part in ("memory", "diagnosis", "parent"):
        over = len(parent) + len(diagnosis) + len(memory) - budget
        if over <= 0:
            break
        if part == "memory":
            memory = _shrink_lines(memory, max(len(memory) - over, 0))
        elif part == "diagnosis":
            diagnosis = _shrink_lines(diagnosis, max(len(diagnosis) - over, 200))
        else:
            parent = _shrink_middle(parent, max(len(parent) - over, 400))
    body = head
    if parent:
        body += (f"\nThe current best kernel (improve on it):\n```python\n{parent}\n```\n")
    if diagnosis:
        body += f"\nWhat profiling found in it:\n{diagnosis}\n"
    if memory:
        body += f"\nLessons from earlier attempts:\n{memory}\n"
    body += ("\nWrite a faster, correct ModelNew." if parent else
             "\nWrite a correct ModelNew that is faster than the reference.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(_tokens(m["content"]) for m in messages)


def prompt_hash(messages: list[dict[str, str]], **params: Any) -> str:
    """Key of the completion cache: the messages and every sampling parameter."""
    blob = json.dumps({"messages": messages, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
