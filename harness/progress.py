"""Readable output for long work: a rich progress bar per cell and one log line per client and round.

Only rendering lives here: :class:`RichProgress` is the :class:`~fedbench.harness.study.StudyProgress`
that ``fedbench run`` and ``fedbench eval`` hand to the library entry (:mod:`fedbench.harness.study`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fedbench.harness.evaluation import EvalSpec
from fedbench.harness.federation import Cell, RoundEvent
from fedbench.harness.rounds import CellOutcome
from fedbench.harness.spec import RunSpec
from fedbench.harness.store import ScoreRow
from fedbench.harness.study import StudyProgress
from fedbench.harness.subjects import Subject


class RichProgress(StudyProgress):
    """A study on a rich console: a rule and the spec per cell, a bar per cell and per evaluation, a summary table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._cell: Cell | None = None
        self._total: int | None = 0

    # ------------------------------------------------------------------ training

    def cell_skipped(self, spec: RunSpec, reason: str) -> None:
        self.console.print(f"[yellow]skipping {spec.cell}:[/] {reason}")

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        spec = cell.spec
        self.console.rule(f"[bold]cell {index}/{total}: {spec.cell}[/]  ({spec.hash})")
        self.console.print_json(data=spec.to_dict())

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/]")

    def training_started(self, cell: Cell, total_steps: int | None) -> None:
        """The local engine's bar: one tick per local step (the Flower engines log their own rounds)."""
        self._cell, self._total = cell, total_steps
        self._bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("loading model and data", total=total_steps)

    def step(self, loss: float | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, description=f"training  loss {loss:.4f}" if loss is not None else "training")

    def round_event(self, event: RoundEvent) -> None:
        if self._bar is None or self._cell is None:
            return
        if event.client is None:
            note = f"  [red]rejected: {', '.join(event.rejected)}[/]" if event.rejected else ""
            loss = f"{event.loss:.4f}" if event.loss is not None else "n/a"
            self._bar.console.log(f"[bold]round {event.round}/{self._cell.spec.rounds}[/] done, mean loss {loss}{note}")
        else:
            self._bar.console.log(f"round {event.round} client {event.client}: loss {event.loss:.4f}")

    def training_stopped(self, cell: Cell, outcome: CellOutcome | None) -> None:
        if self._bar is None:
            return
        if outcome is not None and self._task is not None and self._total is not None:
            self._bar.update(self._task, completed=self._total)
        self._bar.stop()
        self._bar, self._task, self._cell = None, None, None

    def cell_busy(self, cell: Cell, reason: str) -> None:
        self.console.print(f"[yellow]skipping {cell.spec.cell}:[/] {reason}")

    def cell_finished(self, cell: Cell, outcome: CellOutcome) -> None:
        if outcome.skipped:
            self.console.print(f"[green]already finished[/] (use --force to redo): {outcome.run_dir}")

    def cells_trained(self, cells: Sequence[Cell], outcomes: Sequence[CellOutcome]) -> None:
        summary = Table(title="trained cells")
        for col in ("cell", "rounds", "final loss", "adapter", "metrics"):
            summary.add_column(col)
        for cell, outcome in zip(cells, outcomes):
            last = outcome.history[-1].loss if outcome.history else None
            summary.add_row(
                cell.spec.cell,
                str(len(outcome.history)),
                f"{last:.4f}" if last is not None else "n/a",
                str(outcome.adapter_dir),
                str(outcome.run_dir / "result.json"),
            )
        self.console.print(summary)

    # ------------------------------------------------------------------ evaluation

    def evaluation_started(self, subjects: Sequence[Subject], spec: EvalSpec) -> None:
        self.console.rule(f"[bold]evaluation: {len(subjects)} models x {', '.join(spec.benchmarks)}[/]")
        self._bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._bar.start()
        self._task = self._bar.add_task("answering", total=0)

    def benchmark_started(self, subject: Subject, benchmark: str, todo: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.reset(self._task, total=todo, description=f"{subject.label} {benchmark}")

    def answers_done(self, count: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)

    def scored(self, subject: Subject, benchmark: str, row: ScoreRow) -> None:
        score = "n/a" if row.score is None else f"{row.score:.2f}/{row.scale:g}"
        if row.ci_low is not None and row.ci_high is not None:
            score += f" [{row.ci_low:.2f}, {row.ci_high:.2f}]"
        fails = f", [red]{row.failures} unparsed[/]" if row.failures else ""
        self._log(f"{subject.label:<32} {benchmark:<22} {score} ({row.judge}, n={row.n}{fails})")

    def benchmark_skipped(self, subject: Subject, benchmark: str, reason: str) -> None:
        self._log(f"[yellow]{subject.label}: {benchmark} skipped:[/] {reason}")

    def evaluation_stopped(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None

    def evaluation_finished(self, store_path: Path, runs_root: Path, rows: Sequence[ScoreRow]) -> None:
        self.console.print(f"scores stored in {store_path}; see them with: fedbench leaderboard --runs {runs_root}")

    def _log(self, text: str) -> None:
        (self._bar.console if self._bar is not None else self.console).log(text)
