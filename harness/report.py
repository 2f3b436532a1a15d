"""``fedbench report``: the results page a researcher would share, as one self-contained HTML file.

Why one file: a report is mailed, attached to a review or opened on a laptop without a network, so
everything it needs (styles, scripts, data, plots) is inlined and nothing is fetched when it opens.

What it shows, and where it reads it (nothing the harness stored is recomputed differently here):

- the study's table with its 95% intervals and paired comparisons: :mod:`fedbench.harness.leaderboard`
  (``build_matrix`` over the store's scores and per-question scores; the same markup as
  ``leaderboard --format html``), with sorting and hiding of rows and columns added in the page;
- each cell's training: its run directory (``spec.json``, the per-round history of ``result.json``,
  the state ``fedbench runs`` shows) through :mod:`fedbench.harness.checkpoint`;
- every answer with every judge's reply and score: the answers file ``export_answers`` writes per
  subject and benchmark (:mod:`fedbench.harness.evaluation`), and the judgments of ``results.sqlite``.

Why the answers travel as JSON and are drawn by a script: the study's full matrix (22 subjects x 680
questions, answers of about 1 kB) is some 20 MB of text; as HTML the browser would lay all of it out
before showing anything. Embedded as JSON (``<`` written as ``\\u003c``, so no answer can close the
script element) and rendered a chunk at a time as the reader opens a benchmark and scrolls, the page
opens in seconds. The script puts text in with ``textContent`` only, so an answer that contains
markup shows as text. Everything else (tables, cell cards, plots as hand-written SVG) is rendered
here with ``html.escape`` and reads without the script.
"""

from __future__ import annotations

import html
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fedbench.harness import leaderboard as lb
from fedbench.harness.checkpoint import RoundRecord, RunDir, RunResult, atomic_write_text, scan_runs
from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import BASE
from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.spec import RunSpec
from fedbench.harness.store import STORE_NAME, ScoreRow, Store

ANSWERS_DIR = "answers"
"""Where ``evaluation.export_answers`` writes a subject's answers: ``<home>/answers/<benchmark>.jsonl``, ``home``
being a cell's run directory or ``<runs>/<base subject key>`` for the base model."""
CHUNK = 20
"""Questions the page renders at a time (more as the reader scrolls)."""


# --- what the report gathers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellTraining:
    """One run directory's training side, read from its files alone (no model is loaded to write a report)."""

    label: str
    """The cell as the report names it (``kto-redistributed-fedavg``, ``@seed`` when not 0): the answers filter uses it."""
    subject: str
    """The spec's hash, which is the cell's ``subject`` in the store ('' when its spec could not be read)."""
    directory: Path
    status: str
    """As ``fedbench runs`` shows it: 'done', 'running', 'interrupted', 'failed' or 'empty'."""
    reason: str
    """Why it failed, who is training it, or why its files could not be read; '' otherwise."""
    rounds_done: int
    rounds: int
    spec: RunSpec | None = None
    result: RunResult | None = None
    """``result.json`` of a finished cell (engine, per-round history); None while it is unfinished."""

    @property
    def history(self) -> list[RoundRecord]:
        return [] if self.result is None else list(self.result.history)

    @property
    def wall_seconds(self) -> float:
        """Wall time of all rounds (aggregation and checkpoints included)."""
        return sum(h.round_seconds for h in self.history)

    @property
    def train_seconds(self) -> float:
        return sum(h.train_seconds for h in self.history)

    @property
    def traffic(self) -> tuple[int, int]:
        return (0, 0) if self.result is None else self.result.traffic

    @property
    def rejected(self) -> list[tuple[int, str, str]]:
        """(round, client, why) of every update that was rejected or failed."""
        return [(h.round, client, why) for h in self.history for client, why in h.rejected.items()]

    @property
    def final_loss(self) -> float | None:
        losses = [h.loss for h in self.history if h.loss is not None]
        return losses[-1] if losses else None


