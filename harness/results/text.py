"""How every format writes the results' numbers and words: an entry with its interval, the marks, the legends.

The renderers (``render_*.py``) and the report share these, so a score reads the same in the terminal,
in Markdown, in CSV and on the report's page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedbench.harness.results.model import TEST, ClientView, Entry, Matrix, comparison_rows, row_order
from fedbench.harness.results.published import ReferenceEntry, ReferenceView
from fedbench.harness.results.runs import ResourceRow
from fedbench.harness.stats import GapClosed


def number(value: float | None, scale: float) -> str:
    """A score or bound on its benchmark's scale: one decimal on /100, two on /10; '' for none."""
    if value is None:
        return ""
    return f"{value:.1f}" if scale >= 100 else f"{value:.2f}"


def entry_text(entry: Entry | None, with_interval: bool = True) -> str:
    """``8.14 ±0.21``: the score and the half-width of its 95% interval (exact bounds are in CSV/JSON), or
    ``0.0 [0.0, 39.0]`` when the interval is lopsided;
    ``(def.)`` marks a value fixed by definition, ``(no CI)`` a score without an interval (never a zero-width one)."""
    if entry is None or entry.score is None:
        return ""
    return number(entry.score, entry.scale) + interval_suffix(entry, with_interval)


def interval_suffix(entry: Entry, with_interval: bool = True) -> str:
    """What :func:`entry_text` writes after the score: `` ±0.21``, `` [0.0, 39.0]``, `` (def.)``, `` (no CI)`` or ''."""
    if with_interval and entry.score is not None and entry.ci_low is not None and entry.ci_high is not None:
        below, above = entry.score - entry.ci_low, entry.ci_high - entry.score
        if abs(above - below) <= 0.25 * max(above + below, 1e-12):
            return f" ±{number((entry.ci_high - entry.ci_low) / 2, entry.scale)}"
        # a lopsided interval (a rate near 0 or 100%) would read wrong as ±
        return f" [{number(entry.ci_low, entry.scale)}, {number(entry.ci_high, entry.scale)}]"
    if entry.ci_note and "definition" in entry.ci_note:
        return " (def.)"
    if with_interval and entry.ci_note:
        return " (no CI)"  # why is in the JSON's ci_note: an older store, fewer than 2 scored questions, ...
    return ""


MARKS = {"best": "*", "tie": "~", "": ""}
LEGEND = (
    f"* best of its aggregator and benchmark, separated from every other variant; ~ on top but tied. "
    f"Test: {TEST}. ± half-width of the 95% interval ([lo, hi] where it is lopsided) "
    "(bootstrap over questions, Wilson for rates, "
    "seeds x questions bootstrap over repeated seeds); (no CI): no interval, the reason is in the JSON's ci_note."
)
SCALES_NOTE = "Scores: judge /10 (mt_bench_1, vicuna), % /100 (advbench harmless, preference accuracy)."


def table_cells(m: Matrix, marks: bool = True) -> tuple[list[str], list[list[str]]]:
    """The main table as text: a header (``aggregator``, then ``<benchmark> <variant>``) and a line per row."""
    header = ["aggregator"] + [f"{b} {v}" for b in m.benchmarks for v in m.variants]
    body = []
    for row in m.rows:
        line = [row]
        for b in m.benchmarks:
            for v in m.variants:
                line.append(entry_text(m.entry(row, b, v)) + (MARKS[m.mark(row, b, v)] if marks else ""))
        body.append(line)
    return header, body


def interval_text(c: dict[str, Any]) -> str:
    """A comparison's interval of the difference, ``[+0.12, +0.84]``; '' without one."""
    return "" if c["ci_low"] is None else f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def gap_text(g: GapClosed) -> str:
    """``57% [17, 100]``: the gap closed and its interval, or '' when there is none (the note says why)."""
    if g.gap is None:
        return ""
    return f"{g.gap:.0f}%" + (f" [{g.interval.low:.0f}, {g.interval.high:.0f}]" if g.interval else "")


GAP_CAPTION = (
    "Scores and gap closed on the n held-out pairs all three scored (local only scores only the clients it trained). "
    "gap closed = 100 (federated - local only) / (centralized - local only): "
    "0% = no better than each client training alone, 100% = as good as pooling the data; [95% paired bootstrap interval]. "
    "Local only: each client's pairs scored with its own adapter; mean / worst / p10 across clients."
)

# --- beside a published table (--reference) -------------------------------------------------------------

