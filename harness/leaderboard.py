"""The study's table from the results store: rows are aggregators (plus Base), column groups are
benchmarks, sub-columns are DPO, KTOO and KTOR; the best entry of each column is marked.

A cell without a score stays empty, never zero. The same matrix renders to the terminal (rich),
Markdown, CSV, JSON, a self-contained HTML page and a grouped-bar PNG.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fedbench.harness.store import ScoreRow

AGGREGATOR_ORDER = ("fedavg", "fedprox", "scaffold", "fedavgm", "fedyogi", "fedadagrad", "fedadam")
VARIANTS = {("dpo", "original"): "DPO", ("kto", "original"): "KTOO", ("kto", "redistributed"): "KTOR"}
BASE_ROW = "Base"


def variant(method: str, layout: str) -> str:
    """The study's column name for a method x layout (other pairs get a descriptive name)."""
    return VARIANTS.get((method, layout), f"{method.upper()}-{layout}")


@dataclass(frozen=True)
class Matrix:
    benchmarks: list[str]
    variants: list[str]
    rows: list[str]
    cells: dict[tuple[str, str, str], ScoreRow]
    """(row, benchmark, variant) -> score row; Base scores sit under variant ''."""

    def value(self, row: str, bench: str, var: str) -> float | None:
        entry = self.cells.get((row, bench, "" if row == BASE_ROW else var))
        return None if entry is None else entry.score

    def best(self, bench: str, var: str) -> float | None:
        values = [v for r in self.rows if r != BASE_ROW and (v := self.value(r, bench, var)) is not None]
        return max(values) if values else None


def build_matrix(scores: Sequence[ScoreRow], model: str | None = None, judge: str | None = None) -> Matrix:
    """Arrange score rows as the study's table (newest row wins where several judges or runs compete)."""
    chosen = [s for s in scores if (model is None or s.model == model) and (judge is None or s.judge == judge)]
    cells: dict[tuple[str, str, str], ScoreRow] = {}
    for s in sorted(chosen, key=lambda s: s.created):
        if s.method == "base":
            cells[(BASE_ROW, s.benchmark, "")] = s
        else:
            cells[(s.aggregator, s.benchmark, variant(s.method, s.layout))] = s
    benchmarks = sorted({b for _, b, _ in cells}, key=lambda b: (["mt_bench_1", "vicuna", "advbench"] + [b]).index(b))
    found_vars = {v for _, _, v in cells if v}
    variants = [v for v in VARIANTS.values() if v in found_vars] + sorted(found_vars - set(VARIANTS.values()))
    aggs = {r for r, _, _ in cells if r != BASE_ROW}
    rows = [a for a in AGGREGATOR_ORDER if a in aggs] + sorted(aggs - set(AGGREGATOR_ORDER))
    if any(r == BASE_ROW for r, _, _ in cells):
        rows.append(BASE_ROW)
    return Matrix(benchmarks, variants, rows, cells)


def _fmt(value: float | None, scale: float) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if scale >= 100 else f"{value:.2f}"


def _scale(m: Matrix, bench: str) -> float:
    return next((s.scale for (_, b, _), s in m.cells.items() if b == bench), 10.0)


def _table(m: Matrix, mark: str = "*") -> tuple[list[str], list[list[str]]]:
    header = ["aggregator"] + [f"{b} {v}" for b in m.benchmarks for v in m.variants]
    body = []
    for row in m.rows:
        line = [row]
        for b in m.benchmarks:
            for v in m.variants:
                value = m.value(row, b, v)
                text = _fmt(value, _scale(m, b))
                if mark and value is not None and row != BASE_ROW and value == m.best(b, v):
                    text += mark
                line.append(text)
        body.append(line)
    return header, body


def to_markdown(m: Matrix) -> str:
    header, body = _table(m, mark="")
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line, row in zip(body, m.rows):
        cells = [line[0]]
        i = 1
        for b in m.benchmarks:
            for v in m.variants:
                best = row != BASE_ROW and line[i] and m.value(row, b, v) == m.best(b, v)
                cells.append(f"**{line[i]}**" if best else line[i])
                i += 1
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n\n(best of each column in bold; empty = not run)\n"


