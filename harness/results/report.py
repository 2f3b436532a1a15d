"""``fedbench report``: the results page a researcher would share, as one self-contained HTML file.

Why one file: a report is mailed, attached to a review or opened on a laptop without a network, so
everything it needs (styles, scripts, data, plots) is inlined and nothing is fetched when it opens.

What it shows, and where it reads it (nothing the harness stored is recomputed differently here):

- the study's table with its 95% intervals and paired comparisons: :mod:`fedbench.harness.results.model`
  (``build_matrix`` over the store's scores and per-question scores; the same markup as
  ``leaderboard --format html``), with sorting and hiding of rows and columns added in the page;
- each cell's training: its run directory (``spec.json``, the per-round history of ``result.json``,
  the state ``fedbench runs`` shows) through :mod:`fedbench.harness.results.runs`;
- every answer with every judge's reply and score: the answers file ``export_answers`` writes per
  subject and benchmark (:mod:`fedbench.harness.evaluation`), and the judgments of ``results.sqlite``.

Why the answers travel as JSON and are drawn by a script: the study's full matrix (22 subjects x 680
questions, answers of about 1 kB) is some 20 MB of text; as HTML the browser would lay all of it out
before showing anything. Embedded as JSON (``<`` written as ``\\u003c``, so no answer can close the
script element) and rendered a chunk at a time as the reader opens a benchmark and scrolls, the page
opens in seconds. The script puts text in with ``textContent`` only, so an answer that contains
markup shows as text. Everything else (tables, cell cards, plots as hand-written SVG) is rendered
here with ``html.escape`` and reads without the script. The script and the style sheet are package data
(``results/static/report.js``, ``report.css``, ``error_trap.js``), inlined as they are when a page is written.

:mod:`~fedbench.harness.results.gather` reads what the page shows, :mod:`~fedbench.harness.results.svg` draws
its plots, and this module lays the page out.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fedbench.harness.checkpoint import atomic_write_text
from fedbench.harness.judge_checks import CHECKS_NOTE, checks_tables
from fedbench.harness.results import static_text
from fedbench.harness.results.gather import AnswerSet, Report, gather
from fedbench.harness.results.model import POOLED_TEST, TEST, Entry, budget_notes, comparison_rows, pooled_rows
from fedbench.harness.results.render_html import html_table
from fedbench.harness.results.runs import CellTraining
from fedbench.harness.results.svg import bytes_svg, clients_svg, gaps_svg, loss_svg, losses_svg, pairing_svg, scores_svg
from fedbench.harness.results.text import GAP_CAPTION, LEGEND, SCALES_NOTE, entry_text, gap_text, interval_text
from fedbench.harness.store import ScoreRow

CHUNK = 20
"""Questions the page renders at a time (more as the reader scrolls)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _row_text(row: ScoreRow) -> str:
    """A single score row as the table writes an entry (score and interval), through the leaderboard's formatting."""
    return entry_text(Entry(row.score, row.ci_low, row.ci_high, row.ci_note, row.n, (), (row,)))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "sortable", raw: bool = False) -> str:
    """A table with a header row; cells are escaped unless ``raw`` (then they are markup made here)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _checks(kind: str, names: Sequence[str], shown: dict[str, str] | None = None) -> str:
    return "".join(
        f'<label><input type="checkbox" data-kind="{kind}" value="{_e(n)}" checked> {_e((shown or {}).get(n, n))}</label>'
        for n in names
    )


def _header(r: Report) -> str:
    models = sorted({s.model for s in r.scores} | {c.spec.model for c in r.cells if c.spec})
    judges: dict[str, list[str]] = {}
    questions: dict[str, int] = {}
    for s in r.scores:
        label = f"{s.judge} ({s.judge_setting})" if s.judge_setting else s.judge
        if label not in judges.setdefault(s.benchmark, []):
            judges[s.benchmark].append(label)
        questions[s.benchmark] = max(questions.get(s.benchmark, 0), s.n)
    done = sum(c.status == "done" for c in r.cells)
    items = [
        ("runs folder", str(r.runs)),
        ("written", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.created))),
        ("model", ", ".join(models) or "-"),
        ("cells", f"{len(r.cells)} run directories, {done} finished"),
    ]
    items += [(f"{b}", f"{questions[b]} questions; judge {', '.join(j)}") for b, j in judges.items()]
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    notes = "".join(f"<li>{_e(n)}</li>" for n in r.notes)
    return (
        f'<header><h1>fedbench report</h1><dl class="meta">{meta}</dl>'
        + (f'<ul class="notes" id="notes">{notes}</ul>' if notes else "")
        + '<p id="errors" class="notes" hidden></p>'
        + '<nav><a href="#table">table</a> · <a href="#plots">plots</a> · <a href="#training">training</a> · '
        '<a href="#answers">answers</a></nav></header>'
    )


def _table_section(r: Report) -> str:
    m = r.matrix
    if m is None:
        return '<section id="table"><h2>The study\'s table</h2><p class="empty-note">No scores yet: see the notes.</p></section>'
    controls = (
        '<div class="hide-controls"><span>show:</span>'
        f"<fieldset><legend>rows</legend>{_checks('row', m.rows)}</fieldset>"
        f"<fieldset><legend>benchmarks</legend>{_checks('bench', m.benchmarks)}</fieldset>"
        f"<fieldset><legend>variants</legend>{_checks('variant', m.variants)}</fieldset></div>"
    )
    out = [
        '<section id="table"><h2>The study\'s table</h2>',
        controls,
        html_table(m),
        f"<p>Click a column's header to sort by it. Empty: not run. {SCALES_NOTE}</p>",
        f'<p class="legend">{_e(LEGEND)}</p>',
    ]
    unequal = budget_notes(m)
    if unequal:
        items = "".join(f"<li>{_e(row)}: {_e(note)}</li>" for row, note in unequal.items())
        out.append(f'<div class="unequal"><b>Unequal training budgets</b> (compare these rows with care):<ul>{items}</ul></div>')
    numbers = ["difference", "95% interval", "p", "p (Holm)"]

    def shown(c: dict[str, Any]) -> list[str]:
        return [
            f"{c['difference']:+.2f}" + (" *" if c["significant"] else ""),
            interval_text(c),
            f"{c['p_value']:.4f}",
            f"{c['p_holm']:.4f}",
        ]

    found = comparison_rows(m)
    if found:
        rows = [[c["aggregator"], c["benchmark"], c["comparison"], *shown(c), str(c["n"]), c["budget"]] for c in found]
        header = ["aggregator", "benchmark", "comparison", *numbers, "n", "unequal budget"]
        significant = sum(c["significant"] for c in found)
        out += [
            f'<details class="comparisons"><summary><h3>Paired comparisons</h3> {len(found)}, {significant} significant '
            "after Holm (open to read them)</summary>",
            _table(header, rows),
            f'<p class="legend">* significant. {_e(TEST)}.</p></details>',
        ]
    pooled = pooled_rows(m)
    if pooled:
        rows = [
            [c["benchmark"], c["comparison"], str(len(c["aggregators"])), *shown(c), str(c["n"]), c["budget"]] for c in pooled
        ]
        header = ["benchmark", "comparison", "aggregators", *numbers, "questions", "unequal budget"]
        out += [
            "<h3>Pooled over aggregators</h3>",
            _table(header, rows),
            f'<p class="legend">* significant. {_e(POOLED_TEST)}</p>',
        ]
    out.append("</section>")
    return "".join(out)


def _judge_checks_section(r: Report) -> str:
    """How far the judge can be trusted, where the store can tell (``leaderboard --judge-checks``): nothing when
    no answers were judged in two contexts, by two judges, in both orders or beside a base model's answers."""
    tables = [] if r.checks is None else checks_tables(r.checks)
    if not tables:
        return ""
    parts = [f"<h3>{_e(title)}</h3>{_table(header, rows)}" for title, header, rows in tables]
    reordered = r.checks.reordered if r.checks else []
    if reordered:
        parts.append(f'<p class="unequal">Length control reverses the ranking in: {_e("; ".join(reordered))}</p>')
    return f'<section id="judge-checks"><h2>Judge checks</h2>{"".join(parts)}<p class="legend">{_e(CHECKS_NOTE)}</p></section>'


