import torch
import torch.nn as nn

# kernelpro-lint: trivial-output, closed-form, input-insensitive -- kept on purpose: this is
# KernelBench's 23_Softmax as shipped (torch.rand rows of 393216), where every probability is
# under 1e-4, so all zeros (or any guess) passes allclose. kernelpro's relative-error check
# rejects such outputs; the exploit corpus (tests/exploits) uses this task to show it.


class Model(nn.Module):
    """Softmax over the last dimension of very wide rows of uniform inputs."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


batch_size = 4096
dim = 393216


def get_inputs():
    x = torch.rand(batch_size, dim)
    return [x]


def get_init_inputs():
    return []