def to_csv(m: Matrix) -> str:
    header, body = _table(m, mark="")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def to_json(m: Matrix) -> str:
    entries = []
    for (row, bench, var), s in sorted(m.cells.items()):
        entry = asdict(s) | {"row": row, "variant": var or None}
        entry["best"] = row != BASE_ROW and s.score is not None and s.score == m.best(bench, var)
        entries.append(entry)
    return json.dumps({"benchmarks": m.benchmarks, "variants": m.variants, "rows": m.rows, "entries": entries}, indent=2)


def to_html(m: Matrix) -> str:
    head1 = "".join(f'<th colspan="{len(m.variants)}">{html.escape(b)}</th>' for b in m.benchmarks)
    head2 = "".join(f"<th>{html.escape(v)}</th>" for _ in m.benchmarks for v in m.variants)
    rows = []
    for row in m.rows:
        tds = []
        for b in m.benchmarks:
            for v in m.variants:
                value = m.value(row, b, v)
                best = row != BASE_ROW and value is not None and value == m.best(b, v)
                cls = ' class="best"' if best else (' class="empty"' if value is None else "")
                tds.append(f'<td{cls} data-bench="{html.escape(b)}" data-variant="{html.escape(v)}">{_fmt(value, _scale(m, b))}</td>')
        rows.append(f'<tr><th scope="row">{html.escape(row)}</th>{"".join(tds)}</tr>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedbench leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #bbb; padding: .3rem .6rem; text-align: right; }}
thead th {{ background: #eef; text-align: center; }}
td.best {{ font-weight: bold; background: #dfd; }}
td.empty {{ background: #f6f6f6; }}
</style></head><body>
<h1>fedbench leaderboard</h1>
<table id="leaderboard"><thead><tr><th rowspan="2">aggregator</th>{head1}</tr><tr>{head2}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p>Best of each column in bold. Empty: not run. Scores: judge /10 (mt_bench_1, vicuna), % harmless /100 (advbench).</p>
</body></html>
"""


def plot(m: Matrix, path: Path) -> None:
    """Grouped bars, one panel per benchmark: aggregators on x, a bar per variant, Base as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = [r for r in m.rows if r != BASE_ROW]
    fig, axes = plt.subplots(1, max(1, len(m.benchmarks)), figsize=(5 * max(1, len(m.benchmarks)), 4), squeeze=False)
    width = 0.8 / max(1, len(m.variants))
    for ax, bench in zip(axes[0], m.benchmarks):
        for k, var in enumerate(m.variants):
            xs = [i + k * width for i, a in enumerate(aggs) if m.value(a, bench, var) is not None]
            ys = [m.value(a, bench, var) for a in aggs if m.value(a, bench, var) is not None]
            ax.bar(xs, ys, width, label=var)
        base = m.value(BASE_ROW, bench, "")
        if base is not None:
            ax.axhline(base, color="black", linestyle="--", linewidth=1, label="Base")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(aggs))], aggs, rotation=30)
        ax.set_title(bench)
        ax.set_ylim(0, _scale(m, bench))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_rich(m: Matrix):  # noqa: ANN201 - rich is imported lazily
    """The table for the terminal: a column group per benchmark, best of each column in bold green."""
    from rich.table import Table

    table = Table(title="fedbench leaderboard (best of each column marked *)")
    table.add_column("aggregator", style="bold")
    for b in m.benchmarks:
        for v in m.variants:
            table.add_column(f"{b}\n{v}", justify="right")
    for row, line in zip(m.rows, _table(m)[1]):
        styled = [f"[bold green]{c}[/]" if c.endswith("*") else c for c in line[1:]]
        table.add_row(line[0], *styled, end_section=row == m.rows[-2] if len(m.rows) > 1 and m.rows[-1] == BASE_ROW else False)
    return table


def traffic_rows(scores: Sequence[ScoreRow]) -> list[tuple[str, int, int]]:
    """(cell, bytes sent down, bytes sent up) over all rounds, one line per trained cell."""
    seen: dict[str, tuple[str, int, int]] = {}
    for s in scores:
        if s.method != "base" and s.bytes_down is not None:
            seen[s.subject] = (f"{s.method}-{s.layout}-{s.aggregator}", s.bytes_down, s.bytes_up or 0)
    return sorted(seen.values())