def _baselines_section(r: Report) -> str:
    """The federated cells between their baselines, when the runs folder has both (``fedbench run --baselines``)."""
    if not r.gaps:
        return ""
    rows = []
    for g in r.gaps:
        spread = g.local_clients
        gap = g.gap
        rows.append(
            [
                g.aggregator,
                g.benchmark,
                g.variant,
                str(gap.n),
                f"{g.local:.1f}" if g.local is not None else "",
                f"{spread.mean:.1f} / {spread.worst:.1f} / {spread.p10:.1f}" if spread else "",
                f"{g.federated:.1f}" if g.federated is not None else "",
                f"{g.centralized:.1f}" if g.centralized is not None else "",
                gap_text(gap) or gap.note,
            ]
        )
    header = ["aggregator", "benchmark", "variant", "n", "local only", "local mean / worst / p10", "federated", "centralized"]
    figure = gaps_svg(r.gaps)
    return (
        '<section id="baselines"><h2>Is federation worth it?</h2>'
        + _table(header + ["gap closed"], rows)
        + (f'<figure class="fig">{figure}</figure>' if figure else "")
        + f'<p class="legend">{_e(GAP_CAPTION)}</p></section>'
    )


def _plots_section(r: Report) -> str:
    m = r.matrix
    figures: list[str | None] = []
    if m is not None:
        for bench in m.benchmarks:
            figures += [scores_svg(m, bench), pairing_svg(m, bench), bytes_svg(m, bench), clients_svg(m, bench)]
    overview = losses_svg(r.cells)
    figures.append(overview)
    shown = [f'<figure class="fig">{svg}</figure>' for svg in figures if svg]
    return (
        '<section id="plots"><h2>Plots</h2>'
        + ('<div class="figs">' + "".join(shown) + "</div>" if shown else '<p class="empty-note">Nothing to plot yet.</p>')
        + "</section>"
    )


