"""The template proposer: Triton kernels from recognised patterns, with tunable knobs.

The default proposer when no model is configured. `recognise` says what the reference
computes (or why no template fits); a template renders a complete candidate file for one knob
setting: block sizes, warps, pipeline stages. ModelNew copies the reference Model's __init__
verbatim, so parameters are created exactly as the reference creates them. Proposals for a
parent move its knobs: first the moves the diagnosis recommends (tool name -> knob change),
then neighbouring settings. Every template is checked under the Triton interpreter on the
tasks in tasks/ it claims (tests/test_templates.py).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from dataclasses import dataclass

from kernelpro.propose.base import Proposal, ProposalRequest
from kernelpro.propose.recognise import Pattern, Unsupported, model_parts, recognise
from kernelpro.types import Task

HEADER = """import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl
"""

# Knob spaces per pattern kind, in the order knobs are tried.
KNOBS = {
    "elementwise": {"BLOCK": [1024, 2048, 4096, 512, 8192], "num_warps": [4, 8, 2]},
    "row": {"BLOCK": [1024, 2048, 512, 4096, 256], "num_warps": [4, 8, 2]},
    "loss": {"BLOCK": [1024, 2048, 512, 4096], "num_warps": [4, 8, 2]},
    "matmul": {"BM": [64, 128, 32], "BN": [64, 128, 32], "BK": [32, 64, 16],
               "num_warps": [4, 8], "num_stages": [3, 2, 4]},
}
# What a diagnosis recommends, as knob moves: tool name -> {knob: direction}.
MOVES = {
    "DramBandwidth": {"BLOCK": +1, "num_warps": +1},
    "LowAchievedBandwidth": {"BLOCK": +1, "num_warps": +1},
    "Vectorization": {"BLOCK": +1},
    "RegisterSpill": {"BLOCK": -1, "BM": -1, "BN": -1, "num_stages": -1},
    "OccupancyLimiter": {"BLOCK": -1, "BM": -1, "BN": -1, "num_warps": -1},
    "AchievedOccupancy": {"num_warps": +1, "BM": -1},
    "SmallGrid": {"BLOCK": -1, "BM": -1, "BN": -1},
    "MemoryLatencyStall": {"num_stages": +1, "BLOCK": +1},
    "ComputeUnderused": {"BM": +1, "BN": +1, "num_warps": +1},
    "BarrierStall": {"num_warps": -1},
    "SharedMemoryPressure": {"BK": -1, "num_stages": -1},
}


@dataclass
class Template:
    task: Task
    pattern: Pattern
    init_src: str
    args: list[str]

    @property
    def kind(self) -> str:
        return self.pattern.kind

    def default_knobs(self) -> dict[str, int]:
        return {k: v[0] for k, v in KNOBS[self.kind].items()}

    def render(self, knobs: dict[str, int]) -> str:
        kernel, forward = RENDER[self.kind](self.pattern, knobs, self.args)
        init = "    " + self.init_src.strip() + "\n"
        sig = ", ".join(["self", *self.args])
        body = textwrap.indent(textwrap.dedent(forward).strip(), " " * 8)
        knob_line = ", ".join(f"{k}={v}" for k, v in knobs.items())
        return (f"# kernelpro template: {self.pattern.describe} ({knob_line})\n{HEADER}\n\n"
                f"{textwrap.dedent(kernel).strip()}\n\n\nclass ModelNew(nn.Module):\n{init}\n"
                f"    def forward({sig}):\n{body}\n")


def template_for(task: Task) -> Template:
    """The template of a task, or Unsupported with the reason."""
    pattern = recognise(task)
    init_src, args = model_parts(task)
    return Template(task, pattern, init_src, args)


class TemplateProposer:
    """Proposals from templates: the default knobs at the root, knob moves below it."""

    name = "templates"

    def __init__(self) -> None:
        self._templates: dict[str, Template | str] = {}
        self._proposed: dict[str, list[dict[str, int]]] = {}  # per task: never twice

    def template(self, task: Task) -> Template | str:
        if task.sha not in self._templates:
            try:
                self._templates[task.sha] = template_for(task)
            except Unsupported as exc:
                self._templates[task.sha] = str(exc)
        return self._templates[task.sha]

    def propose(self, request: ProposalRequest, n: int) -> list[Proposal]:
        tpl = self.template(request.task)
        if isinstance(tpl, str):
            return [Proposal(self.name, None, reason=f"templates cannot handle "
                                                     f"{request.task.name}: {tpl}")]
        if request.backend != "triton" and (tpl.kind != "elementwise"
                                            or request.task.dtype != "float32"):
            return [Proposal(self.name, None, reason=(
                f"templates cannot handle {request.task.name} for --backend "
                f"{request.backend}: CUDA templates cover float32 elementwise chains only"))]
        seen = self._proposed.setdefault(request.task.sha, [])
        if request.parent_knobs:
            seen.append(dict(request.parent_knobs))
        total = 1
        for values in KNOBS[tpl.kind].values():
            total *= len(values)
        fresh = [k for k in knob_moves(tpl.kind, request.parent_knobs,
                                       request.recommendations, total) if k not in seen][:n]
        seen.extend(fresh)
        return [Proposal(self.name, self._render(tpl, knobs, request.backend), knobs=knobs,
                         notes=[f"template: {tpl.pattern.describe}"]) for knobs in fresh]

    @staticmethod
    def _render(tpl: Template, knobs: dict[str, int], backend: str) -> str:
        if backend == "triton":
            return tpl.render(knobs)
        from kernelpro.propose import cuda_templates

        return cuda_templates.render(tpl.pattern, knobs, tpl.args, tpl.init_src,
                                     tpl.pattern.describe, backend)


def knob_moves(kind: str, parent: dict[str, int] | None, recommended: tuple[str, ...],
               n: int) -> list[dict[str, int]]:
    """n distinct knob settings: recommended moves from the parent first, then neighbours."""
    space = KNOBS[kind]
    base = dict(parent) if parent else {k: v[0] for k, v in space.items()}
    seen: list[dict[str, int]] = []

    def add(knobs: dict[str, int]) -> None:
        if knobs not in seen and len(seen) < n:
            seen.append(knobs)

    if parent is None:
        add(base)
    for tool in recommended:
        moved = dict(base)
        for knob, direction in MOVES.get(tool, {}).items():
            if knob in space:
                moved[knob] = _step(space[knob], moved[knob], direction)
        add(moved)
    for knob, values in space.items():  # one knob at a time, nearest values first
        for value in sorted(values, key=lambda v: abs(_log2(v) - _log2(base[knob]))):
            add({**base, knob: value})
    for combo in itertools.product(*space.values()):
        add(dict(zip(space, combo, strict=True)))
    return seen


def _log2(v: int) -> float:
    return math.log2(v)


def _step(values: list[int], current: int, direction: int) -> int:
    ordered = sorted(values)
    higher = [v for v in ordered if v > current]
    lower = [v for v in ordered if v < current]
    if direction > 0:
        return higher[0] if higher else current
    return lower[-1] if lower else current


# --- renderers: (kernel source, forward body) -------------------------------------------------

def _elementwise(p: Pattern, knobs: dict[str, int], args: list[str]) -> tuple[str, str]:
    ptrs = ", ".join(f"X{i}" for i in range(p.inputs))
    loads = "\n".join(f"    v{i} = tl.load(X{i} + offs, mask=mask, other=0.0)"
                      for i in range(p.inputs))
    body = "\n".join(f"    {line}" for line in p.statements)
    kernel = f"""
