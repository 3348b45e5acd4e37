"""End-to-end verdicts in the CPU dry run: Triton under the interpreter, wrong kernels named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.task import load_task
from tests.conftest import CANDIDATES, FIXTURES, SOLUTIONS, TASKS

TINY = FIXTURES / "tasks" / "tiny_relu.py"
SMALL = 1 << 14  # element budget: keeps the Triton interpreter quick


@pytest.fixture(scope="module")
def tiny():
    return load_task(TINY)


def test_correct_triton_candidate_passes_under_the_interpreter(tiny):
    result = evaluate_candidate(tiny, SOLUTIONS / "level1" / "2_ReLU.py", EvalConfig())
    assert result.status == "correct" and result.correct
    assert result.backend == "triton" and result.device == "cpu"
    assert result.stage == "correctness"
    assert not result.timed and result.runtime_ms is None and result.speedup_eager is None
    assert "no GPU" in result.reason
    assert result.max_abs_error == 0.0
    assert {c.name for c in result.checks} >= {"allclose", "inputs_unchanged", "repeat_call"}
    # the kernel was also compiled ahead of time for sm_90, from the launch it made
    (cubin,) = result.cubins
    assert Path(cubin).read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("name, fragment", [
    ("relu_wrong_threshold.py", "values outside tolerance"),
    ("relu_tail_unwritten.py", "NaN/Inf values"),
    ("relu_wrong_dtype.py", "dtype torch.float64 != reference torch.float32"),
    ("relu_stateful.py", "trial 1:"),
])
def test_wrong_candidate_fails_with_a_reason(tiny, name: str, fragment: str):
    result = evaluate_candidate(tiny, CANDIDATES / name, EvalConfig())
    assert (result.status, result.stage, result.correct) == ("incorrect", "correctness", False)
    assert fragment in result.reason


def test_input_mutating_candidate_is_rejected(tiny):
    result = evaluate_candidate(tiny, CANDIDATES / "relu_inplace.py", EvalConfig())
    assert result.status == "incorrect"
    assert "input 0 was modified by the candidate" in result.reason
    assert [c.name for c in result.checks if not c.passed] == ["inputs_unchanged"]


def test_scaled_down_run_says_so():
    task = load_task(TASKS / "level1" / "2_ReLU.py")
    result = evaluate_candidate(task, SOLUTIONS / "level1" / "2_ReLU.py",
                                EvalConfig(max_elements=SMALL))
    assert result.correct
    assert result.scale.startswith("scaled down: batch_size 4096->")
    assert result.notes[0].startswith("checked at scaled-down shapes")


def test_integer_target_loss_is_checked_with_int64_targets():
    task = load_task(TASKS / "level1" / "8_CrossEntropyLoss.py")
    result = evaluate_candidate(task, SOLUTIONS / "level1" / "8_CrossEntropyLoss.py",
                                EvalConfig(max_elements=SMALL))
    # the kernel indexes logits by target; float targets would not even load
    assert result.status == "correct", result.reason


def test_unreadable_candidate_is_a_guard_failure(tiny, tmp_path: Path):
    result = evaluate_candidate(tiny, tmp_path / "missing.py", EvalConfig())
    assert (result.status, result.stage, result.error_class) == ("failed", "guard",
                                                                 "UnreadableCandidate")
