"""The isolated worker: every fault kind becomes a verdict, and evaluation goes on after it.

Fault candidates run with the AST guard off (`guard=False`): the guard would stop most of
them before they run, and these tests are about the isolation that must hold when a candidate
slips past it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.evaluate.worker import WorkerLimits
from kernelpro.task import load_task
from tests.conftest import CANDIDATES, FIXTURES, SOLUTIONS

TINY = FIXTURES / "tasks" / "tiny_relu.py"
LIMITS = WorkerLimits(compile_timeout_s=10, run_timeout_s=10, memory_bytes=2 << 30)
UNGUARDED = EvalConfig(guard=False, limits=LIMITS)


@pytest.fixture(scope="module")
def tiny():
    return load_task(TINY)


def evaluate(task, name: str, cfg: EvalConfig = UNGUARDED):
    return evaluate_candidate(task, CANDIDATES / name, cfg)


@pytest.mark.parametrize("name, stage, error_class, words", [
    ("fault_segfault.py", "correctness", "Signal", "SIGSEGV during correctness"),
    ("fault_abort.py", "correctness", "Signal", "SIGABRT during correctness"),
    ("fault_exit.py", "correctness", "Exited", "exited with code 0 during correctness"),
    ("fault_hang_forward.py", "correctness", "Timeout",
     "exceeded the time limit of 10 s during correctness"),
    ("fault_hang_import.py", "compile", "Timeout",
     "importing the candidate exceeded the time limit of 10 s"),
    ("fault_memory.py", "correctness", "OutOfMemory", ""),
    ("fault_raise.py", "correctness", "ValueError",
     "ValueError: kernel launch configuration invalid (candidate.py:7)"),
    ("fault_raise_import.py", "compile", "RuntimeError", "extension build failed"),
])
def test_fault_is_reported_with_stage_and_reason(tiny, name, stage, error_class, words):
    result = evaluate(tiny, name)
    assert (result.status, result.stage, result.error_class) == ("failed", stage, error_class), \
        result.reason
    assert words in result.reason
    assert "\n" not in result.reason


def test_evaluation_goes_on_normally_after_faults(tiny):
    for name in ("fault_segfault.py", "fault_exit.py", "fault_raise.py"):
        assert evaluate(tiny, name).status == "failed"
    # Generous limits here: the point is that the faults left nothing behind, and a loaded
    # CI machine runs the whole wall (with its probes) slowly.
    roomy = EvalConfig(guard=False, limits=WorkerLimits(compile_timeout_s=120,
                                                        run_timeout_s=120))
    result = evaluate_candidate(tiny, SOLUTIONS / "level1" / "2_ReLU.py", roomy)
    assert result.status == "correct" and result.correct, result.reason


def test_worker_never_sees_api_keys_or_user_variables(tiny, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("MY_PRIVATE_TOKEN", "hunter2")
    result = evaluate(tiny, "leak_env.py")
    assert result.status == "failed" and "ENV=" in result.reason
    dumped = repr(result.to_dict())
    assert "sk-test-secret-123" not in dumped and "hunter2" not in dumped
    assert "OPENAI_API_KEY" not in dumped and "MY_PRIVATE_TOKEN" not in dumped
    assert str(Path.home()) not in result.reason.split("'HOME', ")[1][:60]  # HOME is the tmpdir


def test_worker_temp_directory_is_removed_afterwards(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    evaluate(tiny, "fault_segfault.py")
    assert list(tmp_path.glob("kernelpro-eval-*")) == []


def test_guard_stops_a_faulty_candidate_before_it_runs(tiny):
    result = evaluate(tiny, "fault_segfault.py", EvalConfig(limits=LIMITS))
    assert (result.status, result.stage, result.error_class) == ("failed", "guard",
                                                                 "GuardViolation")
    assert "imports `ctypes`" in result.reason and result.wall_s == 0.0


def test_parent_process_environment_is_untouched(tiny):
    before = dict(os.environ)
    evaluate(tiny, "fault_exit.py")
    assert dict(os.environ) == before
