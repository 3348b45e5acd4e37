"""`kernelpro bench`: one search per task over a suite, on local GPUs or a Ray cluster.

Each task's search is `kernelpro optimize` in a process of its own (a crash or a hung kernel
costs that task, not the bench), with `CUDA_VISIBLE_DEVICES` naming its GPU. Locally one worker
thread per GPU feeds it tasks; with `--ray` each task is a Ray task holding one GPU
(`bench_ray.py`). Either way the driver alone writes the bench store, one row as each task
ends, so a killed bench resumes with the tasks it had not finished. Without a GPU every search
is the dry run and the table says fast_p > 0 is unknown.

Bench directory: bench.sqlite, runs/<level>/<task>/ (each a run directory), bench.json,
tasks.csv, fast_p.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.bench_store import BenchStore
from kernelpro.fastp import BASELINES, FAST_P, Outcome, fast_table
from kernelpro.suite import SuiteTask, discover, op_category, parse_ids

INTERRUPT_GRACE_S = 30.0  # a timed-out search gets SIGINT (it saves) before SIGKILL


@dataclass(frozen=True)
class BenchConfig:
    suite: str
    level: int | None = None
    tasks: str | None = None  # "1-20,36"
    budget: int = 20
    gpus: tuple[str, ...] = ()  # () = every visible GPU, or CPU dry-run workers without one
    workers: int = 1  # dry-run workers when there is no GPU
    ray_address: str | None = None
    task_timeout_s: float | None = None
    optimize_args: tuple[str, ...] = ()  # passed on to each `kernelpro optimize`

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> BenchConfig:
        """The config as bench.sqlite keeps it (JSON: lists for tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in stored.items() if k in known}
        data["gpus"] = tuple(data.get("gpus", ()))
        data["optimize_args"] = tuple(data.get("optimize_args", ()))
        return cls(**data)


@dataclass(frozen=True)
class SearchRun:
    """How one task's search process ended."""

    rc: int | None  # None: killed at the task timeout
    tail: str  # last stderr lines, for the one-line reason
    wall_s: float
    worker: str


def optimize_command(task_path: Path, run_dir: Path, budget: int, resume: bool,
                     extra: tuple[str, ...]) -> list[str]:
    cmd = [sys.executable, "-m", "kernelpro.cli", "optimize"]
    cmd += [str(task_path), "--resume", str(run_dir)] if resume else [
        str(task_path), "--out", str(run_dir)]
    return [*cmd, "--budget", str(budget), "--json", *extra]


