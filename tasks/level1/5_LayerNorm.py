import torch
import torch.nn as nn


class Model(nn.Module):
    """LayerNorm over the last dimension with a learnable affine transform."""

    def __init__(self, normalized_shape: int):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape)
        with torch.no_grad():  # non-trivial affine parameters, so a kernel must apply them
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


batch_size = 16384
features = 8192


def get_inputs():
    x = torch.randn(batch_size, features) * 3 + 1
    return [x]


def get_init_inputs():
    return [features]
