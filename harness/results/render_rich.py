"""The views for the terminal (rich renderables): one table per benchmark where the study's 15 columns would not fit
in 80, bold for what is significant, the legend once below. Row names are escaped: a tagged row's brackets
(``fedavg [label-flip 25%]``, ``fedavg [int8]``) would otherwise read as rich markup and vanish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from fedbench.harness.results.model import (
    POOLED_TEST,
    TEST,
    ClientView,
    GapRow,
    Matrix,
    budget_notes,
    comparison_rows,
    length_rows,
    pooled_rows,
)
from fedbench.harness.results.published import ReferenceView
from fedbench.harness.results.runs import ResourceRow
from fedbench.harness.results.text import (
    CLIENTS_HEADER,
    CLIENTS_TITLE,
    GAP_CAPTION,
    LEGEND,
    MARKS,
    PAPER_TESTS_TITLE,
    REFERENCE_HEADER,
    REFERENCE_LEGEND,
    RESOURCE_COLUMNS,
    RESOURCES_TITLE,
    bench_title,
    client_rows,
    entry_text,
    gap_text,
    interval_text,
    number,
    paper_comparisons,
    reference_texts,
    resource_cells,
)
from fedbench.harness.study_table import BASE_ROW


def to_rich(m: Matrix) -> Any:
    """For the terminal: one table per benchmark (aggregators x DPO/KTOO/KTOR, Base last), so the study's
    15 columns stay readable in 80; best (separated) in bold green, ties in yellow, the legend once below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tables = []
    for b in m.benchmarks:
        table = Table(title=f"[bold]{escape(b)}[/]", title_justify="left")
        table.add_column("aggregator", style="bold")
        for v in m.variants:
            table.add_column(v, justify="right")
        for row in m.rows:
            cells = []
            for v in m.variants:
                mark = m.mark(row, b, v)
                text = escape(entry_text(m.entry(row, b, v)) + MARKS[mark])
                cells.append({"best": f"[bold green]{text}[/]", "tie": f"[yellow]{text}[/]"}.get(mark, text))
            table.add_row(escape(row), *cells, end_section=row != BASE_ROW and m.rows[-1] == BASE_ROW and row == m.rows[-2])
        tables.append(table)
    unequal = [Text(f"unequal budgets, {row}: {note}", style="yellow") for row, note in budget_notes(m).items()]
    return Group(
        Text("fedbench leaderboard: 95% intervals; * best, separated; ~ tie", style="bold"),
        *tables,
        *unequal,
        Text(LEGEND, style="dim"),
    )


def compare_rich(m: Matrix) -> Any:
    from rich.console import Group
    from rich.table import Table

    def shown(c: dict[str, Any]) -> list[str]:
        diff = f"[bold]{c['difference']:+.2f}[/]" if c["significant"] else f"{c['difference']:+.2f}"
        return [diff, interval_text(c), f"{c['p_value']:.4f}", f"{c['p_holm']:.4f}", str(c["n"])]

    numbers = ("difference", "95% interval", "p", "p (Holm)", "n")
    table = Table(title="paired comparisons (bold: significant after Holm)", caption=TEST)
    for col in ("aggregator", "benchmark", "comparison", *numbers, "unequal budget"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for c in comparison_rows(m):
        table.add_row(escape(c["aggregator"]), c["benchmark"], c["comparison"], *shown(c), escape(c["budget"]))
    pooled = pooled_rows(m)
    if not pooled:
        return table
    across = Table(title="pooled over aggregators (bold: significant after Holm)", caption=POOLED_TEST)
    for col in ("benchmark", "comparison", "aggregators", *numbers[:-1], "questions", "unequal budget"):
        across.add_column(col, justify="left" if col in ("benchmark", "comparison", "unequal budget") else "right")
    for c in pooled:
        across.add_row(c["benchmark"], c["comparison"], str(len(c["aggregators"])), *shown(c), escape(c["budget"]))
    return Group(table, across)


def gaps_rich(found: Sequence[GapRow]) -> Any:
    from rich.table import Table

    table = Table(title="Is federation worth it? federated cells between their baselines", caption=GAP_CAPTION)
    columns = (
        "aggregator",
        "benchmark",
        "variant",
        "n",
        "local only",
        "local mean/worst/p10",
        "federated",
        "centralized",
        "gap closed",
    )
    for col in columns:
        table.add_column(col, justify="left" if col in columns[:3] else "right")
    for g in found:
        spread = g.local_clients
        table.add_row(
            escape(g.aggregator),
            g.benchmark,
            g.variant,
            str(g.gap.n),
            number(g.local, 100),
            f"{spread.mean:.1f}/{spread.worst:.1f}/{spread.p10:.1f}" if spread else "",
            number(g.federated, 100),
            number(g.centralized, 100),
            gap_text(g.gap) or g.gap.note,
        )
    return table


def clients_rich(views: Sequence[ClientView]) -> Any:
    from rich.table import Table

    table = Table(title=CLIENTS_TITLE)
    for col in CLIENTS_HEADER:
        table.add_column(col, justify="left" if col in ("cell", "benchmark") else "right")
    for row in client_rows(views):
        table.add_row(escape(row[0]), *row[1:])
    return table


def reference_rich(view: ReferenceView) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tables = []
    for bench in view.benchmarks:
        table = Table(title=f"[bold]{escape(bench_title(view, bench))}[/]", title_justify="left")
        for col in REFERENCE_HEADER:
            table.add_column(col, justify="left" if col in ("aggregator", "variant") else "right")
        for e in view.rows(bench):
            table.add_row(escape(e.row), e.variant or "base", *(escape(t) for t in reference_texts(e)))
        tables.append(table)
        columns, rows = paper_comparisons(view, bench)
        if rows:
            tests = Table(title=f"{escape(bench)}: {PAPER_TESTS_TITLE}", title_justify="left")
            for col in ["aggregator", *columns]:
                tests.add_column(col, justify="left" if col == "aggregator" else "right")
            for row, cells in rows:
                tests.add_row(escape(row), *(f"[bold]{escape(t)}[/]" if sig else escape(t) for t, sig in cells))
            tables.append(tests)
    return Group(
        Text(f"fedbench leaderboard beside {view.reference.name}: yours [95% interval] | paper | difference", style="bold"),
        *(Text(line) for line in view.caption()),
        *tables,
        Text(REFERENCE_LEGEND, style="dim"),
    )


def resources_rich(rows: Sequence[ResourceRow]) -> Any:
    from rich.table import Table

    table = Table(title=RESOURCES_TITLE)
    for col in RESOURCE_COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "codec") else "right")
    for r in rows:
        table.add_row(*(escape(c) for c in resource_cells(r)))
    return table


def lengths_rich(m: Matrix) -> Any:
    """Mean answer length per cell beside the table (``--lengths``): judges favour long answers."""
    from rich.table import Table

    table = Table(title="mean answer length (tokens; judges favour long answers)")
    for col in ("cell", "benchmark", "tokens"):
        table.add_column(col, justify="right" if col == "tokens" else "left")
    for cell, bench, tokens in length_rows(m):
        table.add_row(escape(cell), bench, f"{tokens:.0f}")
    return table
