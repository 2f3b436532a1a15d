"""The study's table as HTML: one ``<table id="leaderboard">`` element, alone on a page (``leaderboard --format html``)
or inside the report (``fedbench report``, which adds sorting and hiding around the same markup)."""

from __future__ import annotations

import html

from fedbench.harness.results import static_text
from fedbench.harness.results.model import Matrix
from fedbench.harness.results.text import LEGEND, SCALES_NOTE, entry_text, number


def html_table(m: Matrix) -> str:
    """The study's table as one ``<table id="leaderboard">`` element: the page of :func:`to_html` and the report's
    table (``results/report.py``, which adds sorting and hiding around it) are the same markup."""
    head1 = "".join(f'<th colspan="{len(m.variants)}">{html.escape(b)}</th>' for b in m.benchmarks)
    head2 = "".join(f"<th>{html.escape(v)}</th>" for _ in m.benchmarks for v in m.variants)
    rows = []
    for row in m.rows:
        tds = []
        for b in m.benchmarks:
            for v in m.variants:
                e = m.entry(row, b, v)
                mark = m.mark(row, b, v)
                cls = f' class="{mark}"' if mark else (' class="empty"' if e is None or e.score is None else "")
                title = ""
                if e is not None and e.ci_low is not None and e.ci_high is not None:
                    title = f' title="95% interval [{number(e.ci_low, e.scale)}, {number(e.ci_high, e.scale)}], n={e.n}"'
                text = html.escape(entry_text(e) + (" (tie)" if mark == "tie" else ""))
                tds.append(f'<td{cls}{title} data-bench="{html.escape(b)}" data-variant="{html.escape(v)}">{text}</td>')
        rows.append(f'<tr><th scope="row">{html.escape(row)}</th>{"".join(tds)}</tr>')
    return (
        f'<table id="leaderboard"><thead><tr><th rowspan="2">aggregator</th>{head1}</tr><tr>{head2}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def to_html(m: Matrix) -> str:
    """A self-contained page with the table alone (``fedbench report`` writes the full results page)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedbench leaderboard</title>
<style>
{static_text("leaderboard.css")}</style></head><body>
<h1>fedbench leaderboard</h1>
{html_table(m)}
<p>Empty: not run. {SCALES_NOTE}</p>
<p>{html.escape(LEGEND)}</p>
</body></html>
"""
