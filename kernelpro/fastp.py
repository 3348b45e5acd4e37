"""fast_p and geometric-mean speedup over a suite's task outcomes (KernelBench's metrics).

fast_p = fraction of tasks whose best kernel is correct AND faster than p times the baseline
(speedup > p); fast_0 is the correctness rate. The geometric mean is over correct, timed tasks.
A task that is correct but untimed (dry run) leaves fast_p for p > 0 unknown: it is reported
as None, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import gmean

FAST_P = (0.0, 0.5, 0.8, 1.0, 1.5, 2.0)
BASELINES = ("eager", "compile")


@dataclass(frozen=True)
class Outcome:
    """One task's result in a bench: its best kernel against each baseline."""

    key: str
    level: int | None
    category: str
    correct: bool
    speedup_eager: float | None = None
    speedup_compile: float | None = None

    def speedup(self, baseline: str) -> float | None:
        return self.speedup_eager if baseline == "eager" else self.speedup_compile


@dataclass(frozen=True)
class FastRow:
    group: str  # "all", "level1", "matmul", ...
    tasks: int
    correct: int
    timed: int  # correct tasks with a speedup against this baseline
    fast: dict[float, float | None]  # p -> fraction of `tasks`
    geomean: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "tasks": self.tasks, "correct": self.correct,
                "timed": self.timed, "geomean": self.geomean,
                **{f"fast_{p:g}": v for p, v in self.fast.items()}}


def fast_row(group: str, outcomes: Sequence[Outcome], baseline: str,
             ps: Iterable[float] = FAST_P) -> FastRow:
    n = len(outcomes)
    correct = [o for o in outcomes if o.correct]
    speedups = [s for o in correct if (s := o.speedup(baseline)) is not None]
    all_timed = len(speedups) == len(correct)
    fast: dict[float, float | None] = {}
    for p in ps:
        if n == 0:
            fast[p] = None
        elif p == 0:
            fast[p] = len(correct) / n
        else:
            fast[p] = sum(s > p for s in speedups) / n if all_timed else None
    geo = float(gmean(speedups)) if speedups and all(s > 0 for s in speedups) else None
    return FastRow(group, n, len(correct), len(speedups), fast, geo)


def fast_table(outcomes: Sequence[Outcome], baseline: str) -> list[FastRow]:
    """Rows for all tasks, then each level, then each op category (present ones only)."""
    rows = [fast_row("all", outcomes, baseline)]
    for level in sorted({o.level for o in outcomes if o.level is not None}):
        rows.append(fast_row(f"level{level}", [o for o in outcomes if o.level == level],
                             baseline))
    for cat in sorted({o.category for o in outcomes}):
        rows.append(fast_row(cat, [o for o in outcomes if o.category == cat], baseline))
    return rows