def run_search(task_path: Path, run_dir: Path, budget: int, extra: tuple[str, ...],
               timeout_s: float | None, gpu: str | None, worker: str) -> SearchRun:
    """One `kernelpro optimize` process; resumes the run directory when it holds a run."""
    resume = (run_dir / "store.sqlite").is_file()
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    import kernelpro

    root = str(Path(kernelpro.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    started = time.time()
    proc = subprocess.Popen(optimize_command(task_path, run_dir, budget, resume, extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, err = proc.communicate(timeout=timeout_s)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        rc = None
    tail = "\n".join((err or "").strip().splitlines()[-5:])
    return SearchRun(rc, tail, time.time() - started, worker)


def read_run(run_dir: Path) -> dict[str, Any]:
    """The best node of a task's run directory and its summary (empty when it never started)."""
    from kernelpro.search.run import pick_best
    from kernelpro.store import RunStore

    out: dict[str, Any] = {}
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        out["summary"] = json.loads(summary_path.read_text())
    if not (run_dir / "store.sqlite").is_file():
        return out
    store = RunStore(run_dir / "store.sqlite")
    try:
        nodes = store.nodes()
        objective = (store.get("config") or {}).get("objective", "speed")
    finally:
        store.close()
    out["evaluated"] = sum(1 for n in nodes if n["id"] != 0)
    best = pick_best(nodes, objective)
    if best is not None:
        res = best["result"] or {}
        out["best"] = {"node": best["id"], "speedup_eager": best["speedup"],
                       "speedup_compile": res.get("speedup_compile"),
                       "runtime_ms": res.get("runtime_ms"), "eager_ms": res.get("eager_ms"),
                       "compile_ms": res.get("compile_ms")}
    return out


def task_row(task: SuiteTask, run: SearchRun, run_dir: Path, budget: int) -> dict[str, Any]:
    """The bench store row of a finished (or failed) search."""
    from kernelpro.task import sha256_text

    source = task.path.read_text()
    info = read_run(run_dir)
    summary = info.get("summary", {})
    best = info.get("best") or {}
    if run.rc is None:
        status, reason = "timeout", "stopped at the task timeout (resumable)"
    elif run.rc == 130 or summary.get("interrupted"):
        status, reason = "interrupted", "interrupted (resumable)"
    elif run.rc in (0, 1) and summary:
        status = "done"
        reason = None if best else "no correct kernel found"
    else:
        status = "error"
        reason = (run.tail.splitlines()[-1] if run.tail else f"exit code {run.rc}")[:300]
    return dict(
        key=task.key, level=task.level, problem_id=task.problem_id, name=task.name,
        path=str(task.path), sha=sha256_text(source), category=op_category(task.name, source),
        status=status, reason=reason, budget=budget, evaluated=info.get("evaluated", 0),
        correct=int(bool(best)), best_node=best.get("node"),
        speedup_eager=best.get("speedup_eager"), speedup_compile=best.get("speedup_compile"),
        runtime_ms=best.get("runtime_ms"), eager_ms=best.get("eager_ms"),
        compile_ms=best.get("compile_ms"), dry_run=_int(summary.get("dry_run")),
        gpu=summary.get("gpu"), torch=summary.get("torch"), tolerance=summary.get("tolerance"),
        protocol=summary.get("protocol"), worker=run.worker, run_dir=str(run_dir),
        wall_s=run.wall_s)


def _int(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def visible_gpus() -> list[str]:
    """Indices of the GPUs this machine shows (none without CUDA)."""
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
            else []
    except Exception:
        return []


class Bench:
    """A bench directory: plan, run (locally or on Ray), resume, summarise."""

    def __init__(self, cfg: BenchConfig, out: Path, resume: bool = False) -> None:
        self.out = Path(out)
        if resume:
            if not (self.out / "bench.sqlite").is_file():
                raise ValueError(f"{self.out}: no bench store (bench.sqlite) to resume")
            self.store = BenchStore(self.out / "bench.sqlite")
            stored = BenchConfig.from_stored(self.store.get("config") or {})
            changes = {k: v for k, v in dataclasses.asdict(cfg).items()
                       if k in ("budget", "gpus", "workers", "ray_address", "task_timeout_s")
                       and v not in (None, (), 0)}  # 0 and empty: not given
            cfg = dataclasses.replace(stored, **changes)
            self.tasks = discover(Path(cfg.suite), cfg.level, parse_ids(cfg.tasks))
        else:
            if (self.out / "bench.sqlite").is_file():
                raise ValueError(f"{self.out} already holds a bench; use --resume to go on")
            # Validate the selection before anything is written.
            self.tasks = discover(Path(cfg.suite), cfg.level, parse_ids(cfg.tasks))
            self.store = BenchStore(self.out / "bench.sqlite")
        self.cfg = cfg
        self.store.put("config", dataclasses.asdict(cfg))
        self.interrupted = False

    def run_dir(self, task: SuiteTask) -> Path:
        return self.out / "runs" / task.key

    def todo(self) -> list[SuiteTask]:
        """Tasks without a finished search at this budget."""
        rows = {r["key"]: r for r in self.store.rows()}
        left = []
        for task in self.tasks:
            row = rows.get(task.key)
            if row and row["status"] == "done" and (row["budget"] or 0) >= self.cfg.budget:
                continue
            left.append(task)
        return left

    def record(self, task: SuiteTask, run: SearchRun) -> dict[str, Any]:
        row = task_row(task, run, self.run_dir(task), self.cfg.budget)
        self.store.record(**row)
        return row

    def run(self, on_event: Callable[[str, dict[str, Any] | None], None] = lambda m, r: None
            ) -> dict[str, Any]:
        todo = self.todo()
        skipped = len(self.tasks) - len(todo)
        if skipped:
            on_event(f"{skipped} task(s) already finished in {self.out}: skipped", None)
        if todo:
            if self.cfg.ray_address:
                from kernelpro.bench_ray import run_ray

                run_ray(self, todo, on_event)
            else:
                self._run_local(todo, on_event)
        return self.finish()

    def _slots(self) -> list[tuple[str, str | None]]:
        gpus = list(self.cfg.gpus) or visible_gpus()
        if gpus:
            return [(f"gpu{g}", g) for g in gpus]
        return [(f"cpu{i}", None) for i in range(max(1, self.cfg.workers))]

    def _run_local(self, todo: list[SuiteTask],
                   on_event: Callable[[str, dict[str, Any] | None], None]) -> None:
        """One thread per GPU (or dry-run worker) pulls tasks; the driver thread records."""
        work: queue.Queue[SuiteTask] = queue.Queue()
        for task in todo:
            work.put(task)
        results: queue.Queue[tuple[SuiteTask, SearchRun]] = queue.Queue()
        stop = threading.Event()

        def worker(name: str, gpu: str | None) -> None:
            while not stop.is_set():
                try:
                    task = work.get_nowait()
                except queue.Empty:
                    return
                run_dir = self.run_dir(task)
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                on_event(f"{name}: {task.key} started", None)
                results.put((task, run_search(task.path, run_dir, self.cfg.budget,
                                              self.cfg.optimize_args, self.cfg.task_timeout_s,
                                              gpu, name)))

        threads = [threading.Thread(target=worker, args=slot, daemon=True)
                   for slot in self._slots()]
        for t in threads:
            t.start()
        pending = len(todo)
        try:
            while pending:
                try:
                    task, run = results.get(timeout=0.5)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and results.empty():
                        break
                    continue
                pending -= 1
                row = self.record(task, run)
                on_event(done_line(row), row)
        except KeyboardInterrupt:
            # The searches got the same SIGINT, save their nodes and exit; record them.
            self.interrupted = True
            stop.set()
            for t in threads:
                t.join(timeout=INTERRUPT_GRACE_S + 5)
            while not results.empty():
                task, run = results.get()
                self.record(task, run)

    def finish(self) -> dict[str, Any]:
        rows = self.store.rows()
        summary = summarise(rows, self.cfg)
        summary["interrupted"] = self.interrupted
        not_run = len({t.key for t in self.tasks} - {r["key"] for r in rows})
        if not_run:
            summary["notes"].append(f"{not_run} selected task(s) not run yet (not in the table)")
        if self.interrupted or not_run or any(r["status"] != "done" for r in rows):
            summary["notes"].append(f"to finish: kernelpro bench --resume {self.out}")
        summary["bench_dir"] = str(self.out)
        write_outputs(self.out, summary)
        self.store.put("summary", summary)
        return summary


def done_line(row: dict[str, Any]) -> str:
    what = row["status"]
    if row["status"] == "done":
        s = row["speedup_eager"]
        what = (f"{s:.2f}x" if s else ("correct, untimed" if row["correct"] else "no correct "
                                       "kernel"))
    return f"{row['worker']}: {row['key']} {what}" + (
        f" ({row['reason']})" if row["status"] != "done" and row["reason"] else "")


def outcomes(rows: list[dict[str, Any]]) -> list[Outcome]:
    """Finished tasks as fast_p outcomes; an error or timeout counts as incorrect."""
    return [Outcome(r["key"], r["level"], r["category"], bool(r["correct"]),
                    r["speedup_eager"], r["speedup_compile"]) for r in rows]


def summarise(rows: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    """The fast_p tables against eager and torch.compile, and what they were measured with."""
    outs = outcomes(rows)
    gpus = sorted({r["gpu"] for r in rows if r["gpu"]})
    dry = any(r["dry_run"] for r in rows)
    notes = []
    if dry:
        notes.append("dry run (no GPU): nothing was timed, so only fast_0 (correctness) is "
                     "known; fast_p for p > 0 and the geometric mean are shown as unknown")
    unfinished = [r["key"] for r in rows if r["status"] != "done"]
    if unfinished:
        notes.append(f"{len(unfinished)} task(s) did not finish and count as incorrect: "
                     + ", ".join(unfinished[:10]) + (" ..." if len(unfinished) > 10 else ""))
    return {
        "suite": cfg.suite, "level": cfg.level, "tasks_selected": cfg.tasks,
        "budget": cfg.budget, "tasks": len(rows),
        "status": {s: sum(r["status"] == s for r in rows)
                   for s in sorted({r["status"] for r in rows})},
        "environment": {
            "gpu": gpus or ["none (CPU dry run)"],
            "torch": sorted({r["torch"] for r in rows if r["torch"]}),
            "tolerance": sorted({r["tolerance"] for r in rows if r["tolerance"] is not None}),
            "protocol": sorted({r["protocol"] for r in rows if r["protocol"]}),
            "optimize_args": list(cfg.optimize_args),
            "where": f"Ray cluster at {cfg.ray_address}" if cfg.ray_address else "local"},
        "fast_p": {b: [row.to_dict() for row in fast_table(outs, b)] for b in BASELINES},
        "ps": list(FAST_P), "dry_run": dry, "notes": notes,
        "rows": rows,
    }


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    """bench.json (everything), tasks.csv (one row per task), fast_p.csv (the tables)."""
    (out / "bench.json").write_text(json.dumps(summary, indent=1))
    rows = summary["rows"]
    cols = ["key", "level", "problem_id", "name", "category", "status", "reason", "correct",
            "speedup_eager", "speedup_compile", "runtime_ms", "eager_ms", "compile_ms",
            "evaluated", "budget", "best_node", "gpu", "torch", "tolerance", "protocol",
            "dry_run", "worker", "wall_s", "run_dir"]
    with (out / "tasks.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with (out / "fast_p.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["baseline", "group", "tasks", "correct", "timed",
                    *[f"fast_{p:g}" for p in FAST_P], "geomean"])
        for baseline, table in summary["fast_p"].items():
            for r in table:
                w.writerow([baseline, r["group"], r["tasks"], r["correct"], r["timed"],
                            *[_csv(r[f"fast_{p:g}"]) for p in FAST_P], _csv(r["geomean"])])


def _csv(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
