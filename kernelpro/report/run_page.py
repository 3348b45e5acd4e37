"""The report of one `kernelpro optimize` run, read from its run directory."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from kernelpro.report.page import diff, notes, page, pre, table
from kernelpro.report.svg import roofline_chart, step_chart, tree_chart
from kernelpro.search.run import pick_best
from kernelpro.store import RunStore

ROOT = 0


def load_run(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir / "store.sqlite")
    try:
        data = {"nodes": store.nodes(), "config": store.get("config") or {},
                "task": store.get("task") or {}, "roofline": store.get("roofline"),
                "summary": store.get("summary"), "usage": store.get("usage")}
    finally:
        store.close()
    if data["summary"] is None and (run_dir / "summary.json").is_file():
        data["summary"] = json.loads((run_dir / "summary.json").read_text())
    data["summary"] = data["summary"] or {}
    return data


def run_page(run_dir: Path) -> str:
    run = load_run(Path(run_dir))
    nodes = run["nodes"]
    name = run["task"].get("name", Path(run_dir).name)
    best = pick_best(nodes, run["config"].get("objective", "speed"))
    sections = [f"<h1>kernelpro run: {escape(name)}</h1>",
                f'<p class="muted">{escape(str(run_dir))}</p>',
                summary_section(run, best),
                progress_section(nodes),
                tree_section(nodes, best),
                roofline_section(run),
                diagnosis_section(nodes),
                best_section(nodes, best, run["task"].get("source", ""))]
    return page(f"kernelpro run {name}", sections)


def summary_section(run: dict[str, Any], best: dict[str, Any] | None) -> str:
    s, cfg, nodes = run["summary"], run["config"], run["nodes"]
    evaluated = [n for n in nodes if n["id"] != ROOT]
    failures: dict[str, int] = {}
    for n in evaluated:
        if not n["correct"]:
            failures[n["stage"] or "?"] = failures.get(n["stage"] or "?", 0) + 1
    speed = best["speedup"] if best else None
    rows = [("task", run["task"].get("path", "-")),
            ("proposer", s.get("proposer", cfg.get("proposer", "-"))),
            ("strategy", cfg.get("strategy", "-")),
            ("evaluated", f"{len(evaluated)} of budget {cfg.get('budget', '-')}"),
            ("correct", sum(1 for n in evaluated if n["correct"])),
            ("best node", "-" if best is None else best["id"]),
            ("best speedup vs eager", "not timed" if best and not speed
             else f"{speed:.3g}x" if speed else "-"),
            ("failures by stage", ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
             or "none"),
            ("GPU", s.get("gpu") or "none (dry run)"), ("torch", s.get("torch", "-")),
            ("tolerance (atol=rtol)", s.get("tolerance", "-")),
            ("protocol", s.get("protocol", "-"))]
    usage = run["usage"]
    if usage:
        rows.append(("tokens", f"{usage['prompt_tokens']} in, {usage['completion_tokens']} "
                               f"out, ${usage.get('cost_usd', 0):.4f}"))
    return "<h2>Summary</h2>" + table(None, rows, left=2) + notes(s.get("notes", []))


def progress_section(nodes: list[dict[str, Any]]) -> str:
    evaluated = [n for n in nodes if n["id"] != ROOT]
    timed = [(i, n["speedup"]) for i, n in enumerate(evaluated, 1)
             if n["correct"] and n["speedup"]]
    if timed:
        best, top = [], 0.0
        for i, s in timed:
            top = max(top, s)
            best.append((i, top))
        if evaluated:
            best.append((len(evaluated), top))
        chart = step_chart(timed, best, "evaluation", "speedup vs eager (x)",
                           "best speedup over evaluations", log_y=True)
        return "<h2>Best speedup over evaluations</h2><div class=\"chart\">" + chart + "</div>"
    count, pts = 0, []
    for i, n in enumerate(evaluated, 1):
        count += bool(n["correct"])
        pts.append((i, float(count)))
    chart = step_chart(pts, pts, "evaluation", "correct candidates so far",
                       "correct candidates over evaluations")
    return ("<h2>Best speedup over evaluations</h2>"
            + notes(["nothing was timed (dry run or no GPU): the chart counts correct "
                     "candidates instead of speedups"]) + '<div class="chart">' + chart
            + "</div>")


def _node_label(n: dict[str, Any]) -> str:
    if n["id"] == ROOT:
        return "ref"
    if n["correct"]:
        return f"{n['speedup']:.2f}x" if n["speedup"] else "ok"
    return (n["stage"] or "fail")[:8]


def tree_section(nodes: list[dict[str, Any]], best: dict[str, Any] | None) -> str:
    shown = [n for n in nodes if n["in_tree"]]
    ids = {n["id"] for n in shown}
    items = []
    for n in shown:
        kind = ("reference" if n["id"] == ROOT else "top" if best and n["id"] == best["id"]
                else "candidate" if n["correct"] else "failed")
        tip = f"node {n['id']}: {n['status']}" + (f" ({n['reason']})" if n["reason"] else "")
        items.append({"id": n["id"], "parent": n["parent"] if n["parent"] in ids else None,
                      "kind": kind, "label": _node_label(n), "tip": tip[:300]})
    off = len(nodes) - len(shown)
    extra = (f'<p class="muted">{off} correct sibling(s) were not timed (--select) and are '
             "not in the tree.</p>") if off else ""
    return ("<h2>Search tree</h2><p class=\"muted\">gold: best; green: correct; red: failed; "
            "grey: the reference. Hover a node for its verdict.</p><div class=\"chart\">"
            + tree_chart(items, "search tree") + "</div>" + extra)


def roofline_section(run: dict[str, Any]) -> str:
    roof = run["roofline"]
    head = "<h2>Roofline</h2>"
    if not roof:
        return head + notes(["no roofline recorded for this run (no correct candidate was "
                             "diagnosed)"])
    work = roof["work"]
    bytes_min = work["bytes_read"] + work["bytes_written"]
    intensity = work["flops"] / bytes_min if bytes_min else 1.0
    flops = work["flops"]
    points = []
    eager = next((n["result"]["eager_ms"] for n in run["nodes"]
                  if n["result"] and n["result"].get("eager_ms")), None)
    if eager and flops:
        points.append(("reference (eager)", flops / (eager / 1e3), "reference"))
    for n in run["nodes"]:
        if n["correct"] and n["runtime_ms"] and flops and n["id"] != ROOT:
            points.append((f"node {n['id']}", flops / (n["runtime_ms"] / 1e3), "candidate"))
    chart = roofline_chart(roof["peak_flops"], roof["bandwidth"], max(intensity, 1e-6), points,
                           "roofline")
    text = (f"{roof['bound']}-bound on {roof['gpu']} ({roof['dtype']}): "
            f"{flops / 1e9:.4g} GFLOP, {bytes_min / 1e6:.4g} MB minimum traffic, "
            f"intensity {intensity:.3g} FLOP/byte (ridge {roof['ridge']:.3g}), "
            f"floor {roof['floor_ms']:.4g} ms")
    note = [] if points else ["no measured points: nothing was timed on a GPU"]
    return (head + f"<p>{escape(text)}</p>" + notes(note) + '<div class="chart">' + chart
            + "</div>")


def diagnosis_section(nodes: list[dict[str, Any]]) -> str:
    """Each diagnosed node, and how its children (proposed with that diagnosis) turned out."""
    by_parent: dict[int, list[dict[str, Any]]] = {}
    for n in nodes:
        if n["parent"] is not None:
            by_parent.setdefault(n["parent"], []).append(n)
    blocks = []
    for n in nodes:
        if n["id"] == ROOT or not n["diagnosis"]:
            continue
        recs = n["recommendations"] or []
        kids = by_parent.get(n["id"], [])
        rows = []
        for k in kids:
            ratio = (k["speedup"] / n["speedup"]) if k["speedup"] and n["speedup"] else None
            rows.append((k["id"], k["status"], k["speedup"],
                         f"{ratio:.3g}x" if ratio else "-", (k["reason"] or "")[:120]))
        tried = ("<p>What happened when it was tried (children proposed with this diagnosis"
                 + (f", top recommendation {escape(recs[0])}" if recs else "") + "):</p>"
                 + table(["child", "status", "speedup", "vs this node", "reason"], rows, left=0)
                 ) if kids else "<p class=\"muted\">not tried: no children.</p>"
        speed = f", {n['speedup']:.3g}x" if n["speedup"] else ""
        blocks.append(f"<details><summary>node {n['id']}{speed}: "
                      f"{escape(', '.join(recs[:3]) or 'no recommendation')}</summary>"
                      + pre(n["diagnosis"]) + tried + "</details>")
    body = "".join(blocks) or '<p class="muted">no node was diagnosed.</p>'
    return "<h2>Diagnoses</h2>" + body


def best_section(nodes: list[dict[str, Any]], best: dict[str, Any] | None,
                 reference: str) -> str:
    head = "<h2>Best kernel</h2>"
    if best is None:
        return head + '<p class="muted">no correct kernel.</p>'
    by_id = {n["id"]: n for n in nodes}
    parent = by_id.get(best["parent"])
    if parent is not None and parent["id"] != ROOT and parent["source"]:
        old, old_name = parent["source"], f"node {parent['id']} (parent)"
    else:
        old, old_name = reference, "reference"
    return (head + f"<p>node {best['id']}; diff against the {escape(old_name)}:</p>"
            + diff(old, best["source"] or "", old_name, f"node {best['id']}")
            + "<details><summary>full source</summary>" + pre(best["source"] or "")
            + "</details>")
