"""Choosing among correct candidates (DESIGN §8): oracle, random, confidence, surprisal,
surprisal-top-k; and which correct siblings the search times and profiles (`--select`).

Surprisal is -sum(log p) of the completion's tokens (the paper's signal: the kernels a model
was least sure of are more often the fast ones). Ties are broken by candidate id, always.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

SELECTORS = ("oracle", "random", "confidence", "surprisal", "surprisal-top-k")


@dataclass(frozen=True)
class Scored:
    id: int
    speedup: float | None = None  # known only after timing
    surprisal: float | None = None  # None without logprobs


def pick(cands: Sequence[Scored], strategy: str, k: int = 3, seed: int = 0) -> Scored | None:
    """One candidate by a strategy; oracle and surprisal-top-k read speedups."""
    if not cands:
        return None
    by_id = sorted(cands, key=lambda c: c.id)
    if strategy == "oracle":
        return max(by_id, key=lambda c: (c.speedup or 0.0, -c.id))
    if strategy == "random":
        return random.Random(seed).choice(by_id)
    scored = [c for c in by_id if c.surprisal is not None]
    if not scored:
        return None
    if strategy == "confidence":
        return min(scored, key=lambda c: (c.surprisal, c.id))
    if strategy == "surprisal":
        return max(scored, key=lambda c: (c.surprisal, -c.id))
    if strategy == "surprisal-top-k":
        top = sorted(scored, key=lambda c: (-c.surprisal, c.id))[:k]
        return max(top, key=lambda c: (c.speedup or 0.0, -c.id))
    raise ValueError(f"unknown selection strategy {strategy!r}; choose from "
                     + ", ".join(SELECTORS))


def to_time(cands: Sequence[Scored], select: str = "surprisal-top-m",
            m: int = 2) -> tuple[list[Scored], str | None]:
    """Which correct siblings become nodes (timed, profiled); a note when falling back."""
    by_id = sorted(cands, key=lambda c: c.id)
    if select == "all" or len(by_id) <= m:
        return by_id, None
    if select == "surprisal-top-m":
        if any(c.surprisal is None for c in by_id):
            return by_id, ("no logprobs for these candidates: timing all correct ones instead "
                           "of the surprisal top-m")
        return sorted(by_id, key=lambda c: (-c.surprisal, c.id))[:m], None
    if select == "confidence-top-m":
        if any(c.surprisal is None for c in by_id):
            return by_id, "no logprobs: timing all correct ones"
        return sorted(by_id, key=lambda c: (c.surprisal, c.id))[:m], None
    if select == "random-m":
        return sorted(random.Random(0).sample(by_id, m), key=lambda c: c.id), None
    raise ValueError(f"unknown --select {select!r}; choose surprisal-top-m, confidence-top-m, "
                     "random-m or all")