@dataclass(frozen=True)
class AnswerSet:
    """One subject's answers to one benchmark with every judge's verdicts, or why they are missing."""

    subject: str
    label: str
    answers: dict[str, str | None]
    """Question id -> the answer; None for a benchmark scored on given answers (held-out pairs), which has none."""
    verdicts: dict[str, dict[str, Judgment]]
    """Judge -> question id -> its verdict (score None: the judge's reply did not parse, a judge failure)."""
    problem: str | None = None
    """Why the answers file was not read (the answers then come from results.sqlite where it has them)."""

    @property
    def failures(self) -> int:
        return sum(v.score is None for by_question in self.verdicts.values() for v in by_question.values())

    @property
    def disagreements(self) -> set[str]:
        """Questions where two of this subject's judges read the same reply into different scores: the same
        imported judgments under two parse rules (``fedbench import --parse``) that disagree on it."""
        out = set()
        for qid in {q for by_question in self.verdicts.values() for q in by_question}:
            by_reply: dict[tuple[str, str], set[float | None]] = {}  # (judging context, reply) -> its readings
            for judge, by_question in self.verdicts.items():
                if (v := by_question.get(qid)) is not None and v.raw:
                    by_reply.setdefault((lb.judging_context(judge), v.raw), set()).add(v.score)
            if any(len(scores) > 1 for scores in by_reply.values()):
                out.add(qid)
        return out


@dataclass(frozen=True)
class BenchmarkAnswers:
    """Every question of a benchmark with each subject's answer set, base model first, then the table's order."""

    name: str
    questions: list[Question]
    sets: list[AnswerSet]

    @property
    def missing(self) -> list[tuple[str, str]]:
        return [(s.label, s.problem) for s in self.sets if s.problem]


@dataclass(frozen=True)
class Report:
    """Everything the page shows, gathered once; :func:`render` only formats it."""

    runs: Path
    created: float
    scores: list[ScoreRow]
    matrix: lb.Matrix | None
    """The study's table; None when the runs folder has no scores yet."""
    cells: list[CellTraining]
    benchmarks: list[BenchmarkAnswers]
    labels: dict[str, str]
    """Store subject -> its unique, readable name (``base``, ``kto-redistributed-fedavg``, ...)."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know first: no scores yet, unreadable run directories, missing answers."""
    gaps: list[lb.GapRow] = field(default_factory=list)
    """Each federated entry between its local-only and centralized baselines (empty without both baselines)."""


# --- gathering ---------------------------------------------------------------------------------------------


def _label(method: str, layout: str, aggregator: str, seed: int | None) -> str:
    """The name :attr:`fedbench.harness.evaluation.Subject.label` gives a subject, from a score row's or a spec's fields."""
    if method == BASE:
        return BASE
    return f"{method}-{layout}-{aggregator}" + (f"@{seed}" if seed else "")


def _training(runs: Path) -> list[CellTraining]:
    try:
        states = scan_runs(runs)
    except (OSError, ValueError, KeyError) as err:
        raise FedbenchError(
            f"a run directory in {runs} has an unreadable spec.json ({err})",
            "remove or repair that directory (`fedbench runs --runs DIR` lists them), then run `fedbench report` again",
        ) from err
    cells = []
    for state in states:
        run_dir = RunDir.at(state.path)
        try:
            spec = run_dir.spec
            result = run_dir.result() if state.status == "done" else None
        except (FedbenchError, OSError, ValueError, KeyError, TypeError) as err:
            why = f"its files could not be read ({err})"
            cells.append(CellTraining(state.path.name, "", state.path, state.status, why, state.rounds_done, state.rounds))
            continue
        label = _label(spec.method, spec.layout, spec.aggregator, spec.seed)
        cells.append(
            CellTraining(label, spec.hash, state.path, state.status, state.reason, state.rounds_done, state.rounds, spec, result)
        )
    return cells


def _order(row: ScoreRow) -> tuple[Any, ...]:
    """Base model first, then the table's order: aggregators as the study lists them, DPO, KTOO, KTOR, seeds."""
    if row.method == BASE:
        return (0, 0, "", 0, 0, row.subject)
    aggs, variants = lb.AGGREGATOR_ORDER, list(lb.VARIANTS.values())
    var = lb.variant(row.method, row.layout)
    return (
        1,
        aggs.index(row.aggregator) if row.aggregator in aggs else len(aggs),
        row.aggregator,
        variants.index(var) if var in variants else len(variants),
        row.seed or 0,
        row.subject,
    )


def _labels(cells: Sequence[CellTraining], scores: Sequence[ScoreRow]) -> dict[str, str]:
    """Subject -> a unique name: the cell's label, with a digest suffix only where two experiments share one."""
    wanted = {c.subject: c.label for c in cells if c.subject}
    for s in scores:
        wanted.setdefault(s.subject, _label(s.method, s.layout, s.aggregator, s.seed))
    count = Counter(wanted.values())
    return {k: v if count[v] == 1 else f"{v}~{k.removeprefix(BASE + '-')[:6]}" for k, v in wanted.items()}


def _shown(path: Path, runs: Path) -> str:
    try:
        return str(path.relative_to(runs))
    except ValueError:
        return str(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"line {number} is not JSON: {err}") from None
    return out


