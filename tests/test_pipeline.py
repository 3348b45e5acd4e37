"""The optimize loop's pipeline: the next expansion's proposals are requested while this one's
candidates are evaluated, and an expansion's candidates are evaluated together. The proposer
and the evaluation pool here are TEST DOUBLES (a sleeping proposer, a sleeping evaluator) so
the overlap is visible in time; the real ones are exercised in test_optimize.py."""

from __future__ import annotations

import threading
import time

import pytest

from kernelpro.propose.base import Proposal
from kernelpro.search.run import OptimizeConfig, Optimizer
from kernelpro.task import load_task
from kernelpro.types import EvalResult
from tests.conftest import FIXTURES

TINY = FIXTURES / "tasks" / "tiny_relu.py"


def _run(tmp_path, monkeypatch, prefetch: bool) -> list[tuple[str, float, float]]:
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    class SleepingProposer:  # test double: a model call that takes 0.3 s
        name = "fake"

        def propose(self, request, n):
            t0 = time.monotonic()
            time.sleep(0.3)
            with lock:
                spans.append(("propose", t0, time.monotonic()))
            return [Proposal("fake", f"# candidate {t0} {i}\n") for i in range(n)]

    def sleeping_pool(task, paths, cfg, jobs=1):  # test double for evaluate_many
        t0 = time.monotonic()
        time.sleep(0.3)
        with lock:
            spans.append((f"evaluate x{len(paths)} jobs={jobs}", t0, time.monotonic()))
        return [EvalResult(status="correct", stage="correctness", correct=True) for _ in paths]

    monkeypatch.setattr("kernelpro.evaluate.evaluate_many", sleeping_pool)
    cfg = OptimizeConfig(proposer="templates", budget=6, per_expansion=2, jobs=2,
                         prefetch=prefetch)
    opt = Optimizer(load_task(TINY), cfg, tmp_path / ("a" if prefetch else "b"))
    opt.proposer = SleepingProposer()
    summary = opt.run()
    assert summary["evaluated"] == 6
    return spans


def _overlaps(spans) -> int:
    proposals = [(a, b) for kind, a, b in spans if kind == "propose"]
    evals = [(a, b) for kind, a, b in spans if kind.startswith("evaluate")]
    return sum(1 for pa, pb in proposals for ea, eb in evals if pa < eb and ea < pb)


def test_prefetch_overlaps_model_calls_with_evaluation(tmp_path, monkeypatch):
    spans = _run(tmp_path, monkeypatch, prefetch=True)
    assert _overlaps(spans) >= 2  # proposals 2 and 3 ran during evaluations 1 and 2
    assert all("x2 jobs=2" in k for k, _, _ in spans if k.startswith("evaluate"))


def test_without_prefetch_nothing_overlaps(tmp_path, monkeypatch):
    assert _overlaps(_run(tmp_path, monkeypatch, prefetch=False)) == 0


@pytest.mark.parametrize("jobs", [0, -1])
def test_jobs_must_be_positive(jobs, tmp_path):
    from tests.test_cli import kernelpro

    proc = kernelpro("optimize", str(TINY), "--jobs", str(jobs), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "--jobs" in proc.stderr
