"""Inline SVG charts for the report: no JavaScript, no CDN, so the file renders offline and the
same in every browser. Pure functions from numbers to SVG text.

Each chart draws its data in a colour of its own (COLORS) so a screenshot can tell that it
rendered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = {
    "best": "#e4572e",  # best speedup so far
    "points": "#17becf",  # each evaluation
    "roof": "#2e86ab",  # roofline ceilings
    "candidate": "#3bb273",  # correct node / candidate point
    "failed": "#d1495b",
    "reference": "#555555",
    "top": "#f2a900",  # best node
    "bar": "#7768ae",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Frame:
    """A plotting area inside an SVG of width x height, with margins for axes."""

    width: int = 640
    height: int = 320
    left: int = 64
    right: int = 16
    top: int = 16
    bottom: int = 44

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom


def _scale(lo: float, hi: float, log: bool):
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = (hi - lo) or 1.0

    def f(v: float) -> float:
        v = math.log10(v) if log else v
        return (v - lo) / span
    return f


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        steps = (1.0, 2.0, 5.0) if math.log10(hi / lo) < 2 else (1.0,)
        return [m * 10.0 ** e for e in decades for m in steps if lo <= m * 10.0 ** e <= hi]
    step = 10 ** math.floor(math.log10((hi - lo) or 1.0))
    while (hi - lo) / step > 8:
        step *= 2
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _label(v: float) -> str:
    return f"{v:.3g}"


def _axes(fr: Frame, xs: tuple[float, float], ys: tuple[float, float], xlog: bool, ylog: bool,
          xlabel: str, ylabel: str, x_ticks: bool = True) -> list[str]:
    out = [f'<rect x="{fr.left}" y="{fr.top}" width="{fr.plot_w}" height="{fr.plot_h}" '
           'fill="#fafafa" stroke="#999"/>']
    fx, fy = _scale(*xs, xlog), _scale(*ys, ylog)
    for t in _ticks(*xs, xlog) if x_ticks else []:
        x = fr.left + fx(t) * fr.plot_w
        out.append(f'<line x1="{x:.1f}" y1="{fr.top + fr.plot_h}" x2="{x:.1f}" '
                   f'y2="{fr.top + fr.plot_h + 4}" stroke="#666"/>'
                   f'<text x="{x:.1f}" y="{fr.top + fr.plot_h + 17}" text-anchor="middle" '
                   f'{FONT}>{_label(t)}</text>')
    for t in _ticks(*ys, ylog):
        y = fr.top + (1 - fy(t)) * fr.plot_h
        out.append(f'<line x1="{fr.left - 4}" y1="{y:.1f}" x2="{fr.left + fr.plot_w}" '
                   f'y2="{y:.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{fr.left - 7}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
                   f'{_label(t)}</text>')
    out.append(f'<text x="{fr.left + fr.plot_w / 2}" y="{fr.height - 6}" text-anchor="middle" '
               f'{FONT}>{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14 {fr.top + fr.plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle" {FONT}>{escape(ylabel)}</text>')
    return out


def _svg(fr: Frame, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
            f'width="{fr.width}" height="{fr.height}" viewBox="0 0 {fr.width} {fr.height}">'
            + "".join(body) + "</svg>")


def _range(values: Sequence[float], log: bool, pad: float = 0.08) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        lo, hi = lo / (1 + 4 * pad), hi * (1 + 4 * pad)
        return (lo, hi) if hi > lo else (lo / 2, hi * 2)
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def step_chart(points: Sequence[tuple[float, float]], best: Sequence[tuple[float, float]],
               xlabel: str, ylabel: str, title: str, log_y: bool = False,
               fr: Frame = Frame()) -> str:
    """Scatter of every point plus the best-so-far as a step line."""
    values = [y for _, y in points] + [y for _, y in best]
    xs_all = [x for x, _ in points] + [x for x, _ in best]
    if not values:
        return _svg(fr, _axes(fr, (0, 1), (0, 1), False, False, xlabel, ylabel), title)
    if log_y:
        values = [v for v in values if v > 0]
    xs, ys = _range(xs_all, False, 0.02), _range(values + ([1.0] if log_y else []), log_y)
    fx, fy = _scale(*xs, False), _scale(*ys, log_y)

    def px(x: float, y: float) -> tuple[float, float]:
        return fr.left + fx(x) * fr.plot_w, fr.top + (1 - fy(y)) * fr.plot_h
    body = _axes(fr, xs, ys, False, log_y, xlabel, ylabel)
    for x, y in points:
        if y > 0 or not log_y:
            cx, cy = px(x, y)
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" '
                        f'fill="{COLORS["points"]}"><title>{_label(x)}: {_label(y)}</title>'
                        '</circle>')
    if best:
        path, prev = [], None
        for x, y in best:
            cx, cy = px(x, y)
            if prev is not None:
                path.append(f"L{cx:.1f},{prev:.1f}")
            path.append(("M" if not path else "L") + f"{cx:.1f},{cy:.1f}")
            prev = cy
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{COLORS["best"]}" '
                    'stroke-width="3"/>')
    return _svg(fr, body, title)


def roofline_chart(peak_flops: float, bandwidth: float, intensity: float,
                   points: Sequence[tuple[str, float, str]], title: str,
                   fr: Frame = Frame()) -> str:
    """Log-log FLOP/s against FLOP/byte: the memory and compute roofs, the task's intensity,
    and measured points (label, FLOP/s, colour key) at that intensity."""
    ridge = peak_flops / bandwidth
    lo_i = min(intensity, ridge) / 100
    hi_i = max(intensity, ridge) * 100
    perf = [p for _, p, _ in points if p > 0]
    ys = (min([bandwidth * lo_i, *perf]) / 2, peak_flops * 3)
    fx, fy = _scale(lo_i, hi_i, True), _scale(*ys, True)

    def px(x: float, y: float) -> tuple[float, float]:
        return fr.left + fx(x) * fr.plot_w, fr.top + (1 - fy(y)) * fr.plot_h
    body = _axes(fr, (lo_i, hi_i), ys, True, True, "arithmetic intensity (FLOP/byte)",
                 "performance (FLOP/s)")
    a, b, c = px(lo_i, bandwidth * lo_i), px(ridge, peak_flops), px(hi_i, peak_flops)
    body.append(f'<path d="M{a[0]:.1f},{a[1]:.1f} L{b[0]:.1f},{b[1]:.1f} L{c[0]:.1f},{c[1]:.1f}"'
                f' fill="none" stroke="{COLORS["roof"]}" stroke-width="3"/>')
    x_task = px(intensity, ys[0])[0]
    body.append(f'<line x1="{x_task:.1f}" y1="{fr.top}" x2="{x_task:.1f}" '
                f'y2="{fr.top + fr.plot_h}" stroke="#888" stroke-dasharray="5 4"/>'
                f'<text x="{x_task + 4:.1f}" y="{fr.top + 14}" {FONT}>task intensity '
                f'{_label(intensity)}</text>')
    for label, perf_v, key in points:
        if perf_v > 0:
            cx, cy = px(intensity, perf_v)
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{COLORS[key]}" '
                        f'stroke="#222"><title>{escape(label)}: {_label(perf_v)} FLOP/s</title>'
                        '</circle>')
    return _svg(fr, body, title)


def bar_chart(bars: Sequence[tuple[str, float | None, str]], ylabel: str, title: str,
              log_y: bool = True, baseline: float | None = 1.0, width: int = 720) -> str:
    """One bar per item (label, value or None, colour key); None draws a short hatched stub."""
    fr = Frame(width=max(width, 80 + 28 * len(bars)), height=340, bottom=120)
    values = [v for _, v, _ in bars if v is not None and v > 0]
    ys = _range(values + ([baseline] if baseline else []), log_y) if values else (0.1, 10.0)
    fy = _scale(*ys, log_y)
    body = _axes(fr, (0, 1), ys, False, log_y, "", ylabel, x_ticks=False)
    slot = fr.plot_w / max(1, len(bars))
    floor_y = fr.top + fr.plot_h
    for i, (label, value, key) in enumerate(bars):
        x = fr.left + i * slot + slot * 0.15
        w = slot * 0.7
        if value is not None and value > 0:
            y = fr.top + (1 - fy(max(value, ys[0]))) * fr.plot_h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                        f'height="{floor_y - y:.1f}" fill="{COLORS[key]}"><title>'
                        f'{escape(label)}: {_label(value)}</title></rect>')
        else:
            body.append(f'<rect x="{x:.1f}" y="{floor_y - 24:.1f}" width="{w:.1f}" height="24" '
                        f'fill="{COLORS[key]}" stroke="#222" stroke-dasharray="3 2"><title>'
                        f'{escape(label)}: not timed'
                        '</title></rect>')
        tx = x + w / 2
        body.append(f'<text transform="translate({tx:.1f} {floor_y + 8}) rotate(55)" {FONT}>'
                    f'{escape(label[:28])}</text>')
    if baseline and ys[0] < baseline < ys[1]:
        y = fr.top + (1 - fy(baseline)) * fr.plot_h
        body.append(f'<line x1="{fr.left}" y1="{y:.1f}" x2="{fr.left + fr.plot_w}" y2="{y:.1f}" '
                    'stroke="#222" stroke-dasharray="6 3"/>')
    return _svg(fr, body, title)


def tree_chart(nodes: Sequence[dict], title: str) -> str:
    """The search tree: depth down, leaves across; colour by outcome, the best in gold.
    `nodes`: id, parent, kind ('reference'|'candidate'|'failed'|'top'), label, tip."""
    children: dict[int | None, list[int]] = {}
    by_id = {n["id"]: n for n in nodes}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n["id"])
    pos: dict[int, tuple[float, int]] = {}
    next_leaf = [0]

    def place(nid: int, depth: int) -> float:
        kids = children.get(nid, [])
        if not kids:
            x = float(next_leaf[0])
            next_leaf[0] += 1
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (xs[0] + xs[-1]) / 2
        pos[nid] = (x, depth)
        return x

    for root in children.get(None, []):
        place(root, 0)
    leaves = max(1, next_leaf[0])
    depth = max((d for _, d in pos.values()), default=0)
    gap_x, gap_y = 46, 64
    fr = Frame(width=max(320, 40 + leaves * gap_x), height=60 + (depth + 1) * gap_y)

    def xy(nid: int) -> tuple[float, float]:
        x, d = pos[nid]
        return 20 + gap_x / 2 + x * gap_x, 30 + d * gap_y
    body = []
    for n in nodes:
        if n["parent"] is not None and n["parent"] in pos and n["id"] in pos:
            (x1, y1), (x2, y2) = xy(n["parent"]), xy(n["id"])
            body.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                        'stroke="#aaa" stroke-width="1.5"/>')
    for nid in pos:
        n = by_id[nid]
        x, y = xy(nid)
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="13" fill="{COLORS[n["kind"]]}" '
                    f'stroke="#222"><title>{escape(n["tip"])}</title></circle>'
                    f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" {FONT} '
                    f'fill="#fff">{nid}</text>'
                    f'<text x="{x:.1f}" y="{y + 27:.1f}" text-anchor="middle" {FONT}>'
                    f'{escape(n["label"])}</text>')
    return _svg(fr, body, title)