def _answer_set(
    runs: Path,
    store: Store,
    subject: str,
    label: str,
    home: Path | None,
    bench: str,
    judges: Sequence[str],
    questions: dict[str, Question],
) -> AnswerSet:
    """Answers from the subject's answers file (the questions' text comes with them), verdicts of every judge from
    the store; a missing or unreadable file is named, and the store's answers stand in where it has them."""
    answers: dict[str, str | None] = {}
    from_file: dict[str, Judgment] = {}
    file_judge = None
    problem = None
    path = None if home is None else home / ANSWERS_DIR / f"{bench}.jsonl"
    lines: list[dict[str, Any]] = []
    if path is None:
        problem = f"its run directory is not in {runs}"
    elif not path.is_file():
        problem = f"no answers file {_shown(path, runs)}"
    else:
        try:
            lines = _read_jsonl(path)
            for line in lines:
                qid = str(line["question_id"])
                if qid not in questions:
                    prompt, category, client = line.get("prompt"), line.get("category"), line.get("client")
                    questions[qid] = Question(qid, str(prompt or ""), str(category or ""), client=str(client or ""))
                answers[qid] = None if line.get("answer") is None else str(line["answer"])
                from_file[qid] = Judgment(qid, line.get("score"), str(line.get("judge_reply") or ""))
                file_judge = (line.get("settings") or {}).get("judge")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            problem = f"answers file {_shown(path, runs)} is unreadable ({err})"
            answers.clear()
    if problem is not None:
        stored = store.answers(subject, bench)
        answers.update(stored)
        problem += "; its answers are shown from results.sqlite" if stored else "; results.sqlite holds no answers either"
    verdicts = {}
    for judge in judges:
        found = store.judgments(subject, bench, judge)
        verdicts[judge] = found if found or judge != file_judge else from_file
    for qid in [*answers, *(q for by_question in verdicts.values() for q in by_question)]:
        questions.setdefault(qid, Question(qid, ""))
    return AnswerSet(subject, label, answers, verdicts, problem)


def _answers(
    runs: Path, store: Store, scores: Sequence[ScoreRow], cells: Sequence[CellTraining], labels: dict[str, str]
) -> list[BenchmarkAnswers]:
    homes = {c.subject: c.directory for c in cells if c.subject}
    judges: dict[str, dict[str, list[str]]] = {}
    for s in sorted(scores, key=_order):
        found = judges.setdefault(s.benchmark, {}).setdefault(s.subject, [])
        if s.judge not in found:
            found.append(s.judge)
    methods = {s.subject: s.method for s in scores}
    imported = {k for k, origin in store.origins().items() if origin.startswith("imported")}  # answers in <runs>/<subject>
    out = []
    order = lb.BENCHMARK_ORDER
    for bench in sorted(judges, key=lambda b: (order.index(b) if b in order else len(order), b)):
        questions: dict[str, Question] = {}
        sets = []
        for subject, names in judges[bench].items():
            home = runs / subject if methods[subject] == BASE or subject in imported else homes.get(subject)
            answer_set = _answer_set(runs, store, subject, labels[subject], home, bench, names, questions)
            if methods[subject] == BASE and not answer_set.answers and not any(answer_set.verdicts.values()):
                continue  # a base score fixed by definition (preference.reward = 50) has nothing to show, and misses nothing
            sets.append(answer_set)
        out.append(BenchmarkAnswers(bench, list(questions.values()), sets))
    return out


