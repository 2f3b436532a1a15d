"""The report's plots, as hand-written SVG: no plotting library is needed to write a report, and the page stays one file.

Each function returns an ``<svg>`` element (or None when it has nothing to draw); every text in it is escaped.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fedbench.harness.results.model import Entry, GapRow, Matrix, client_views
from fedbench.harness.results.runs import CellTraining
from fedbench.harness.results.text import entry_text
from fedbench.harness.study_table import BASE_ROW, variant

COLORS = {"DPO": "#1f77b4", "KTOO": "#ff7f0e", "KTOR": "#2ca02c"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")
BASE_COLOR = "#555555"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
"""Distinct hues for a plot whose lines are not the study's three variants."""


def _color(variant: str) -> str:
    if not variant:
        return BASE_COLOR
    return COLORS.get(variant) or OTHER_COLORS[sum(map(ord, variant)) % len(OTHER_COLORS)]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks, x = [], math.ceil(lo / step) * step
    while x <= hi + 1e-9 * step:
        ticks.append(round(x, 10))
        x += step
    return ticks


def _n(x: float) -> str:
    """A number for SVG coordinates."""
    return f"{x:.1f}"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


@dataclass(frozen=True)
class _Frame:
    """A plot area inside an SVG, with linear scales from data to pixels."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def x(self, v: float) -> float:
        lo, hi = self.xlim
        return self.left + (v - lo) / ((hi - lo) or 1.0) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        lo, hi = self.ylim
        return self.height - self.bottom - (v - lo) / ((hi - lo) or 1.0) * (self.height - self.top - self.bottom)

    def axes(self, xlabel: str, ylabel: str, yticks: bool = True) -> str:
        parts = []
        x0, x1, y0, y1 = self.left, self.width - self.right, self.top, self.height - self.bottom
        for t in _ticks(*self.xlim):
            px = self.x(t)
            parts.append(f'<line x1="{_n(px)}" y1="{_n(y0)}" x2="{_n(px)}" y2="{_n(y1)}" class="grid"/>')
            parts.append(f'<text x="{_n(px)}" y="{_n(y1 + 14)}" text-anchor="middle">{t:g}</text>')
        if yticks:
            for t in _ticks(*self.ylim):
                py = self.y(t)
                parts.append(f'<line x1="{_n(x0)}" y1="{_n(py)}" x2="{_n(x1)}" y2="{_n(py)}" class="grid"/>')
                parts.append(f'<text x="{_n(x0 - 4)}" y="{_n(py + 4)}" text-anchor="end">{t:g}</text>')
        parts.append(f'<rect x="{_n(x0)}" y="{_n(y0)}" width="{_n(x1 - x0)}" height="{_n(y1 - y0)}" class="frame"/>')
        parts.append(f'<text x="{_n((x0 + x1) / 2)}" y="{_n(self.height - 4)}" text-anchor="middle">{_esc(xlabel)}</text>')
        if ylabel:
            mid = (y0 + y1) / 2
            parts.append(f'<text transform="translate(12 {_n(mid)}) rotate(-90)" text-anchor="middle">{_esc(ylabel)}</text>')
        return "".join(parts)


def _svg(width: float, height: float, title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{_esc(title)}"><title>{_esc(title)}</title>'
        f'<text x="{_n(width / 2)}" y="14" text-anchor="middle" class="title">{_esc(title)}</text>{body}</svg>'
    )


def _legend(frame: _Frame, names: Sequence[str], colors: dict[str, str] | None = None) -> str:
    parts, x = [], frame.left
    for name in names:
        parts.append(f'<circle cx="{_n(x + 4)}" cy="24" r="4" fill="{(colors or {}).get(name) or _color(name)}"/>')
        parts.append(f'<text x="{_n(x + 11)}" y="28">{_esc(name or "Base")}</text>')
        x += 18 + 7 * len(name or "Base")
    return "".join(parts)


def scores_svg(m: Matrix, bench: str) -> str:
    """One benchmark's entries as points with their 95% interval as a bar, the base model's score as a dashed line."""
    shown = [
        (row, var, e)
        for row in m.rows
        if row != BASE_ROW
        for var in m.variants
        if (e := m.entry(row, bench, var)) is not None and e.score is not None
    ]
    base = m.entry(BASE_ROW, bench, "")
    scale = next(e.scale for (_, b, _), e in m.cells.items() if b == bench)
    height = 64 + 16 * max(1, len(shown))
    frame = _Frame(560, height, 150, 16, 34, 30, (0.0, scale), (0.0, float(len(shown) or 1)))
    parts = [frame.axes(f"score (/{scale:g}), 95% interval", "", yticks=False), _legend(frame, m.variants)]
    for i, (row, var, e) in enumerate(shown):
        y = frame.top + 8 + 16 * i
        tip = _esc(f"{row} {var}: {entry_text(e)} (n={e.n})")
        parts.append(f'<text x="{_n(frame.left - 6)}" y="{_n(y + 4)}" text-anchor="end">{_esc(f"{row} {var}")}</text>')
        if e.ci_low is not None and e.ci_high is not None:
            x0, x1 = frame.x(e.ci_low), frame.x(e.ci_high)
            parts.append(f'<line x1="{_n(x0)}" y1="{_n(y)}" x2="{_n(x1)}" y2="{_n(y)}" stroke="{_color(var)}" stroke-width="2"/>')
            for xe in (x0, x1):
                parts.append(f'<line x1="{_n(xe)}" y1="{_n(y - 4)}" x2="{_n(xe)}" y2="{_n(y + 4)}" stroke="{_color(var)}"/>')
        assert e.score is not None
        parts.append(f'<circle cx="{_n(frame.x(e.score))}" cy="{_n(y)}" r="4" fill="{_color(var)}"><title>{tip}</title></circle>')
    if base is not None and base.score is not None:
        x = frame.x(base.score)
        parts.append(
            f'<line x1="{_n(x)}" y1="{_n(frame.top)}" x2="{_n(x)}" y2="{_n(height - frame.bottom)}" stroke="{BASE_COLOR}" '
            f'stroke-dasharray="4 3"><title>{_esc(f"Base: {entry_text(base)}")}</title></line>'
        )
    return _svg(560, height, f"{bench}: scores" + (" (dashed: base model)" if base is not None else ""), "".join(parts))


_SWEPT = re.compile(r"^(.*?) \[(?:.*, )?paired_fraction=([0-9.]+)(?:, .*)?\]$")


def pairing_svg(m: Matrix, bench: str) -> str | None:
    """One benchmark's score against the share of pairs kept intact (``partial`` cells of a paired_fraction sweep), one
    line per objective with its 95% intervals: where an unpaired objective overtakes a paired one. None without a sweep."""
    series: dict[str, list[tuple[float, Entry]]] = {}
    for row in m.rows:
        found = _SWEPT.match(row)
        if found is None:
            continue
        aggregator, share = found.group(1), float(found.group(2))
        for var in m.variants:
            e = m.entry(row, bench, var)
            if e is not None and e.score is not None:
                series.setdefault(var if aggregator == "fedavg" else f"{aggregator} {var}", []).append((share, e))
    if len({p for points in series.values() for p, _ in points}) < 2:
        return None
    values = [v for points in series.values() for _, e in points for v in (e.score, e.ci_low, e.ci_high) if v is not None]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 1.0
    frame = _Frame(560, 300, 56, 16, 40, 34, (0.0, 1.0), (lo - pad, hi + pad))
    names = sorted(series)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}  # one hue per line, however named
    parts = [frame.axes("paired_fraction: share of each client's pairs kept intact", f"{bench} score")]
    parts.append(_legend(frame, names, colors))
    for i, name in enumerate(names):
        points = sorted(series[name], key=lambda pe: pe[0])
        color = colors[name]
        dodge = (i - (len(names) - 1) / 2) * 5.0  # pixels: lines that coincide stay visible side by side
        path = " ".join(f"{_n(frame.x(p) + dodge)},{_n(frame.y(e.score or 0.0))}" for p, e in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for p, e in points:
            x = frame.x(p) + dodge
            if e.ci_low is not None and e.ci_high is not None:
                y0, y1 = frame.y(e.ci_low), frame.y(e.ci_high)
                parts.append(f'<line x1="{_n(x)}" y1="{_n(y0)}" x2="{_n(x)}" y2="{_n(y1)}" stroke="{color}"/>')
            tip = _esc(f"{name} at paired_fraction {p:g}: {entry_text(e)} (n={e.n})")
            y = frame.y(e.score or 0.0)
            parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="3.5" fill="{color}"><title>{tip}</title></circle>')
    return _svg(560, 300, f"{bench}: score against pair availability", "".join(parts))


def bytes_svg(m: Matrix, bench: str) -> str | None:
    """Each entry's score against the bytes its training sent (down + up, all rounds); None without traffic."""
    points = [
        ((d + (e.latest.bytes_up or 0)) / 1e6, e.score, row, var, e)
        for (row, b, var), e in m.cells.items()
        if b == bench and e.score is not None and (d := e.latest.bytes_down) is not None
    ]
    if not points:
        return None
    scale = points[0][4].scale
    top = max(p[0] for p in points)
    frame = _Frame(420, 260, 48, 16, 34, 32, (0.0, top * 1.1 or 1.0), (0.0, scale))
    parts = [frame.axes("MB sent down + up, all rounds", f"score (/{scale:g})"), _legend(frame, m.variants)]
    for mb, score, row, var, e in points:
        assert score is not None
        tip = _esc(f"{row} {var}: {entry_text(e)}, {mb:.2f} MB")
        parts.append(
            f'<circle cx="{_n(frame.x(mb))}" cy="{_n(frame.y(score))}" r="4" fill="{_color(var)}"><title>{tip}</title></circle>'
        )
        parts.append(f'<text x="{_n(frame.x(mb) + 6)}" y="{_n(frame.y(score) + 3)}" class="small">{_esc(row)}</text>')
    return _svg(420, 260, f"{bench}: score vs bytes", "".join(parts))


