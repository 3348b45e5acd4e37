"""`kernelpro report`: the HTML is one offline file, and in headless Chromium its charts render
(counted by their colours in a screenshot). The timed run and bench here are CONSTRUCTED stores
standing in for a GPU run (test doubles: this machine cannot time a kernel); the dry-run
reports come from real runs in tests/test_bench.py."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kernelpro.bench_store import BenchStore
from kernelpro.report import write_report
from kernelpro.report.svg import COLORS
from kernelpro.store import RunStore
from tests.browser import pixels_of, screenshot
from tests.conftest import FIXTURES, ROOT

TINY = FIXTURES / "tasks" / "tiny_relu.py"
PARENT_SRC = "import torch\n\nclass ModelNew(torch.nn.Module):\n    BLOCK = 256\n"
BEST_SRC = "import torch\n\nclass ModelNew(torch.nn.Module):\n    BLOCK = 1024\n"


def constructed_timed_run(run: Path) -> Path:
    """A run store as a GPU run would leave it (numbers made up, not measured)."""
    from kernelpro.evaluate.device import spec_for_arch
    from kernelpro.profile.roofline import roofline, task_work
    from kernelpro.task import load_task

    task = load_task(TINY)
    roof = roofline(task_work(task)[0], spec_for_arch("sm_90"), task.dtype)
    store = RunStore(run / "store.sqlite")
    store.put("config", {"objective": "speed", "strategy": "mcts", "budget": 4})
    store.put("task", {"name": task.name, "path": str(TINY), "source": task.source})
    store.put("roofline", dataclasses.asdict(roof))
    store.put("summary", {"proposer": "constructed", "gpu": "H100 (constructed)",
                          "torch": "x", "tolerance": 1e-4, "protocol": "kernelpro wall",
                          "notes": ["constructed for a test"]})
    eager = {"eager_ms": 0.02}
    store.add_node(id=0, parent=None, in_tree=1, proposer="reference", source=task.source,
                   status="reference", correct=1, speedup=1.0)
    store.add_node(id=1, parent=0, in_tree=1, source=PARENT_SRC, status="correct", correct=1,
                   speedup=1.3, runtime_ms=0.0154, result=eager,
                   diagnosis="memory-bound; DRAM at 40% of peak", recommendations=["DramBandwidth"])
    store.add_node(id=2, parent=0, in_tree=1, source="x", status="failed", stage="compile",
                   reason="CompilationError: boom", correct=0)
    store.add_node(id=3, parent=1, in_tree=1, source=BEST_SRC, status="correct", correct=1,
                   speedup=2.1, runtime_ms=0.0095, result=eager)
    store.add_node(id=4, parent=1, in_tree=1, source="y", status="correct", correct=1,
                   speedup=0.9, runtime_ms=0.022, result=eager)
    store.close()
    return run


def constructed_bench(bench: Path) -> Path:
    store = BenchStore(bench / "bench.sqlite")
    store.put("config", {"suite": "/suite", "budget": 8})
    for i, (speed, ok) in enumerate([(1.8, 1), (0.7, 1), (None, 0), (3.2, 1)], 1):
        store.record(key=f"level1/{i}_T", level=1, problem_id=i, name=f"{i}_T", path="p",
                     category="activation", status="done", correct=ok, speedup_eager=speed,
                     speedup_compile=speed and speed / 2, dry_run=0, gpu="H100 (constructed)",
                     torch="x", tolerance=1e-4, protocol="kernelpro wall", budget=8)
    store.close()
    return bench


def _offline(html: str) -> None:
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=|url\(""", html)


def test_run_report_renders_every_chart(tmp_path):
    run = constructed_timed_run(tmp_path / "run")
    html_path = write_report(run)
    html = html_path.read_text()
    _offline(html)
    for heading in ("Summary", "Best speedup over evaluations", "Search tree", "Roofline",
                    "Diagnoses", "Best kernel"):
        assert f"<h2>{heading}</h2>" in html
    assert "node 3; diff against the node 1 (parent)" in html
    assert '<span class="del">-    BLOCK = 256</span>' in html
    assert '<span class="add">+    BLOCK = 1024</span>' in html
    assert "top recommendation DramBandwidth" in html and "1.62x" in html  # 2.1 / 1.3
    png = screenshot(html_path, tmp_path / "run.png")
    for key in ("best", "points", "roof", "candidate", "top", "failed", "reference"):
        assert pixels_of(png, COLORS[key]) > 40, key


def test_bench_report_renders_the_table_and_chart(tmp_path):
    bench = constructed_bench(tmp_path / "bench")
    proc = subprocess.run([sys.executable, "-m", "kernelpro.cli", "report", str(bench), "-o",
                           str(tmp_path / "b.html")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "b.html").read_text()
    _offline(html)
    assert "fast_p against PyTorch eager" in html and "fast_p against torch.compile" in html
    assert "<td class=\"\">50%</td>" in html  # fast_1.5 vs eager: 1.8 and 3.2 of 4 tasks
    png = screenshot(tmp_path / "b.html", tmp_path / "b.png", height=2400)
    assert pixels_of(png, COLORS["bar"]) > 500
    assert pixels_of(png, COLORS["failed"]) > 100


def test_report_of_a_missing_directory_is_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kernelpro.cli", "report", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


@pytest.mark.parametrize("n", [1, 30])
def test_tree_layout_is_valid_svg(n):
    import xml.etree.ElementTree as ET

    from kernelpro.report.svg import tree_chart

    nodes = [{"id": 0, "parent": None, "kind": "reference", "label": "ref", "tip": "r"}]
    nodes += [{"id": i, "parent": (i - 1) // 3, "kind": "candidate", "label": "ok", "tip": "<&>"}
              for i in range(1, n)]
    root = ET.fromstring(tree_chart(nodes, "t"))
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == n
