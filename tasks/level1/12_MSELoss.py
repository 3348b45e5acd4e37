import torch
import torch.nn as nn

# kernelpro-lint: trivial-output, closed-form, input-insensitive -- kept on purpose: this is
# KernelBench's 94_MSELoss, a mean
# over 2^28 squared differences of torch.rand inputs, whose value is 1/6 to within 1e-5 on
# every seed. A candidate returning the constant passes KernelBench's checks; kernelpro's
# input-dependence check and its other input distributions reject it (tests/exploits).


class Model(nn.Module):
    """Mean squared error between predictions and targets."""

    def __init__(self):
        super().__init__()

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.mean((predictions - targets) ** 2)


batch_size = 16384
dim = 16384


def get_inputs():
    return [torch.rand(batch_size, dim), torch.rand(batch_size, dim)]


def get_init_inputs():
    return []