def gather(runs: Path) -> Report:
    """Read a runs folder: its run directories, its store's scores, table and judgments, and the answers files.

    A folder without scores still gives the training side (with a note saying so); a folder with
    neither run directories nor a store is refused, since there is nothing to report.
    """
    runs = Path(runs)
    if not runs.is_dir():
        raise FedbenchError(
            f"{runs} is not a folder", "pass --runs DIR: the folder `fedbench run --out DIR` wrote (default runs)"
        )
    cells = _training(runs)
    has_store = (runs / STORE_NAME).is_file()
    if not cells and not has_store:
        raise FedbenchError(
            f"nothing to report in {runs}: no run directories and no {STORE_NAME}",
            "run `fedbench run --out DIR` first, or point --runs at the folder it wrote",
        )
    notes = [f"{c.directory.name}: {c.reason}" for c in cells if not c.subject]
    scores: list[ScoreRow] = []
    matrix = None
    benchmarks: list[BenchmarkAnswers] = []
    gaps: list[lb.GapRow] = []
    labels = _labels(cells, scores)
    if has_store:
        try:
            store = Store(runs / STORE_NAME)
        except sqlite3.DatabaseError as err:
            raise FedbenchError(
                f"{runs / STORE_NAME} cannot be read ({err})", "restore it, or move it away to report the training side only"
            ) from err
        try:
            scores = store.scores()
            if scores:
                matrix = lb.build_matrix(
                    scores, questions=lambda r: store.question_scores(r.subject, r.benchmark, r.judge), budgets=store.budgets()
                )
                gaps = lb.gap_rows(matrix, lambda r: store.question_scores(r.subject, r.benchmark, r.judge))
                labels = _labels(cells, scores)
                benchmarks = _answers(runs, store, scores, cells, labels)
        finally:
            store.close()
    if not scores:
        where = f"{STORE_NAME} holds none" if has_store else f"no {STORE_NAME}"
        notes.insert(
            0,
            f"no scores in {runs} ({where}): this report shows the training side only; "
            "run `fedbench eval RUN_DIR...` to add the table, the plots of scores and the answers",
        )
    cells = [replace(c, label=labels.get(c.subject, c.label)) for c in cells]
    for b in benchmarks:
        for label, problem in b.missing:
            notes.append(f"{b.name}, {label}: {problem}")
    return Report(runs, time.time(), scores, matrix, cells, benchmarks, labels, notes, gaps)


# --- plots: hand-written SVG ----------------------------------------------------------------------------------

COLORS = {"DPO": "#1f77b4", "KTOO": "#ff7f0e", "KTOR": "#2ca02c"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")
BASE_COLOR = "#555555"


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


def _legend(frame: _Frame, names: Sequence[str]) -> str:
    parts, x = [], frame.left
    for name in names:
        parts.append(f'<circle cx="{_n(x + 4)}" cy="24" r="4" fill="{_color(name)}"/>')
        parts.append(f'<text x="{_n(x + 11)}" y="28">{_esc(name or "Base")}</text>')
        x += 18 + 7 * len(name or "Base")
    return "".join(parts)


def scores_svg(m: lb.Matrix, bench: str) -> str:
    """One benchmark's entries as points with their 95% interval as a bar, the base model's score as a dashed line."""
    shown = [
        (row, var, e)
        for row in m.rows
        if row != lb.BASE_ROW
        for var in m.variants
        if (e := m.entry(row, bench, var)) is not None and e.score is not None
    ]
    base = m.entry(lb.BASE_ROW, bench, "")
    scale = next(e.scale for (_, b, _), e in m.cells.items() if b == bench)
    height = 64 + 16 * max(1, len(shown))
    frame = _Frame(560, height, 150, 16, 34, 30, (0.0, scale), (0.0, float(len(shown) or 1)))
    parts = [frame.axes(f"score (/{scale:g}), 95% interval", "", yticks=False), _legend(frame, m.variants)]
    for i, (row, var, e) in enumerate(shown):
        y = frame.top + 8 + 16 * i
        tip = _esc(f"{row} {var}: {lb.entry_text(e)} (n={e.n})")
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
            f'stroke-dasharray="4 3"><title>{_esc(f"Base: {lb.entry_text(base)}")}</title></line>'
        )
    return _svg(560, height, f"{bench}: scores" + (" (dashed: base model)" if base is not None else ""), "".join(parts))


def bytes_svg(m: lb.Matrix, bench: str) -> str | None:
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
        tip = _esc(f"{row} {var}: {lb.entry_text(e)}, {mb:.2f} MB")
        parts.append(
            f'<circle cx="{_n(frame.x(mb))}" cy="{_n(frame.y(score))}" r="4" fill="{_color(var)}"><title>{tip}</title></circle>'
        )
        parts.append(f'<text x="{_n(frame.x(mb) + 6)}" y="{_n(frame.y(score) + 3)}" class="small">{_esc(row)}</text>')
    return _svg(420, 260, f"{bench}: score vs bytes", "".join(parts))


def clients_svg(m: lb.Matrix, bench: str) -> str | None:
    """Per-client scores of each cell as dots on one line per cell, the mean over clients as a bar; None without any."""
    views = [v for v in lb.client_views(m) if v.benchmark == bench and v.scores]
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
    var = lb.variant(cell.spec.method, cell.spec.layout) if cell.spec else ""
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
            lines.append((c, lb.variant(c.spec.method, c.spec.layout), points))
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


