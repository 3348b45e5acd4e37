"""`kernelpro bench --ray`: a real Ray local cluster (started here, CPU only, no GPUs) runs
two task searches as Ray tasks; their nodes stream to the driver while they run, and the
driver unpacks their run directories and writes the rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

pytest.importorskip("ray", reason="the [cluster] extra (ray) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    ray_cli = str(Path(sys.executable).parent / "ray")
    temp = tempfile.mkdtemp(prefix="kpray", dir="/tmp")  # short: Ray's socket paths are long
    port = _free_port()
    start = subprocess.run(
        [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--disable-usage-stats", "--include-dashboard=false",
         "--object-store-memory=200000000", f"--temp-dir={temp}"],
        capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "kernelpro.cli", "bench", *args]


def _store_nodes(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, source FROM nodes ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_two_task_searches_on_a_local_ray_cluster(ray_cluster, tmp_path):
    """Two searches as Ray tasks; their nodes stream into the driver's run stores while they
    run; the driver is killed (-9) mid-search; --resume sends the streamed nodes back and the
    searches finish from them."""
    suite = tmp_path / "suite" / "level1"
    suite.mkdir(parents=True)
    for name in ("1_relu_a", "2_relu_b"):
        (suite / f"{name}.py").write_text((FIXTURES / "tasks" / "tiny_relu.py").read_text())
    out = tmp_path / "bench"
    first = subprocess.Popen(
        _bench(str(tmp_path / "suite"), "--budget", "2", "-n", "1", "--ray", ray_cluster,
               "--out", str(out)),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    streamed = out / "runs" / "level1" / "1_relu_a" / "store.sqlite"
    deadline = time.time() + 300
    while time.time() < deadline and len(_store_nodes(streamed)) < 2:
        assert first.poll() is None, first.stderr.read()[-3000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-search
    first.wait()
    before = _store_nodes(streamed)
    assert len(before) >= 2  # the reference and at least one streamed candidate

    proc = subprocess.run(_bench("--resume", str(out), "--ray", ray_cluster), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "candidate(s) streamed so far" in proc.stderr
    after = _store_nodes(streamed)
    assert after[:len(before)] == before  # the streamed nodes were kept, not re-proposed
    summary = json.loads((out / "bench.json").read_text())
    assert summary["environment"]["where"] == f"Ray cluster at {ray_cluster}"
    assert summary["status"] == {"done": 2} and summary["fast_p"]["eager"][0]["fast_0"] == 1.0
    db = sqlite3.connect(out / "bench.sqlite")
    rows = db.execute("SELECT key, status, correct, worker, run_dir, level FROM tasks").fetchall()
    db.close()
    assert sorted(r[0] for r in rows) == ["level1/1_relu_a", "level1/2_relu_b"]
    for key, status, correct, worker, run_dir, level in rows:
        assert status == "done" and correct == 1 and level == 1
        _host, where, pid = worker.split(":")
        assert where == "cpu" and pid.isdigit()  # ran in a Ray worker process, not the driver
        run = Path(run_dir)
        assert run == out / "runs" / key and (run / "store.sqlite").is_file()
        assert json.loads((run / "summary.json").read_text())["evaluated"] == 2
    # the unpacked run directories are complete runs: the report reads them
    report = subprocess.run([sys.executable, "-m", "kernelpro.cli", "report", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0 and (out / "report.html").is_file()
