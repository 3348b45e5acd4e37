"""`kernelpro study` on constructed samples whose right answers are worked out by hand below."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from kernelpro.store import RunStore
from kernelpro.study import Sample, cohens_h, run_study
from tests.conftest import ROOT

# (task, seed, sample, correct, speedup, logprob_sum, token_count); surprisal = -logprob_sum
DATA = [
    ("A", 0, 0, True, 2.0, -50.0, 100), ("A", 0, 1, True, 0.5, -10.0, 50),
    ("A", 0, 2, False, None, -80.0, 120), ("A", 0, 3, True, 1.5, -30.0, 80),
    ("A", 1, 0, True, 1.8, -40.0, 90), ("A", 1, 1, True, 1.2, -20.0, 60),
    ("A", 1, 2, True, 3.0, -5.0, 40),
    ("B", 0, 0, False, None, -10.0, 30), ("B", 0, 1, False, None, -20.0, 30),
    ("B", 1, 0, True, 0.9, -60.0, 70), ("B", 1, 1, True, 1.3, -60.0, 75),  # a surprisal tie
]
KEYS = ("task", "seed", "sample", "correct", "speedup", "logprob_sum", "token_count")


def _jsonl(tmp_path, data=DATA):
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(dict(zip(KEYS, row, strict=True))) + "\n"
                            for row in data))
    return path


def study(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernelpro.cli", "study", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_strategy_table_tests_quartiles_and_budget_by_hand(tmp_path):
    proc = study(str(_jsonl(tmp_path)), "-k", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert (r["samples"], r["tasks"], r["seeds"], r["groups"]) == (11, 2, 2, 4)
    rows = {row["strategy"]: row for row in r["strategies"]}
    # groups (task, seed): A0, B0 are seed 0; A1, B1 seed 1; B0 has no correct sample.
    # oracle picks 2.0 (A0), 3.0 (A1), 1.3 (B1): fast_1 seed0 1/2, seed1 2/2
    o = rows["oracle"]
    assert o["fast_1_by_seed"] == {"0": 0.5, "1": 1.0} and o["fast_1"] == 0.75
    assert o["fast_1_std"] == pytest.approx(math.sqrt(2 * 0.25 ** 2))  # ddof=1
    assert o["mean_speedup"] == pytest.approx(6.3 / 3)
    assert o["geomean_speedup"] == pytest.approx((2.0 * 3.0 * 1.3) ** (1 / 3))
    # random: expectation over correct samples. A0 {2,.5,1.5}: 2/3 fast; A1 {1.8,1.2,3}: 1;
    # B1 {.9,1.3}: 1/2; B0: 0.  seed0 (2/3+0)/2, seed1 (1+1/2)/2
    rnd = rows["random"]
    assert rnd["fast_1"] == pytest.approx(((2 / 3) / 2 + 1.5 / 2) / 2)
    assert rnd["mean_speedup"] == pytest.approx((4 / 3 + 2.0 + 1.1) / 3)
    # confidence (lowest surprisal): A0 id1 0.5, A1 id2 3.0, B1 tie at 60 -> id0 0.9
    assert rows["confidence"]["fast_1_by_seed"] == {"0": 0.0, "1": 0.5}
    assert rows["confidence"]["mean_speedup"] == pytest.approx((0.5 + 3.0 + 0.9) / 3)
    # surprisal (highest): A0 id0 2.0, A1 id0 1.8, B1 tie -> id0 0.9
    assert rows["surprisal"]["fast_1_by_seed"] == {"0": 0.5, "1": 0.5}
    assert rows["surprisal"]["mean_speedup"] == pytest.approx((2.0 + 1.8 + 0.9) / 3)
    # surprisal-top-2: A0 {2.0,1.5} -> 2.0; A1 {1.8,1.2} -> 1.8; B1 {0.9,1.3} -> 1.3
    assert rows["surprisal-top-2"]["fast_1"] == 0.75
    # Cohen's h on pooled fast_1: surprisal 2/4, confidence 1/4 -> pi/2 - pi/3
    h = r["cohens_h"]
    assert (h["surprisal_fast_1"], h["confidence_fast_1"]) == (0.5, 0.25)
    assert h["h"] == pytest.approx(math.pi / 6)
    # paired: A0 surprisal wins (2.0 vs 0.5), A1 loses (1.8 vs 3.0), B1 the same sample (tie)
    assert r["sign_test"] == {"pairs": 3, "wins": 1, "losses": 1, "ties": 1, "p": 1.0}
    # Wilcoxon on [ln 4, ln 0.6]: |ln 0.6| ranks 1 (negative), ln 4 ranks 2; exact two-sided
    # p over the 4 equally likely sign patterns = 1.0; statistic min(R+, R-) = 1
    assert r["wilcoxon"]["n"] == 2 and r["wilcoxon"]["statistic"] == 1.0
    assert r["wilcoxon"]["p"] == pytest.approx(1.0)
    # quartiles within groups (ascending surprisal): A0 .5|1.5|2.0 -> Q1 Q2 Q3;
    # A1 3.0|1.2|1.8 -> Q1 Q2 Q3; B1 .9|1.3 -> Q1 Q3
    q = {row["quartile"]: row for row in r["quartiles"]}
    assert [q[k]["n"] for k in ("Q1", "Q2", "Q3", "Q4")] == [3, 2, 3, 0]
    assert q["Q1"]["mean_speedup"] == pytest.approx(4.4 / 3) and q["Q1"]["fast_1"] == 1 / 3
    assert q["Q3"]["mean_speedup"] == pytest.approx(5.1 / 3) and q["Q3"]["fast_1"] == 1.0
    assert q["Q4"]["mean_speedup"] is None
    # Spearman = Pearson of the ranks (ties averaged), worked out here without scipy
    rx = [6, 2, 4, 5, 3, 1, 7.5, 7.5]  # surprisal 50 10 30 40 20 5 60 60
    ry = [7, 1, 5, 6, 3, 8, 2, 4]  # speedup 2.0 .5 1.5 1.8 1.2 3.0 .9 1.3
    assert r["spearman"]["n"] == 8
    assert r["spearman"]["rho"] == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert r["spearman"]["partial_rho"] is not None and -1 <= r["spearman"]["partial_rho"] <= 1
    # budget: rank all samples by surprisal first, evaluate m, keep the fastest correct
    curve = {row["m"]: row for row in r["budget_curve"]}
    assert list(curve) == [1, 2, 4]
    assert curve[1]["surprisal_first"] == 0.25 and curve[2]["surprisal_first"] == 0.75
    assert curve[1]["confidence_first"] == 0.25 and curve[4]["confidence_first"] == 0.75
    # random order, exactly: A0 n=4 f=2, A1 n=3 f=3, B0 f=0, B1 n=2 f=1
    assert curve[1]["random"] == pytest.approx((0.5 + 1 + 0 + 0.5) / 4)
    assert curve[2]["random"] == pytest.approx((5 / 6 + 1 + 0 + 1) / 4)
    assert any("lower sample id" in n for n in r["notes"])


def test_sign_and_wilcoxon_when_surprisal_always_wins():
    samples = []
    for t in range(6):  # six tasks: the most surprising sample is always the faster
        samples += [Sample(f"t{t}", "0", 0, True, 2.0 + t, -100.0, 10),
                    Sample(f"t{t}", "0", 1, True, 1.0, -10.0, 10)]
    r = run_study(samples)
    assert r["sign_test"]["wins"] == 6 and r["sign_test"]["p"] == pytest.approx(2 / 64)
    assert r["wilcoxon"]["p"] == pytest.approx(2 / 64)  # exact: only all-positive is as extreme
    assert r["cohens_h"]["h"] == pytest.approx(cohens_h(1.0, 0.0)) == pytest.approx(math.pi)


def test_human_output_and_mean_measure(tmp_path):
    proc = study(str(_jsonl(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    for text in ("surprisal-top-3", "Cohen's h", "sign test", "Wilcoxon", "Q4", "Spearman",
                 "evaluation budget", "lower sample id"):
        assert text in proc.stdout
    mean = json.loads(study(str(_jsonl(tmp_path)), "--measure", "mean", "--json").stdout)
    assert mean["measure"] == "mean"
    # per-token surprisal of A0: 50/100, 10/50, 30/80 -> the most surprising is id0 (.5)
    assert mean["strategies"][3]["strategy"] == "surprisal"


def test_bad_input_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "a", "seed": 0, "sample": 1, "correct": true}\n')
    proc = study(str(bad))
    assert proc.returncode == 2 and "bad.jsonl:1: missing speedup" in proc.stderr
    bad.write_text("not json\n")
    assert "bad.jsonl:1: not JSON" in study(str(bad)).stderr
    assert "not a JSONL file" in study(str(tmp_path)).stderr


def test_study_reads_a_run_store(tmp_path):
    run = tmp_path / "run"
    store = RunStore(run / "store.sqlite")
    store.put("task", {"name": "19_ReLU"})
    store.add_node(id=0, parent=None, in_tree=1, status="reference", correct=1, speedup=1.0)
    for nid, ok, speed, sur in [(1, 1, 1.4, 30.0), (2, 0, None, 90.0), (3, 1, 0.7, 12.0)]:
        store.add_node(id=nid, parent=0, in_tree=1, status="correct" if ok else "incorrect",
                       correct=ok, speedup=speed, surprisal=sur, token_count=100)
    store.close()
    r = json.loads(study(str(run), str(run / "store.sqlite"), "--json").stdout)
    assert (r["samples"], r["tasks"], r["seeds"]) == (6, 1, 2)  # the same run read twice
    rows = {row["strategy"]: row for row in r["strategies"]}
    assert rows["surprisal"]["mean_speedup"] == pytest.approx(1.4)  # node 1 (30 > 12)
    assert rows["confidence"]["mean_speedup"] == pytest.approx(0.7)