# --- the page -----------------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _row_text(row: ScoreRow) -> str:
    """A single score row as the table writes an entry (score and interval), through the leaderboard's formatting."""
    return lb.entry_text(lb.Entry(row.score, row.ci_low, row.ci_high, row.ci_note, row.n, (), (row,)))


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
        lb.html_table(m),
        "<p>Click a column's header to sort by it. Empty: not run. Scores: judge /10 (mt_bench_1, vicuna), "
        "% /100 (advbench harmless, preference accuracy).</p>",
        f'<p class="legend">{_e(lb.LEGEND)}</p>',
    ]
    unequal = lb.budget_notes(m)
    if unequal:
        items = "".join(f"<li>{_e(row)}: {_e(note)}</li>" for row, note in unequal.items())
        out.append(f'<div class="unequal"><b>Unequal training budgets</b> (compare these rows with care):<ul>{items}</ul></div>')
    numbers = ["difference", "95% interval", "p", "p (Holm)"]

    def shown(c: dict[str, Any]) -> list[str]:
        interval = "" if c["ci_low"] is None else f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        return [
            f"{c['difference']:+.2f}" + (" *" if c["significant"] else ""),
            interval,
            f"{c['p_value']:.4f}",
            f"{c['p_holm']:.4f}",
        ]

    found = lb.comparison_rows(m)
    if found:
        rows = [[c["aggregator"], c["benchmark"], c["comparison"], *shown(c), str(c["n"]), c["budget"]] for c in found]
        header = ["aggregator", "benchmark", "comparison", *numbers, "n", "unequal budget"]
        significant = sum(c["significant"] for c in found)
        out += [
            f'<details class="comparisons"><summary><h3>Paired comparisons</h3> {len(found)}, {significant} significant '
            "after Holm (open to read them)</summary>",
            _table(header, rows),
            f'<p class="legend">* significant. {_e(lb.TEST)}.</p></details>',
        ]
    pooled = lb.pooled_rows(m)
    if pooled:
        rows = [
            [c["benchmark"], c["comparison"], str(len(c["aggregators"])), *shown(c), str(c["n"]), c["budget"]] for c in pooled
        ]
        header = ["benchmark", "comparison", "aggregators", *numbers, "questions", "unequal budget"]
        out += [
            "<h3>Pooled over aggregators</h3>",
            _table(header, rows),
            f'<p class="legend">* significant. {_e(lb.POOLED_TEST)}</p>',
        ]
    out.append("</section>")
    return "".join(out)


def gaps_svg(gaps: Sequence[lb.GapRow]) -> str | None:
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
                lb.gap_text(gap) or gap.note,
            ]
        )
    header = ["aggregator", "benchmark", "variant", "n", "local only", "local mean / worst / p10", "federated", "centralized"]
    figure = gaps_svg(r.gaps)
    return (
        '<section id="baselines"><h2>Is federation worth it?</h2>'
        + _table(header + ["gap closed"], rows)
        + (f'<figure class="fig">{figure}</figure>' if figure else "")
        + f'<p class="legend">{_e(lb.GAP_CAPTION)}</p></section>'
    )


def _plots_section(r: Report) -> str:
    m = r.matrix
    figures: list[str | None] = []
    if m is not None:
        for bench in m.benchmarks:
            figures += [scores_svg(m, bench), bytes_svg(m, bench), clients_svg(m, bench)]
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
        for h in c.history:
            clients = ", ".join(f"{k} {v:.4f}" for k, v in h.client_loss.items() if v is not None)
            rounds.append(
                [str(h.round), f"{h.lr:.2e}", "" if h.loss is None else f"{h.loss:.4f}", clients, _mb(h.bytes_down)]
                + [_mb(h.bytes_up), _seconds(h.train_seconds), _seconds(h.round_seconds)]
            )
        header = ["round", "lr", "loss", "client losses", "MB down", "MB up", "train s", "round s"]
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
        f"<script>{ERROR_TRAP}</script><style>{STYLE}</style></head><body>"
        + _header(r)
        + "<main>"
        + _table_section(r)
        + _baselines_section(r)
        + _plots_section(r)
        + _training_section(r)
        + _answers_section(r)
        + "</main>"
        + f'<script type="application/json" id="report-data">{script_json(_payload(r))}</script>'
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(runs: Path, out: Path) -> Report:
    """Gather a runs folder and write its page to ``out`` (atomically: a reader never sees half a report)."""
    report = gather(runs)
    atomic_write_text(Path(out), render(report))
    return report


