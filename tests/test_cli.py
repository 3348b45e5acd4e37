"""The `kernelpro` command as a user runs it: a real subprocess, real output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CANDIDATES, FIXTURES, ROOT, SOLUTIONS

TINY = FIXTURES / "tasks" / "tiny_relu.py"
JSON_KEYS = {"correct", "stage", "reason", "max_abs_error", "timed", "runtime_ms",
             "speedup_eager", "speedup_compile"}


def kernelpro(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernelpro.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    out = kernelpro("--help").stdout
    for command in ["eval", "doctor", "lint-task", "optimize", "profile", "bench", "study",
                    "report"]:
        assert command in out
    assert "not built yet" not in out


def test_eval_json_verdict_for_a_correct_triton_candidate():
    proc = kernelpro("eval", str(TINY), str(SOLUTIONS / "level1" / "2_ReLU.py"), "--json")
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict.keys() >= JSON_KEYS
    assert verdict["correct"] is True and verdict["timed"] is False
    assert verdict["runtime_ms"] is None and verdict["speedup_eager"] is None
    assert verdict["speedup_compile"] is None


def test_eval_exit_code_1_and_reason_for_a_wrong_candidate():
    proc = kernelpro("eval", str(TINY), str(CANDIDATES / "relu_wrong_threshold.py"))
    assert proc.returncode == 1
    assert "INCORRECT" in proc.stdout and "values outside tolerance" in proc.stdout


def test_eval_human_output_names_the_shapes_and_that_nothing_was_timed():
    proc = kernelpro("eval", "tasks/level1/2_ReLU.py", str(SOLUTIONS / "level1" / "2_ReLU.py"),
                     "--max-elements", "16384")
    assert proc.returncode == 0, proc.stderr
    assert "CORRECT" in proc.stdout and "scaled down" in proc.stdout
    assert "not timed" in proc.stdout


def test_eval_bad_task_is_one_line_and_exit_2(tmp_path: Path):
    bad = tmp_path / "1_Bad.py"
    bad.write_text("import torch\ndef get_inputs():\n    return []\n")
    proc = kernelpro("eval", str(bad), str(SOLUTIONS / "level1" / "2_ReLU.py"), "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert str(bad) in proc.stderr and "no `class Model`" in proc.stderr
    assert "error" in json.loads(proc.stdout)


def test_eval_missing_candidate_and_bad_arch_are_rejected_up_front():
    proc = kernelpro("eval", str(TINY), "nope.py")
    assert proc.returncode == 2 and "no such candidate file" in proc.stderr
    proc = kernelpro("eval", str(TINY), str(SOLUTIONS / "level1" / "2_ReLU.py"), "--arch", "x")
    assert proc.returncode == 2 and "write it like sm_90" in proc.stderr


def test_doctor_reports_each_component():
    proc = kernelpro("doctor", "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    for key in ("gpu", "driver", "nvcc", "cuobjdump", "nvdisasm", "ninja", "triton", "ncu",
                "ncu counters"):
        assert key in report


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("kernelpro")
    if exe is None:  # running from a checkout with PYTHONPATH=. only
        return
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).returncode == 0


def test_profile_static_json_has_kernels_and_findings():
    proc = kernelpro("profile", "tasks/level1/1_Square_matmul.py",
                     str(SOLUTIONS / "level1" / "1_Square_matmul.py"), "--static", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (k,) = report["kernels"]
    assert k["name"] == "matmul_kernel" and k["registers"] > 0
    assert {"shared_bytes", "spill_bytes", "occupancy", "histogram"} <= k.keys()
    assert "TensorCore" in {f["tool"] for f in report["findings"]}
    assert all(f["recommendations"] for f in report["findings"])


def test_profile_static_needs_a_candidate():
    proc = kernelpro("profile", "tasks/level1/2_ReLU.py", "--static")
    assert proc.returncode == 2 and "--static needs a CANDIDATE" in proc.stderr
