import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def masked_cumsum_kernel(x_ptr, mask_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    carry = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < n_cols
        x = tl.load(x_ptr + row * stride + cols, mask=inside, other=0.0)
        keep = tl.load(mask_ptr + row * stride + cols, mask=inside, other=0)
        scan = tl.cumsum(x * keep.to(tl.float32), axis=0) + carry
        tl.store(out_ptr + row * stride + cols, scan, mask=inside)
        carry = tl.sum(tl.where(inside, x * keep.to(tl.float32), 0.0), axis=0) + carry


class ModelNew(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2 and self.dim in (1, -1), "this kernel scans the last of 2 dims"
        x, mask = x.contiguous(), mask.contiguous()
        out = torch.empty_like(x)
        rows, cols = x.shape
        masked_cumsum_kernel[(rows,)](x, mask, out, cols, x.stride(0), BLOCK=1024)
        return out
