import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def add_layernorm_kernel(x_ptr, r_ptr, w_ptr, b_ptr, out_ptr, n_cols, stride, eps,
                         BLOCK: tl.constexpr):
    """out = LayerNorm(x + r) for one row; the sum is never written to memory."""
    row = tl.program_id(0)
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        acc += (tl.load(x_ptr + row * stride + cols, mask=mask, other=0.0)
                + tl.load(r_ptr + row * stride + cols, mask=mask, other=0.0))
    mean = tl.sum(acc, axis=0) / n_cols
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        h = (tl.load(x_ptr + row * stride + cols, mask=mask, other=0.0)
             + tl.load(r_ptr + row * stride + cols, mask=mask, other=0.0))
        acc += tl.where(mask, (h - mean) * (h - mean), 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        h = (tl.load(x_ptr + row * stride + cols, mask=mask, other=0.0)
             + tl.load(r_ptr + row * stride + cols, mask=mask, other=0.0))
        w = tl.load(w_ptr + cols, mask=mask, other=0.0)
        b = tl.load(b_ptr + cols, mask=mask, other=0.0)
        tl.store(out_ptr + row * stride + cols, (h - mean) * rstd * w + b, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.ln = nn.LayerNorm(features)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        x, residual = x.contiguous(), residual.contiguous()
        out = torch.empty_like(x)
        rows, cols = x.shape
        add_layernorm_kernel[(rows,)](x, residual, self.ln.weight, self.ln.bias, out, cols,
                                      x.stride(0), self.ln.eps, BLOCK=512)
        return out