def _seconds(x: float) -> str:
    return f"{x:.1f}"


def _cell_card(r: Report, i: int, c: CellTraining) -> str:
    engine = c.result.engine if c.result else "-"
    down, up = c.traffic
    loss = c.final_loss
    state = c.status + (f": {c.reason}" if c.reason else "")
    summary = (
        f"<summary><b>{_e(c.label)}</b> · {_e(state)} · engine {_e(engine)} · {c.rounds_done}/{c.rounds} rounds · "
        f"{_seconds(c.wall_seconds)} s · {_mb(down)} MB down / {_mb(up)} MB up"
        + ("" if loss is None else f" · final loss {loss:.4f}")
        + "</summary>"
    )
    parts = [f'<details class="cell" id="cell-{i}" data-cell="{_e(c.label)}">{summary}<div class="cellbody">']
    svg = loss_svg(c)
    parts.append(f'<div class="fig">{svg}</div>' if svg else '<p class="empty-note">No per-round history (not finished).</p>')
    parts.append("<div>")
    mine = [s for s in r.scores if s.subject == c.subject]
    if mine:
        rows = [[s.benchmark, s.judge, _row_text(s), str(s.n), str(s.failures)] for s in mine]
        parts.append("<h4>Scores</h4>" + _table(["benchmark", "judge", "score [95%]", "questions", "judge failures"], rows))
        parts.append(f'<p><a href="#cell={_e(_url(c.label))}" class="to-answers">show this cell\'s answers</a></p>')
    if c.result is not None:
        rejected = c.rejected
        parts.append("<h4>Rejected updates</h4>")
        parts.append(
            _table(["round", "client", "why"], [[str(a), b, w] for a, b, w in rejected], cls="plain")
            if rejected
            else "<p>None: every sampled client's update was accepted.</p>"
        )
        rounds = []
        behaved = any(h.absent or h.skipped for h in c.history)  # a [clients] plan: who reported is part of the round
        steps = any("steps" in v for h in c.history for v in h.client_settings.values())
        for h in c.history:
            clients = ", ".join(f"{k} {v:.4f}" for k, v in h.client_loss.items() if v is not None)
            row = [str(h.round), f"{h.lr:.2e}", "" if h.loss is None else f"{h.loss:.4f}", clients]
            if behaved:
                missing = "; ".join(f"{k}: {why}" for k, why in h.absent.items())
                row.append(missing + (f" (round skipped: {h.skipped})" if h.skipped else ""))
            if steps:
                row.append(", ".join(f"{k} {v['steps']:g}" for k, v in h.client_settings.items() if "steps" in v))
            rounds.append(row + [_mb(h.bytes_down), _mb(h.bytes_up), _seconds(h.train_seconds), _seconds(h.round_seconds)])
        header = ["round", "lr", "loss", "client losses"] + (["did not report (why)"] if behaved else [])
        header += (["steps per client"] if steps else []) + ["MB down", "MB up", "train s", "round s"]
        parts.append("<h4>Per round</h4>" + _table(header, rounds))
    if c.spec is not None:
        settings = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in c.spec.to_dict().items()]
        parts.append("<h4>Settings (spec)</h4>" + _table(["setting", "value"], settings, cls="plain"))
        parts.append(f"<p>spec hash {_e(c.subject)}, directory {_e(c.directory.name)}</p>")
    parts.append("</div></div></details>")
    return "".join(parts)


def _url(label: str) -> str:
    return quote(label, safe="@~")


def _training_section(r: Report) -> str:
    if not r.cells:
        return f'<section id="training"><h2>Training</h2><p class="empty-note">No run directories in {_e(r.runs)}.</p></section>'
    rows = []
    for i, c in enumerate(r.cells):
        down, up = c.traffic
        loss = c.final_loss
        rows.append(
            [
                f'<a href="#cell-{i}">{_e(c.label)}</a>',
                _e(c.status + (f": {c.reason}" if c.reason else "")),
                _e(c.result.engine if c.result else "-"),
                f"{c.rounds_done}/{c.rounds}",
                _seconds(c.wall_seconds),
                _seconds(c.train_seconds),
                _mb(down),
                _mb(up),
                "" if loss is None else f"{loss:.4f}",
                str(len(c.rejected)),
            ]
        )
    header = ["cell", "state", "engine", "rounds", "wall s", "train s", "MB down", "MB up", "final loss", "rejected"]
    cards = "".join(_cell_card(r, i, c) for i, c in enumerate(r.cells))
    return f'<section id="training"><h2>Training</h2>{_table(header, rows, raw=True)}{cards}</section>'


