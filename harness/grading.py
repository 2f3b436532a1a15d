"""Grading answers in groups: the variants of one aggregator in one judge prompt (the study's together-grading, in
rotating order and in further contexts), and every two of them (and the base model) head to head in both orders.

Evaluation (``harness/evaluation.py``) answers each subject's questions and hands the answers here when its judges
grade in groups; the scores are recorded as any other (``harness/scoring.py``), the head-to-head verdicts in the
store's ``pairwise`` table (``harness/pairwise.py`` reads them back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fedbench.harness.interfaces import Benchmark, Judge, Judgment, Question
from fedbench.harness.pairwise import judge_pairs
from fedbench.harness.scoring import EvalProgress, question_clients, record_score
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study_table import BASE, variant_rank
from fedbench.harness.subjects import Subject

JUDGE_CONTEXTS = ("alone", "base", "reference")
"""Together-grading's further contexts (``EvalSpec.judge_contexts``)."""


@dataclass
class Deferred:
    """A cell's answers to one benchmark, waiting to be graded together with its aggregator's other variants."""

    subject: Subject
    bench: Benchmark
    questions: list[Question]
    answers: dict[str, str]
    settings: dict[str, Any]
    """How the answers were made (generation settings and backend, or where they were imported from)."""
    judge: tuple[str, Judge]
    """The judge (name, plugin) that grades them; with several judges, one entry per judge."""


def grade_together(
    deferred: Sequence[Deferred],
    base_answers: Mapping[tuple[str, str, str], Deferred],
    rotate: bool,
    contexts: Sequence[str],
    store: Store,
    progress: EvalProgress,
) -> list[ScoreRow]:
    """Multi-answer grading as in the study: the cells of one aggregator (DPO, KTOO, KTOR) that answered
    a question are scored in one judge prompt, so their scores share one scale. Stored as '<judge>-together'.

    The answers' order rotates from question to question (question i starts with the variant at
    position i mod k), so each variant sits in each position equally often: a judge's position bias
    then spreads evenly instead of favouring whichever variant always comes first. With ``rotate`` off (``judge_order = "fixed"``)
    they come in the study's order, DPO, KTOO, KTOR, on every question.

    Each of ``contexts`` (``EvalSpec.judge_contexts``) grades the same answers again in another context, stored as
    '<judge>-together@<context>' with a tagged row: ``alone`` (each answer by the judge's one-answer grading) and
    ``base`` (the base model's answer added to the group; only the variants' scores are recorded).
    ``leaderboard --judge-checks`` reports each context's shift against the group's own.
    """
    groups: dict[tuple[str, str, str, int | None, str, str], list[Deferred]] = {}
    for item in deferred:
        s = item.subject
        groups.setdefault((item.bench.name, s.model, s.aggregator, s.seed, s.tag, item.judge[0]), []).append(item)
    rows = []
    for (bench_name, model, _, _, _, judge_name), items in groups.items():
        items.sort(key=lambda it: (variant_rank(it.subject.method, it.subject.layout), it.subject.layout))
        name = f"{judge_name}-together" + ("" if rotate else "-fixed")
        rows += _grade_group(store, progress, items, items, name, "", rotate)
        for context in contexts:
            if context == "alone":
                for item in items:
                    rows += _grade_group(store, progress, [item], [item], f"{name}@alone", "judged alone", rotate)
                continue
            beside = base_answers.get((bench_name, model, judge_name)) if context == "base" else _reference(items[0])
            if beside is None:
                if progress.on_skip:
                    why = "the base model has no answers here" if context == "base" else "no question has a reference answer"
                    progress.on_skip(items[0].subject, bench_name, f"judge context '{context}': {why}")
                continue
            tag = "judged beside the base model" if context == "base" else "judged beside the reference answer"
            rows += _grade_group(store, progress, [*items, beside], items, f"{name}@with-{context}", tag, rotate)
    return rows


def _reference(item: Deferred) -> Deferred | None:
    """The questions' reference answers as one more answer set to grade beside a group (None: no question has one)."""
    answers = {q.id: q.reference for q in item.questions if q.reference}
    if not answers:
        return None
    subject = Subject("reference", "", "", "", method="reference", layout="answer")
    return Deferred(subject, item.bench, item.questions, answers, {"origin": "the benchmark's reference answers"}, item.judge)


