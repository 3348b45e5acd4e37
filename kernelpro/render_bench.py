"""Terminal tables for `kernelpro bench` and `kernelpro study` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f}%"


def _x(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}x"


def print_bench(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    env = summary["environment"]
    console.print(f"[bold]bench[/] {summary['suite']}: {summary['tasks']} task(s), budget "
                  f"{summary['budget']} per task, {env['where']}; status "
                  + ", ".join(f"{k} {v}" for k, v in summary["status"].items()))
    console.print(f"  GPU: {', '.join(env['gpu'])}; torch {', '.join(env['torch']) or '?'}; "
                  f"tolerance (atol=rtol) {', '.join(f'{t:g}' for t in env['tolerance']) or '?'}"
                  f"; protocol: {', '.join(env['protocol']) or '?'}")
    for baseline, rows in summary["fast_p"].items():
        title = "vs PyTorch eager" if baseline == "eager" else "vs torch.compile"
        table = Table(title=f"fast_p {title}: share of tasks correct and > p times faster "
                            "(? = not timed)", title_justify="left")
        table.add_column("group", no_wrap=True)
        for col in ("tasks", "correct", "timed"):
            table.add_column(col, justify="right")
        for p in summary["ps"]:
            table.add_column(f"p={p:g}", justify="right")
        table.add_column("geomean", justify="right")
        for r in rows:
            table.add_row(r["group"], str(r["tasks"]), str(r["correct"]), str(r["timed"]),
                          *[_pct(r[f"fast_{p:g}"]) for p in summary["ps"]], _x(r["geomean"]))
        console.print(table)
    for note in summary["notes"]:
        console.print(f"  note: {note}")
    console.print(f"  written: {summary['bench_dir']}/bench.json, tasks.csv, fast_p.csv")


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def print_study(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    console.print(f"[bold]study[/]: {result['samples']} samples, {result['tasks']} task(s), "
                  f"{result['seeds']} seed(s), {result['groups']} group(s) (task, seed); "
                  f"{result['tie_break']}")
    table = Table(title="strategies over correct samples", title_justify="left")
    for col in ("strategy", "fast_1", "std over seeds", "mean speedup", "geomean", "picked"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in result["strategies"]:
        table.add_row(r["strategy"], _pct(r["fast_1"]), _pct(r["fast_1_std"])
                      if r["fast_1_std"] is not None else "-", _x(r["mean_speedup"]),
                      _x(r["geomean_speedup"]), str(r["groups_with_pick"]))
    console.print(table)
    h = result["cohens_h"]
    console.print(f"Cohen's h, surprisal vs confidence fast_1 ({_pct(h['surprisal_fast_1'])} vs "
                  f"{_pct(h['confidence_fast_1'])}): {h['h']:.3f}")
    s, w = result["sign_test"], result["wilcoxon"]
    console.print(f"sign test (surprisal faster than confidence): {s['wins']} wins, "
                  f"{s['losses']} losses, {s['ties']} ties of {s['pairs']} pairs, "
                  f"p = {_num(s['p'])}")
    console.print(f"Wilcoxon signed-rank on log-speedup differences: n = {w['n']}, "
                  f"W = {_num(w['statistic'])}, p = {_num(w['p'])}"
                  + (f" ({w['why']})" if w.get("why") else ""))
    q = Table(title="surprisal quartiles within each group (Q1 least, Q4 most surprising)",
              title_justify="left")
    for col in ("quartile", "n", "mean speedup", "geomean", "fast_1"):
        q.add_column(col, justify="left" if col == "quartile" else "right")
    for r in result["quartiles"]:
        q.add_row(r["quartile"], str(r["n"]), _x(r["mean_speedup"]), _x(r["geomean_speedup"]),
                  _pct(r["fast_1"]) if r["fast_1"] is not None else "-")
    console.print(q)
    sp = result["spearman"]
    console.print(f"Spearman surprisal vs speedup (n = {sp['n']}): rho = {_num(sp['rho'])}, "
                  f"p = {_num(sp['p'])}; controlling for token count: rho = "
                  f"{_num(sp['partial_rho'])}, p = {_num(sp['partial_p'])}; per-token mean: "
                  f"rho = {_num(sp['per_token_rho'])}, p = {_num(sp['per_token_p'])}")
    b = Table(title="evaluation budget: rank by surprisal before correctness, evaluate m",
              title_justify="left")
    for col in ("m", "surprisal first", "confidence first", "random (expected)"):
        b.add_column(col, justify="right")
    for r in result["budget_curve"]:
        b.add_row(str(r["m"]), _pct(r["surprisal_first"]), _pct(r["confidence_first"]),
                  _pct(r["random"]))
    console.print(b)
    for note in result["notes"]:
        console.print(f"  note: {note}")
