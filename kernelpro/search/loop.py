"""The search loop on any proposer and evaluator: select, propose, evaluate, add, repeat.

`propose(parent_id, n)` returns up to n candidates (any objects) for a parent; `evaluate`
turns one into (correct, speedup, data). A parent that yields no candidates is exhausted and
marked dead. `on_node` is called after every evaluated node (the run store writes there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernelpro.search.mcts import Tree
from kernelpro.search.strategies import Strategy

Propose = Callable[[int, int], list[Any]]
Evaluate = Callable[[Any], tuple[bool, float | None, dict[str, Any]]]


def run_search(tree: Tree, strategy: Strategy, propose: Propose, evaluate: Evaluate,
               budget: int, per_expansion: int = 1,
               on_node: Callable[[int, int, Any], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> Tree:
    """Evaluate up to `budget` candidates (counting those already in the tree)."""
    evaluated = len(tree) - 1
    while evaluated < budget and not should_stop():
        parent = strategy.select(tree)
        if parent is None:
            break
        n = min(per_expansion, budget - evaluated)
        tree.begin(parent, n)
        try:
            candidates = propose(parent, n)
        finally:
            tree.end(parent, n)
        if not candidates:
            tree.node(parent)["status"] = "dead"
            continue
        for cand in candidates:
            correct, speedup, data = evaluate(cand)
            nid = tree.add(parent, correct, speedup, data)
            evaluated += 1
            if on_node is not None:
                on_node(nid, parent, cand)
            if evaluated >= budget or should_stop():
                break
    return tree