@triton.jit
def fused_elementwise_kernel({ptrs}, OUT, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
{loads}
{body}
    tl.store(OUT + offs, {p.result}, mask=mask)
"""
    conts = "\n".join(f"{a} = {a}.contiguous()" for a in args)
    forward = f"""
{conts}
out = torch.empty_like({args[0]})
n = out.numel()
fused_elementwise_kernel[(triton.cdiv(n, {knobs['BLOCK']}),)]({', '.join(args)}, out, n,
    BLOCK={knobs['BLOCK']}, num_warps={knobs['num_warps']})
return out
"""
    return kernel, forward


_ROW_LOAD = """
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        v = tl.load(X + row * n_cols + cols, mask=mask, other=0.0){residual}"""


def _row(p: Pattern, knobs: dict[str, int], args: list[str]) -> tuple[str, str]:
    res = "\n        v += tl.load(R + row * n_cols + cols, mask=mask, other=0.0)" \
        if p.residual else ""
    load = _ROW_LOAD.format(residual=res)
    masked_load = load.replace("other=0.0)", "other=float('-inf'))", 1) if not p.residual \
        else load + "\n        v = tl.where(mask, v, float('-inf'))"
    params = "X, R, OUT, W, B, n_cols, eps"
    op = p.op
    if op in ("softmax", "log_softmax"):
        write = "tl.exp(v - m_row) / total" if op == "softmax" else \
            "v - m_row - tl.log(total)"
        body = f"""
    m = tl.full((BLOCK,), float('-inf'), tl.float32)
    s = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):{masked_load}
        m_new = tl.maximum(m, v)
        s = tl.where(m_new == float('-inf'), 0.0, s * tl.exp(m - m_new) + tl.exp(v - m_new))
        m = m_new
    m_row = tl.max(m, axis=0)
    total = tl.sum(s * tl.exp(m - m_row), axis=0)
    for start in range(0, n_cols, BLOCK):{load}
        tl.store(OUT + row * n_cols + cols, {write}, mask=mask)