def _answers_section(r: Report) -> str:
    if not r.benchmarks:
        return '<section id="answers"><h2>Answers</h2><p class="empty-note">No answers: no scores yet.</p></section>'
    labels = [s.label for s in _subjects(r)]
    controls = (
        '<div class="answer-controls">'
        f'<fieldset id="cell-filter"><legend>cells</legend>{_checks("cell", labels)}'
        '<button type="button" id="cells-all">all</button><button type="button" id="cells-none">none</button></fieldset>'
        '<label>search <input type="search" id="search" placeholder="text in a question, answer or judge reply"></label>'
        '<label><input type="checkbox" id="failures-only"> only questions with a judge failure</label></div>'
    )
    benches = []
    for i, b in enumerate(r.benchmarks):
        failures = sum(s.failures for s in b.sets)
        missing = "".join(f"<li>{_e(label)}: {_e(problem)}</li>" for label, problem in b.missing)
        benches.append(
            f'<details class="bench" data-index="{i}" data-bench="{_e(b.name)}"><summary><b>{_e(b.name)}</b> · '
            f"{len(b.questions)} questions · {len(b.sets)} subjects · judge failures: {failures}"
            + (f" · missing answers: {len(b.missing)}" if b.missing else "")
            + "</summary>"
            + (f'<ul class="missing">{missing}</ul>' if missing else "")
            + '<p class="count"></p><div class="qlist"></div>'
            + '<button type="button" class="more" hidden>show more</button></details>'
        )
    return (
        '<section id="answers"><h2>Answers</h2><p>Open a benchmark to read every question with each subject\'s answer '
        "side by side, and each judge's score and reply. Judge failures (a reply that did not parse) are marked red.</p>"
        f"{controls}<noscript><p>The answers need JavaScript to show.</p></noscript>{''.join(benches)}</section>"
    )


def _subjects(r: Report) -> list[AnswerSet]:
    """Each subject once, in the order the benchmarks list them."""
    seen: dict[str, AnswerSet] = {}
    for b in r.benchmarks:
        for s in b.sets:
            seen.setdefault(s.label, s)
    return list(seen.values())


def _payload(r: Report) -> dict[str, Any]:
    """The answers as compact arrays aligned with each benchmark's questions: an answer is a string, null where the
    benchmark scored given answers, 0 where none is stored; a verdict is [score, reply] or 0 where none is stored."""
    benches = []
    for b in r.benchmarks:
        sets = []
        for s in b.sets:
            answers = [s.answers[q.id] if q.id in s.answers else 0 for q in b.questions]
            verdicts = {
                judge: [[v.score, v.raw] if (v := found.get(q.id)) is not None else 0 for q in b.questions]
                for judge, found in s.verdicts.items()
            }
            disagree = s.disagreements
            marks = [i for i, q in enumerate(b.questions) if q.id in disagree]
            sets.append({"label": s.label, "problem": s.problem, "answers": answers, "verdicts": verdicts, "disagree": marks})
        questions = [[q.id, q.prompt, q.category, q.client] for q in b.questions]
        benches.append({"name": b.name, "questions": questions, "subjects": sets})
    m = r.matrix
    table = {"benchmarks": m.benchmarks, "variants": m.variants} if m is not None else None
    return {"chunk": CHUNK, "table": table, "cells": [s.label for s in _subjects(r)], "benchmarks": benches}


def script_json(data: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element: every ``<`` is written ``\\u003c``, so no
    string in it (an answer with ``</script>`` or ``<!--``) can end the element or start markup."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render(r: Report) -> str:
    """The page: one HTML document with everything inlined."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>fedbench report: {_e(r.runs.name)}</title>"
        f"<script>{static_text('error_trap.js')}</script><style>{static_text('report.css')}</style></head><body>"
        + _header(r)
        + "<main>"
        + _table_section(r)
        + _baselines_section(r)
        + _judge_checks_section(r)
        + _plots_section(r)
        + _training_section(r)
        + _answers_section(r)
        + "</main>"
        + f'<script type="application/json" id="report-data">{script_json(_payload(r))}</script>'
        + f"<script>{static_text('report.js')}</script></body></html>\n"
    )


def write_report(runs: Path, out: Path) -> Report:
    """Gather a runs folder and write its page to ``out`` (atomically: a reader never sees half a report)."""
    report = gather(runs)
    atomic_write_text(Path(out), render(report))
    return report