def clients_svg(m: Matrix, bench: str) -> str | None:
    """Per-client scores of each cell as dots on one line per cell, the mean over clients as a bar; None without any."""
    views = [v for v in client_views(m) if v.benchmark == bench and v.scores]
    if not views:
        return None
    scale = next(e.scale for (_, b, _), e in m.cells.items() if b == bench)
    height = 60 + 18 * len(views)
    frame = _Frame(560, height, 150, 16, 30, 30, (0.0, scale), (0.0, float(len(views))))
    parts = [frame.axes(f"score per client (/{scale:g}); bar: mean over clients", "", yticks=False)]
    for i, v in enumerate(views):
        y = frame.top + 9 + 18 * i
        var = v.cell.split(" ")[0] if v.cell != "base" else ""
        parts.append(f'<text x="{_n(frame.left - 6)}" y="{_n(y + 4)}" text-anchor="end">{_esc(v.cell)}</text>')
        for client, score in sorted(v.scores.items()):
            parts.append(
                f'<circle cx="{_n(frame.x(score))}" cy="{_n(y)}" r="3" fill="{_color(var)}" fill-opacity="0.55">'
                f"<title>{_esc(f'{v.cell}, client {client}: {score:.2f}')}</title></circle>"
            )
        mean = sum(v.scores.values()) / len(v.scores)
        parts.append(f'<line x1="{_n(frame.x(mean))}" y1="{_n(y - 7)}" x2="{_n(frame.x(mean))}" y2="{_n(y + 7)}" stroke="#000"/>')
    return _svg(560, height, f"{bench}: per-client scores", "".join(parts))