"""
    elif op == "layer_norm":
        bias = "+ tl.load(B + cols, mask=mask, other=0.0)" if p.bias else ""
        body = f"""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):{load}
        acc += v
    mean = tl.sum(acc, axis=0) / n_cols
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):{load}
        d = tl.where(mask, v - mean, 0.0)
        acc += d * d
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):{load}
        w = tl.load(W + cols, mask=mask, other=0.0)
        tl.store(OUT + row * n_cols + cols, (v - mean) * rstd * w {bias}, mask=mask)
"""
    elif op == "rms_norm":
        body = f"""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):{load}
        acc += v * v
    rms = tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):{load}
        w = tl.load(W + cols, mask=mask, other=0.0)
        tl.store(OUT + row * n_cols + cols, v / rms * w, mask=mask)
"""
    elif op in ("sum", "mean"):
        scale = " / n_cols" if op == "mean" else ""
        body = f"""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):{load}
        acc += v
    tl.store(OUT + row, tl.sum(acc, axis=0){scale})
"""
    elif op == "amax":
        body = f"""
    m = tl.full((BLOCK,), float('-inf'), tl.float32)
    for start in range(0, n_cols, BLOCK):{masked_load}
        m = tl.maximum(m, v)
    tl.store(OUT + row, tl.max(m, axis=0))
"""
    elif op == "argmax":
        body = f"""
    best_val = float('-inf')
    best_idx = 0
    for start in range(0, n_cols, BLOCK):{masked_load}
        chunk_max = tl.max(v, axis=0)
        chunk_idx = tl.argmax(v, axis=0) + start
        take = chunk_max > best_val
        best_idx = tl.where(take, chunk_idx, best_idx)
        best_val = tl.where(take, chunk_max, best_val)
    tl.store(OUT + row, best_idx.to(tl.int64))
"""
    else:
        raise Unsupported(f"no row template for {op}")
    kernel = f"""
@triton.jit
def row_{op}_kernel({params}, BLOCK: tl.constexpr):
    row = tl.program_id(0)
{textwrap.indent(textwrap.dedent(body).strip(), '    ')}
"""
    x = args[0]
    r = args[1] if p.residual else x
    if op in ("layer_norm",):
        w, b = f"self.{p.module}.weight", (f"self.{p.module}.bias" if p.bias else
                                           f"self.{p.module}.weight")
        eps = f"self.{p.module}.eps"
    elif op == "rms_norm":
        w, b, eps = f"self.{p.weight}", f"self.{p.weight}", p.eps
    else:
        w, b, eps = x, x, "0.0"
    if op in ("sum", "mean", "amax", "argmax"):
        shape = "(*x.shape[:-1], 1)" if p.keepdim else "x.shape[:-1]"
        dtype = ", dtype=torch.int64" if op == "argmax" else ""
        alloc = f"out = torch.empty({shape}, device=x.device{dtype})"
    else:
        alloc = "out = torch.empty_like(x)"
    forward = f"""
x = {x}.contiguous()
r = {r}.contiguous()
n_cols = x.shape[-1]
rows = x.numel() // n_cols
{alloc}
row_{op}_kernel[(rows,)](x, r, out, {w}, {b}, n_cols, {eps},
    BLOCK={knobs['BLOCK']}, num_warps={knobs['num_warps']})
return out
"""
    return kernel, forward


def _loss(p: Pattern, knobs: dict[str, int], args: list[str]) -> tuple[str, str]:
    finish = """
@triton.jit
def mean_kernel(PARTIAL, OUT, n_partial, inv_n, BLOCK: tl.constexpr):
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_partial, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(PARTIAL + offs, mask=offs < n_partial, other=0.0)
    tl.store(OUT, tl.sum(acc, axis=0) * inv_n)
