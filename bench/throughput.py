"""Evaluation throughput: the same candidates the KernelBench way and the kernelpro way.

KernelBench way: each candidate's `load_inline` form (PyTorch's headers compiled per
candidate), one at a time, KernelBench's protocol (`--kernelbench-compat`). kernelpro way: the
`kernelpro.nvrtc` form (only the kernel compiled, content-addressed build cache), evaluated by
a pool of workers that compile in parallel and take the GPU in turn (a per-GPU lock around
correctness and timing), kernelpro's own, stricter protocol; then again with the cache warm.

Prints candidates per minute per path and their ratio, compile time p50/p95 per path, and the
share of wall time the GPU was held. Without a GPU only the compile half runs (every candidate
stops after compilation as unverified) and the output says so; the KernelBench path then
builds only the CUDA sources with PyTorch's headers (nvcc -cubin), not the host binding that
a real load_inline also compiles, so it understates KernelBench's cost.

    python bench/throughput.py [--quick] [--jobs N] [--out bench/results/throughput.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput_candidates import candidates, render  # noqa: E402

from kernelpro.evaluate import EvalConfig, evaluate_many  # noqa: E402
from kernelpro.task import load_task  # noqa: E402
from kernelpro.types import EvalResult  # noqa: E402

TASK = ROOT / "bench" / "throughput_task.py"


@dataclass
class PathResult:
    name: str
    results: list[EvalResult]
    wall_s: float

    def compile_times(self) -> list[float]:
        """Per candidate: worker start until the GPU was requested (or the whole worker on
        a machine without a GPU, where it stops after compiling)."""
        return [r.phases.get("load_s", r.wall_s) for r in self.results]

    def gpu_share(self) -> float | None:
        held = [r.phases["gpu_s"] for r in self.results if "gpu_s" in r.phases]
        return sum(held) / self.wall_s if held else None

    def per_minute(self) -> float:
        return 60.0 * len(self.results) / self.wall_s


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_path(name: str, task, files: list[Path], cfg: EvalConfig, jobs: int) -> PathResult:
    started = time.perf_counter()
    results = evaluate_many(task, files, cfg, jobs=jobs)
    return PathResult(name, results, time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 candidates (for tests)")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="kernelpro's compile pool size (default: cores, at most 8)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as Markdown")
    args = ap.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    task = load_task(TASK)
    cands = candidates(quick=args.quick)
    work = Path(tempfile.mkdtemp(prefix="kp-throughput-"))
    cache = work / "build-cache"
    os.environ["KERNELPRO_BUILD_CACHE"] = str(cache)  # a cold cache of our own
    files = {form: [] for form in ("load_inline", "nvrtc")}
    for c in cands:
        for form in files:
            path = work / form / f"{c.name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(c, form))
            files[form].append(path)
    base = EvalConfig(artifacts_dir=work / "artifacts")
    paths = [
        run_path("KernelBench: load_inline, serial, its protocol", task, files["load_inline"],
                 replace(base, kernelbench_compat=True), jobs=1),
        run_path(f"kernelpro: NVRTC, pool of {args.jobs}, cold cache", task, files["nvrtc"],
                 base, jobs=args.jobs),
        run_path(f"kernelpro: NVRTC, pool of {args.jobs}, warm cache", task, files["nvrtc"],
                 base, jobs=args.jobs),
    ]
    shutil.rmtree(work, ignore_errors=True)

    device = torch.cuda.get_device_name(0) if gpu else "none"
    lines = [f"# Evaluation throughput ({len(cands)} candidates: "
             + ", ".join(sorted({c.kind for c in cands})) + ")", "",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"GPU: {device}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}",
             "- " + ("full evaluation (compile, correctness, timing)" if gpu else
                     "NO GPU: the compile half only. Every candidate stops after compilation "
                     "(unverified). The KernelBench path builds only the CUDA sources with "
                     "PyTorch's headers, not the host binding a real load_inline also "
                     "compiles, so its cost is understated."), "",
             "- compile s: per candidate, from the worker's start (Python and torch imports "
             "included) until it asked for the GPU, or until its verdict without a GPU", "",
             "| path | candidates/min | wall s | compile p50 s | compile p95 s | GPU held |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in paths:
        ct = p.compile_times()
        share = p.gpu_share()
        lines.append(f"| {p.name} | {p.per_minute():.1f} | {p.wall_s:.1f} | "
                     f"{_pct(ct, 50):.2f} | {_pct(ct, 95):.2f} | "
                     + ("n/a (no GPU)" if share is None else f"{100 * share:.0f}%") + " |")
    kb, cold, warm = paths
    lines += ["", f"- kernelpro / KernelBench candidates per minute: cold cache "
              f"{cold.per_minute() / kb.per_minute():.2f}x, warm cache "
              f"{warm.per_minute() / kb.per_minute():.2f}x (measured in this one run)",
              "- verdicts: " + "; ".join(
                  f"{c.name}: KB {a.status}, kernelpro {b.status}"
                  for c, a, b in zip(cands, kb.results, cold.results, strict=True))]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