def loss_svg(cell: CellTraining) -> str | None:
    """A cell's mean training loss per round (line) with each client's loss (dots); rejected updates as red marks."""
    history = cell.history
    values = [x for h in history for x in (h.loss, *h.client_loss.values()) if x is not None and math.isfinite(x)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    last = max(h.round for h in history)
    frame = _Frame(420, 230, 48, 16, 26, 32, (0.5, last + 0.5), (lo - pad, hi + pad))
    parts = [frame.axes("round", "training loss")]
    var = variant(cell.spec.method, cell.spec.layout) if cell.spec else ""
    for h in history:
        for client, loss in h.client_loss.items():
            if loss is not None and math.isfinite(loss):
                parts.append(
                    f'<circle cx="{_n(frame.x(h.round))}" cy="{_n(frame.y(loss))}" r="2.5" fill="#888" fill-opacity="0.6">'
                    f"<title>{_esc(f'round {h.round}, {client}: {loss:.4f}')}</title></circle>"
                )
        for client, why in h.rejected.items():
            parts.append(
                f'<text x="{_n(frame.x(h.round))}" y="{_n(frame.top + 10)}" text-anchor="middle" fill="#c00">x'
                f"<title>{_esc(f'round {h.round}: {client} rejected: {why}')}</title></text>"
            )
    line = [(h.round, h.loss) for h in history if h.loss is not None and math.isfinite(h.loss)]
    if line:
        path = " ".join(f"{_n(frame.x(r))},{_n(frame.y(x))}" for r, x in line)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_color(var)}" stroke-width="2"/>')
        for r, x in line:
            parts.append(
                f'<circle cx="{_n(frame.x(r))}" cy="{_n(frame.y(x))}" r="3" fill="{_color(var)}">'
                f"<title>{_esc(f'round {r}: mean loss {x:.4f}')}</title></circle>"
            )
    return _svg(420, 230, f"{cell.label}: training loss (dots: clients)", "".join(parts))


