"""The results store: one SQLite file per runs folder, schema-versioned, WAL mode.

Scores have one row per (subject, benchmark, judge); answers and judgments one row per question,
written as they come, so an interrupted evaluation resumes with only the missing questions and a
rerun never duplicates rows (primary keys + upserts). Per-question judgments are what the
leaderboard's intervals, seed pooling and paired comparisons are computed from.

Schema 2 added each score's 95% interval, the training seed and seed-free settings digest of its
cell, mean answer length and per-client scores, each answer's length in tokens and each
judgment's client. A schema-1 store is migrated in place when opened: its rows are kept, and
their scores are marked as stored without an interval (never shown as a zero-width one).
Schema 3 added the score's tag (privacy, codec or judging-context axis); schema 4 the ``subjects``
table: where each subject came from (trained here or imported) and its recorded training budget
(rounds, sequence length, steps, ...), so comparisons between unequally trained cells say so. Schema 5 added the
``pairwise`` table: head-to-head verdicts between two subjects' answers to one question, one row per answer order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Judgment, Question

SCHEMA_VERSION = 5
STORE_NAME = "results.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL,
    method TEXT NOT NULL, layout TEXT NOT NULL, aggregator TEXT NOT NULL, model TEXT NOT NULL,
    score REAL, scale REAL NOT NULL, n INTEGER NOT NULL, failures INTEGER NOT NULL,
    judge_setting TEXT NOT NULL, bytes_down INTEGER, bytes_up INTEGER, created REAL NOT NULL,
    ci_low REAL, ci_high REAL, ci_note TEXT, seed INTEGER, settings_key TEXT, answer_tokens REAL, per_client TEXT,
    tag TEXT,
    PRIMARY KEY (subject, benchmark, judge));
CREATE TABLE IF NOT EXISTS answers (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, question_id TEXT NOT NULL,
    prompt TEXT NOT NULL, answer TEXT NOT NULL, settings TEXT NOT NULL, tokens INTEGER,
    PRIMARY KEY (subject, benchmark, question_id));
CREATE TABLE IF NOT EXISTS judgments (
    subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL, question_id TEXT NOT NULL,
    score REAL, raw TEXT NOT NULL, client TEXT,
    PRIMARY KEY (subject, benchmark, judge, question_id));
CREATE TABLE IF NOT EXISTS subjects (
    subject TEXT PRIMARY KEY, origin TEXT NOT NULL, budget TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairwise (
    benchmark TEXT NOT NULL, judge TEXT NOT NULL, first TEXT NOT NULL, second TEXT NOT NULL, question_id TEXT NOT NULL,
    winner TEXT, raw TEXT NOT NULL,
    PRIMARY KEY (benchmark, judge, first, second, question_id));
"""
_V1_TO_V2 = (
    "ALTER TABLE scores ADD COLUMN ci_low REAL",
    "ALTER TABLE scores ADD COLUMN ci_high REAL",
    "ALTER TABLE scores ADD COLUMN ci_note TEXT",
    "ALTER TABLE scores ADD COLUMN seed INTEGER",
    "ALTER TABLE scores ADD COLUMN settings_key TEXT",
    "ALTER TABLE scores ADD COLUMN answer_tokens REAL",
    "ALTER TABLE scores ADD COLUMN per_client TEXT",
    "ALTER TABLE answers ADD COLUMN tokens INTEGER",
    "ALTER TABLE judgments ADD COLUMN client TEXT",
)
_V2_TO_V3 = ("ALTER TABLE scores ADD COLUMN tag TEXT",)
NO_INTERVAL_V1 = "stored by an older fedbench (schema 1), without an interval"


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
    ci_low: float | None = None
    ci_high: float | None = None
    ci_note: str | None = None
    """Why there is no interval (fewer than 2 scored questions, an older store, a score fixed by definition)."""
    seed: int | None = None
    """The cell's training seed (None for the base model)."""
    settings_key: str | None = None
    """Digest of the cell's settings without its seed: rows that share it are repeats of one experiment."""
    answer_tokens: float | None = None
    """Mean answer length in tokens (judges favour long answers)."""
    per_client: str | None = None
    """JSON {client: [score, questions]} for benchmarks whose questions belong to clients."""
    tag: str | None = None
    """The cell's settings on the privacy and communication axes (``RunSpec.tag``), e.g. ``DP eps<=8 C=0.1, int8``;
    empty or None at their defaults. Cells that differ in it get separate leaderboard rows."""


