"""The views as Markdown: a table to paste into a paper's draft, an issue or a README."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.harness.results.model import (
    POOLED_TEST,
    TEST,
    ClientView,
    GapRow,
    Matrix,
    budget_notes,
    comparison_rows,
    pooled_rows,
)
from fedbench.harness.results.published import ReferenceView
from fedbench.harness.results.runs import ResourceRow
from fedbench.harness.results.text import (
    CLIENTS_HEADER,
    CLIENTS_TITLE,
    GAP_CAPTION,
    LEGEND,
    PAPER_TESTS_TITLE,
    REFERENCE_HEADER,
    REFERENCE_LEGEND,
    RESOURCE_COLUMNS,
    RESOURCES_TITLE,
    bench_title,
    client_rows,
    gap_text,
    interval_text,
    number,
    paper_comparisons,
    reference_texts,
    resource_cells,
    table_cells,
)


def to_markdown(m: Matrix) -> str:
    header, body = table_cells(m, marks=False)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line, row in zip(body, m.rows):
        cells = [line[0]]
        i = 1
        for b in m.benchmarks:
            for v in m.variants:
                mark = m.mark(row, b, v)
                cells.append(f"**{line[i]}**" if mark == "best" else (f"{line[i]} (tie)" if mark == "tie" else line[i]))
                i += 1
        out.append("| " + " | ".join(cells) + " |")
    unequal = "".join(f"\nUnequal budgets, {row}: {note}" for row, note in budget_notes(m).items())
    return (
        "\n".join(out)
        + f"\n\n(bold: best, separated from the other variants; tie: on top, not separated; empty = not run)\n{LEGEND}\n"
        + (unequal[1:] + "\n" if unequal else "")
    )


def compare_markdown(m: Matrix) -> str:
    lines = ["| aggregator | benchmark | comparison | difference | 95% interval | p | p (Holm) | n | unequal budget |"]
    lines.append("|" + "---|" * 9)
    for c in comparison_rows(m):
        diff = f"**{c['difference']:+.2f}**" if c["significant"] else f"{c['difference']:+.2f}"
        lines.append(
            f"| {c['aggregator']} | {c['benchmark']} | {c['comparison']} | {diff} | {interval_text(c)} | {c['p_value']:.4f} | "
            f"{c['p_holm']:.4f} | {c['n']} | {c['budget']} |"
        )
    lines.append(f"\nBold: significant after Holm. Test: {TEST}.")
    pooled = pooled_rows(m)
    if pooled:
        lines += ["", "**Pooled over aggregators**", ""]
        lines += [
            "| benchmark | comparison | aggregators | difference | 95% interval | p | p (Holm) | questions |",
            "|" + "---|" * 8,
        ]
        for c in pooled:
            diff = f"**{c['difference']:+.2f}**" if c["significant"] else f"{c['difference']:+.2f}"
            lines.append(
                f"| {c['benchmark']} | {c['comparison']} | {len(c['aggregators'])} | {diff} | {interval_text(c)} | "
                f"{c['p_value']:.4f} | {c['p_holm']:.4f} | {c['n']} |"
            )
        lines.append(f"\n{POOLED_TEST}")
        lines += [f"Unequal budgets under {c['benchmark']} {c['comparison']}: {c['budget']}" for c in pooled if c["budget"]]
    return "\n".join(lines) + "\n"


def gaps_markdown(found: Sequence[GapRow]) -> str:
    lines = ["| aggregator | benchmark | variant | local only | federated | centralized | gap closed | n |", "|" + "---|" * 8]
    for g in found:
        lines.append(
            f"| {g.aggregator} | {g.benchmark} | {g.variant} | {number(g.local, 100)} | {number(g.federated, 100)} | "
            f"{number(g.centralized, 100)} | {gap_text(g.gap) or g.gap.note} | {g.gap.n} |"
        )
    return "\n".join(lines) + f"\n\n{GAP_CAPTION}\n"


def reference_markdown(view: ReferenceView) -> str:
    out = [f"fedbench leaderboard beside {view.reference.name}: yours [95% interval] | paper | difference (yours - paper)", ""]
    out += [f"- {line}" for line in view.caption()]
    for bench in view.benchmarks:
        out += ["", f"**{bench_title(view, bench)}**", ""]
        out += ["| " + " | ".join(REFERENCE_HEADER) + " |", "|" + "---|" * len(REFERENCE_HEADER)]
        for e in view.rows(bench):
            out.append("| " + " | ".join((e.row, e.variant or "base", *reference_texts(e))) + " |")
        columns, rows = paper_comparisons(view, bench)
        if rows:
            out += [
                "",
                f"{PAPER_TESTS_TITLE}:",
                "",
                "| aggregator | " + " | ".join(columns) + " |",
                "|" + "---|" * (len(columns) + 1),
            ]
            out += ["| " + " | ".join([row] + [f"**{t}**" if sig else t for t, sig in cells]) + " |" for row, cells in rows]
    return "\n".join(out) + f"\n\n{REFERENCE_LEGEND}\n"


def resources_markdown(rows: Sequence[ResourceRow]) -> str:
    lines = ["| " + " | ".join(RESOURCE_COLUMNS) + " |", "|" + "---|" * len(RESOURCE_COLUMNS)]
    lines += ["| " + " | ".join(resource_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{RESOURCES_TITLE}\n"


def clients_markdown(views: Sequence[ClientView]) -> str:
    out = [f"**{CLIENTS_TITLE}**", "", "| " + " | ".join(CLIENTS_HEADER) + " |", "|" + "---|" * len(CLIENTS_HEADER)]
    out += ["| " + " | ".join(r) + " |" for r in client_rows(views)]
    return "\n".join(out) + "\n"
