"""`kernelpro bench --ray ADDRESS`: one task search per GPU as Ray tasks on an existing cluster.

The driver ships each task's source (and, to resume, its partial run directory as a tarball);
the Ray task runs the same `kernelpro optimize` process as a local worker, on the GPU Ray gave
it, and returns the run directory as a tarball. The driver unpacks it under runs/ and writes
the bench store row as each task finishes (`ray.wait`). While a search runs, its new nodes
are streamed to the driver (a Ray queue, every few seconds) and merged into the driver's copy
of that task's run store, so a killed driver keeps them and `--resume` sends them back to the
search. Cluster nodes need kernelpro, torch and Triton installed. Ray is imported only here
(the `[cluster]` extra).
"""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernelpro.bench import Bench
    from kernelpro.suite import SuiteTask


def pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Replace `folder` with the tarball's contents (members must stay inside it)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


STREAM_EVERY_S = 2.0  # how often a Ray task sends the driver its new nodes


def stream_store(store_path: Path, key: str, queue: Any, stop: threading.Event) -> None:
    """In a Ray task: send the driver each new node (and the run's meta) as the search
    writes them, until `stop` is set; a last pass after that catches the final nodes."""
    from kernelpro.store import RunStore

    last = -1
    while True:
        done = stop.wait(STREAM_EVERY_S)
        if store_path.is_file():
            store = RunStore(store_path)
            try:
                cols, rows = store.raw_nodes_after(last)
                if rows:
                    queue.put((key, store.meta_items(), cols, rows))
                    last = rows[-1][cols.index("id")]
            finally:
                store.close()
        if done:
            return


def search_task(payload: dict[str, Any], queue: Any = None) -> dict[str, Any]:
    """Runs on a cluster node: one task's search in a scratch directory, its nodes streamed to
    the driver through `queue` while it runs."""
    import os

    from kernelpro.bench import run_search

    with tempfile.TemporaryDirectory(prefix="kernelpro-ray-") as tmp:
        task_path = Path(tmp) / "suite" / payload["relpath"]
        task_path.parent.mkdir(parents=True)
        task_path.write_text(payload["source"])
        run_dir = Path(tmp) / "run"
        if payload.get("resume_tar"):
            unpack(payload["resume_tar"], run_dir)
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None  # set by Ray for num_gpus=1
        worker = f"{socket.gethostname()}:{'gpu' + gpu if gpu else 'cpu'}:{os.getpid()}"
        stop = threading.Event()
        watcher = None
        if queue is not None:
            watcher = threading.Thread(target=stream_store, daemon=True,
                                       args=(run_dir / "store.sqlite", payload["key"], queue,
                                             stop))
            watcher.start()
        try:
            run = run_search(task_path, run_dir, payload["budget"], tuple(payload["extra"]),
                             payload["timeout_s"], gpu, worker)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=60)
        return {"rc": run.rc, "tail": run.tail, "wall_s": run.wall_s, "worker": worker,
                "tar": pack(run_dir) if run_dir.exists() else None}


def merge_streamed(bench: Bench, by_key: dict[str, SuiteTask], items: list[Any],
                   on_event: Callable[[str, dict[str, Any] | None], None]) -> None:
    """Write streamed nodes into the driver's copy of each task's run store, so a killed
    driver keeps them and --resume hands them back to the search."""
    from kernelpro.store import RunStore

    for key, meta, cols, rows in items:
        store = RunStore(bench.run_dir(by_key[key]) / "store.sqlite")
        try:
            store.merge_raw(meta, cols, rows)
            total = store.count() - 1  # the reference is node 0
        finally:
            store.close()
        on_event(f"{key}: {total} candidate(s) streamed so far", None)


def run_ray(bench: Bench, todo: list[SuiteTask],
            on_event: Callable[[str, dict[str, Any] | None], None]) -> None:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray needs Ray: pip install 'kernelpro[cluster]'") from exc
    from kernelpro.bench import SearchRun, done_line

    ray.init(address=bench.cfg.ray_address, log_to_driver=False,
             logging_level="ERROR", configure_logging=True)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if not gpus:
            on_event("the Ray cluster has no GPUs: each search is a CPU dry run", None)
        from ray.util.queue import Queue

        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(search_task)
        queue = Queue()
        by_key = {task.key: task for task in todo}
        pending = {}
        for task in todo:
            run_dir = bench.run_dir(task)
            payload = {"key": task.key, "relpath": _relpath(task),
                       "source": task.path.read_text(), "budget": bench.cfg.budget,
                       "extra": list(bench.cfg.optimize_args),
                       "timeout_s": bench.cfg.task_timeout_s,
                       "resume_tar": pack(run_dir) if (run_dir / "store.sqlite").is_file()
                       else None}
            pending[remote.remote(payload, queue)] = task

        def drain() -> None:
            if queue.size():
                merge_streamed(bench, by_key, queue.get_nowait_batch(queue.size()), on_event)

        on_event(f"{len(pending)} search(es) submitted to the Ray cluster "
                 f"({int(gpus)} GPU(s))", None)
        try:
            while pending:
                drain()
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not done:
                    continue
                drain()
                task = pending.pop(done[0])
                try:
                    out = ray.get(done[0])
                except Exception as exc:  # a node died, the task raised: one line, go on
                    run = SearchRun(-1, f"Ray task failed: {type(exc).__name__}: "
                                    + str(exc).strip().splitlines()[-1][:200], 0.0, "ray")
                else:
                    if out["tar"]:
                        unpack(out["tar"], bench.run_dir(task))
                    run = SearchRun(out["rc"], out["tail"], out["wall_s"], out["worker"])
                row = bench.record(task, run)
                on_event(done_line(row), row)
        except KeyboardInterrupt:
            bench.interrupted = True
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        ray.shutdown()


def _relpath(task: SuiteTask) -> str:
    """Keeps the `levelN/` folder so the node's task loader sees the same level."""
    return f"level{task.level}/{task.path.name}" if task.level is not None else task.path.name
