"""The views as JSON, for a program: every number unrounded, intervals as bounds, the test that was run named."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

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
from fedbench.harness.results.published import ReferenceView, reference_record
from fedbench.harness.results.runs import ResourceRow
from fedbench.harness.results.text import GAP_CAPTION, REFERENCE_LEGEND


def to_json(m: Matrix) -> str:
    entries = []
    for (row, bench, var), e in sorted(m.cells.items()):
        latest = e.latest
        entries.append(
            {
                "row": row,
                "benchmark": bench,
                "variant": var or None,
                "method": latest.method,
                "layout": latest.layout,
                "aggregator": latest.aggregator,
                "model": latest.model,
                "judge": latest.judge,
                "judge_setting": latest.judge_setting,
                "score": e.score,
                "scale": e.scale,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "ci_note": e.ci_note,
                "n": e.n,
                "failures": sum(r.failures for r in e.runs),
                "seeds": list(e.seeds),
                "answer_tokens": e.answer_tokens,
                "per_seed": [
                    {
                        "seed": r.seed,
                        "subject": r.subject,
                        "score": r.score,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                        "n": r.n,
                        "failures": r.failures,
                    }
                    for r in e.runs
                ],
                "best": m.mark(row, bench, var) == "best",
                "tie": m.mark(row, bench, var) == "tie",
                "bytes_down": latest.bytes_down,
                "bytes_up": latest.bytes_up,
            }
        )
    return json.dumps(
        {
            "benchmarks": m.benchmarks,
            "variants": m.variants,
            "rows": m.rows,
            "test": TEST,
            "entries": entries,
            "unequal_budgets": budget_notes(m),
        },
        indent=2,
    )


def compare_json(m: Matrix) -> str:
    return json.dumps(
        {"test": TEST, "comparisons": comparison_rows(m), "pooled_test": POOLED_TEST, "pooled": pooled_rows(m)}, indent=2
    )


def gaps_json(found: Sequence[GapRow]) -> str:
    rows = [
        {
            "aggregator": g.aggregator,
            "benchmark": g.benchmark,
            "variant": g.variant,
            "federated": g.federated,
            "local_only": g.local,
            "local_only_clients": asdict(g.local_clients) if g.local_clients else None,
            "centralized": g.centralized,
            "gap_closed": g.gap.gap,
            "ci_low": g.gap.interval.low if g.gap.interval else None,
            "ci_high": g.gap.interval.high if g.gap.interval else None,
            "ci_method": g.gap.interval.method if g.gap.interval else None,
            "n": g.gap.n,
            "note": g.gap.note or None,
        }
        for g in found
    ]
    return json.dumps({"definition": GAP_CAPTION, "gap_closed": rows}, indent=2)


def clients_json(views: Sequence[ClientView]) -> str:
    return json.dumps({"cells": [asdict(v) for v in views]}, indent=2)


def reference_json(view: ReferenceView) -> str:
    ref = view.reference
    return json.dumps(
        {
            "reference": {
                "name": ref.name,
                "source": ref.source,
                "model": ref.model,
                "judge": ref.judge,
                "judges": {b: ref.judge_for(b) for b in view.benchmarks if any(e.paper is not None for e in view.rows(b))},
                "scales": dict(ref.scales),
            },
            "yours": {"models": view.models, "judges": view.judges},
            "caption": view.caption(),
            "legend": REFERENCE_LEGEND,
            "entries": [reference_record(view, e) for e in view.entries],
            "paper_comparisons": [] if view.paper is None else comparison_rows(view.paper),
            "paper_test": None if view.paper is None else TEST,
        },
        indent=2,
    )


def resources_json(rows: Sequence[ResourceRow]) -> str:
    return json.dumps(
        {"resources": [asdict(r) | {"bytes_down_per_round": r.per_round[0], "bytes_up_per_round": r.per_round[1]} for r in rows]},
        indent=2,
    )