def _grade_group(
    store: Store,
    progress: EvalProgress,
    items: Sequence[Deferred],
    record: Sequence[Deferred],
    name: str,
    context: str,
    rotate: bool,
) -> list[ScoreRow]:
    """Grade ``items``' answers together question by question (one item: the judge's one-answer grading), store every
    item's judgments under ``name`` and record the scores of ``record``'s subjects (tagged with ``context`` if any)."""
    bench_name, judge = items[0].bench.name, items[0].judge[1]
    questions = items[0].questions
    kept = [any(it is r for r in record) for it in items]  # only the recorded subjects' judgments are stored
    judged = [store.judgments(it.subject.key, bench_name, name) if keep else {} for it, keep in zip(items, kept)]
    agreed: list[bool] = []
    for index, q in enumerate(questions):
        done = all(q.id in j for j, keep in zip(judged, kept) if keep)
        if done or not all(q.id in it.answers for it in items):
            continue
        if len(items) == 1:
            verdicts = judge.judge([q], [items[0].answers[q.id]])
        else:
            shift = index % len(items) if rotate else 0
            order = list(range(len(items)))[shift:] + list(range(len(items)))[:shift]
            by_item, reply = grade_in_order(judge, q, items, order)
            if judge.swap:
                backward, second = grade_in_order(judge, q, items, order[::-1])
                if by_item and backward:
                    agreed.append(max(by_item, key=by_item.__getitem__) == max(backward, key=backward.__getitem__))
                by_item = {i: (by_item[i] + backward[i]) / 2 for i in by_item} if by_item and backward else {}
                reply += "\n--- reversed order ---\n" + second
            verdicts = [Judgment(q.id, by_item.get(i), reply) for i in range(len(items))]
        for it, j, v, keep in zip(items, judged, verdicts, kept):
            if keep:
                store.add_judgments(it.subject.key, bench_name, name, [v], question_clients([q]))
            j[q.id] = v
    setting = judge.setting + ("" if rotate else ", answer order fixed: " + ", ".join(it.subject.label for it in items))
    if agreed:
        setting += f", position-consistency {sum(agreed) / len(agreed):.2f} over {len(agreed)} questions (swap)"
    rows = []
    for it, j, keep in zip(items, judged, kept):
        if not keep:
            continue
        subject = replace(it.subject, tag=", ".join(t for t in (it.subject.tag, context) if t)) if context else it.subject
        answered = [q for q in it.questions if q.id in j]
        rows.append(record_score(store, progress, subject, it.bench, name, setting, answered, j, it.settings, it.answers))
    return rows


def judge_head_to_head(
    waiting: Sequence[Deferred], base_answers: Mapping[tuple[str, str, str], Deferred], store: Store, progress: EvalProgress
) -> None:
    """Head-to-head judging (``pairwise``): per benchmark, judge and aggregator, every two of its variants and the
    base model, each question in both orders (:mod:`fedbench.harness.pairwise`)."""
    groups: dict[tuple[str, str, str, int | None, str, str], list[Deferred]] = {}
    for item in waiting:
        s = item.subject
        if s.method != BASE:
            groups.setdefault((item.bench.name, s.model, s.aggregator, s.seed, s.tag, item.judge[0]), []).append(item)
    for (bench_name, model, _, _, _, judge_name), items in groups.items():
        base = base_answers.get((bench_name, model, judge_name))
        met = [*items, base] if base is not None else items
        questions = [q for q in met[0].questions if all(q.id in it.answers for it in met)]
        answers = {it.subject.key: it.answers for it in met}
        if progress.on_start:
            pairs = len(met) * (len(met) - 1)  # ordered pairs: both orders of every two
            progress.on_start(items[0].subject, f"{bench_name} head to head ({judge_name})", pairs * len(questions))
        judge_pairs(store, bench_name, judge_name, met[0].judge[1], questions, answers, progress.on_answers)


def grade_in_order(
    judge: Judge, question: Question, items: Sequence[Deferred], order: Sequence[int]
) -> tuple[dict[int, float], str]:
    """One multi-answer grading with the answers in ``order``; scores mapped back to the items, the reply noted with the order."""
    scores, reply = judge.judge_together(question, [items[i].answers[question.id] for i in order])
    by_item = {} if scores is None else {i: scores[pos] for pos, i in enumerate(order)}
    return by_item, f"[answer order: {', '.join(items[i].subject.label for i in order)}]\n{reply}"
