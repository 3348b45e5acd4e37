"""`kernelpro bench`: suite selection, fast_p by hand, the CPU dry run over tasks/, resume
after kill -9, a broken task and a timed-out search that do not stop the bench."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelpro.fastp import Outcome, fast_row, fast_table
from kernelpro.suite import discover, op_category, parse_ids
from tests.conftest import FIXTURES, ROOT, TASKS


def kernelpro(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernelpro.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# --- selection -------------------------------------------------------------------------------

def test_parse_ids():
    assert parse_ids("1-3,36") == {1, 2, 3, 36}
    assert parse_ids(None) is None
    for bad in ("1-", "a", "5-2"):
        with pytest.raises(ValueError, match="--tasks"):
            parse_ids(bad)


def test_discover_levels_ids_and_errors(tmp_path):
    level1 = discover(TASKS, level=1)
    assert [t.problem_id for t in level1] == list(range(1, 13))
    assert level1[0].key == "level1/1_Square_matmul"
    picked = discover(TASKS, ids={1, 2})
    assert [t.key for t in picked] == ["level1/1_Square_matmul", "level1/2_ReLU",
                                       "level2/1_Gemm_Bias_GELU", "level2/2_Gemm_Sigmoid_RowSum",
                                       "level3/1_MLP", "level3/2_Causal_SelfAttention"]
    # a KernelBench checkout keeps its levels under KernelBench/
    kb = tmp_path / "kb" / "KernelBench" / "level1"
    kb.mkdir(parents=True)
    (kb / "19_ReLU.py").write_text((TASKS / "level1" / "2_ReLU.py").read_text())
    assert [t.key for t in discover(tmp_path / "kb", level=1)] == ["level1/19_ReLU"]
    with pytest.raises(ValueError, match="no level4 folder"):
        discover(TASKS, level=4)
    with pytest.raises(ValueError, match="no task files selected"):
        discover(TASKS, ids={99})
    with pytest.raises(ValueError, match="no such suite"):
        discover(tmp_path / "missing")
    flat = discover(FIXTURES / "tasks")
    assert all(t.level is None and t.key == t.name for t in flat)


def test_op_category_of_every_shipped_task():
    expected = {"1_Square_matmul": "matmul", "2_ReLU": "activation",
                "3_GELU_tanh": "activation", "4_Softmax": "activation",
                "5_LayerNorm": "normalization", "6_RMSNorm": "normalization",
                "7_Sum_reduction_over_a_dimension": "reduction", "8_CrossEntropyLoss": "loss",
                "9_Argmax_over_a_dimension": "reduction", "10_Masked_cumsum": "reduction",
                "11_Softmax_rand": "activation", "12_MSELoss": "loss",
                "1_Gemm_Bias_GELU": "matmul", "2_Gemm_Sigmoid_RowSum": "matmul",
                "3_ResidualAdd_LayerNorm": "normalization", "1_MLP": "matmul",
                "2_Causal_SelfAttention": "attention"}
    for task in discover(TASKS):
        assert op_category(task.name, task.path.read_text()) == expected[task.name], task.name
    assert op_category("42_Max_Pooling_2D") == "pooling"
    assert op_category("54_conv_standard_3D") == "convolution"
    assert op_category("x", "class Model(nn.Module):\n    def forward(self, x):\n"
                            "        return torch.matmul(x, x)\n") == "matmul"


# --- fast_p by hand -----------------------------------------------------------------------------

def test_fast_p_and_geomean_computed_by_hand():
    outs = [Outcome("a", 1, "x", True, 0.4, 0.2), Outcome("b", 1, "x", True, 0.9, 1.0),
            Outcome("c", 1, "y", True, 1.2, 0.6), Outcome("d", 2, "y", True, 2.5, 1.6),
            Outcome("e", 2, "y", False)]
    row = fast_row("all", outs, "eager")
    assert (row.tasks, row.correct, row.timed) == (5, 4, 4)
    assert row.fast == {0.0: 4 / 5, 0.5: 3 / 5, 0.8: 3 / 5, 1.0: 2 / 5, 1.5: 1 / 5, 2.0: 1 / 5}
    assert row.geomean == pytest.approx((0.4 * 0.9 * 1.2 * 2.5) ** 0.25)
    comp = fast_row("all", outs, "compile")
    assert comp.fast[1.0] == 1 / 5 and comp.fast[0.5] == 3 / 5  # 1.0 is not > 1
    table = {r.group: r for r in fast_table(outs, "eager")}
    assert list(table) == ["all", "level1", "level2", "x", "y"]
    assert table["level2"].fast[0.0] == 0.5 and table["y"].fast[1.0] == 2 / 3
    # correct but untimed (a dry run): only fast_0 is known, never guessed
    dry = fast_row("all", [Outcome("a", 1, "x", True), Outcome("b", 1, "x", False)], "eager")
    assert dry.fast[0.0] == 0.5 and all(dry.fast[p] is None for p in (0.5, 1.0, 2.0))
    assert dry.geomean is None and dry.timed == 0


# --- the CPU dry run over tasks/ --------------------------------------------------------------

def _rows(bench: Path) -> dict[str, dict]:
    db = sqlite3.connect(bench / "bench.sqlite")
    db.row_factory = sqlite3.Row
    rows = {r["key"]: dict(r) for r in db.execute("SELECT * FROM tasks")}
    db.close()
    return rows


@pytest.fixture(scope="module")
def dry_bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "b"
    proc = kernelpro("bench", "tasks", "--level", "1", "--tasks", "2,12", "--budget", "1",
                     "-n", "1", "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "[2/2]" in proc.stderr and "fast_p vs PyTorch eager" in proc.stdout
    return out


def test_dry_run_bench_over_tasks_then_resume_and_report(dry_bench, tmp_path):
    """One test on purpose: the dry bench is made once (xdist runs a module fixture once per
    worker), then checked, resumed, raised to budget 2 and reported."""
    _check_dry_bench(dry_bench)
    _check_resume(dry_bench)
    _check_reports(dry_bench, tmp_path)


def _check_dry_bench(dry_bench):
    summary = json.loads((dry_bench / "bench.json").read_text())
    assert summary["tasks"] == 2 and summary["status"] == {"done": 2} and summary["dry_run"]
    env = summary["environment"]
    assert env["gpu"] == ["none (CPU dry run)"] and env["tolerance"] == [1e-4]
    assert env["torch"] and env["protocol"] == ["kernelpro wall (5 trials, robust)"]
    for baseline in ("eager", "compile"):
        top = summary["fast_p"][baseline][0]
        assert top["group"] == "all" and top["fast_0"] == 1.0
        assert top["fast_1"] is None and top["geomean"] is None  # nothing timed
    groups = [r["group"] for r in summary["fast_p"]["eager"]]
    assert groups == ["all", "level1", "activation", "loss"]
    with (dry_bench / "tasks.csv").open() as f:
        tasks = list(csv.DictReader(f))
    assert {t["key"] for t in tasks} == {"level1/2_ReLU", "level1/12_MSELoss"}
    assert all(t["status"] == "done" and t["correct"] == "1" for t in tasks)
    with (dry_bench / "fast_p.csv").open() as f:
        fast = list(csv.reader(f))
    assert fast[0][:3] == ["baseline", "group", "tasks"] and fast[1][:3] == ["eager", "all", "2"]
    for row in _rows(dry_bench).values():
        assert (Path(row["run_dir"]) / "store.sqlite").is_file()
        assert (Path(row["run_dir"]) / "best.py").is_file()
        assert row["worker"] in ("cpu0", "cpu1")


def _check_resume(dry_bench):
    before = _rows(dry_bench)
    proc = kernelpro("bench", "--resume", str(dry_bench))
    assert proc.returncode == 0, proc.stderr
    assert "2 task(s) already finished" in proc.stderr
    assert _rows(dry_bench) == before  # nothing re-run
    # a larger --budget on resume makes every finished task due again (each search then goes
    # on with `optimize --resume`, tested in test_optimize.py)
    from kernelpro.bench import Bench, BenchConfig

    raised = Bench(BenchConfig(suite="", budget=2), dry_bench, resume=True)
    assert raised.cfg.budget == 2 and raised.cfg.level == 1
    assert [t.key for t in raised.todo()] == ["level1/2_ReLU", "level1/12_MSELoss"]
    raised.store.close()
    assert "already holds a bench" in kernelpro("bench", "tasks", "--out", str(dry_bench)).stderr


def test_bad_bench_input_is_one_line_exit_2(tmp_path):
    for args, msg in [(("tasks", "--level", "7"), "no level7 folder"),
                      (("tasks", "--tasks", "x"), "--tasks"),
                      (("tasks", "--gpus", "a"), "--gpus"),
                      (("--resume", str(tmp_path)), "no bench store"),
                      ((str(tmp_path / "none"),), "no such suite")]:
        proc = kernelpro("bench", *args, "--out", str(tmp_path / "o"))
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.stderr)


def _flat_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("1_relu_a", "2_relu_b"):
        (suite / f"{name}.py").write_text((FIXTURES / "tasks" / "tiny_relu.py").read_text())
    return suite


@pytest.mark.slow
def test_kill_9_then_resume_keeps_finished_tasks(tmp_path):
    suite, out = _flat_suite(tmp_path), tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "kernelpro.cli", "bench", str(suite),
                             "--budget", "1", "-n", "1", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "bench.sqlite").exists() and _rows(out):
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the search it was running
    proc.wait()
    first = _rows(out)
    assert len(first) == 1
    done = kernelpro("bench", "--resume", str(out), "--json")
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert len(rows) == 2 and all(r["status"] == "done" and r["correct"] for r in rows.values())
    (key, row), = first.items()
    assert rows[key]["updated"] == row["updated"]  # the finished task was not run again


def test_broken_task_and_timeout_are_rows_and_the_bench_goes_on(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "1_broken.py").write_text("class Model(:\n")
    (suite / "2_relu.py").write_text((FIXTURES / "tasks" / "tiny_relu.py").read_text())
    proc = kernelpro("bench", str(suite), "--budget", "1", "-n", "1", "--out",
                     str(tmp_path / "b"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(tmp_path / "b")
    assert rows["1_broken"]["status"] == "error" and "1_broken.py" in rows["1_broken"]["reason"]
    assert "\n" not in rows["1_broken"]["reason"]
    assert rows["2_relu"]["status"] == "done" and rows["2_relu"]["correct"] == 1
    summary = json.loads(proc.stdout)
    assert summary["fast_p"]["eager"][0]["fast_0"] == 0.5
    assert any("did not finish" in n for n in summary["notes"])
    slow = kernelpro("bench", str(suite), "--tasks", "2", "--budget", "1", "--task-timeout",
                     "0.5", "--out", str(tmp_path / "t"), "--json")
    assert slow.returncode == 0, slow.stderr
    row = _rows(tmp_path / "t")["2_relu"]
    assert row["status"] == "timeout" and "resumable" in row["reason"]
    assert math.isfinite(row["wall_s"]) and row["wall_s"] < 60


def _check_reports(dry_bench, tmp_path):
    from kernelpro.report.svg import COLORS
    from tests.browser import pixels_of, screenshot

    proc = kernelpro("report", str(dry_bench))
    assert proc.returncode == 0, proc.stderr
    html = (dry_bench / "report.html").read_text()
    assert "nothing timed: each bar is a stub" in html and "none (CPU dry run)" in html
    png = screenshot(dry_bench / "report.html", tmp_path / "bench.png", height=2400)
    assert pixels_of(png, COLORS["bar"]) > 200  # two stubs for the two correct tasks
    run = dry_bench / "runs" / "level1" / "2_ReLU"
    assert kernelpro("report", str(run), "-o", str(tmp_path / "run.html")).returncode == 0
    html = (tmp_path / "run.html").read_text()
    assert "the chart counts correct candidates instead of speedups" in html
    assert "no measured points: nothing was timed on a GPU" in html  # roofline, no points
    png = screenshot(tmp_path / "run.html", tmp_path / "run.png")
    assert pixels_of(png, COLORS["roof"]) > 40 and pixels_of(png, COLORS["top"]) > 40


def test_ctrl_c_records_the_running_search_and_exits_130(tmp_path):
    suite, out = _flat_suite(tmp_path), tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "kernelpro.cli", "bench", str(suite),
                             "--budget", "3", "-n", "1", "--out", str(out), "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "runs").glob("*/store.sqlite")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert any("not run yet" in n for n in summary["notes"])
    assert any(f"--resume {out}" in n for n in summary["notes"])
    rows = _rows(out)
    assert [r["status"] for r in rows.values()] == ["interrupted"]