@dataclass(frozen=True)
class PairVerdict:
    """A judge's head-to-head verdict on two subjects' answers to one question, shown in this order: ``winner`` is
    ``first``, ``second``, ``tie``, or None when the reply did not parse."""

    benchmark: str
    judge: str
    first: str
    second: str
    question_id: str
    winner: str | None


class Store:
    """Thin, explicit access to the results database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._batch = False
        found = self._version()
        if found in (1, 2, 3, 4):
            self._migrate(found)
        self.db.executescript(_SCHEMA)
        if found is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif found not in (1, 2, 3, 4, SCHEMA_VERSION):
            raise FedbenchError(
                f"{self.path} has results schema version {found}, this fedbench reads version {SCHEMA_VERSION}",
                "use a fedbench version matching the store, or point --out at a new runs folder",
            )

    def _version(self) -> int | None:
        if not self.db.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone():
            return None
        found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if found is None else int(found[0])

    def _migrate(self, found: int) -> None:
        """An older schema to the current one in one transaction: new columns and tables only (new tables come from
        ``_SCHEMA``'s CREATE IF NOT EXISTS), every row kept."""
        with self.db:
            if found == 1:
                for statement in _V1_TO_V2:
                    self.db.execute(statement)
                self.db.execute("UPDATE scores SET ci_note = ?", (NO_INTERVAL_V1,))
            if found in (1, 2):
                for statement in _V2_TO_V3:
                    self.db.execute(statement)
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    @classmethod
    def in_runs(cls, runs_root: Path) -> Store:
        return cls(Path(runs_root) / STORE_NAME)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every write inside commits together or not at all (an import writes one file this way: a bad line
        or a crash leaves the store as it was). Writes outside a transaction commit one call at a time."""
        if self._batch:
            yield
            return
        self._batch = True
        try:
            with self.db:
                yield
        finally:
            self._batch = False

    def answers(self, subject: str, benchmark: str) -> dict[str, str]:
        rows = self.db.execute("SELECT question_id, answer FROM answers WHERE subject=? AND benchmark=?", (subject, benchmark))
        return dict(rows.fetchall())

    def add_answers(
        self,
        subject: str,
        benchmark: str,
        questions: Sequence[Question],
        answers: Sequence[str],
        settings: dict[str, Any],
        tokens: Sequence[int] | None = None,
    ) -> None:
        blob = json.dumps(settings, sort_keys=True)
        lengths: Sequence[int | None] = tokens if tokens is not None else [None] * len(answers)
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(subject, benchmark, q.id, q.prompt, a, blob, n) for q, a, n in zip(questions, answers, lengths)],
            )

    def questions(self, subject: str, benchmark: str) -> list[Question]:
        """The questions a subject's stored answers reply to (id and prompt), numeric ids in number order: what an
        imported subject, which has no question file behind it, is judged on again."""
        rows = self.db.execute("SELECT question_id, prompt FROM answers WHERE subject=? AND benchmark=?", (subject, benchmark))
        found = [Question(qid, prompt) for qid, prompt in rows.fetchall()]
        return sorted(found, key=lambda q: (0, int(q.id), "") if q.id.isdigit() else (1, 0, q.id))

    def answer_tokens(self, subject: str, benchmark: str) -> dict[str, int]:
        """Answer lengths in tokens by question (answers stored before schema 2 have none)."""
        rows = self.db.execute(
            "SELECT question_id, tokens FROM answers WHERE subject=? AND benchmark=? AND tokens IS NOT NULL", (subject, benchmark)
        )
        return dict(rows.fetchall())

    def judgments(self, subject: str, benchmark: str, judge: str) -> dict[str, Judgment]:
        rows = self.db.execute(
            "SELECT question_id, score, raw FROM judgments WHERE subject=? AND benchmark=? AND judge=?",
            (subject, benchmark, judge),
        )
        return {qid: Judgment(qid, score, raw) for qid, score, raw in rows.fetchall()}

    def add_judgments(
        self, subject: str, benchmark: str, judge: str, judgments: Iterable[Judgment], clients: dict[str, str] | None = None
    ) -> None:
        """Upsert judgments; ``clients`` maps question ids to the client a question belongs to, where it has one."""
        owner = clients or {}
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(subject, benchmark, judge, j.question_id, j.score, j.raw, owner.get(j.question_id)) for j in judgments],
            )

    def question_scores(self, subject: str, benchmark: str, judge: str) -> dict[str, float]:
        """Parsed per-question scores (failures left out): what intervals and paired tests resample."""
        rows = self.db.execute(
            "SELECT question_id, score FROM judgments WHERE subject=? AND benchmark=? AND judge=? AND score IS NOT NULL",
            (subject, benchmark, judge),
        )
        return dict(rows.fetchall())

    def put_score(self, row: ScoreRow) -> None:
        values = row.__dict__ | {"created": row.created or time.time()}
        with self.transaction():
            self.db.execute(
                f"INSERT OR REPLACE INTO scores ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def scores(self) -> list[ScoreRow]:
        cursor = self.db.execute("SELECT * FROM scores ORDER BY benchmark, method, layout, aggregator")
        names = [d[0] for d in cursor.description]
        return [ScoreRow(**dict(zip(names, r))) for r in cursor.fetchall()]

    def put_subject(self, subject: str, origin: str, budget: Mapping[str, Any]) -> None:
        """Record where a subject came from (``trained``, or ``imported from FILE``) and its training budget."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO subjects VALUES (?, ?, ?)", (subject, origin, json.dumps(dict(budget), sort_keys=True))
            )

    def budgets(self) -> dict[str, dict[str, Any]]:
        """Subject -> its recorded training budget (subjects evaluated before schema 4 have none)."""
        rows = self.db.execute("SELECT subject, budget FROM subjects").fetchall()
        return {subject: json.loads(budget) for subject, budget in rows}

    def origins(self) -> dict[str, str]:
        """Subject -> where it came from: ``trained`` or ``imported from FILE``."""
        return dict(self.db.execute("SELECT subject, origin FROM subjects").fetchall())

    def pair_verdicts(self) -> list[PairVerdict]:
        """Every head-to-head verdict in the store (``pairwise`` judging), one per answer order."""
        rows = self.db.execute("SELECT benchmark, judge, first, second, question_id, winner FROM pairwise")
        return [PairVerdict(*r) for r in rows.fetchall()]

    def pair_verdicts_of(self, benchmark: str, judge: str, first: str, second: str) -> dict[str, PairVerdict]:
        """The verdicts on one ordered pair of subjects by question: what a resumed pairwise judging skips."""
        rows = self.db.execute(
            "SELECT benchmark, judge, first, second, question_id, winner FROM pairwise "
            "WHERE benchmark=? AND judge=? AND first=? AND second=?",
            (benchmark, judge, first, second),
        )
        return {r[4]: PairVerdict(*r) for r in rows.fetchall()}

    def add_pair_verdict(self, verdict: PairVerdict, raw: str) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO pairwise VALUES (?, ?, ?, ?, ?, ?, ?)",
                (verdict.benchmark, verdict.judge, verdict.first, verdict.second, verdict.question_id, verdict.winner, raw),
            )
