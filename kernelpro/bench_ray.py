"""`kernelpro bench --ray ADDRESS`: one task search per GPU as Ray tasks on an existing cluster.

The driver ships each task's source (and, to resume, its partial run directory as a tarball);
the Ray task runs the same `kernelpro optimize` process as a local worker, on the GPU Ray gave
it, and returns the run directory as a tarball. The driver unpacks it under runs/ and writes
the bench store row as each task finishes (`ray.wait`), so results stream in and a killed
driver loses only the tasks still running. Cluster nodes need kernelpro, torch and Triton
installed. Ray is imported only here (the `[cluster]` extra).
"""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import tempfile
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


def search_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Runs on a cluster node: one task's search in a scratch directory."""
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
        run = run_search(task_path, run_dir, payload["budget"], tuple(payload["extra"]),
                         payload["timeout_s"], gpu, worker)
        return {"rc": run.rc, "tail": run.tail, "wall_s": run.wall_s, "worker": worker,
                "tar": pack(run_dir) if run_dir.exists() else None}


def run_ray(bench: Bench, todo: list[SuiteTask],
            on_event: Callable[[str, dict[str, Any] | None], None]) -> None:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray needs Ray: pip install 'kernelpro[cluster]'") from exc
    from kernelpro.bench import SearchRun

    ray.init(address=bench.cfg.ray_address, log_to_driver=False,
             logging_level="ERROR", configure_logging=True)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if not gpus:
            on_event("the Ray cluster has no GPUs: each search is a CPU dry run", None)
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(search_task)
        pending = {}
        for task in todo:
            run_dir = bench.run_dir(task)
            payload = {"relpath": _relpath(task), "source": task.path.read_text(),
                       "budget": bench.cfg.budget, "extra": list(bench.cfg.optimize_args),
                       "timeout_s": bench.cfg.task_timeout_s,
                       "resume_tar": pack(run_dir) if (run_dir / "store.sqlite").is_file()
                       else None}
            pending[remote.remote(payload)] = task
        on_event(f"{len(pending)} search(es) submitted to the Ray cluster "
                 f"({int(gpus)} GPU(s))", None)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
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
                from kernelpro.bench import done_line

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
