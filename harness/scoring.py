"""Recording a score: one row per (subject, benchmark, judge) with its interval, answer length and per-client scores,
the answers exported beside the run, and the progress callbacks that report each row as it is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedbench.harness.checkpoint import atomic_write_text
from fedbench.harness.generation import Generator
from fedbench.harness.interfaces import Benchmark, Judgment, Question
from fedbench.harness.stats import score_interval
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.subjects import Subject


@dataclass
class EvalProgress:
    """Callbacks for progress reporting; all optional."""

    on_start: Callable[[Subject, str, int], None] | None = None
    on_answers: Callable[[int], None] | None = None
    on_score: Callable[[Subject, str, ScoreRow], None] | None = None
    on_skip: Callable[[Subject, str, str], None] | None = None
    """A benchmark this subject cannot take, with the reason (the others still run)."""
    generators: dict[tuple[str, str, str], Generator] = field(default_factory=dict)


def question_clients(questions: Sequence[Question]) -> dict[str, str]:
    """Question id -> the client it belongs to, for the questions that belong to one (held-out pairs)."""
    return {q.id: q.client for q in questions if q.client}


def score_fields(
    subject: Subject,
    benchmark: str,
    bench: Benchmark,
    judge_name: str,
    judge_setting: str,
    n: int,
    failures: int,
    score: float | None,
) -> dict[str, Any]:
    return dict(
        subject=subject.key,
        benchmark=benchmark,
        judge=judge_name,
        method=subject.method,
        layout=subject.layout,
        aggregator=subject.aggregator,
        model=subject.model,
        score=score,
        scale=bench.scale,
        n=n,
        failures=failures,
        judge_setting=judge_setting,
        bytes_down=subject.traffic[0] if subject.traffic else None,
        bytes_up=subject.traffic[1] if subject.traffic else None,
        seed=subject.seed,
        settings_key=subject.settings_key,
        tag=subject.tag,
    )


def record_score(
    store: Store,
    progress: EvalProgress,
    subject: Subject,
    bench: Benchmark,
    judge_name: str,
    judge_setting: str,
    questions: Sequence[Question],
    judged: dict[str, Judgment],
    settings: dict[str, Any],
    answers: dict[str, str] | None = None,
    benchmark_name: str | None = None,
    created: float = 0.0,
) -> ScoreRow:
    """Score with its interval, answer length and per-client scores; export the answers; store and report the row.

    ``created`` dates the score (default: now); an import passes the judgments' own time, so importing a file
    again writes the same row."""
    name = benchmark_name or bench.name
    verdicts = [judged[q.id] for q in questions]
    home = store.path.parent / subject.key if subject.adapter is None else subject.adapter.parent
    export_answers(home, name, questions, answers, verdicts, settings | {"judge": judge_name})
    row = score_fields(
        subject,
        name,
        bench,
        judge_name,
        judge_setting,
        len(verdicts),
        sum(v.score is None for v in verdicts),
        bench.score(verdicts),
    )
    row |= _uncertainty(bench, verdicts)
    tokens = store.answer_tokens(subject.key, name)
    lengths = [tokens[q.id] for q in questions if q.id in tokens]
    row["answer_tokens"] = sum(lengths) / len(lengths) if lengths else None
    row["per_client"] = _per_client(bench, questions, verdicts)
    row["created"] = created
    return store_score(store, progress, subject, ScoreRow(**row))


def store_score(store: Store, progress: EvalProgress, subject: Subject, row: ScoreRow) -> ScoreRow:
    store.put_score(row)
    if progress.on_score:
        progress.on_score(subject, row.benchmark, row)
    return row


def _uncertainty(bench: Benchmark, verdicts: Sequence[Judgment]) -> dict[str, Any]:
    """The score's 95% interval over its questions, or why it has none."""
    values = [v.score for v in verdicts if v.score is not None]
    if len(values) < 2:
        return {"ci_note": f"{len(values)} scored question{'s' if len(values) != 1 else ''}: an interval needs at least 2"}
    mean = sum(values) / len(values)
    factor = 100.0 if bench.rate else 1.0
    score = bench.score(verdicts)
    if score is None or abs(score - factor * mean) > 1e-9 * max(1.0, abs(factor * mean)):
        return {"ci_note": f"benchmark '{bench.name}' computes its own score (not the mean of its judgments): no interval"}
    interval = score_interval(values, binary=bench.rate)
    if interval is None:
        return {"ci_note": "no interval"}
    return {"ci_low": factor * interval.low, "ci_high": factor * interval.high, "ci_note": interval.method}


def _per_client(bench: Benchmark, questions: Sequence[Question], verdicts: Sequence[Judgment]) -> str | None:
    """JSON {client: [score, questions scored]} when the questions belong to clients."""
    groups: dict[str, list[Judgment]] = {}
    for q, v in zip(questions, verdicts):
        if q.client and v.score is not None:
            groups.setdefault(q.client, []).append(v)
    if not groups:
        return None
    return json.dumps({c: [bench.score(vs), len(vs)] for c, vs in sorted(groups.items())})


def export_answers(
    home: Path,
    benchmark: str,
    questions: Sequence[Question],
    answers: dict[str, str] | None,
    verdicts: Sequence[Judgment],
    settings: dict[str, Any],
) -> Path:
    """``<home>/answers/<benchmark>.jsonl``: one line per question with answer, score, raw judge reply and settings.

    Benchmarks scored on given answers (held-out pairs) have no generated answer; their lines carry
    the client and the scoring detail in ``judge_reply``.
    """
    lines = [
        json.dumps(
            {
                "question_id": q.id,
                "category": q.category,
                "client": q.client or None,
                "prompt": q.prompt,
                "answer": None if answers is None else answers[q.id],
                "score": v.score,
                "judge_reply": v.raw,
                "settings": settings,
            },
            ensure_ascii=False,
        )
        for q, v in zip(questions, verdicts)
    ]
    path = home / "answers" / f"{benchmark}.jsonl"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