ERROR_TRAP = """window.__errors=[];addEventListener('error',function(e){window.__errors.push(String(e.message));
var n=document.getElementById('errors');if(n){n.hidden=false;n.textContent='script error: '+window.__errors.join('; ');}});"""
"""Runs first, so a script error shows on the page (and the browser test can see it) instead of only in a console."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1rem 2rem;max-width:110rem;color:#222}
h1{margin:.2rem 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0}dl.meta dt{font-weight:600}
dl.meta dd{margin:0}
.notes{background:#fff6e0;border:1px solid #e0c070;padding:.5rem 1.5rem}.notes li{margin:.2rem 0}
nav{margin:.5rem 0}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right;vertical-align:top}
thead th{background:#eef;text-align:center}td:first-child,tbody th{text-align:left}
table.plain td{text-align:left}
#leaderboard td.best{font-weight:bold;background:#dfd}#leaderboard td.tie{background:#ffd}
#leaderboard td.empty{background:#f6f6f6}
th.sort{cursor:pointer}th.sort:hover{background:#dde}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
.hide-controls,.answer-controls{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start;margin:.5rem 0}
fieldset{border:1px solid #ccc;padding:.2rem .5rem}fieldset label{margin-right:.6rem;white-space:nowrap}
.legend{color:#555;font-size:.9em}.empty-note{color:#666;font-style:italic}
details.comparisons>summary{cursor:pointer}details.comparisons h3{display:inline}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.fig{margin:0}
svg.plot{font-size:11px;background:#fff}svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}
svg .ref{stroke:#999;stroke-dasharray:4 3}
svg .title{font-weight:600;font-size:12px}svg .small{font-size:9px;fill:#555}
details.cell{border:1px solid #ddd;margin:.4rem 0;padding:.3rem .6rem}details.cell>summary{cursor:pointer}
.cellbody{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
details.bench{border:1px solid #ccc;margin:.6rem 0;padding:.4rem .6rem}details.bench>summary{cursor:pointer;font-size:1.1em}
ul.missing{color:#a00}
article.q{border-top:2px solid #99b;padding:.5rem 0;margin:.5rem 0}
article.q header{font-size:.85em;color:#555}article.q header span{margin-right:.8rem}
.prompt{white-space:pre-wrap;background:#f4f4fa;padding:.4rem;margin:.3rem 0;max-height:14em;overflow:auto}
.answers{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:.5rem}
section.answer{border:1px solid #ddd;padding:.3rem .5rem}section.answer h4{margin:.1rem 0 .3rem}
.text{white-space:pre-wrap;max-height:18em;overflow:auto;font-size:.92em}
.note{color:#777;font-style:italic}.missing-answer{color:#a00}
.verdict{margin-top:.3rem;font-size:.9em;border-top:1px dotted #ccc;padding-top:.2rem}
.verdict.fail{color:#b00;font-weight:600}
.unequal{background:#fff6dd;border-left:4px solid #e0a800;padding:.3rem .6rem;margin:.5rem 0}
.verdict pre{white-space:pre-wrap;font-weight:normal;color:#333;max-height:14em;overflow:auto}
"""

