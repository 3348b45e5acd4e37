"""Which node to expand next: MCTS and the baselines it is compared with (DESIGN §7).

All strategies share the Tree and the loop in `loop.py`; they differ only in `select`.
Greedy refines the best node so far; best-of-N samples the root again and again; beam keeps
the `width` best nodes and spreads expansions over them.
"""

from __future__ import annotations

from typing import Protocol

from kernelpro.search.mcts import ROOT, Tree


class Strategy(Protocol):
    name: str

    def select(self, tree: Tree) -> int | None: ...


class MCTS:
    name = "mcts"

    def select(self, tree: Tree) -> int | None:
        return tree.select()


def _open(tree: Tree, nid: int) -> bool:
    return tree.node(nid)["status"] == "open"


class Greedy:
    name = "greedy"

    def select(self, tree: Tree) -> int | None:
        ranked = sorted((n for n in tree.g.nodes if tree.node(n)["correct"] and _open(tree, n)),
                        key=lambda n: (-(tree.node(n)["speedup"] or 0.0), n))
        return ranked[0] if ranked else None


class BestOfN:
    name = "bon"

    def select(self, tree: Tree) -> int | None:
        return ROOT if _open(tree, ROOT) else None


class Beam:
    name = "beam"

    def __init__(self, width: int = 4) -> None:
        self.width = width

    def select(self, tree: Tree) -> int | None:
        ranked = sorted((n for n in tree.g.nodes if tree.node(n)["correct"] and _open(tree, n)),
                        key=lambda n: (-(tree.node(n)["speedup"] or 0.0), n))[: self.width]
        if not ranked:
            return None
        return min(ranked, key=lambda n: (len(tree.children(n)), n))


STRATEGIES = {"mcts": MCTS, "greedy": Greedy, "bon": BestOfN, "beam": Beam}


def make(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
