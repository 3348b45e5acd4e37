"""The process Nsight Compute profiles: build ModelNew at full size, call forward twice.

`python -m kernelpro.profile.ncu_target TASK CANDIDATE`. The first call compiles and warms
up; the second runs inside the NVTX range `kernelpro_profiled`, which the ncu command filters
on, so only the kernels of one steady-state forward are profiled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from kernelpro.evaluate.correctness import prepare, set_seed
from kernelpro.task import KERNELBENCH_SEED, call_get_inputs, import_file, load_task

RANGE = "kernelpro_profiled"


def main(task_path: str, candidate_path: str) -> int:
    task = load_task(task_path)
    module = import_file(task.path, "kernelpro_ncu_task")
    candidate = import_file(Path(candidate_path).resolve(), "kernelpro_ncu_candidate")
    device, dtype = torch.device("cuda"), getattr(torch, task.dtype)
    set_seed(KERNELBENCH_SEED)
    init = prepare(call_get_inputs(task.path, module, "get_init_inputs"), device, dtype)
    set_seed(KERNELBENCH_SEED)
    model = candidate.ModelNew(*init).to(device)
    set_seed(KERNELBENCH_SEED)
    inputs = prepare(call_get_inputs(task.path, module), device, dtype)
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
