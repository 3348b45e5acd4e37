"""Run a candidate's ModelNew once at full size on the GPU, for Nsight Compute to profile.

Usage: python tools/run_once.py TASK CANDIDATE   (under `ncu ... python tools/run_once.py ...`)
It is a capture helper for tools/gpu_check.sh, not an evaluator: no checks, no timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from kernelpro.evaluate.correctness import prepare, set_seed
from kernelpro.task import call_get_inputs, import_file, load_task


def main(task_path: str, candidate_path: str) -> None:
    task = load_task(task_path)
    module = import_file(task.path, "kernelpro_ncu_task")
    candidate = import_file(Path(candidate_path).resolve(), "kernelpro_ncu_candidate")
    device, dtype = torch.device("cuda"), getattr(torch, task.dtype)
    set_seed(42)
    model = candidate.ModelNew(*prepare(call_get_inputs(task.path, module, "get_init_inputs"),
                                        device, dtype)).to(device)
    inputs = prepare(call_get_inputs(task.path, module), device, dtype)
    with torch.no_grad():
        model(*inputs)  # compile/warm-up launch
        model(*inputs)  # the launch(es) worth profiling
    torch.cuda.synchronize()


if __name__ == "__main__":
    main(*sys.argv[1:3])
