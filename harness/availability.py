"""Clients as they are: some sampled clients never report, and slow ones run out of time (the run's ``[clients]``).

FedLLM-Bench's rounds assume every sampled client shows up and finishes its steps. Real federations of users do
neither, so a run may say how its clients behave::

    [clients]
    dropout = 0.2                   # each sampled client fails to report with this probability
    availability = "trace.csv"      # when each client is online (a sampled client offline does not report)
    deadline = 3.0                  # the round's time, in steps of a client of speed 1
    speed = "lognormal:0.5"         # clients' speeds: exp(N(0, sigma^2)) each, or a CSV file client,speed
    partial = true                  # a client past the deadline reports the steps it completed (false: nothing)
    min_reports = 2                 # fewer reports than this and the round is skipped (global adapter kept)

The server samples as always (a function of seed and round: it does not know who will answer); then each
sampled client's fate is a function of (seed, round, client) alone, so a resumed run replays it exactly. A client
of speed v completes floor(v x deadline) of its planned steps: all of them, some (it reports them, or nothing when
``partial`` is false), or none (it does not report). The round's history entry names each client that did not
report and why (``absent``), the steps a late client reported (``client_settings``), and a round skipped for too few
reports (``skipped``). Aggregators weigh what arrives. Only the local engine plays these behaviours; the Flower
engines, whose clients are real processes that fail on their own, refuse the table before training.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError

CLIENT_KEYS: dict[str, type] = {
    "dropout": float,
    "availability": str,
    "deadline": float,
    "speed": str,
    "partial": bool,
    "min_reports": int,
}
"""The ``[clients]`` settings and their types."""

LOGNORMAL = "lognormal:"


def clients_table(table: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, an unknown ``[clients]`` key, a wrong type, a probability outside [0, 1], a
    deadline with no speeds (or speeds with no deadline) and a malformed speed rule. Files are read when the run
    starts, against its federation (:meth:`ClientPlan.for_run`)."""
    for key, value in table.items():
        if key not in CLIENT_KEYS:
            raise FedbenchError(f"[clients] has an unknown setting '{key}'", f"known settings: {', '.join(CLIENT_KEYS)}")
        expected = CLIENT_KEYS[key]
        number = expected is float and isinstance(value, int) and not isinstance(value, bool)
        if not (isinstance(value, expected) or number) or (expected is int and isinstance(value, bool)):
            raise FedbenchError(
                f"[clients] {key} must be {expected.__name__}, got {value!r}", f"set clients.{key} to a {expected.__name__}"
            )
    if not 0 <= table.get("dropout", 0) <= 1:
        raise FedbenchError(
            f"[clients] dropout {table['dropout']} is not a probability in [0, 1]", "set clients.dropout to e.g. 0.2"
        )
    if table.get("min_reports", 1) < 1:
        raise FedbenchError(
            f"[clients] min_reports must be at least 1, got {table['min_reports']}", "set clients.min_reports >= 1"
        )
    if ("deadline" in table) != ("speed" in table):
        given, missing = ("deadline", "speed") if "deadline" in table else ("speed", "deadline")
        raise FedbenchError(
            f"[clients] has a {given} but no {missing}: who misses a deadline depends on both",
            'set both, e.g. clients.deadline = 3.0 and clients.speed = "lognormal:0.5" (or a CSV file client,speed)',
        )
    if table.get("deadline", 1) <= 0:
        raise FedbenchError(f"[clients] deadline must be positive, got {table['deadline']}", "set clients.deadline to e.g. 3.0")
    speed = table.get("speed", "")
    if speed.startswith(LOGNORMAL):
        sigma = speed[len(LOGNORMAL) :]
        try:
            valid = float(sigma) >= 0
        except ValueError:
            valid = False
        if not valid:
            raise FedbenchError(
                f"[clients] speed '{speed}': '{sigma}' is not a sigma >= 0", 'write clients.speed = "lognormal:0.5"'
            )


def read_rows(path: Path, columns: Sequence[str], what: str) -> list[dict[str, str]]:
    """A CSV file's rows, refused with the file's name when it is missing or lacks ``columns``."""
    if not path.is_file():
        raise FedbenchError(f"[clients] {what} file '{path}' does not exist", f"check clients.{what}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise FedbenchError(
                f"[clients] {what} file '{path}' has no column {', '.join(missing)} (it has {reader.fieldnames})",
                f"write a header line {','.join(columns)}",
            )
        return list(reader)


def whole(value: str, path: Path, line: int) -> int:
    """A round number read from a trace, refused with its place when it is not a whole number."""
    try:
        return int(value)
    except ValueError:
        raise FedbenchError(f"{path} line {line}: '{value}' is not a round number", "write 1-based round numbers") from None


