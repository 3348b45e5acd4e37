"""The search core on deterministic synthetic evaluators (named as such: no kernel compiles):
the tree and MCTS's rules, the baseline strategies, selection, memory, the energy objective.
`kernelpro optimize` end to end is in tests/test_optimize.py."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest

from kernelpro.search.landscape import Landscape
from kernelpro.search.loop import run_search
from kernelpro.search.mcts import ROOT, MCTSConfig, Tree, reward
from kernelpro.search.memory import MAX_LESSONS, Memory
from kernelpro.search.selection import Scored, pick, to_time
from kernelpro.search.strategies import make

CFG = MCTSConfig()


def test_rewards_clip_log_speedup_and_failures_sit_below_every_correct_node():
    lo, hi = CFG.band
    assert reward(True, 2.0, CFG) == pytest.approx(math.log(2.0))
    assert reward(True, 1e6, CFG) == hi and reward(True, 1e-6, CFG) == lo
    assert reward(False, 5.0, CFG) == CFG.failure_reward < lo


def test_backprop_visits_and_means():
    t = Tree()
    a = t.add(ROOT, True, 2.0)
    t.add(a, True, 4.0)
    assert t.node(ROOT)["visits"] == 3 and t.node(a)["visits"] == 2
    assert t.mean(a) == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_progressive_widening_and_extra_slots_for_winners():
    t = Tree(MCTSConfig(widen_k=1.0, widen_a=0.5, win_slots=2))
    assert t.allowed_children(ROOT) == 1
    a = t.add(ROOT, True, 2.0)  # beat the root: ceil(1 * 1^0.5) + 2 slots
    assert t.allowed_children(a) == 1 + 2
    b = t.add(ROOT, True, 0.9)  # did not beat its parent: no extra slots
    assert t.allowed_children(b) == 1
    assert t.allowed_children(ROOT) == math.ceil(3 ** 0.5)


def test_uct_prefers_the_better_child_and_explores_unvisited_ones():
    t = Tree(MCTSConfig(c_uct=0.2, widen_k=1.0))
    good = t.add(ROOT, True, 3.0)
    bad = t.add(ROOT, True, 0.8)
    assert t.uct(ROOT, good) > t.uct(ROOT, bad)
    wide = Tree(MCTSConfig(c_uct=100.0))
    x = wide.add(ROOT, True, 3.0)
    for _ in range(5):
        wide.add(x, True, 3.0)
    y = wide.add(ROOT, True, 1.1)
    assert wide.uct(ROOT, y) > wide.uct(ROOT, x)  # exploration term dominates


def test_failed_nodes_are_never_expanded_and_dead_ends_are_pruned():
    t = Tree(MCTSConfig(dead_after=3, widen_k=10))
    a = t.add(ROOT, True, 2.0)
    f = t.add(a, False, None)
    assert t.node(f)["status"] == "failed" and not t.expandable(f)
    t.add(a, True, 1.5)
    t.add(a, False, None)  # last 3 children: fail, worse, fail -> a is a dead end
    assert t.node(a)["status"] == "dead" and not t.expandable(a)
    assert t.select() == ROOT


def test_virtual_loss_spreads_parallel_expansions():
    t = Tree(MCTSConfig(c_uct=0.0, widen_k=1.0, win_slots=0))
    a = t.add(ROOT, True, 2.0)
    b = t.add(ROOT, True, 1.9)
    t.node(ROOT)["status"] = "open"
    for n in (a, b):
        t.add(n, True, 1.0)
    # both full at widening 1 -> root is not expandable; a is selected first
    first = t.select()
    t.begin(first, 3)
    second = t.select()
    t.end(first, 3)
    assert first != second


def test_tree_exports_graphml_and_json(tmp_path):
    t = Tree()
    a = t.add(ROOT, True, 2.0, {"source": "x", "obj": object()})
    t.add(a, False, None)
    t.export(tmp_path / "tree.graphml")
    g = nx.read_graphml(tmp_path / "tree.graphml")
    assert g.number_of_nodes() == 3 and g.number_of_edges() == 2
    t.export(tmp_path / "tree.json")
    data = json.loads((tmp_path / "tree.json").read_text())
    assert [n["status"] for n in data["nodes"]] == ["open", "open", "failed"]
    assert data["nodes"][1]["data"] == {"source": "x"}


def run(strategy: str, seed: int, budget: int) -> tuple[Tree, Landscape]:
    land, tree, ids = Landscape(seed), Tree(), {0: 0}
    run_search(tree, make(strategy), lambda p, n: land.next_children(ids[p], n),
               land.evaluate, budget, on_node=lambda nid, parent, cand: ids.__setitem__(nid,
                                                                                      cand))
    return tree, land


@pytest.mark.parametrize("strategy", ["mcts", "greedy", "bon", "beam"])
def test_every_strategy_spends_the_budget_and_finds_better_than_the_root(strategy):
    tree, land = run(strategy, 3, 60)
    # best-of-N only samples the root, which has 48 children in these landscapes
    assert len(tree) - 1 == (land.cfg.root_children if strategy == "bon" else 60)
    assert 1.0 <= tree.node(tree.best())["speedup"] <= land.best_speedup


def test_strategy_shapes_differ():
    bon, _ = run("bon", 1, 30)
    assert all(bon.parent(n) == ROOT for n in bon.g.nodes if n != ROOT)
    greedy, _ = run("greedy", 1, 30)
    assert max(nx.shortest_path_length(greedy.g, ROOT).values()) >= 2
    mcts, _ = run("mcts", 1, 60)
    assert max(nx.shortest_path_length(mcts.g, ROOT).values()) >= 2


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="choose from"):
        make("anneal")


def test_selection_strategies_with_id_tie_breaks():
    c = [Scored(3, 2.0, 10.0), Scored(1, 3.0, 5.0), Scored(2, 1.0, 10.0)]
    assert pick(c, "oracle").id == 1
    assert pick(c, "confidence").id == 1
    assert pick(c, "surprisal").id == 2  # tie on 10.0 -> lower id
    assert pick(c, "surprisal-top-k", k=2).id == 3
    assert pick([Scored(1, 2.0)], "surprisal") is None
    chosen, note = to_time(c, "surprisal-top-m", m=2)
    assert [x.id for x in chosen] == [2, 3] and note is None
    chosen, note = to_time([Scored(1), Scored(2), Scored(3)], "surprisal-top-m", m=2)
    assert len(chosen) == 3 and "no logprobs" in note


def test_memory_merges_repeats_and_stays_bounded():
    m = Memory()
    for i in range(3):
        m.failure("compile", f"error at line {i}: undefined name BLOCK")
    m.tried("DramBandwidth: larger BLOCK", 1.3)
    for i in range(30):
        m.win(1.0 + i / 10, f"kernel {i}")
    lines = m.render()
    assert len(m.lessons) <= MAX_LESSONS
    assert lines[0].endswith("(x3)") and "undefined name BLOCK" in lines[0]
    assert sum(len(x) for x in lines) <= 1200


def test_energy_objective_breaks_speed_ties_by_joules():
    from kernelpro.search.run import pick_best

    rows = [{"id": 0, "correct": 1, "in_tree": 1, "speedup": 1.0, "energy_j": 9.0},
            {"id": 1, "correct": 1, "in_tree": 1, "speedup": 2.00, "energy_j": 5.0},
            {"id": 2, "correct": 1, "in_tree": 1, "speedup": 1.99, "energy_j": 3.0},
            {"id": 3, "correct": 1, "in_tree": 1, "speedup": 1.50, "energy_j": 1.0},
            {"id": 4, "correct": 0, "in_tree": 1, "speedup": None, "energy_j": None}]
    assert pick_best(rows, "speed")["id"] == 1
    assert pick_best(rows, "energy")["id"] == 2  # within 2% of the fastest, fewer joules
    untimed = [{"id": 5, "correct": 1, "in_tree": 1, "speedup": None, "energy_j": None}]
    assert pick_best(untimed)["id"] == 5 and pick_best([]) is None


def test_energy_calls_outlast_the_counter_sampling():
    from kernelpro.evaluate.timed import energy_calls

    assert energy_calls(0.01) == 10_000  # capped
    assert energy_calls(2.0) == 500  # a second of 2 ms calls
    assert energy_calls(500.0) == 10  # never fewer than 10


def test_mcts_parameters_from_the_command_line():
    from kernelpro.search.run import parse_mcts

    cfg = parse_mcts("c_uct=0.3,dead_after=4,band=-1:3")
    assert cfg.c_uct == 0.3 and cfg.dead_after == 4 and cfg.band == (-1.0, 3.0)
    with pytest.raises(ValueError, match="keys are"):
        parse_mcts("temperature=2")
