"""What the results wing reads from the run directories themselves (no store needed): each cell's training.

The store holds what evaluation scored; a cell's run directory holds what training did: its spec, its
per-round history, what its rounds sent and cost, and its state while it is unfinished. The resources
view, the clients view's training losses and the report's training section read them here, through
:class:`~fedbench.harness.checkpoint.RunDir` (so ``result.json`` is read in one way only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedbench.harness.attacks import ATTACK_FILE
from fedbench.harness.checkpoint import RoundRecord, RunDir, RunResult, scan_runs
from fedbench.harness.errors import FedbenchError
from fedbench.harness.spec import RunSpec
from fedbench.harness.study_table import subject_label


@dataclass(frozen=True)
class ResourceRow:
    """What one finished cell cost: communication after its codec, privacy spent, training time, memory."""

    cell: str
    seed: int
    codec: str
    rounds: int
    bytes_down: int
    bytes_up: int
    """Totals over all rounds; per round: divide by ``rounds``."""
    epsilon: float | None
    """Client-level DP spent over the run (at ``delta``); None without ``[privacy]``."""
    delta: float | None
    train_seconds_per_client_round: float | None
    peak_rss_mib: float | None
    """The training process's peak resident memory (cells it trained before included); None for Flower runs."""
    peak_gpu_mib: float | None

    @property
    def per_round(self) -> tuple[float, float]:
        return self.bytes_down / max(1, self.rounds), self.bytes_up / max(1, self.rounds)


def resource_rows(runs_root: Path) -> list[ResourceRow]:
    """One row per finished cell in a runs folder, read from its ``result.json``."""
    rows = []
    for state in scan_runs(runs_root):
        result = RunDir.at(state.path).result() if state.status == "done" else None
        if result is None:
            continue
        spec, history = result.spec, result.history
        client_rounds = sum(len(h.client_loss) for h in history)
        privacy, memory = dict(result.privacy), dict(result.memory or {})
        down, up = result.traffic
        rows.append(
            ResourceRow(
                subject_label(spec.method, spec.layout, spec.aggregator, spec.seed) + (f" [{spec.tag}]" if spec.tag else ""),
                spec.seed,
                spec.codec,
                len(history),
                down,
                up,
                privacy.get("epsilon"),
                privacy.get("delta"),
                sum(h.train_seconds for h in history) / client_rounds if client_rounds else None,
                memory.get("peak_rss_mib"),
                memory.get("peak_gpu_mib"),
            )
        )
    return sorted(rows, key=lambda r: r.cell)


def client_losses(runs_root: Path, subject: str) -> dict[str, float]:
    """Each client's mean training loss over the rounds it trained in, from the cell's ``result.json``."""
    found = list(runs_root.glob(f"*-{subject}/result.json"))
    result = RunDir.at(found[0].parent).result() if found else None
    if result is None:
        return {}
    losses: dict[str, list[float]] = {}
    for record in result.history:
        for client, loss in record.client_loss.items():
            if loss is not None:
                losses.setdefault(client, []).append(loss)
    return {c: sum(v) / len(v) for c, v in losses.items()}


def client_attackers(runs_root: Path, subject: str) -> list[str]:
    """The cell's malicious clients, from its run directory's ``attack.json`` (none without an attack)."""
    found = list(runs_root.glob(f"*-{subject}/{ATTACK_FILE}"))
    return list(json.loads(found[0].read_text(encoding="utf-8")).get("malicious", [])) if found else []


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


def training_cells(runs: Path) -> list[CellTraining]:
    """Every run directory of a runs folder, finished or not; one whose files cannot be read says why."""
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
        label = subject_label(spec.method, spec.layout, spec.aggregator, spec.seed)
        cells.append(
            CellTraining(label, spec.hash, state.path, state.status, state.reason, state.rounds_done, state.rounds, spec, result)
        )
    return cells
