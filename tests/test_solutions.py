"""Every shipped task has a correct Triton solution, checked under the interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.task import load_task
from tests.conftest import SOLUTIONS, TASKS

PAIRS = [(t, SOLUTIONS / t.relative_to(TASKS)) for t in sorted(TASKS.rglob("*.py"))]
SMALL = EvalConfig(max_elements=1 << 14)


def test_every_task_has_a_solution():
    assert all(solution.is_file() for _, solution in PAIRS)


@pytest.mark.parametrize("task_path, solution", PAIRS, ids=lambda p: p.stem)
def test_solution_passes_the_wall_at_scaled_down_shapes(task_path: Path, solution: Path):
    result = evaluate_candidate(load_task(task_path), solution, SMALL)
    assert result.status == "correct", result.reason
    assert result.backend == "triton" and not result.timed
