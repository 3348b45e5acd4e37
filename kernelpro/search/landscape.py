"""Synthetic search landscapes with tree structure, for tests and bench/search_efficiency.py.

A deterministic evaluator named as such: no kernel is compiled. Each node's log-speedup is its
parent's plus a small step (children are near their parent's quality) and, rarely, a big jump,
so the best kernels sit deep in the tree below good parents. Some children fail. The whole
landscape is generated up front (numpy, seeded), so its best node is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandscapeConfig:
    root_children: int = 48
    children: int = 8
    depth: int = 4
    step_mean: float = -0.04
    step_std: float = 0.12
    jump_p: float = 0.04
    jump_size: float = 0.45
    fail_p: float = 0.3


class Landscape:
    def __init__(self, seed: int, cfg: LandscapeConfig | None = None) -> None:
        self.cfg = cfg = cfg or LandscapeConfig()
        rng = np.random.default_rng(seed)
        q = [np.zeros(1)]
        ok = [np.ones(1, dtype=bool)]
        first_child: list[np.ndarray] = []
        offset = 1
        for level in range(cfg.depth):
            width = cfg.root_children if level == 0 else cfg.children
            parents = len(q[-1])
            first_child.append(offset + np.arange(parents) * width)
            pq = np.repeat(q[-1], width)
            step = rng.normal(cfg.step_mean, cfg.step_std, pq.size)
            step += (rng.random(pq.size) < cfg.jump_p) * cfg.jump_size
            q.append(pq + step)
            ok.append(np.repeat(ok[-1], width) & (rng.random(pq.size) >= cfg.fail_p))
            offset += pq.size
        self.quality = np.concatenate(q)
        self.correct = np.concatenate(ok)
        self._level_start = np.cumsum([0] + [len(x) for x in q])
        self._first_child = first_child
        self._width = [cfg.root_children] + [cfg.children] * (cfg.depth - 1)
        self._served: dict[int, int] = {}

    def speedup(self, node: int) -> float:
        return float(np.exp(self.quality[node]))

    @property
    def best_speedup(self) -> float:
        return float(np.exp(self.quality[self.correct].max()))

    def _level(self, node: int) -> int:
        return int(np.searchsorted(self._level_start, node, side="right") - 1)

    def next_children(self, node: int, n: int) -> list[int]:
        """The next n children of a node not proposed yet (a proposer's fresh samples)."""
        level = self._level(node)
        if level >= self.cfg.depth or not self.correct[node]:
            return []
        start = int(self._first_child[level][node - self._level_start[level]])
        used = self._served.get(node, 0)
        take = list(range(start + used, start + min(used + n, self._width[level])))
        self._served[node] = used + len(take)
        return take

    def evaluate(self, node: int) -> tuple[bool, float | None, dict]:
        ok = bool(self.correct[node])
        return ok, (self.speedup(node) if ok else None), {"landscape_node": node}
