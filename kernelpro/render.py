"""Human-readable terminal output (rich) for verdicts and the doctor report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kernelpro.types import EvalResult, Task

_STATUS_STYLE = {"correct": "bold green", "incorrect": "bold red", "failed": "bold red",
                 "unverified": "bold yellow"}


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}{unit}"


def print_verdict(task: Task, candidate: Path, result: EvalResult,
                  console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    style = _STATUS_STYLE.get(result.status, "bold")
    console.print(f"[{style}]{result.status.upper()}[/] {candidate} on {task.name} "
                  f"({result.backend or '?'}, {result.device}); stage reached: {result.stage}")
    if result.reason:
        console.print(f"  reason: {result.reason}")
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("shapes", result.scale)
    if result.max_abs_error is not None:
        table.add_row("max abs error", _fmt(result.max_abs_error))
    if result.timed and result.timing:
        t = result.timing
        table.add_row("runtime", f"{t.median_ms:.4g} ms median (IQR {t.iqr_ms:.3g}, min "
                                 f"{t.min_ms:.4g}, {t.trials} trials, CI ±{100 * t.rel_ci:.2g}%)")
        table.add_row("eager / compile", f"{_fmt(result.eager_ms, ' ms', 4)} / "
                                         f"{_fmt(result.compile_ms, ' ms', 4)}")
        table.add_row("speedup vs eager", _fmt(result.speedup_eager, "x"))
        table.add_row("speedup vs compile", _fmt(result.speedup_compile, "x"))
    else:
        table.add_row("timing", "not timed")
    if result.checks:
        table.add_row("checks", ", ".join(
            f"{c.name} {'ok' if c.passed else 'FAILED'}" for c in result.checks))
    for cubin in result.cubins[:4]:
        table.add_row("cubin", cubin)
    for note in result.notes:
        table.add_row("note", note)
    table.add_row("wall time", f"{result.wall_s:.1f} s")
    console.print(table)
    if result.status == "failed" and result.log_tail.strip():
        console.print("[dim]worker log (tail):[/]")
        console.print(result.log_tail.strip()[-800:], markup=False, highlight=False)


def print_static_profile(profile: Any, verdict: dict[str, Any],
                         console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    console.print(f"static profile for {profile.arch} (no GPU needed); the candidate was "
                  f"{verdict['status']} at {verdict['stage']} in the interpreter run")
    table = Table(show_header=True)
    for col in ("kernel", "regs", "shared B", "spill B", "threads", "occupancy", "top SASS"):
        table.add_column(col)
    for k in profile.kernels:
        top = sorted(k.sass.histogram.items(), key=lambda kv: -kv[1])[:4]
        threads = f"{k.threads_per_block}{' (assumed)' if k.threads_assumed else ''}"
        table.add_row(k.sass.name[:40], str(k.sass.registers), str(k.sass.shared_bytes),
                      str(k.sass.spill_bytes), threads,
                      f"{k.occupancy.occupancy:.0%} ({', '.join(k.occupancy.limiters)})",
                      ", ".join(f"{f} {n}" for f, n in top))
    console.print(table)
    if not profile.findings:
        console.print("no findings: none of the SASS rules fired")
    for f in profile.findings:
        style = {"critical": "bold red", "warning": "yellow"}.get(f.severity, "")
        console.print(f"[{style}]{f.severity.upper()}[/] {f.tool} ({f.kernel[:40]}): {f.message}")
        for rank, rec in enumerate(f.recommendations, 1):
            console.print(f"   {rank}. {rec.action} (expected {rec.expected_gain})")


def print_doctor(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="kernelpro doctor", show_header=True)
    table.add_column("component")
    table.add_column("status")
    for key, value in report.items():
        table.add_row(key, str(value))
    console.print(table)


def print_lint(reports: list[Any], console: Console | None = None) -> None:
    """One row per finding (or per clean task) for `kernelpro lint-task`."""
    console = console or Console(highlight=False)
    table = Table(title="task lint")
    for col in ("task", "shapes", "tol", "rule", "finding"):
        table.add_column(col, no_wrap=col in ("task", "rule"))
    for r in reports:
        shapes = r.scale.removeprefix("scaled down: ")
        if r.error:
            table.add_row(r.task, shapes, f"{r.tol:g}", "[red]error[/]", r.error)
        elif not r.findings:
            table.add_row(r.task, shapes, f"{r.tol:g}", "[green]clean[/]", r.note or "")
        for f in r.findings:
            rule = f"[yellow]{f.rule} (annotated)[/]" if f.annotated else f"[red]{f.rule}[/]"
            table.add_row(r.task, shapes, f"{r.tol:g}", rule, f.message)
    console.print(table)
    failing = sum(len(r.failing) + bool(r.error) for r in reports)
    console.print(f"{len(reports)} task(s), {failing} unacknowledged finding(s)")


def print_diagnosis(diagnosis: Any, console: Console | None = None) -> None:
    """`kernelpro profile`: the roofline table, the tiers, then the findings."""
    console = console or Console(highlight=False)
    d = diagnosis.to_dict()
    roof = d["roofline"]
    console.print(f"[bold]{d['task']}[/] on {d['gpu']}; tiers: {', '.join(d['tiers'])}")
    if roof:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_row("class", f"[bold]{roof['bound']}-bound[/]")
        table.add_row("work", f"{roof['flops'] / 1e9:.4g} GFLOP, {roof['bytes_min'] / 1e6:.4g} MB "
                              f"minimum ({roof['work_source']})")
        table.add_row("intensity", f"{roof['intensity']:.3g} FLOP/B (ridge {roof['ridge']:.3g} "
                                   f"for {roof['dtype']})")
        table.add_row("floor", f"{roof['floor_ms']:.4g} ms (memory {roof['memory_ms']:.4g} ms, "
                               f"compute {roof['compute_ms']:.4g} ms)")
        m = d["measured"]
        if "runtime_ms" in m:
            table.add_row("measured", f"{m['runtime_ms']:.4g} ms: {m['achieved_gbps']:.0f} GB/s "
                                      f"({m['bandwidth_pct']:.0f}%), {m['achieved_tflops']:.3g} "
                                      f"TFLOP/s ({m['compute_pct']:.0f}%)")
        if m.get("ncu_bound"):
            table.add_row("counters say", f"{m['ncu_bound']}-bound")
        console.print(table)
    for note in d["notes"]:
        console.print(f"  note: {note}")
    for f in d["findings"]:
        style = {"critical": "red", "warning": "yellow"}.get(f["severity"], "dim")
        console.print(f"[{style}]{f['severity']:>8}[/] {f['tool']} ({f['kernel']}): "
                      f"{f['message']}")
        for r in f["recommendations"]:
            console.print(f"           -> {r['action']} (expected {r['expected_gain']})")


def print_run_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    best = summary["best_speedup"]
    console.print(f"[bold]{summary['task']}[/]: {summary['evaluated']} of {summary['budget']} "
                  f"candidates evaluated ({summary['strategy']}, {summary['proposer']})")
    if summary["best_node"] is None:
        console.print("  no correct kernel found")
    else:
        what = f"{best:.3g}x vs eager" if best else "correct, not timed"
        console.print(f"  best: node {summary['best_node']} ({what}) -> "
                      f"{summary['run_dir']}/best.py")
    if summary["failures"]:
        console.print("  failures by stage: " + ", ".join(
            f"{k} {v}" for k, v in sorted(summary["failures"].items())))
    usage = summary.get("usage")
    if usage:
        console.print(f"  tokens: {usage['prompt_tokens']} in, {usage['completion_tokens']} "
                      f"out, ${usage['cost_usd']:.4f}, {usage['cached']} from cache")
    for note in summary["notes"]:
        console.print(f"  note: {note}")