SCRIPT = r"""
(function () {
  'use strict';
  var t0 = performance.now();
  var DATA = JSON.parse(document.getElementById('report-data').textContent);
  var state = {cells: new Set(DATA.cells), query: '', failures: false};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);  // user data: text only, never markup
    return e;
  }

  // --- tables: sort by a column, hide rows and columns ---
  function value(row, i) {
    var c = row.cells[i];
    if (!c) return null;
    var t = c.textContent.trim();
    if (t === '') return null;
    var x = parseFloat(t);
    return isNaN(x) ? t.toLowerCase() : x;
  }
  function sortBy(table, i, th) {
    var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
    table.querySelectorAll('th[data-dir]').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = dir;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, i), y = value(b, i);
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function sortable(table, ths, offset) {
    ths.forEach(function (th, i) {
      th.classList.add('sort');
      th.title = 'sort by this column';
      th.addEventListener('click', function () { sortBy(table, i + offset, th); });
    });
  }
  var board = document.getElementById('leaderboard');
  if (board) {
    var head = board.tHead.rows;
    sortable(board, [head[0].cells[0]], 0);
    sortable(board, Array.prototype.slice.call(head[1].cells), 1);
  }
  document.querySelectorAll('table.sortable').forEach(function (t) {
    sortable(t, Array.prototype.slice.call(t.tHead.rows[0].cells), 0);
  });
  function hidden(kind) {
    var off = new Set();
    document.querySelectorAll('input[data-kind="' + kind + '"]').forEach(function (i) { if (!i.checked) off.add(i.value); });
    return off;
  }
  function applyHide() {
    if (!board || !DATA.table) return;
    var rows = hidden('row'), benches = hidden('bench'), vars = hidden('variant');
    Array.prototype.forEach.call(board.tBodies[0].rows, function (tr) { tr.hidden = rows.has(tr.cells[0].textContent); });
    board.querySelectorAll('td[data-bench]').forEach(function (td) {
      td.hidden = benches.has(td.dataset.bench) || vars.has(td.dataset.variant);
    });
    var B = DATA.table.benchmarks, V = DATA.table.variants, head = board.tHead.rows;
    var shown = V.filter(function (v) { return !vars.has(v); }).length;
    B.forEach(function (b, i) {
      var th = head[0].cells[i + 1];
      th.hidden = benches.has(b) || shown === 0;
      if (!th.hidden) th.colSpan = shown;
      V.forEach(function (v, k) { head[1].cells[i * V.length + k].hidden = benches.has(b) || vars.has(v); });
    });
  }
  document.querySelectorAll('.hide-controls input').forEach(function (i) { i.addEventListener('change', applyHide); });

  // --- answers: rendered a chunk at a time, filtered by cell, searched ---
  function fmt(x) { return String(Math.round(x * 1000) / 1000); }
  function isFailure(v) { return v && v[0] === null; }
  function has(s, q) { return typeof s === 'string' && s.toLowerCase().indexOf(q) >= 0; }
  function matches(b, qi, subs) {
    if (state.failures && !subs.some(function (s) {
      return Object.keys(s.verdicts).some(function (j) { return isFailure(s.verdicts[j][qi]); });
    })) return false;
    var q = state.query;
    if (!q) return true;
    var question = b.questions[qi];
    if (has(question[0], q) || has(question[1], q) || has(question[2], q)) return true;
    return subs.some(function (s) {
      return has(s.answers[qi], q) || Object.keys(s.verdicts).some(function (j) {
        var v = s.verdicts[j][qi];
        return v && has(v[1], q);
      });
    });
  }
  function answerNode(s, qi) {
    var box = el('section', 'answer');
    box.dataset.cell = s.label;
    box.appendChild(el('h4', null, s.label));
    var a = s.answers[qi];
    if (typeof a === 'string') box.appendChild(el('div', 'text', a));
    else if (a === null) box.appendChild(el('div', 'text note', 'no generated answer: this benchmark scores the given answers'));
    else box.appendChild(el('div', 'text note missing-answer',
      s.problem ? 'no answer: ' + s.problem : 'no answer stored for this question'));
    Object.keys(s.verdicts).forEach(function (j) {
      var v = s.verdicts[j][qi], line = el('div', 'verdict');
      if (!v) { line.classList.add('note'); line.textContent = j + ': not judged'; }
      else if (v[0] === null) { line.classList.add('fail'); line.textContent = j + ': judge failure (its reply did not parse)'; }
      else line.textContent = j + ': ' + fmt(v[0]);
      if (v && v[1]) {
        var d = el('details');
        d.appendChild(el('summary', null, 'judge reply'));
        d.appendChild(el('pre', null, v[1]));
        line.appendChild(d);
      }
      box.appendChild(line);
    });
    if (s.disagree.indexOf(qi) >= 0) box.appendChild(el('div', 'verdict fail disagree',
      'parse rules disagree: the judges above read the same reply into different scores'));
    return box;
  }
  function questionNode(b, qi, subs) {
    var q = b.questions[qi], art = el('article', 'q'), head = el('header');
    art.dataset.question = q[0];
    head.appendChild(el('span', 'qid', 'question ' + q[0]));
    if (q[2]) head.appendChild(el('span', 'tag', q[2]));
    if (q[3]) head.appendChild(el('span', 'tag', 'client ' + q[3]));
    art.appendChild(head);
    art.appendChild(el('div', 'prompt', q[1] || '(question text not stored)'));
    var grid = el('div', 'answers');
    subs.forEach(function (s) { grid.appendChild(answerNode(s, qi)); });
    art.appendChild(grid);
    return art;
  }
  function inView(node) {
    var r = node.getBoundingClientRect();
    return r.top < window.innerHeight + 600 && r.bottom > 0 && !node.hidden;
  }
  function more(det) {
    var b = DATA.benchmarks[det.dataset.index], list = det.querySelector('.qlist'), button = det.querySelector('.more');
    var end = Math.min(det._order.length, det._shown + DATA.chunk);
    var frag = document.createDocumentFragment();
    for (var k = det._shown; k < end; k++) frag.appendChild(questionNode(b, det._order[k], det._subs));
    list.appendChild(frag);
    det._shown = end;
    button.hidden = end >= det._order.length;
    button.textContent = 'show more (' + (det._order.length - end) + ' left)';
    requestAnimationFrame(function () { if (det.open && !button.hidden && inView(button)) more(det); });
  }
  function refresh(det) {
    var b = DATA.benchmarks[det.dataset.index];
    det._subs = b.subjects.filter(function (s) { return state.cells.has(s.label); });
    det._order = [];
    for (var qi = 0; qi < b.questions.length; qi++) if (matches(b, qi, det._subs)) det._order.push(qi);
    det._shown = 0;
    det._rendered = true;
    det.querySelector('.qlist').textContent = '';
    det.querySelector('.count').textContent = 'showing ' + det._order.length + ' of ' + b.questions.length +
      ' questions, answers of ' + det._subs.length + ' of ' + b.subjects.length + ' subjects';
    more(det);
  }
  var benches = Array.prototype.slice.call(document.querySelectorAll('details.bench'));
  var watcher = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var det = en.target.closest('details.bench');
      if (en.isIntersecting && det.open && !en.target.hidden) more(det);
    });
  }, {rootMargin: '600px'}) : null;
  benches.forEach(function (det) {
    det.addEventListener('toggle', function () { if (det.open && !det._rendered) refresh(det); });
    det.querySelector('.more').addEventListener('click', function () { more(det); });
    if (watcher) watcher.observe(det.querySelector('.more'));
  });
  function changed() {
    benches.forEach(function (det) { if (det.open) refresh(det); else det._rendered = false; });
    var p = new URLSearchParams();
    if (state.cells.size !== DATA.cells.length) p.set('cell', Array.from(state.cells).join(','));
    if (state.query) p.set('q', state.query);
    if (state.failures) p.set('failures', '1');
    var open = benches.filter(function (d) { return d.open; }).map(function (d) { return d.dataset.bench; });
    if (open.length) p.set('bench', open.join(','));
    try {
      history.replaceState(null, '', p.toString() ? '#' + p.toString() : location.pathname);
    } catch (err) { /* some browsers refuse it on file: URLs; the view still changes */ }
  }
  var picks = Array.prototype.slice.call(document.querySelectorAll('input[data-kind="cell"]'));
  function readPicks() {
    state.cells = new Set(picks.filter(function (i) { return i.checked; }).map(function (i) { return i.value; }));
  }
  picks.forEach(function (i) { i.addEventListener('change', function () { readPicks(); changed(); }); });
  function pickAll(on) { picks.forEach(function (i) { i.checked = on; }); readPicks(); changed(); }
  var all = document.getElementById('cells-all'), none = document.getElementById('cells-none');
  if (all) all.addEventListener('click', function () { pickAll(true); });
  if (none) none.addEventListener('click', function () { pickAll(false); });
  var search = document.getElementById('search'), timer = null;
  if (search) search.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.query = search.value.trim().toLowerCase(); changed(); }, 250);
  });
  var fails = document.getElementById('failures-only');
  if (fails) fails.addEventListener('change', function () { state.failures = fails.checked; changed(); });

  // #cell=NAME[,NAME]&bench=NAME&q=TEXT&failures=1: a filtered view that can be linked to (and tested)
  function applyHash(event) {
    var p = new URLSearchParams(location.hash.slice(1));
    if (!['cell', 'bench', 'q', 'failures'].some(function (k) { return p.has(k); })) return false;
    if (p.has('cell')) {
      var wanted = new Set(p.get('cell').split(','));
      picks.forEach(function (i) { i.checked = wanted.has(i.value); });
      readPicks();
    }
    state.query = (p.get('q') || '').toLowerCase();
    if (search) search.value = p.get('q') || '';
    state.failures = p.get('failures') === '1';
    if (fails) fails.checked = state.failures;
    var names = p.has('bench') ? new Set(p.get('bench').split(',')) : null;
    benches.forEach(function (det) {
      var open = names === null || names.has(det.dataset.bench);
      det.open = open;
      if (open) refresh(det); else det._rendered = false;
    });
    var target = document.getElementById('answers');
    if (event && target && target.scrollIntoView) target.scrollIntoView();  // a link in the page; a shared link opens at the top
    return true;
  }
  window.addEventListener('hashchange', applyHash);
  applyHash(null);
  document.body.dataset.scriptMs = String(Math.round(performance.now() - t0));  // parsing the data, setting up
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // since the navigation started
  document.body.dataset.ready = '1';
})();
"""
"""The page's behaviour: sorting and hiding in the tables, chunked rendering, filtering and search of the answers."""
