"""The `kernelpro` command: parse arguments, call one function per command, print the result.

Exit codes of `kernelpro eval`: 0 correct, 1 incorrect or failed, 2 bad input (task or
candidate file unusable, bad option), 3 unverified (compiled but could not be run here).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_CORRECT, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNVERIFIED = 0, 1, 2, 3
# Verdicts that mean the candidate file (or the machine, for --require-sandbox) is unusable.
UNUSABLE_INPUT = ("UnreadableCandidate", "CandidateTooLarge", "UnparseableCandidate",
                  "SandboxUnavailable")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelpro",
        description="GPU kernel optimization agent for KernelBench-format tasks.")
    from kernelpro import __version__

    parser.add_argument("--version", action="version", version=f"kernelpro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ev = sub.add_parser("eval", help="verdict on one candidate kernel file for a task",
                        description="Check a candidate ModelNew file against a task's Model: "
                                    "guard, compile, correctness wall, and timing on a GPU.")
    ev.add_argument("task", type=Path, help="KernelBench-format task file")
    ev.add_argument("candidate", type=Path, help="candidate file defining ModelNew")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--arch", default="sm_90",
                    help="architecture to compile CUDA for without a GPU (default sm_90)")
    ev.add_argument("--cpu", action="store_true",
                    help="run the CPU dry run even if a GPU is present")
    ev.add_argument("--scale", choices=["auto", "full", "down"], default="auto",
                    help="shapes: auto = full on a GPU, scaled down on the CPU")
    ev.add_argument("--max-elements", type=int, default=None,
                    help="element budget of a scaled-down task (default 2^18)")
    ev.add_argument("--tol", type=float, default=None,
                    help="allclose atol=rtol (default per precision: fp32 1e-4, fp16/bf16 1e-2)")
    ev.add_argument("--trials", type=int, default=5, help="correctness trials (default 5)")
    ev.add_argument("--no-robust", action="store_true",
                    help="skip the extra input distributions and the repeated call")
    ev.add_argument("--no-timing", action="store_true", help="stop after correctness")
    ev.add_argument("--strict", action="store_true",
                    help="reject candidates that hand the task's core op to PyTorch "
                         "(default: flag them)")
    ev.add_argument("--kernelbench-compat", action="store_true",
                    help="KernelBench's own protocol (same tensors to both models, allclose "
                         "only, its timing loop), to compare verdicts")
    ev.add_argument("--no-compile-baseline", action="store_true",
                    help="do not time torch.compile of the reference")
    ev.add_argument("--compile-timeout", type=float, default=300.0,
                    help="seconds for importing and building the candidate (default 300)")
    ev.add_argument("--run-timeout", type=float, default=None,
                    help="seconds per forward call (default max(20, 50x the reference's time))")
    ev.add_argument("--total-timeout", type=float, default=1800.0,
                    help="seconds for the whole evaluation (default 1800)")
    ev.add_argument("--require-sandbox", action="store_true",
                    help="refuse to run the candidate without an OS sandbox (default: run it "
                         "and say `unsandboxed` in the verdict)")
    ev.add_argument("--max-candidate-bytes", type=int, default=1 << 20,
                    help="larger candidate files are refused (default 1 MiB)")
    ev.add_argument("--keep", type=Path, default=None,
                    help="directory for kept cubins (default ~/.cache/kernelpro/artifacts)")
    ev.add_argument("--keep-workdir", action="store_true",
                    help="keep the worker's temporary directory (for debugging)")

    prof = sub.add_parser(
        "profile", help="roofline class of a task; diagnosis of a candidate's kernels",
        description="Without a candidate: the task's roofline (FLOPs, minimum bytes, "
                    "intensity, class, floor time) on this GPU or the reference GPU of "
                    "--arch. With one: every tier this machine allows (analytic, static SASS "
                    "rules, timing, Nsight Compute counters) and the micro-profiling tools' "
                    "findings. Without a GPU: the analytic and static tiers only.")
    prof.add_argument("task", type=Path, help="KernelBench-format task file")
    prof.add_argument("candidate", type=Path, nargs="?", help="candidate file defining ModelNew")
    prof.add_argument("--static", action="store_true",
                      help="static tier only (compile and read SASS; needs a candidate)")
    prof.add_argument("--arch", default="sm_90", help="architecture to compile for (sm_90)")
    prof.add_argument("--max-elements", type=int, default=1 << 16,
                      help="element budget of the scaled-down run that records launches")
    prof.add_argument("--json", action="store_true", help="print one JSON object")

    opt = sub.add_parser(
        "optimize", help="search for a faster kernel for a task (MCTS over proposals)",
        description="MCTS (or a baseline strategy) over kernels proposed by an LLM, the "
                    "built-in templates or a replay, each checked by the correctness wall, "
                    "timed and diagnosed on a GPU. Without a GPU: the dry run (proposal, "
                    "compilation, correctness under the Triton interpreter, static analysis; "
                    "nothing timed).")
    opt.add_argument("task", type=Path, nargs="?", help="KernelBench-format task file")
    opt.add_argument("--backend", choices=["triton", "cuda", "cuda-nvrtc"], default="triton",
                     help="cuda: load_inline (KernelBench's form); cuda-nvrtc: only the kernel "
                          "compiled, by NVRTC (kernelpro.nvrtc), much faster to build")
    opt.add_argument("--proposer", choices=["auto", "llm", "templates", "replay"],
                     default="auto", help="auto: the LLM when --model and OPENAI_BASE_URL or "
                                          "OPENAI_API_KEY are set, else templates")
    opt.add_argument("--model", default=None, help="model name for the LLM proposer")
    opt.add_argument("--replay", default=None, help="completions.jsonl of an earlier run")
    opt.add_argument("--budget", type=int, default=20, help="candidates to evaluate (20)")
    opt.add_argument("--time-limit", type=float, default=None, help="seconds")
    opt.add_argument("--out", type=Path, default=None,
                     help="run directory (default runs/TASK-TIMESTAMP)")
    opt.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                     help="continue a killed or finished run (to a larger --budget)")
    opt.add_argument("--strategy", choices=["mcts", "greedy", "bon", "beam"], default="mcts")
    opt.add_argument("-n", "--per-expansion", type=int, default=2,
                     help="candidates proposed per expansion (2)")
    opt.add_argument("--select", default="surprisal-top-m",
                     choices=["surprisal-top-m", "confidence-top-m", "random-m", "all"],
                     help="which correct siblings are timed and become nodes")
    opt.add_argument("--select-m", type=int, default=2)
    opt.add_argument("--objective", choices=["speed", "energy"], default="speed",
                     help="energy: speed first, then joules per call (NVML, GPU only)")
    opt.add_argument("--mcts", default=None, metavar="KEY=VALUE,...",
                     help="MCTS parameters, e.g. c_uct=0.3,widen_k=1,widen_a=0.5,win_slots=2,"
                          "dead_after=8,virtual_loss=1,failure_reward=-0.5,band=-0.4:2.5")
    opt.add_argument("--arch", default="sm_90", help="compile target without a GPU")
    opt.add_argument("--max-elements", type=int, default=1 << 14,
                     help="element budget of the dry run's scaled-down shapes")
    opt.add_argument("--jobs", type=int, default=2,
                     help="candidates evaluated at once: their compiles overlap, the GPU is "
                          "taken in turn (2)")
    opt.add_argument("--require-sandbox", action="store_true",
                     help="refuse to run where no OS sandbox can confine the candidates")
    opt.add_argument("--no-prefetch", action="store_true",
                     help="do not ask the proposer for the next expansion during evaluation")
    opt.add_argument("--json", action="store_true", help="print the summary as JSON")

    lint = sub.add_parser(
        "lint-task", help="flag tasks where a trivial output passes the tolerance",
        description="Run each task's reference on its KernelBench trial inputs and flag "
                    "tasks where all zeros, a constant or the average output passes the "
                    "tolerance, or where an input barely matters. Acknowledge a finding in "
                    "the task file with `# kernelpro-lint: RULE -- why`.")
    lint.add_argument("tasks", type=Path, nargs="+", help="task files or folders of them")
    lint.add_argument("--tol", type=float, default=None,
                      help="allclose atol=rtol (default per precision: fp32 1e-4)")
    lint.add_argument("--scale", choices=["auto", "full", "down"], default="auto",
                      help="shapes: auto = full on a GPU, scaled down on the CPU")
    lint.add_argument("--max-elements", type=int, default=None,
                      help="element budget of a scaled-down task (default 2^24)")
    lint.add_argument("--json", action="store_true", help="print one JSON object")

    doc = sub.add_parser("doctor", help="report GPU, driver, nvcc, Triton, ncu and counters",
                         description="What this machine can do for kernelpro.")
    doc.add_argument("--json", action="store_true", help="print one JSON object")

    from kernelpro.cli_batch import add_bench, add_report, add_study

    add_bench(sub)
    add_study(sub)
    add_report(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    if args.command == "eval":
        return cmd_eval(args)
    if args.command == "doctor":
        return cmd_doctor(args)
    if args.command == "profile":
        return cmd_profile(args)
    if args.command == "lint-task":
        return cmd_lint(args)
    if args.command == "optimize":
        return cmd_optimize(args)
    from kernelpro.cli_batch import cmd_bench, cmd_report, cmd_study

    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "study":
        return cmd_study(args)
    return cmd_report(args)


def _eval_config(args: argparse.Namespace) -> Any:
    from kernelpro.evaluate import EvalConfig
    from kernelpro.evaluate.correctness import WallConfig
    from kernelpro.evaluate.device import parse_arch
    from kernelpro.evaluate.worker import WorkerLimits
    from kernelpro.task import DEFAULT_MAX_ELEMENTS

    parse_arch(args.arch)  # raises ValueError with the fix in its message
    if args.trials < 1:
        raise ValueError("--trials must be at least 1")
    if args.tol is not None and not args.tol > 0:
        raise ValueError("--tol must be positive")
    for name in ("compile_timeout", "run_timeout", "total_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    return EvalConfig(
        arch=args.arch, device="cpu" if args.cpu else "auto", scale=args.scale,
        max_elements=args.max_elements or DEFAULT_MAX_ELEMENTS,
        wall=WallConfig(trials=args.trials, tol=args.tol, robust=not args.no_robust),
        timing=not args.no_timing, compile_baseline=not args.no_compile_baseline,
        strict=args.strict, kernelbench_compat=args.kernelbench_compat,
        limits=WorkerLimits(compile_timeout_s=args.compile_timeout,
                            run_timeout_s=args.run_timeout,
                            total_timeout_s=args.total_timeout),
        require_sandbox=args.require_sandbox, max_candidate_bytes=args.max_candidate_bytes,
        artifacts_dir=args.keep, keep_workdir=args.keep_workdir)


def _task_for(args: argparse.Namespace) -> Any:
    """The task of a TASK CANDIDATE command; ValueError/TaskError name what is wrong."""
    from kernelpro.task import load_task

    if not args.candidate.is_file():
        raise ValueError(f"{args.candidate}: no such candidate file")
    return load_task(args.task)


def cmd_eval(args: argparse.Namespace) -> int:
    from kernelpro.task import TaskError

    try:
        cfg = _eval_config(args)
        task = _task_for(args)
    except (TaskError, ValueError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    result = _run_eval(task, args.candidate, cfg, args.json)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        from kernelpro.render import print_verdict

        print_verdict(task, args.candidate, result)
    if result.error_class in UNUSABLE_INPUT:
        return EXIT_BAD_INPUT
    if result.status == "correct":
        return EXIT_CORRECT
    return EXIT_UNVERIFIED if result.status == "unverified" else EXIT_FAILED


def _run_eval(task: Any, candidate: Path, cfg: Any, quiet: bool) -> Any:
    """evaluate_candidate with a live stage line on an interactive terminal."""
    from kernelpro.evaluate import evaluate_candidate

    if quiet or not sys.stderr.isatty():
        return evaluate_candidate(task, candidate, cfg)
    from rich.console import Console

    with Console(stderr=True).status("evaluating") as status:
        return evaluate_candidate(
            task, candidate, cfg,
            progress=lambda stage, secs: status.update(f"{stage} ({secs:.0f} s)"))


def cmd_profile(args: argparse.Namespace) -> int:
    from kernelpro.evaluate.device import parse_arch
    from kernelpro.task import TaskError, load_task

    try:
        parse_arch(args.arch)
        if args.static and args.candidate is None:
            raise ValueError("--static needs a CANDIDATE to compile")
        task = _task_for(args) if args.candidate is not None else load_task(args.task)
    except (TaskError, ValueError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    if args.static:
        return _profile_static(task, args)
    from kernelpro.profile.profiler import profile_candidate, profile_task

    if args.candidate is None:
        diagnosis = profile_task(task, args.arch)
    elif args.json or not sys.stderr.isatty():
        diagnosis = profile_candidate(task, args.candidate, args.arch, args.max_elements)
    else:
        from rich.console import Console

        with Console(stderr=True).status("profiling") as status:
            diagnosis = profile_candidate(
                task, args.candidate, args.arch, args.max_elements,
                progress=lambda stage, secs: status.update(f"{stage} ({secs:.0f} s)"))
    if args.json:
        print(json.dumps(diagnosis.to_dict()))
    else:
        from kernelpro.render import print_diagnosis

        print_diagnosis(diagnosis)
    return EXIT_CORRECT


def _profile_static(task: Any, args: argparse.Namespace) -> int:
    from kernelpro.evaluate import EvalConfig
    from kernelpro.evaluate.correctness import WallConfig
    from kernelpro.profile.static import is_matmul_like, profile_cubins

    cfg = EvalConfig(arch=args.arch, device="cpu", max_elements=args.max_elements,
                     wall=WallConfig(trials=1, robust=False), timing=False)
    result = _run_eval(task, args.candidate, cfg, args.json)
    verdict = {"status": result.status, "stage": result.stage, "reason": result.reason}
    if not result.cubins:
        report_error(f"nothing to analyze: no kernel was compiled ({result.status} at "
               f"{result.stage}: {result.reason})", args.json)
        return EXIT_FAILED
    profile = profile_cubins([Path(c) for c in result.cubins], args.arch,
                             result.backend or "cuda", task.dtype, is_matmul_like(task.source))
    if args.json:
        print(json.dumps({"verdict": verdict, **profile.to_dict()}))
    else:
        from kernelpro.render import print_static_profile

        print_static_profile(profile, verdict)
    return EXIT_CORRECT


def cmd_lint(args: argparse.Namespace) -> int:
    """Exit 0 when every finding is annotated in its task file, 1 otherwise, 2 on bad input."""
    import torch

    from kernelpro.lint import DEFAULT_LINT_ELEMENTS, lint_task
    from kernelpro.task import TaskError, load_task

    paths: list[Path] = []
    for p in args.tasks:
        if p.is_dir():
            paths += sorted(p.rglob("*.py"))
        elif p.is_file():
            paths.append(p)
        else:
            report_error(f"{p}: no such task file or folder", args.json)
            return EXIT_BAD_INPUT
    if args.tol is not None and not args.tol > 0:
        report_error("--tol must be positive", args.json)
        return EXIT_BAD_INPUT
    gpu = torch.cuda.is_available()
    scale_down = args.scale == "down" or (args.scale == "auto" and not gpu)
    reports = []
    for path in paths:
        try:
            task = load_task(path)
        except TaskError as exc:
            report_error(str(exc), args.json)
            return EXIT_BAD_INPUT
        if not args.json:
            print(f"linting {path} ...", file=sys.stderr)
        reports.append(lint_task(task, tol=args.tol, scale_down=scale_down,
                                 max_elements=args.max_elements or DEFAULT_LINT_ELEMENTS,
                                 device="cuda" if gpu else "cpu"))
    if args.json:
        print(json.dumps({"tasks": [r.to_dict() for r in reports]}))
    else:
        from kernelpro.render import print_lint

        print_lint(reports)
    bad = any(r.failing or r.error for r in reports)
    return EXIT_FAILED if bad else EXIT_CORRECT


def cmd_optimize(args: argparse.Namespace) -> int:
    """Exit 0 when a correct kernel was found, 1 when none, 2 on bad input, 130 on Ctrl-C."""
    import time

    from kernelpro.search.run import OptimizeConfig, Optimizer, parse_mcts
    from kernelpro.store import RunStore
    from kernelpro.task import TaskError, load_task

    try:
        if args.resume is not None:
            if not (args.resume / "store.sqlite").is_file():
                raise ValueError(f"{args.resume}: no run store (store.sqlite) to resume")
            store = RunStore(args.resume / "store.sqlite")
            stored_task = (store.get("task") or {}).get("path")
            store.close()
            task = load_task(Path(args.task or stored_task))
            run_dir = args.resume
        else:
            if args.task is None:
                raise ValueError("give a TASK (or --resume RUN_DIR)")
            task = load_task(args.task)
            run_dir = args.out or Path("runs") / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if args.budget < 1 or args.per_expansion < 1 or args.jobs < 1:
            raise ValueError("--budget, -n and --jobs must be at least 1")
        cfg = OptimizeConfig(backend=args.backend, proposer=args.proposer, budget=args.budget,
                             time_limit_s=args.time_limit, strategy=args.strategy,
                             per_expansion=args.per_expansion, select=args.select,
                             select_m=args.select_m, model=args.model, replay_log=args.replay,
                             objective=args.objective, arch=args.arch,
                             max_elements=args.max_elements, mcts=parse_mcts(args.mcts),
                             jobs=args.jobs, prefetch=not args.no_prefetch,
                             require_sandbox=args.require_sandbox)
        from kernelpro.evaluate import sandbox

        mech = sandbox.detect()  # before the run store exists: Ctrl-C from then on is saved
        if args.require_sandbox and not mech.sandboxed:
            raise ValueError(f"--require-sandbox: {mech.describe()}")
        opt = Optimizer(task, cfg, run_dir, resume=args.resume is not None)
    except (TaskError, ValueError, OSError) as exc:
        report_error(str(exc), args.json)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before anything was evaluated: nothing to save
        return 130
    try:
        if not args.json:
            print(f"kernelpro optimize {task.name}: {opt.proposer_line}; run directory "
                  f"{run_dir}" + ("; no GPU: dry run, nothing will be timed"
                                  if opt.gpu is None else "")
                  + f"; candidates run {mech.describe()}", file=sys.stderr)
        summary = _run_optimize(opt, args.json)
    except KeyboardInterrupt:  # between the store's creation and the search's own handler
        summary = opt.interrupted()
    if args.json:
        print(json.dumps(summary))
    else:
        from kernelpro.render import print_run_summary

        print_run_summary(summary)
    if summary["interrupted"]:
        return 130
    return EXIT_CORRECT if summary["best_node"] is not None else EXIT_FAILED


def _run_optimize(opt: Any, quiet: bool) -> Any:
    def line(p: Any) -> str:
        best = f"{p.best_speedup:.2f}x" if p.best_speedup else "-"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(p.failures.items())) or "none"
        return (f"{p.evaluated}/{opt.cfg.budget} evaluated, best {best}, tokens {p.tokens}, "
                f"failures: {fails}; {p.last}")

    if quiet:
        return opt.run()
    if not sys.stderr.isatty():
        return opt.run(lambda p: print(line(p), file=sys.stderr, flush=True))
    from rich.console import Console

    with Console(stderr=True).status("searching") as status:
        return opt.run(lambda p: status.update(line(p)))


def cmd_doctor(args: argparse.Namespace) -> int:
    from kernelpro.doctor import diagnose_machine
    from kernelpro.render import print_doctor

    report = diagnose_machine()
    if args.json:
        print(json.dumps(report))
    else:
        print_doctor(report)
    return 0


def report_error(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    print(f"kernelpro: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
