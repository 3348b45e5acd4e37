"""The report of a `kernelpro bench`: the fast_p tables, a per-task chart and the task table."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from kernelpro.bench import BenchConfig, summarise
from kernelpro.bench_store import BenchStore
from kernelpro.fastp import FAST_P
from kernelpro.report.page import notes, page, table
from kernelpro.report.svg import bar_chart


def load_bench(bench_dir: Path) -> dict[str, Any]:
    store = BenchStore(bench_dir / "bench.sqlite")
    try:
        return summarise(store.rows(), BenchConfig.from_stored(store.get("config") or {}))
    finally:
        store.close()


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{100 * v:.0f}%"


def bench_page(bench_dir: Path) -> str:
    s = load_bench(Path(bench_dir))
    env = s["environment"]
    facts = [("suite", s["suite"]), ("tasks", s["tasks"]), ("budget per task", s["budget"]),
             ("status", ", ".join(f"{k} {v}" for k, v in s["status"].items())),
             ("GPU", ", ".join(env["gpu"])), ("torch", ", ".join(env["torch"]) or "-"),
             ("tolerance (atol=rtol)", ", ".join(f"{t:g}" for t in env["tolerance"]) or "-"),
             ("protocol", ", ".join(env["protocol"]) or "-"), ("where", env["where"]),
             ("optimize options", " ".join(env["optimize_args"]) or "defaults")]
    sections = [f"<h1>kernelpro bench: {escape(Path(s['suite']).name)}</h1>",
                f'<p class="muted">{escape(str(bench_dir))}</p>',
                "<h2>Summary</h2>", table(None, facts, left=2), notes(s["notes"])]
    for baseline, rows in s["fast_p"].items():
        title = "PyTorch eager" if baseline == "eager" else "torch.compile"
        sections.append(f"<h2>fast_p against {title}</h2>"
                        "<p class=\"muted\">share of tasks whose best kernel is correct and more "
                        "than p times faster; ? = not timed.</p>")
        sections.append(table(
            ["group", "tasks", "correct", "timed", *[f"p={p:g}" for p in FAST_P], "geomean"],
            [[r["group"], r["tasks"], r["correct"], r["timed"],
              *[_pct(r[f"fast_{p:g}"]) for p in FAST_P],
              f"{r['geomean']:.3g}x" if r["geomean"] else "-"] for r in rows]))
    bars = []
    for r in s["rows"]:
        key = "bar" if r["correct"] else "failed"
        bars.append((r["key"], r["speedup_eager"] if r["correct"] else None, key))
    timed = any(v for _, v, _ in bars)
    chart_note = [] if timed else ["nothing timed: each bar is a stub, purple for a correct "
                                   "kernel, red for none"]
    sections.append("<h2>Per task: best speedup vs eager</h2>" + notes(chart_note)
                    + '<div class="chart">' + bar_chart(bars, "speedup vs eager (x)",
                                                        "per-task speedup") + "</div>")
    sections.append("<h2>Tasks</h2>" + table(
        ["task", "category", "status", "speedup vs eager", "vs compile", "evaluated", "reason"],
        [[r["key"], r["category"], r["status"], r["speedup_eager"], r["speedup_compile"],
          r["evaluated"], (r["reason"] or "")[:160]] for r in s["rows"]], left=3))
    return page(f"kernelpro bench {Path(s['suite']).name}", sections)
