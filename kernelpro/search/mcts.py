"""The search tree and MCTS over whole kernels (DESIGN §7).

Nodes are candidates; the root is the reference (speedup 1, reward 0). A correct node's reward
is log(speedup) clipped to a band; a failed one gets a fixed reward below the band and is never
expanded (the correctness wall). Selection descends by UCT over mean values; a node may take a
new child while it has fewer than ceil(k * visits^a) children (progressive widening), plus
extra slots when it beat its parent; a node whose last d children all failed or did not improve
on it is a dead end. Virtual loss lets several expansions be in flight at once. The tree is a
networkx DiGraph, exportable as GraphML or JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

ROOT = 0


@dataclass(frozen=True)
class MCTSConfig:
    # Defaults tuned on bench/search_efficiency.py's synthetic landscapes (see its results).
    c_uct: float = 0.2  # exploration weight, on the log-speedup scale of the rewards
    band: tuple[float, float] = (-0.4, 2.5)  # clip of log(speedup): 0.67x .. 12x
    failure_reward: float = -0.5  # below every correct node
    widen_k: float = 1.0  # children allowed: ceil(k * visits^a)
    widen_a: float = 0.5
    win_slots: int = 2  # extra children for a node that beat its parent
    dead_after: int = 8  # d: last d children all failed or did not improve -> dead end
    virtual_loss: float = 1.0  # reward subtracted per expansion in flight


def reward(correct: bool, speedup: float | None, cfg: MCTSConfig) -> float:
    if not correct or speedup is None or speedup <= 0:
        return cfg.failure_reward
    lo, hi = cfg.band
    return min(max(math.log(speedup), lo), hi)


class Tree:
    """Nodes carry: correct, speedup, reward, visits, value, pending, status, parent, data."""

    def __init__(self, cfg: MCTSConfig | None = None) -> None:
        self.cfg = cfg or MCTSConfig()
        self.g = nx.DiGraph()
        self.g.add_node(ROOT, correct=True, speedup=1.0, reward=0.0, visits=1, value=0.0,
                        pending=0, status="open", data={})
        self._next = 1

    # --- structure --------------------------------------------------------------------------

    def node(self, nid: int) -> dict[str, Any]:
        return self.g.nodes[nid]

    def children(self, nid: int) -> list[int]:
        return sorted(self.g.successors(nid))

    def parent(self, nid: int) -> int | None:
        preds = list(self.g.predecessors(nid))
        return preds[0] if preds else None

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def add(self, parent: int, correct: bool, speedup: float | None,
            data: dict[str, Any] | None = None, nid: int | None = None) -> int:
        """Add an evaluated child and back its reward up to the root."""
        if nid is None:
            nid = self._next
        self._next = max(self._next, nid + 1)
        r = reward(correct, speedup, self.cfg)
        self.g.add_node(nid, correct=correct, speedup=speedup if correct else None, reward=r,
                        visits=0, value=0.0, pending=0,
                        status="open" if correct else "failed", data=data or {})
        self.g.add_edge(parent, nid)
        self._backprop(nid, r)
        self._update_dead(parent)
        return nid

    def _backprop(self, nid: int | None, r: float) -> None:
        while nid is not None:
            n = self.node(nid)
            n["visits"] += 1
            n["value"] += r
            nid = self.parent(nid)

    def _update_dead(self, nid: int) -> None:
        n = self.node(nid)
        kids = self.children(nid)
        d = self.cfg.dead_after
        if nid == ROOT or len(kids) < d:
            return
        last = [self.node(k) for k in kids[-d:]]
        if all(not k["correct"] or k["reward"] <= n["reward"] for k in last):
            n["status"] = "dead"

    # --- selection --------------------------------------------------------------------------

    def allowed_children(self, nid: int) -> int:
        n = self.node(nid)
        slots = math.ceil(self.cfg.widen_k * max(n["visits"], 1) ** self.cfg.widen_a)
        parent = self.parent(nid)
        if parent is not None and n["correct"] and n["reward"] > self.node(parent)["reward"]:
            slots += self.cfg.win_slots
        return slots

    def expandable(self, nid: int) -> bool:
        n = self.node(nid)
        return n["status"] == "open" and (len(self.children(nid)) + n["pending"]
                                          < self.allowed_children(nid))

    def mean(self, nid: int) -> float:
        n = self.node(nid)
        visits = n["visits"] + n["pending"]
        return (n["value"] - self.cfg.virtual_loss * n["pending"]) / max(visits, 1)

    def uct(self, parent: int, child: int) -> float:
        pv = self.node(parent)["visits"] + self.node(parent)["pending"]
        cv = self.node(child)["visits"] + self.node(child)["pending"]
        return self.mean(child) + self.cfg.c_uct * math.sqrt(math.log(max(pv, 1)) / max(cv, 1))

    def select(self) -> int | None:
        """The node to expand next (None when every branch is dead or failed)."""
        nid = ROOT
        path = [ROOT]
        while True:
            if self.expandable(nid):
                return nid
            options = [c for c in self.children(nid) if self.node(c)["status"] == "open"
                       and self._has_open(c)]
            if not options:
                if nid == ROOT:
                    return ROOT if self.node(ROOT)["status"] == "open" else None
                self.node(nid)["status"] = "dead" if self.node(nid)["correct"] else "failed"
                nid, path = ROOT, [ROOT]
                continue
            nid = max(options, key=lambda c: (self.uct(path[-1], c), -c))
            path.append(nid)

    def _has_open(self, nid: int) -> bool:
        if self.expandable(nid):
            return True
        return any(self.node(c)["status"] == "open" and self._has_open(c)
                   for c in self.children(nid))

    def begin(self, nid: int, count: int = 1) -> None:
        """Mark expansions in flight below nid (virtual loss along the path)."""
        while nid is not None:
            self.node(nid)["pending"] += count
            nid = self.parent(nid)

    def end(self, nid: int, count: int = 1) -> None:
        while nid is not None:
            self.node(nid)["pending"] = max(0, self.node(nid)["pending"] - count)
            nid = self.parent(nid)

    # --- results and export -----------------------------------------------------------------

    def best(self) -> int:
        correct = [n for n in self.g.nodes if self.node(n)["correct"]]
        return max(correct, key=lambda n: (self.node(n)["speedup"] or 0.0, -n))

    def to_json(self) -> dict[str, Any]:
        return {"config": self.cfg.__dict__ | {"band": list(self.cfg.band)},
                "nodes": [{"id": n, **{k: v for k, v in self.node(n).items() if k != "data"},
                           "data": _plain(self.node(n)["data"])} for n in sorted(self.g.nodes)],
                "edges": [list(e) for e in self.g.edges]}

    def export(self, path: Path) -> None:
        """GraphML for `.graphml`, JSON otherwise."""
        if path.suffix == ".graphml":
            g = nx.DiGraph()
            for n in self.g.nodes:
                attrs = {k: v for k, v in self.node(n).items() if k != "data"}
                g.add_node(n, **{k: ("" if v is None else v) for k, v in attrs.items()})
            g.add_edges_from(self.g.edges)
            nx.write_graphml(g, path)
        else:
            path.write_text(json.dumps(self.to_json(), indent=1))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool | type(None))}