def losses_svg(cells: Sequence[CellTraining]) -> str | None:
    """Every finished cell's mean training loss per round on one plot, coloured by variant."""
    lines = []
    for c in cells:
        points = [(h.round, h.loss) for h in c.history if h.loss is not None and math.isfinite(h.loss)]
        if points and c.spec is not None:
            lines.append((c, variant(c.spec.method, c.spec.layout), points))
    if not lines:
        return None
    ys = [y for _, _, pts in lines for _, y in pts]
    last = max(r for _, _, pts in lines for r, _ in pts)
    pad = (max(ys) - min(ys)) * 0.1 or 1.0
    frame = _Frame(560, 280, 48, 16, 34, 32, (0.5, last + 0.5), (min(ys) - pad, max(ys) + pad))
    parts = [frame.axes("round", "mean training loss"), _legend(frame, sorted({v for _, v, _ in lines}))]
    for c, var, pts in lines:
        path = " ".join(f"{_n(frame.x(r))},{_n(frame.y(y))}" for r, y in pts)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{_color(var)}" stroke-width="1.5" stroke-opacity="0.8">'
            f"<title>{_esc(c.label)}</title></polyline>"
        )
    return _svg(560, 280, "training loss per round, every cell", "".join(parts))


def gaps_svg(gaps: Sequence[GapRow]) -> str | None:
    """Each federated entry on the line from local only (0%) to centralized training (100%), with its interval."""
    shown = [g for g in gaps if g.gap.gap is not None]
    if not shown:
        return None
    values = [v for g in shown for v in (g.gap.gap, *((g.gap.interval.low, g.gap.interval.high) if g.gap.interval else ()))]
    lo, hi = max(-100.0, min(-10.0, *values)), min(200.0, max(110.0, *values))  # beyond: drawn to the edge

    def clip(v: float) -> float:
        return min(hi, max(lo, v))

    labels = [f"{g.aggregator} {g.benchmark} {g.variant}" for g in shown]
    row, left = 22, 12 + 6.2 * max(len(label) for label in labels)
    frame = _Frame(left + 340, 40 + row * len(shown) + 34, left, 16, 30, 34, (lo, hi), (0, len(shown)))
    parts = [frame.axes("gap closed (%): 0 = local only, 100 = centralized", "", yticks=False)]
    for edge in (0.0, 100.0):
        px = frame.x(edge)
        parts.append(
            f'<line x1="{_n(px)}" y1="{_n(frame.top)}" x2="{_n(px)}" y2="{_n(frame.height - frame.bottom)}" class="ref"/>'
        )
    for i, (g, label) in enumerate(zip(shown, labels)):
        y = frame.top + row * (i + 0.5)
        parts.append(f'<text x="{_n(frame.left - 6)}" y="{_n(y + 4)}" text-anchor="end">{_esc(label)}</text>')
        if g.gap.interval:
            a, b = frame.x(clip(g.gap.interval.low)), frame.x(clip(g.gap.interval.high))
            parts.append(
                f'<line x1="{_n(a)}" y1="{_n(y)}" x2="{_n(b)}" y2="{_n(y)}" stroke="{_color(g.variant)}" stroke-width="2"/>'
            )
        parts.append(f'<circle cx="{_n(frame.x(clip(g.gap.gap or 0.0)))}" cy="{_n(y)}" r="4" fill="{_color(g.variant)}"/>')
    return _svg(
        frame.width, frame.height, "Is federation worth it? share of the local-only to centralized gap closed", "".join(parts)
    )