"""
    block, warps = knobs["BLOCK"], knobs["num_warps"]
    if p.op == "cross_entropy":
        kernel = """
@triton.jit
def cross_entropy_row_kernel(X, T, LOSS, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m = tl.full((BLOCK,), float('-inf'), tl.float32)
    s = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v = tl.load(X + row * n_cols + cols, mask=cols < n_cols, other=float('-inf'))
        m_new = tl.maximum(m, v)
        s = tl.where(m_new == float('-inf'), 0.0, s * tl.exp(m - m_new) + tl.exp(v - m_new))
        m = m_new
    m_row = tl.max(m, axis=0)
    lse = m_row + tl.log(tl.sum(s * tl.exp(m - m_row), axis=0))
    target = tl.load(T + row)
    tl.store(LOSS + row, lse - tl.load(X + row * n_cols + target))
""" + finish
        forward = f"""
x = {args[0]}.contiguous()
rows, n_cols = x.shape
losses = torch.empty(rows, device=x.device, dtype=torch.float32)
cross_entropy_row_kernel[(rows,)](x, {args[1]}.contiguous(), losses, n_cols, BLOCK={block},
    num_warps={warps})
out = torch.empty((), device=x.device, dtype=torch.float32)
mean_kernel[(1,)](losses, out, rows, 1.0 / rows, BLOCK=1024)
return out
"""
    else:
        kernel = """
@triton.jit
def sq_diff_partial_kernel(A, B, PARTIAL, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    d = tl.load(A + offs, mask=mask, other=0.0) - tl.load(B + offs, mask=mask, other=0.0)
    tl.store(PARTIAL + pid, tl.sum(d * d, axis=0))
""" + finish
        forward = f"""
a = {args[0]}.contiguous().view(-1)
b = {args[1]}.contiguous().view(-1)
n = a.numel()
n_partial = triton.cdiv(n, {block})
partial = torch.empty(n_partial, device=a.device, dtype=torch.float32)
sq_diff_partial_kernel[(n_partial,)](a, b, partial, n, BLOCK={block}, num_warps={warps})
out = torch.empty((), device=a.device, dtype=torch.float32)
mean_kernel[(1,)](partial, out, n_partial, 1.0 / n, BLOCK=1024)
return out
"""
    return kernel, forward


def _matmul(p: Pattern, knobs: dict[str, int], args: list[str]) -> tuple[str, str]:
    epilogue = "\n".join(f"    {line}" for line in p.statements)
    bias = "    acc += tl.load(BIAS + rn, mask=rn < N, other=0.0)[None, :]\n" if p.bias else ""
    kernel = f"""
@triton.jit
def matmul_kernel(A, B, C, BIAS, M, N, K, sam, sak, sbk, sbn,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a = tl.load(A + rm[:, None] * sam + kk[None, :] * sak,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(B + kk[:, None] * sbk + rn[None, :] * sbn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision="ieee")
{bias}{epilogue}
    tl.store(C + rm[:, None] * N + rn[None, :], {p.result},
             mask=(rm[:, None] < M) & (rn[None, :] < N))
"""
    if p.op == "linear":
        lin = f"self.{p.module}"
        setup = f"""
a = {args[0]}.contiguous()
w = {lin}.weight
M, K = a.shape
N = w.shape[0]
b_ptr, sbk, sbn = w, w.stride(1), w.stride(0)
bias = {lin}.bias if {lin}.bias is not None else w
"""
    else:
        setup = f"""
a = {args[0]}.contiguous()
b = {args[1]}.contiguous()
M, K = a.shape
N = b.shape[1]
b_ptr, sbk, sbn = b, b.stride(0), b.stride(1)
bias = b
"""
    forward = setup + f"""
out = torch.empty((M, N), device=a.device, dtype=a.dtype)
grid = (triton.cdiv(M, {knobs['BM']}), triton.cdiv(N, {knobs['BN']}))
matmul_kernel[grid](a, b_ptr, out, bias, M, N, K, a.stride(0), a.stride(1), sbk, sbn,
    BM={knobs['BM']}, BN={knobs['BN']}, BK={knobs['BK']}, num_warps={knobs['num_warps']},
    num_stages={knobs['num_stages']})
return out
"""
    return kernel, forward


RENDER = {"elementwise": _elementwise, "row": _row, "loss": _loss, "matmul": _matmul}
