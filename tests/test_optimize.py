"""`kernelpro optimize` end to end in the dry run (no GPU): templates, the local OpenAI
server, a kill -9 followed by --resume, Ctrl-C, and a task the templates cannot handle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernelpro.cli import main
from kernelpro.evaluate.guard import check_source
from kernelpro.store import RunStore
from tests.conftest import FIXTURES, ROOT, SOLUTIONS, TASKS
from tests.openai_server import serve

TINY = FIXTURES / "tasks" / "tiny_relu.py"
RELU_SOLUTION = (SOLUTIONS / "level1" / "2_ReLU.py").read_text()


def optimize(capsys, *args: str) -> tuple[int, dict]:
    code = main(["optimize", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_dry_run_with_templates_writes_the_run_directory(capsys, tmp_path):
    out = tmp_path / "run"
    code, summary = optimize(capsys, str(TINY), "--budget", "3", "-n", "2", "--out", str(out),
                             "--max-elements", "4096")
    assert code == 0 and summary["dry_run"] and summary["evaluated"] == 3
    assert "templates" in summary["proposer"] and "dry run" in summary["notes"][0]
    best = (out / "best.py").read_text()
    assert "class ModelNew" in best and check_source(best) == []
    store = RunStore(out / "store.sqlite")
    rows = store.nodes()
    assert [r["id"] for r in rows] == [0, 1, 2, 3] and rows[0]["status"] == "reference"
    assert all(r["status"] == "correct" and r["knobs"] for r in rows[1:])
    assert len({json.dumps(r["knobs"], sort_keys=True) for r in rows[1:]}) == 3
    assert rows[1]["diagnosis"].startswith("tiny_relu: latency-bound")
    assert store.export_jsonl(tmp_path / "run.jsonl") == 4
    tree = json.loads((out / "tree.json").read_text())
    assert len(tree["nodes"]) == 4 and len(tree["edges"]) == 3
    assert code == 0


def test_llm_proposer_against_the_local_server(capsys, tmp_path, monkeypatch):
    fenced = f"Here it is:\n```python\n{RELU_SOLUTION}```"
    with serve(fenced) as (fake, url):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        code, summary = optimize(capsys, str(TINY), "--model", "local-test", "--budget", "2",
                                 "-n", "2", "--out", str(tmp_path / "run"),
                                 "--max-elements", "4096")
    assert code == 0 and summary["proposer"].startswith("LLM local-test")
    assert fake.requests and fake.requests[0]["logprobs"] is True
    rows = RunStore(tmp_path / "run" / "store.sqlite").nodes()[1:]
    assert len(rows) == 2 and all(r["surprisal"] and r["logprobs"] for r in rows)
    assert summary["usage"]["requests"] == 1 and summary["usage"]["completion_tokens"] > 0
    log = (tmp_path / "run" / "completions.jsonl").read_text().splitlines()
    assert len(log) == 2 and "sk-local-test" not in "".join(log)


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kernelpro.cli", "optimize", str(TINY), "--budget", "5", "-n",
         "1", "--out", str(out), "--max-elements", "4096", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_nodes(out: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "store.sqlite").exists():
            store = RunStore(out / "store.sqlite")
            count = store.count()
            store.close()
            if count >= n:
                return
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.3)
    raise AssertionError("the run did not get far enough")


@pytest.mark.slow
def test_kill_9_then_resume_loses_no_evaluated_node(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_nodes(out, 3, proc)  # the reference and two candidates
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = RunStore(out / "store.sqlite").nodes()
    assert len(before) >= 3
    code, summary = optimize(capsys, "--resume", str(out), "--budget", "5", "-n", "1")
    assert code == 0 and summary["evaluated"] == 5
    assert any("resumed with" in n for n in summary["notes"])
    after = RunStore(out / "store.sqlite").nodes()
    assert [r["id"] for r in after] == list(range(6))
    for old, new in zip(before, after, strict=False):
        assert (old["id"], old["source"], old["status"]) == (new["id"], new["source"],
                                                             new["status"])


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_nodes(out, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["evaluated"] >= 1
    assert (out / "best.py").exists()


def test_task_the_templates_cannot_handle_stops_with_the_reason(capsys, tmp_path):
    code, summary = optimize(capsys, str(TASKS / "level3" / "1_MLP.py"), "--budget", "2",
                             "--out", str(tmp_path / "run"))
    assert code == 1 and summary["evaluated"] == 0
    assert any("templates cannot handle 1_MLP" in n for n in summary["notes"])


def test_bad_input(capsys, tmp_path):
    assert main(["optimize", str(TINY), "--proposer", "llm", "--out", str(tmp_path)]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["optimize", "--resume", str(tmp_path / "nothing")]) == 2
