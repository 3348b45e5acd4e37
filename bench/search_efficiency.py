"""MCTS vs greedy vs best-of-N vs beam at equal evaluation budgets, on synthetic landscapes.

The landscapes (kernelpro/search/landscape.py) have tree structure: children near their
parent's quality, rare big wins deep in the tree, failures. Prints, per budget, the mean
fraction of each landscape's best speedup that a strategy found (and its standard error).
Every strategy sees the same landscapes. CPU only; no kernel is compiled.

    python bench/search_efficiency.py [--landscapes 60] [--budgets 25,50,100,200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from kernelpro.search.landscape import Landscape
from kernelpro.search.loop import run_search
from kernelpro.search.mcts import Tree
from kernelpro.search.strategies import STRATEGIES, make


def best_fraction(strategy: str, seed: int, budget: int) -> float:
    land = Landscape(seed)
    tree = Tree()
    ids = {0: 0}
    run_search(tree, make(strategy), lambda p, n: land.next_children(ids[p], n), land.evaluate,
               budget, on_node=lambda nid, parent, cand: ids.__setitem__(nid, cand))
    return tree.node(tree.best())["speedup"] / land.best_speedup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landscapes", type=int, default=60)
    ap.add_argument("--budgets", default="25,50,100,200")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    t0 = time.time()
    table = Table(title=f"fraction of the landscape's best speedup found "
                        f"(mean ± s.e. over {args.landscapes} landscapes)")
    table.add_column("budget", justify="right")
    for name in STRATEGIES:
        table.add_column(name, justify="right")
    for budget in budgets:
        row = [str(budget)]
        for name in STRATEGIES:
            fr = np.array([best_fraction(name, s, budget) for s in range(args.landscapes)])
            row.append(f"{fr.mean():.3f} ± {fr.std(ddof=1) / np.sqrt(fr.size):.3f}")
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    console.print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
