import math

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def linear_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """y = x @ w.T + b with x (M, K), w (N, K) contiguous."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        x = tl.load(x_ptr + rm[:, None] * K + kk[None, :],
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        w = tl.load(w_ptr + rn[None, :] * K + kk[:, None],
                    mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)
        acc += tl.dot(x, w, input_precision="ieee")
    acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0)[None, :]
    tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc,
             mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def causal_attention_kernel(qkv_ptr, out_ptr, T, C, n_head, head_dim, scale,
                            HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr,
                            BLOCK_KV: tl.constexpr):
    """Flash-attention forward with a causal mask, reading q, k, v from the fused qkv rows.

    qkv is (B, T, 3C) contiguous; head h of q is columns [h*D, (h+1)*D), of k C + that, of v
    2C + that. out is (B, T, C). HEAD_DIM is head_dim padded to a power of two >= 16.
    """
    pid_q = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // n_head
    h = bh % n_head
    rq = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rd = tl.arange(0, HEAD_DIM)
    row_stride = 3 * C
    base = qkv_ptr + b * T * row_stride + h * head_dim
    in_head = rd[None, :] < head_dim
    q = tl.load(base + rq[:, None] * row_stride + rd[None, :],
                mask=(rq[:, None] < T) & in_head, other=0.0)
    m = tl.full((BLOCK_Q,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_Q,), tl.float32)
    acc = tl.zeros((BLOCK_Q, HEAD_DIM), tl.float32)
    for start in range(0, (pid_q + 1) * BLOCK_Q, BLOCK_KV):
        rk = start + tl.arange(0, BLOCK_KV)
        k = tl.load(base + C + rk[:, None] * row_stride + rd[None, :],
                    mask=(rk[:, None] < T) & in_head, other=0.0)
        v = tl.load(base + 2 * C + rk[:, None] * row_stride + rd[None, :],
                    mask=(rk[:, None] < T) & in_head, other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        allowed = (rk[None, :] <= rq[:, None]) & (rk[None, :] < T)
        scores = tl.where(allowed, scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m - m_new)
        s = s * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        m = m_new
    out = acc / s[:, None]
    tl.store(out_ptr + b * T * C + rq[:, None] * C + h * head_dim + rd[None, :], out,
             mask=(rq[:, None] < T) & in_head)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    M, K = x.shape
    N = layer.out_features
    y = torch.empty((M, N), device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(M, 64), triton.cdiv(N, 64))
    linear_kernel[grid](x, layer.weight, layer.bias, y, M, N, K,
                        BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)
    return y


class ModelNew(nn.Module):
    def __init__(self, n_embd: int, n_head: int, max_seqlen: int):
        super().__init__()
        assert n_embd % n_head == 0
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head
        self.n_embd = n_embd
        mask = torch.tril(torch.ones(max_seqlen, max_seqlen))
        self.register_buffer("bias", mask.view(1, 1, max_seqlen, max_seqlen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        head_dim = C // self.n_head
        qkv = linear(x.contiguous().view(B * T, C), self.c_attn)  # (B*T, 3C)
        y = torch.empty((B, T, C), device=x.device, dtype=x.dtype)
        grid = (triton.cdiv(T, 32), B * self.n_head)
        causal_attention_kernel[grid](qkv, y, T, C, self.n_head, head_dim,
                                      1.0 / math.sqrt(head_dim),
                                      HEAD_DIM=max(16, triton.next_power_of_2(head_dim)),
                                      BLOCK_Q=32, BLOCK_KV=32)
        return linear(y.view(B * T, C), self.c_proj).view(B, T, C)
