"""What the judge/runner split costs: per-candidate overhead, and the evaluator before/after.

1. Whole evaluations of one honest Triton candidate (the shipped ReLU solution on a small
   task) under each sandbox mechanism this machine has (bwrap, unshare, none) and, with
   `--before REF`, under the evaluator of an earlier commit (checked out to a temporary git
   worktree), interleaved so drift hits every path alike: wall seconds per candidate.
2. The parts of one evaluation on the judge's clock (the verdict's `phases`): the runner's
   start (interpreter, torch, sandbox, profiler warm-up), importing the candidate, the calls
   of the wall and the probes, collecting binaries; bytes moved through the channel.
3. The channel alone: a runner started in each mechanism, 50 round trips, and a forward that
   returns its input at 1, 16 and 64 MiB (megabytes per second both ways).

    python bench/judge_overhead.py [--n 5] [--before 0757d86] [--out bench/results/...md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = ROOT / "tests" / "fixtures" / "tasks" / "tiny_relu.py"
CANDIDATE = ROOT / "examples" / "solutions" / "level1" / "2_ReLU.py"
IDENTITY = "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def forward(self, x):\n" \
           "        return x.clone()\n"
# One evaluation in a fresh interpreter of the tree at sys.argv[1]: prints the verdict's JSON.
ONE_EVAL = ("import json, sys; sys.path.insert(0, sys.argv[1]);"
            "from pathlib import Path;"
            "from kernelpro.evaluate import EvalConfig, evaluate_candidate;"
            "from kernelpro.task import load_task;"
            "t = load_task(sys.argv[2]); import time; t0 = time.time();"
            "r = evaluate_candidate(t, Path(sys.argv[3]), EvalConfig());"
            "print(json.dumps({'wall': time.time() - t0, 'status': r.status,"
            " 'phases': r.phases}))")


def mechanisms() -> list[str]:
    from kernelpro.evaluate import sandbox

    found = []
    for kind in ("bwrap", "unshare"):
        os.environ["KERNELPRO_SANDBOX"] = kind
        sandbox.detect.cache_clear()
        if sandbox.detect().sandboxed:
            found.append(kind)
    os.environ.pop("KERNELPRO_SANDBOX", None)
    sandbox.detect.cache_clear()
    return [*found, "none"]


def evaluate(tree: Path, sandbox_kind: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if sandbox_kind:
        env["KERNELPRO_SANDBOX"] = sandbox_kind
    out = subprocess.run([sys.executable, "-c", ONE_EVAL, str(tree), str(TASK), str(CANDIDATE)],
                         capture_output=True, text=True, env=env, cwd=tree, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def worktree(ref: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="kp-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT,
                   check=True, capture_output=True)
    return path


def channel_rates(kind: str) -> dict[str, float]:
    """Round trip and transfer rates of a runner started in `kind`."""
    import torch

    from kernelpro.evaluate import sandbox
    from kernelpro.evaluate.remote import RemoteModel, start_runner

    os.environ["KERNELPRO_SANDBOX"] = kind
    sandbox.detect.cache_clear()
    with tempfile.TemporaryDirectory(prefix="kp-channel-") as tmp:
        work = Path(tmp)
        cand = work / "candidate.py"
        cand.write_text(IDENTITY)
        cand.chmod(0o644)
        req = {"mode": "cpu", "task_path": str(TASK),
               "limits": {"memory_bytes": 8 << 30, "start_timeout_s": 120}}
        t0 = time.perf_counter()
        runner, inside = start_runner(req, work / "judge", str(cand))
        try:
            runner.request({"op": "ping"}, timeout_s=120)
            start = time.perf_counter() - t0
            trips = []
            for _ in range(50):
                t = time.perf_counter()
                runner.request({"op": "ping"})
                trips.append((time.perf_counter() - t) * 1e3)
            runner.request({"op": "load", "path": inside, "backend": "torch", "mode": "cpu",
                            "arch": "sm_90", "aot": False, "scratch": runner.scratch})
            runner.request({"op": "build", "model": 0, "seed": 0}, [])
            model = RemoteModel(runner, 0, 120.0, 1 << 31, record=False, inputs_back=False)
            rates = {}
            for mib in (1, 16, 64):
                x = torch.rand(mib << 18)
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - t)
                rates[f"{mib} MiB"] = 2 * mib / statistics.median(times)  # out and back
        finally:
            runner.close()
    os.environ.pop("KERNELPRO_SANDBOX", None)
    sandbox.detect.cache_clear()
    return {"start_s": start, "round_trip_ms": statistics.median(trips), **rates}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="evaluations per path (default 5)")
    ap.add_argument("--before", default=None, help="git ref of the evaluator to compare with")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables as Markdown")
    args = ap.parse_args()
    kinds = mechanisms()
    paths: dict[str, tuple[Path, str | None]] = {f"now, {k}": (ROOT, k) for k in kinds}
    before = worktree(args.before) if args.before else None
    if before is not None:
        paths[f"before ({args.before}): one worker process"] = (before, None)
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    try:
        for _ in range(args.n):  # interleaved: every path once per round
            for name, (tree, kind) in paths.items():
                runs[name].append(evaluate(tree, kind))
    finally:
        if before is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                           capture_output=True)
    rates = {k: channel_rates(k) for k in kinds}

    lines = ["# What the judge/runner split costs", "",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, no GPU unless stated; "
             f"{time.strftime('%Y-%m-%d')}; {args.n} evaluations per path, interleaved",
             f"- candidate: {CANDIDATE.relative_to(ROOT)} on {TASK.relative_to(ROOT)} "
             "(Triton interpreter, scaled-down task, the whole robust wall and probes, the "
             "ahead-of-time sm_90 compile)", "",
             "| path | status | wall s median | min | max |", "|---|---|---:|---:|---:|"]
    for name, rs in runs.items():
        walls = [r["wall"] for r in rs]
        lines.append(f"| {name} | {rs[0]['status']} | {statistics.median(walls):.2f} | "
                     f"{min(walls):.2f} | {max(walls):.2f} |")
    lines += ["", "Parts of one evaluation on the judge's clock (median s; the runner starts "
              "while the judge imports the task, so its start overlaps):", "",
              "| path | runner start | load | calls | probes' re-reads | binaries | MB moved |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rs in runs.items():
        if "runner_start_s" not in rs[0]["phases"]:
            continue

        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(r["phases"].get(key, 0.0) for r in rs)
        lines.append(f"| {name} | {med('runner_start_s'):.2f} | {med('runner_load_s'):.2f} | "
                     f"{med('runner_call_s'):.2f} | {med('runner_reread_s'):.3f} | "
                     f"{med('runner_artifacts_s'):.2f} | {med('bytes_moved') / 1e6:.1f} |")
    lines += ["", "The channel alone (an identity forward; MB/s counts the tensor out and back):",
              "", "| mechanism | runner start s | round trip ms | 1 MiB MB/s | 16 MiB MB/s | "
              "64 MiB MB/s |", "|---|---:|---:|---:|---:|---:|"]
    for kind, r in rates.items():
        lines.append(f"| {kind} | {r['start_s']:.2f} | {r['round_trip_ms']:.3f} | "
                     f"{r['1 MiB'] * 1.048576:.0f} | {r['16 MiB'] * 1.048576:.0f} | "
                     f"{r['64 MiB'] * 1.048576:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
