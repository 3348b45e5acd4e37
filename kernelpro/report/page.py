"""The HTML shell of a report: inline CSS, escaping, tables and a coloured diff. No scripts,
no external resources: the file is the whole report."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape
from typing import Any

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;
border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:12px}
.note{color:#8a5a00;background:#fff8e6;border-left:3px solid #f2a900;padding:4px 10px;
margin:6px 0}
.muted{color:#777}.add{background:#e6ffed}.del{background:#ffeef0}.hunk{color:#6f42c1}
.chart{overflow-x:auto}details{margin:4px 0}summary{cursor:pointer}
"""


def page(title: str, sections: Sequence[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(sections) + "</body></html>")


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A table whose first `left` columns are left-aligned; cells are escaped text."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>'
                   for i, h in enumerate(headers or ()))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">'
                                    f'{escape(_cell(v))}</td>' for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def notes(lines: Sequence[str]) -> str:
    return "".join(f'<div class="note">{escape(line)}</div>' for line in lines)


def diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff, coloured by line."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name,
                                     lineterm=""):
        cls = ("hunk" if line.startswith("@@") else "add" if line.startswith("+")
               else "del" if line.startswith("-") else "")
        out.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line))
    return "<pre>" + "\n".join(out) + "</pre>" if out else "<p class=\"muted\">identical</p>"


def pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"
