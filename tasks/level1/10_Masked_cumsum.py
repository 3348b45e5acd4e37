import torch
import torch.nn as nn


class Model(nn.Module):
    """Cumulative sum of the elements where a boolean mask is set (the mask stays bool)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x * mask, dim=self.dim)


batch_size = 8192
length = 8192
scan_dim = 1


def get_inputs():
    x = torch.rand(batch_size, length) - 0.5
    mask = torch.randint(0, 2, (batch_size, length)).bool()
    return [x, mask]


def get_init_inputs():
    return [scan_dim]
