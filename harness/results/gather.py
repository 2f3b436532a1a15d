"""What ``fedbench report`` gathers from a runs folder: its store's table, each cell's training, every answer and verdict.

Nothing the harness stored is recomputed differently here: the table is the results wing's read model
(:mod:`fedbench.harness.results.model`, the same as ``leaderboard``'s), the training side is read from the run
directories (:mod:`fedbench.harness.results.runs`), and the answers come from the answers file
``export_answers`` writes per subject and benchmark (:mod:`fedbench.harness.evaluation`) with every judge's
verdicts from ``results.sqlite``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.judge_checks import JudgeChecks, gather_checks
from fedbench.harness.results.model import GapRow, Matrix, build_matrix, gap_rows, judging_context, store_questions
from fedbench.harness.results.runs import CellTraining, training_cells
from fedbench.harness.store import STORE_NAME, ScoreRow, Store
from fedbench.harness.study_table import AGGREGATOR_ORDER, BASE, VARIANTS, benchmark_rank, subject_label, variant

ANSWERS_DIR = "answers"
"""Where ``scoring.export_answers`` writes a subject's answers: ``<home>/answers/<benchmark>.jsonl``, ``home``
being a cell's run directory or ``<runs>/<base subject key>`` for the base model."""


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
                    by_reply.setdefault((judging_context(judge), v.raw), set()).add(v.score)
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
    matrix: Matrix | None
    """The study's table; None when the runs folder has no scores yet."""
    cells: list[CellTraining]
    benchmarks: list[BenchmarkAnswers]
    labels: dict[str, str]
    """Store subject -> its unique, readable name (``base``, ``kto-redistributed-fedavg``, ...)."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know first: no scores yet, unreadable run directories, missing answers."""
    gaps: list[GapRow] = field(default_factory=list)
    """Each federated entry between its local-only and centralized baselines (empty without both baselines)."""
    checks: JudgeChecks | None = None
    """What the store says about its judges (``leaderboard --judge-checks``); None without scores."""


def _order(row: ScoreRow) -> tuple[Any, ...]:
    """Base model first, then the table's order: aggregators as the study lists them, DPO, KTOO, KTOR, seeds."""
    if row.method == BASE:
        return (0, 0, "", 0, 0, row.subject)
    aggs, variants = AGGREGATOR_ORDER, list(VARIANTS.values())
    var = variant(row.method, row.layout)
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
        wanted.setdefault(s.subject, subject_label(s.method, s.layout, s.aggregator, s.seed))
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
    for bench in sorted(judges, key=benchmark_rank):
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
    cells = training_cells(runs)
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
    gaps: list[GapRow] = []
    checks = None
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
                matrix = build_matrix(scores, questions=store_questions(store), budgets=store.budgets())
                gaps = gap_rows(matrix, store_questions(store))
                labels = _labels(cells, scores)
                benchmarks = _answers(runs, store, scores, cells, labels)
                checks = gather_checks(
                    scores, store_questions(store), lambda r: store.answers(r.subject, r.benchmark), store.pair_verdicts()
                )
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
    return Report(runs, time.time(), scores, matrix, cells, benchmarks, labels, notes, gaps, checks)
