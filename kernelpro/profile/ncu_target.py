"""The process Nsight Compute profiles: build ModelNew at full size, call forward twice.

`python -m kernelpro.profile.ncu_target INPUTS.json CANDIDATE`, inside the sandbox. INPUTS
holds the constructor's and forward's inputs (made from the task outside the sandbox; the
task file is not here). The first call compiles and warms up; the second runs inside the NVTX
range `kernelpro_profiled`, which the ncu command filters on, so only the kernels of one
steady-state forward are profiled.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import torch

from kernelpro.evaluate import channel
from kernelpro.evaluate.correctness import prepare, set_seed
from kernelpro.task import KERNELBENCH_SEED, import_file

RANGE = "kernelpro_profiled"


def main(inputs_path: str, candidate_path: str) -> int:
    data = json.loads(Path(inputs_path).read_text())
    tensors = channel.decode_tensors(base64.b64decode(data["tensors"]))
    init, inputs = channel.unpack(data["tree"], tensors)
    candidate = import_file(Path(candidate_path).resolve(), "kernelpro_ncu_candidate")
    device, dtype = torch.device("cuda"), getattr(torch, data["dtype"])
    set_seed(KERNELBENCH_SEED)
    model = candidate.ModelNew(*prepare(init, device, dtype)).to(device)
    inputs = prepare(inputs, device, dtype)
    with torch.no_grad():
        model(*inputs)
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push(RANGE)
        model(*inputs)
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_pop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
