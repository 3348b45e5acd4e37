"""Nsight Compute: a fixed metric list, the command that collects it, and its CSV parsed.

ncu and the candidate run inside the evaluator's OS sandbox (`python -m
kernelpro.profile.ncu_target INPUTS CANDIDATE`: scrubbed environment, no task file, no
network), profiling the second call of forward so compilation is not measured. We ask for
`--csv --page raw` with an explicit metric list rather than `--set full`: it is one pass-set,
a few times faster, and every tool below knows which of these it reads. Counter-permission errors
(ERR_NVGPUCTRPERM) are detected once and reported; the profiler then falls back to the
timing-only and static tiers.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

# ~45 metrics: throughput, occupancy and its limiters, resources, caches, coalescing,
# warp stalls, pipes, instruction mix, launch statistics.
STALL_REASONS = ("long_scoreboard", "short_scoreboard", "barrier", "membar", "mio_throttle",
                 "lg_throttle", "math_pipe_throttle", "wait", "not_selected", "selected",
                 "branch_resolving", "dispatch_stall", "no_instruction", "tex_throttle",
                 "drain", "imc_miss", "sleeping")
STALL_METRICS = tuple(f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio"
                      for r in STALL_REASONS)
METRICS: tuple[str, ...] = (
    "gpu__time_duration.sum",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "sm__maximum_warps_per_active_cycle_pct",
    "launch__occupancy_limit_registers",
    "launch__occupancy_limit_shared_mem",
    "launch__occupancy_limit_blocks",
    "launch__occupancy_limit_warps",
    "launch__registers_per_thread",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
    "launch__grid_size",
    "launch__block_size",
    "launch__waves_per_multiprocessor",
    "lts__t_sector_hit_rate.pct",
    "l1tex__t_sector_hit_rate.pct",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.pct",
    "smsp__sass_average_data_bytes_per_sector_mem_global_op_st.pct",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active",
    "smsp__inst_executed.sum",
    "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "smsp__sass_thread_inst_executed_op_fp64_pred_on.sum",
    "smsp__sass_average_branch_targets_threads_uniform.pct",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
    *STALL_METRICS,
)

COUNTER_PERMISSION = re.compile(r"ERR_NVGPUCTRPERM|permission to access NVIDIA GPU Performance "
                                r"Counters", re.IGNORECASE)


class NcuUnavailable(Exception):
    """ncu cannot give counters here (not installed, no permission, failed); says why."""


# A missing counter permission does not change within a process: detect it once.
_PERMISSION_FAILURE: list[str] = []


@dataclass
class KernelMetrics:
    """One profiled kernel launch: its name and metric values (units as ncu reports them)."""

    name: str
    values: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def get(self, metric: str, default: float | None = None) -> float | None:
        return self.values.get(metric, default)

    def stalls(self) -> dict[str, float]:
        """Warp stall reasons -> warps stalled per issue cycle, largest first."""
        out = {r: self.values[f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio"]
               for r in STALL_REASONS
               if f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio" in self.values}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": self.values, "units": self.units}


def ncu_command(ncu: str, python: str, inputs: str, candidate: str,
                metrics: tuple[str, ...] = METRICS) -> list[str]:
    """The ncu invocation: every kernel of the second forward call, raw page, as CSV."""
    return [ncu, "--csv", "--page", "raw", "--metrics", ",".join(metrics),
            "--target-processes", "all", "--nvtx", "--nvtx-include", "kernelpro_profiled/",
            python, "-m", "kernelpro.profile.ncu_target", inputs, candidate]


def counter_error(output: str) -> str | None:
    """The one-line reason when ncu could not read counters, else None."""
    if COUNTER_PERMISSION.search(output):
        return ("ncu has no permission to read GPU performance counters (ERR_NVGPUCTRPERM): "
                "run as root or set the driver option NVreg_RestrictProfilingToAdminUsers=0; "
                "falling back to the timing-only and static tiers")
    if "==ERROR==" in output:
        line = next(ln for ln in output.splitlines() if "==ERROR==" in ln)
        return f"ncu failed: {line.strip()[:200]}"
    return None


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    if text in ("", "n/a", "N/A"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_raw_csv(text: str) -> list[KernelMetrics]:
    """ncu `--csv --page raw` output: a header row, a units row, one row per kernel launch.

    ncu prints its own `==PROF==` lines around the table; they are skipped.
    """
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    if len(lines) < 2:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, units = rows[0], rows[1]
    name_col = header.index("Kernel Name") if "Kernel Name" in header else None
    kernels = []
    for row in rows[2:]:
        if len(row) != len(header):
            continue
        km = KernelMetrics(row[name_col] if name_col is not None else "?")
        for col, (metric, unit) in enumerate(zip(header, units, strict=True)):
            if "__" not in metric:
                continue  # ID, process, device, kernel name...
            value = _number(row[col])
            if value is not None:
                km.values[metric] = value
                km.units[metric] = unit
        kernels.append(km)
    return kernels


def dominant(kernels: list[KernelMetrics]) -> KernelMetrics | None:
    """The kernel that took longest (where optimisation pays)."""
    timed = [k for k in kernels if k.get("gpu__time_duration.sum") is not None]
    if not timed:
        return kernels[0] if kernels else None
    return max(timed, key=lambda k: k.values["gpu__time_duration.sum"])


def run_ncu(task_path: str, candidate_path: str, timeout_s: float = 600.0
            ) -> list[KernelMetrics]:
    """Profile one steady-state forward of the candidate; NcuUnavailable says why not.

    ncu and the candidate run inside the OS sandbox, like any runner: the inputs are made
    here from the task and handed in as safetensors, the task file itself stays outside.
    What ncu prints is the candidate's process's to forge, so it feeds the diagnosis only,
    never a verdict.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from kernelpro.evaluate import sandbox
    from kernelpro.evaluate.process import die_with_parent, runner_env
    from kernelpro.toolchain import find_tool

    if _PERMISSION_FAILURE:
        raise NcuUnavailable(_PERMISSION_FAILURE[0] + " (detected earlier in this run)")
    tool = find_tool("ncu")
    if tool is None:
        raise NcuUnavailable("ncu (Nsight Compute) not found; install it or put it on PATH")
    mech = sandbox.detect()
    with tempfile.TemporaryDirectory(prefix="kernelpro-ncu-") as work:
        inputs = Path(work) / "inputs.json"
        inputs.write_text(json.dumps(ncu_inputs(Path(task_path))))
        cand = Path(work) / "candidate.py"
        shutil.copyfile(candidate_path, cand)
        for f in (inputs, cand):
            f.chmod(0o644)
        ncu_root = str(Path(os.path.realpath(tool.path)).parent)
        scratch = sandbox.SCRATCH if mech.sandboxed else work
        files = ((str(inputs), f"{scratch}/inputs.json"), (str(cand), f"{scratch}/candidate.py"))
        layout = sandbox.Layout(tuple(sandbox.default_ro_paths([ncu_root])),
                                files=files if mech.sandboxed else (), gpu=True,
                                hidden=(str(Path(task_path).resolve()),))
        import kernelpro

        env = runner_env(scratch, True, str(Path(kernelpro.__file__).resolve().parents[1]),
                         None)
        argv = sandbox.wrap(mech, layout, ncu_command(str(tool.path), sys.executable,
                                                      f"{scratch}/inputs.json",
                                                      f"{scratch}/candidate.py"),
                            Path(work) / "sandbox-root")
        try:
            proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=timeout_s, preexec_fn=die_with_parent,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise NcuUnavailable(f"ncu took more than {timeout_s:.0f} s") from None
    problem = counter_error(proc.stdout + proc.stderr)
    if problem and "ERR_NVGPUCTRPERM" in problem:
        _PERMISSION_FAILURE.append(problem)
    kernels = parse_raw_csv(proc.stdout)
    if problem or not kernels:
        raise NcuUnavailable(problem or f"ncu produced no metrics (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-200:]}")
    return kernels


def ncu_inputs(task_path: Any) -> dict[str, Any]:
    """The constructor's and forward's inputs of a task at full size, as plain data (the
    channel's value trees, tensors base64 safetensors) for the profiled process."""
    import base64

    from kernelpro.evaluate import channel
    from kernelpro.evaluate.correctness import set_seed
    from kernelpro.task import KERNELBENCH_SEED, call_get_inputs, import_file, load_task

    task = load_task(task_path)
    module = import_file(task.path, "kernelpro_ncu_task")
    set_seed(KERNELBENCH_SEED)
    init = call_get_inputs(task.path, module, "get_init_inputs")
    set_seed(KERNELBENCH_SEED)
    inputs = call_get_inputs(task.path, module)
    tree, tensors = channel.pack([init, inputs])
    return {"dtype": task.dtype, "tree": tree,
            "tensors": base64.b64encode(channel.encode_tensors(tensors)).decode()}