def read_trace(path: Path, clients: Sequence[str], rounds: int) -> dict[str, set[int]]:
    """Client -> the rounds (1-based) it is online, from ``client,first_round,last_round`` rows or ``client,round`` rows.

    Refuses a client the federation does not have and a round outside 1 .. rounds, naming the row. A client the trace
    does not list is never online.
    """
    rows = read_rows(path, ("client",), "availability")
    spans = bool(rows) and "first_round" in rows[0]
    if rows and not all(c in rows[0] for c in (("first_round", "last_round") if spans else ("round",))):
        raise FedbenchError(
            f"[clients] availability file '{path}' has columns {list(rows[0])}",
            "write client,first_round,last_round or client,round",
        )
    online: dict[str, set[int]] = {}
    known = set(clients)
    for line, row in enumerate(rows, start=2):
        if row["client"] not in known:
            raise FedbenchError(
                f"{path} line {line}: client '{row['client']}' is not in this federation of {len(known)} clients",
                f"name the data's clients (e.g. {', '.join(sorted(known)[:3])})",
            )
        first, last = (
            (whole(row["first_round"], path, line), whole(row["last_round"], path, line))
            if spans
            else (whole(row["round"], path, line),) * 2
        )
        if not 1 <= first <= last <= rounds:
            raise FedbenchError(
                f"{path} line {line}: rounds {first}..{last} are not within this run's rounds 1..{rounds}",
                "write 1-based rounds no later than the run's last, first_round <= last_round",
            )
        online.setdefault(row["client"], set()).update(range(first, last + 1))
    return online


def client_speeds(rule: str, clients: Sequence[str], seed: int) -> dict[str, float]:
    """Each client's speed (steps per unit of deadline): exp(sigma z) with z ~ N(0, 1) drawn from (seed, client), or
    the ``client,speed`` file's, which must name every client with a positive speed."""
    if rule.startswith(LOGNORMAL):
        sigma = float(rule[len(LOGNORMAL) :])
        return {c: math.exp(sigma * random.Random(f"{seed}:speed:{c}").gauss(0.0, 1.0)) for c in clients}
    path = Path(rule)
    speeds: dict[str, float] = {}
    for line, row in enumerate(read_rows(path, ("client", "speed"), "speed"), start=2):
        try:
            speeds[row["client"]] = float(row["speed"])
        except ValueError:
            raise FedbenchError(f"{path} line {line}: speed '{row['speed']}' is not a number", "write positive speeds") from None
        if not speeds[row["client"]] > 0:
            raise FedbenchError(f"{path} line {line}: speed {row['speed']} is not positive", "write positive speeds")
    unknown, missing = sorted(speeds.keys() - set(clients)), sorted(set(clients) - speeds.keys())
    if unknown or missing:
        raise FedbenchError(
            f"{path} does not match the federation: unknown clients {unknown[:3]}, clients without a speed {missing[:3]}",
            "give one row per client of the data",
        )
    return speeds


@dataclass(frozen=True)
class ClientPlan:
    """How a run's clients behave (module docstring); the default is FedLLM-Bench's: everyone reports every step."""

    seed: int = 0
    dropout: float = 0.0
    online: Mapping[str, set[int]] | None = None
    """Client -> the rounds it is online (1-based); None: always."""
    speeds: Mapping[str, float] = field(default_factory=dict)
    deadline: float | None = None
    partial: bool = True
    min_reports: int = 1

    @classmethod
    def for_run(cls, table: Mapping[str, Any], clients: Sequence[str], rounds: int, seed: int) -> ClientPlan:
        """The run's plan, its files read and checked against the federation's clients and the run's rounds."""
        trace = table.get("availability")
        return cls(
            seed=seed,
            dropout=float(table.get("dropout", 0.0)),
            online=None if trace is None else read_trace(Path(trace), clients, rounds),
            speeds=client_speeds(table["speed"], clients, seed) if "speed" in table else {},
            deadline=table.get("deadline"),
            partial=table.get("partial", True),
            min_reports=table.get("min_reports", 1),
        )

    @property
    def loses_reports(self) -> bool:
        """Whether a round may end with fewer reports than it sampled clients."""
        return self.dropout > 0 or self.online is not None or self.deadline is not None

    def fate(self, round_index: int, client_id: str, planned: int) -> tuple[int, str]:
        """The steps a sampled client reports in round ``round_index`` (0-based) out of ``planned``; 0 with the reason
        when it reports nothing."""
        if self.online is not None and round_index + 1 not in self.online.get(client_id, set()):
            return 0, f"offline in round {round_index + 1} (clients.availability)"
        if self.dropout > 0 and random.Random(f"{self.seed}:{round_index}:{client_id}:dropout").random() < self.dropout:
            return 0, f"dropped out (clients.dropout = {self.dropout:g})"
        if self.deadline is None:
            return planned, ""
        done = min(planned, math.floor(self.speeds[client_id] * self.deadline + 1e-9))
        if done == planned:
            return planned, ""
        missed = f"missed the deadline: {done} of {planned} steps done (speed {self.speeds[client_id]:.3g})"
        if done == 0 or not self.partial:
            return 0, missed + ("" if done == 0 else ", clients.partial = false")
        return done, ""
