"""`kernelpro bench`, `study` and `report`: the commands over many runs (see cli.py for the
single-task ones). Exit codes as in cli.py: 0 done, 2 bad input, 130 interrupted."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kernelpro.cli import EXIT_BAD_INPUT, EXIT_CORRECT, report_error


def add_bench(sub: Any) -> None:
    b = sub.add_parser(
        "bench", help="one search per task over a KernelBench level or a folder of tasks",
        description="Run `kernelpro optimize` on every selected task: locally one worker per "
                    "GPU, or one Ray task per GPU on a cluster (--ray). Resumable. Prints "
                    "fast_p and the geometric-mean speedup against eager and torch.compile, "
                    "per level and op category; writes bench.json, tasks.csv and fast_p.csv.")
    b.add_argument("suite", type=Path, nargs="?",
                   help="a KernelBench checkout or a folder of task files")
    b.add_argument("--level", type=int, default=None, help="only this level (levelN folder)")
    b.add_argument("--tasks", default=None, metavar="IDS",
                   help="problem ids, e.g. 1-20,36 (default all)")
    b.add_argument("--budget", type=int, default=None, help="candidates per task (20)")
    b.add_argument("--gpus", default=None, help="GPU indices, e.g. 0,1 (default all visible)")
    b.add_argument("--workers", type=int, default=None,
                   help="parallel dry-run searches when there is no GPU (1)")
    b.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the searches as Ray tasks on this cluster (e.g. auto, HOST:6379)")
    b.add_argument("--task-timeout", type=float, default=None,
                   help="seconds per task search (it is stopped, saved and resumable)")
    b.add_argument("--out", type=Path, default=None,
                   help="bench directory (default runs/bench-SUITE-TIMESTAMP)")
    b.add_argument("--resume", type=Path, default=None, metavar="BENCH_DIR",
                   help="finish the tasks a killed bench left (or raise its --budget)")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    g = b.add_argument_group("passed to each kernelpro optimize")
    g.add_argument("--proposer", choices=["auto", "llm", "templates", "replay"], default=None)
    g.add_argument("--model", default=None)
    g.add_argument("--strategy", choices=["mcts", "greedy", "bon", "beam"], default=None)
    g.add_argument("--backend", choices=["triton", "cuda", "cuda-nvrtc"], default=None)
    g.add_argument("-n", "--per-expansion", type=int, default=None)
    g.add_argument("--time-limit", type=float, default=None, help="seconds per search")
    g.add_argument("--arch", default=None)
    g.add_argument("--max-elements", type=int, default=None)
    g.add_argument("--jobs", type=int, default=None,
                   help="candidates each search evaluates at once (2)")


def add_study(sub: Any) -> None:
    s = sub.add_parser(
        "study", help="selection-strategy study (surprisal, confidence, ...) over samples",
        description="Compare ways to choose among correct samples: oracle, random "
                    "(expectation), confidence, surprisal and surprisal-top-k; Cohen's h, "
                    "sign and Wilcoxon tests, surprisal quartiles, Spearman with and without "
                    "length control, and the evaluation-budget curve. INPUT: a run directory "
                    "or store.sqlite, a bench directory, or JSONL with one sample per line "
                    "(task, seed, sample, correct, speedup, logprob_sum, token_count).")
    s.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    s.add_argument("-k", "--top-k", type=int, default=3, help="k of surprisal-top-k (3)")
    s.add_argument("--measure", choices=["sum", "mean"], default="sum",
                   help="surprisal as the sum (default) or per-token mean of -log p")
    s.add_argument("--json", action="store_true", help="print everything as one JSON object")


def add_report(sub: Any) -> None:
    r = sub.add_parser(
        "report", help="self-contained HTML report of a run or a bench",
        description="One HTML file that works offline: for a run, the summary, best speedup "
                    "over evaluations, the search tree, a roofline chart, each node's "
                    "diagnosis and what its recommendation gave, and the best kernel's diff; "
                    "for a bench, the fast_p tables and a per-task chart.")
    r.add_argument("directory", type=Path, help="a run directory or a bench directory")
    r.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML file (default DIRECTORY/report.html)")


def cmd_bench(args: argparse.Namespace) -> int:
    """Exit 0 when the bench finished (whatever the tasks' verdicts), 2 on bad input, 130 on
    Ctrl-C (finished tasks are saved; --resume goes on)."""
    import time

    from kernelpro.bench import Bench, BenchConfig

    passed = [(flag, getattr(args, attr)) for flag, attr in (
        ("--proposer", "proposer"), ("--model", "model"), ("--strategy", "strategy"),
        ("--backend", "backend"), ("-n", "per_expansion"), ("--time-limit", "time_limit"),
        ("--arch", "arch"), ("--max-elements", "max_elements"), ("--jobs", "jobs"))]
    extra = tuple(x for flag, v in passed if v is not None for x in (flag, str(v)))
    try:
        if args.budget is not None and args.budget < 1:
            raise ValueError("--budget must be at least 1")
        gpus = tuple(g.strip() for g in args.gpus.split(",") if g.strip()) if args.gpus else ()
        if any(not g.isdigit() for g in gpus):
            raise ValueError(f"--gpus {args.gpus!r}: give GPU indices like 0,1")
        if args.resume is not None:
            bench = Bench(BenchConfig(suite="", budget=args.budget or 0, gpus=gpus,
                                      workers=args.workers or 0, ray_address=args.ray,
                                      task_timeout_s=args.task_timeout),
                          args.resume, resume=True)
        else:
            if args.suite is None:
                raise ValueError("give a SUITE (or --resume BENCH_DIR)")
            cfg = BenchConfig(suite=str(args.suite.resolve()), level=args.level,
                              tasks=args.tasks, budget=args.budget or 20, gpus=gpus,
                              workers=args.workers or 1, ray_address=args.ray,
                              task_timeout_s=args.task_timeout, optimize_args=extra)
            out = args.out or Path("runs") / f"bench-{args.suite.resolve().name}-" \
                                             f"{time.strftime('%Y%m%d-%H%M%S')}"
            bench = Bench(cfg, out)
    except (ValueError, OSError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    total = len(bench.tasks)
    if not args.json:
        print(f"kernelpro bench: {total} task(s) from {bench.cfg.suite}, budget "
              f"{bench.cfg.budget}; bench directory {bench.out}", file=sys.stderr)
    finished, left = [0], len(bench.todo())

    def on_event(message: str, row: Any) -> None:
        if row is not None:
            finished[0] += 1
            message = f"[{finished[0]}/{left}] {message}"
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    try:
        summary = bench.run(on_event)
    except (ValueError, OSError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    else:
        from kernelpro.render_bench import print_bench

        print_bench(summary)
    return 130 if summary["interrupted"] else EXIT_CORRECT


def cmd_study(args: argparse.Namespace) -> int:
    from kernelpro.study import load_samples, run_study

    try:
        if args.top_k < 1:
            raise ValueError("--top-k must be at least 1")
        samples, notes = load_samples(args.inputs)
        result = run_study(samples, k=args.top_k, measure=args.measure)
    except (ValueError, OSError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    result["notes"] = notes + result["notes"]
    if args.json:
        print(json.dumps(result))
    else:
        from kernelpro.render_bench import print_study

        print_study(result)
    return EXIT_CORRECT


def cmd_report(args: argparse.Namespace) -> int:
    from kernelpro.report import write_report

    try:
        path = write_report(args.directory, args.output)
    except (ValueError, OSError) as exc:
        report_error(str(exc), False)
        return EXIT_BAD_INPUT
    print(f"kernelpro report: wrote {path}")
    return EXIT_CORRECT