MISSING = "-"
REFERENCE_LEGEND = (
    "difference = yours - paper, on fedbench's scale of the benchmark (judge scores /10, rates in % /100); "
    "- : that side has no value. Intervals (95%) cover question sampling (and seeds), not the differences of model, "
    "judge, data or setup named above; the paper's, where its per-question scores are known, are computed from them "
    "as yours are (around the mean they give, which can differ from the printed number)."
)
REFERENCE_HEADER = ("aggregator", "variant", "yours [95% interval]", "paper", "difference")
PAPER_TESTS_TITLE = "the paper's own paired comparisons, from its per-question scores (Holm over its table; bold: significant)"


def signed(value: float, scale: float | None) -> str:
    return f"{value:+.1f}" if scale is not None and scale >= 100 else f"{value:+.2f}"


def reference_texts(e: ReferenceEntry) -> tuple[str, str, str]:
    """(yours with its interval, paper, difference), '-' where a side has no value."""
    yours = entry_text(e.yours) or MISSING
    paper = MISSING if e.paper is None else f"{e.paper:.2f}" + ("" if e.paper_entry is None else interval_suffix(e.paper_entry))
    diff = MISSING if e.difference is None else signed(e.difference, e.scale)
    return yours, paper, diff


def bench_title(view: ReferenceView, bench: str) -> str:
    scale = next((e.scale for e in view.rows(bench) if e.scale is not None), None)
    return bench if scale is None else f"{bench} (/{scale:g})"


# --- resources -------------------------------------------------------------------------------------------

RESOURCES_TITLE = "resources per cell: communication (bytes after the codec), privacy spent, training time, peak memory"
RESOURCE_COLUMNS = (
    "cell",
    "codec",
    "down MB/round",
    "up MB/round",
    "down MB",
    "up MB",
    "epsilon",
    "train s/client-round",
    "peak RSS MiB",
    "peak GPU MiB",
)


def _mb(value: float) -> str:
    return f"{value / 1e6:.3f}"


def resource_cells(r: ResourceRow) -> list[str]:
    """One resources row as text, in :data:`RESOURCE_COLUMNS` order."""
    down, up = r.per_round
    return [
        r.cell,
        r.codec,
        _mb(down),
        _mb(up),
        _mb(r.bytes_down),
        _mb(r.bytes_up),
        "" if r.epsilon is None else f"{r.epsilon:.2f} (delta {r.delta:g})",
        "" if r.train_seconds_per_client_round is None else f"{r.train_seconds_per_client_round:.2f}",
        "" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}",
        "" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f}",
    ]


def paper_comparisons(view: ReferenceView, bench: str) -> tuple[list[str], list[tuple[str, list[tuple[str, bool]]]]]:
    """The paper's comparisons on one benchmark as a small table: the comparisons as columns, one row per
    aggregator, each cell ``(text, significant)`` as ``+0.48 (p 0.008)``; empty where the reference has none."""
    if view.paper is None:
        return [], []
    found = [c for c in comparison_rows(view.paper) if c["benchmark"] == bench]
    columns = list(dict.fromkeys(c["comparison"] for c in found))
    by_row: dict[str, dict[str, dict[str, Any]]] = {}
    for c in found:
        by_row.setdefault(c["aggregator"], {})[c["comparison"]] = c
    rows = []
    for row in sorted(by_row, key=row_order):
        cells = [by_row[row].get(col) for col in columns]
        rows.append(
            (
                row,
                [
                    ("", False) if c is None else (f"{c['difference']:+.2f} (p {c['p_holm']:.3f})", c["significant"])
                    for c in cells
                ],
            )
        )
    return columns, rows


CLIENTS_TITLE = "per-client scores (fairness): mean over clients, worst client, 10th percentile, max - min"
CLIENTS_HEADER = (
    "cell", "benchmark", "clients", "mean", "worst (client)", "p10", "spread", "honest / malicious mean", "train loss mean/worst"
)  # fmt: skip


def client_rows(views: Sequence[ClientView]) -> list[list[str]]:
    """The clients view's rows (cells without a spread left out); the honest and malicious clients' means apart where
    the cell had an attack (``attack.json``), e.g. ``71.2 / 40.0 (3)``: three malicious clients averaged 40.0."""
    rows = []
    for v in views:
        s = v.spread
        if s is None:
            continue
        loss = f"{sum(v.train_loss.values()) / len(v.train_loss):.3f}/{max(v.train_loss.values()):.3f}" if v.train_loss else ""
        honest, bad = v.mean_of(False), v.mean_of(True)
        n_bad = sum(c in v.malicious for c in v.scores)
        split = "" if bad is None or honest is None else f"{honest:.1f} / {bad:.1f} ({n_bad})"
        rows.append(
            [v.cell, v.benchmark, str(s.clients), f"{s.mean:.1f}", f"{s.worst:.1f} ({s.worst_client})", f"{s.p10:.1f}",
             f"{s.spread:.1f}", split, loss]
        )  # fmt: skip
    return rows
