"""The results store: one SQLite file per runs folder, schema-versioned, WAL mode.

Scores have one row per (subject, benchmark, judge); answers and judgments one row per question,
written as they come, so an interrupted evaluation resumes with only the missing questions and a
rerun never duplicates rows (primary keys + upserts).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Judgment, Question

SCHEMA_VERSION = 1
STORE_NAME = "results.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL,
    method TEXT NOT NULL, layout TEXT NOT NULL, aggregator TEXT NOT NULL, model TEXT NOT NULL,
    score REAL, scale REAL NOT NULL, n INTEGER NOT NULL, failures INTEGER NOT NULL,
    judge_setting TEXT NOT NULL, bytes_down INTEGER, bytes_up INTEGER, created REAL NOT NULL,
    PRIMARY KEY (subject, benchmark, judge));
CREATE TABLE IF NOT EXISTS answers (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, question_id TEXT NOT NULL,
    prompt TEXT NOT NULL, answer TEXT NOT NULL, settings TEXT NOT NULL,
    PRIMARY KEY (subject, benchmark, question_id));
CREATE TABLE IF NOT EXISTS judgments (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL, question_id TEXT NOT NULL,
    score REAL, raw TEXT NOT NULL,
    PRIMARY KEY (subject, benchmark, judge, question_id));
"""


@dataclass(frozen=True)
class ScoreRow:
    """One leaderboard entry; ``subject`` is a cell's spec hash or ``base-...`` for an untrained model."""

    subject: str
    benchmark: str
    judge: str
    method: str
    layout: str
    aggregator: str
    model: str
    score: float | None
    scale: float
    n: int
    failures: int
    judge_setting: str
    bytes_down: int | None = None
    bytes_up: int | None = None
    created: float = 0.0


class Store:
    """Thin, explicit access to the results database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) != SCHEMA_VERSION:
            raise FedbenchError(
                f"{self.path} has results schema version {found[0]}, this fedbench reads version {SCHEMA_VERSION}",
                "use a fedbench version matching the store, or point --out at a new runs folder",
            )

    @classmethod
    def in_runs(cls, runs_root: Path) -> Store:
        return cls(Path(runs_root) / STORE_NAME)

    def close(self) -> None:
        self.db.close()

    def answers(self, subject: str, benchmark: str) -> dict[str, str]:
        rows = self.db.execute("SELECT question_id, answer FROM answers WHERE subject=? AND benchmark=?", (subject, benchmark))
        return dict(rows.fetchall())

    def add_answers(self, subject: str, benchmark: str, questions: Sequence[Question], answers: Sequence[str], settings: dict[str, Any]) -> None:
        blob = json.dumps(settings, sort_keys=True)
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                [(subject, benchmark, q.id, q.prompt, a, blob) for q, a in zip(questions, answers)],
            )

    def judgments(self, subject: str, benchmark: str, judge: str) -> dict[str, Judgment]:
        rows = self.db.execute(
            "SELECT question_id, score, raw FROM judgments WHERE subject=? AND benchmark=? AND judge=?", (subject, benchmark, judge)
        )
        return {qid: Judgment(qid, score, raw) for qid, score, raw in rows.fetchall()}

    def add_judgments(self, subject: str, benchmark: str, judge: str, judgments: Iterable[Judgment]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?)",
                [(subject, benchmark, judge, j.question_id, j.score, j.raw) for j in judgments],
            )

    def put_score(self, row: ScoreRow) -> None:
        values = row.__dict__ | {"created": row.created or time.time()}
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO scores ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def scores(self) -> list[ScoreRow]:
        cursor = self.db.execute("SELECT * FROM scores ORDER BY benchmark, method, layout, aggregator")
        names = [d[0] for d in cursor.description]
        return [ScoreRow(**dict(zip(names, r))) for r in cursor.fetchall()]
