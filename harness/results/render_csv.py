"""The views as CSV, for a spreadsheet or a plotting script: scores without marks, intervals as their own columns,
and an empty field (never zero) where a side has no value."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, fields

from fedbench.harness.results.model import Matrix, comparison_rows, pooled_rows
from fedbench.harness.results.published import ReferenceView, reference_record
from fedbench.harness.results.runs import ResourceRow
from fedbench.harness.results.text import number, signed


def to_csv(m: Matrix) -> str:
    """Scores (no marks) in the study's layout, then each score's interval bounds, then its per-seed scores."""
    columns = [(b, v) for b in m.benchmarks for v in m.variants]
    header = (
        ["aggregator"]
        + [f"{b} {v}" for b, v in columns]
        + [f"{b} {v} lo" for b, v in columns]
        + [f"{b} {v} hi" for b, v in columns]
        + [f"{b} {v} seeds" for b, v in columns]
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in m.rows:
        entries = [m.entry(row, b, v) for b, v in columns]
        writer.writerow(
            [row]
            + [number(e.score, e.scale) if e else "" for e in entries]
            + [number(e.ci_low, e.scale) if e else "" for e in entries]
            + [number(e.ci_high, e.scale) if e else "" for e in entries]
            + [
                ";".join(f"{r.seed}:{number(r.score, r.scale)}" for r in e.runs if r.seed is not None) if e else ""
                for e in entries
            ]
        )
    return buf.getvalue()


def compare_csv(m: Matrix) -> str:
    """Per-aggregator comparisons, then the pooled ones with ``pooled`` as their aggregator."""
    rows = comparison_rows(m)
    rows += [{"aggregator": "pooled"} | {k: v for k, v in c.items() if k != "aggregators"} for c in pooled_rows(m)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["aggregator"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def reference_csv(view: ReferenceView) -> str:
    """One line per entry, long form; a side without a value is empty (never zero), as in the main table's CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    columns = ["benchmark", "aggregator", "variant", "scale", "yours", "yours_lo", "yours_hi", "paper", "difference"]
    columns += ["paper_in_interval", "your_model", "your_judge", "paper_model", "paper_judge"]
    writer.writerow(columns)
    for e in view.entries:
        r = reference_record(view, e)
        writer.writerow(
            [
                e.benchmark,
                e.row,
                e.variant or "base",
                "" if e.scale is None else f"{e.scale:g}",
                number(e.score, e.scale or 10.0),
                number(r["ci_low"], e.scale or 10.0),
                number(r["ci_high"], e.scale or 10.0),
                "" if e.paper is None else f"{e.paper:.2f}",
                "" if e.difference is None else signed(e.difference, e.scale),
                "" if e.paper_in_interval is None else str(e.paper_in_interval).lower(),
                r["your_model"] or "",
                r["your_judge"] or "",
                r["paper_model"] or "",
                r["paper_judge"] or "",
            ]
        )
    return buf.getvalue()


def resources_csv(rows: Sequence[ResourceRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(ResourceRow)])
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()
