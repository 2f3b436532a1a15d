"""Readable output for long work: a rich progress bar per cell and one log line per client and round."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import EvalProgress, EvalSpec, Subject, base_subject, cell_subject, evaluate
from fedbench.harness.holdout import same_heldout
from fedbench.harness.federation import Cell, CellOutcome, RoundEvent, run_federation
from fedbench.harness.registry import Registry
from fedbench.harness.store import ScoreRow, Store


def quiet_libraries() -> None:
    """Silence per-step chatter from transformers/datasets so fedbench's own progress is readable."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="(transformers|trl|peft)")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)


def train_cells(
    console: Console, cells: Sequence[Cell], runs_root: Path, force: bool = False,
    engine: Callable[[Cell], CellOutcome] | None = None,
) -> list[CellOutcome]:
    """Train each cell in turn, then print a summary of where everything is.

    The local engine gets a progress bar fed per step; another ``engine`` (Flower's) trains
    the cell elsewhere and logs its own rounds.
    """
    quiet_libraries()
    outcomes = []
    for i, cell in enumerate(cells, start=1):
        spec = cell.spec
        console.rule(f"[bold]cell {i}/{len(cells)}: {spec.cell}[/]  ({spec.hash})")
        console.print_json(data=spec.to_dict())
        outcome = engine(cell) if engine is not None else _train_local(console, cell, runs_root, force)
        outcomes.append(outcome)
        if outcome.skipped:
            console.print(f"[green]already finished[/] (use --force to redo): {outcome.run_dir}")
    summary = Table(title="trained cells")
    for col in ("cell", "rounds", "final loss", "adapter", "metrics"):
        summary.add_column(col)
    for cell, outcome in zip(cells, outcomes):
        last = outcome.history[-1]["loss"] if outcome.history else None
        summary.add_row(
            cell.spec.cell, str(len(outcome.history)), f"{last:.4f}" if last is not None else "n/a",
            str(outcome.adapter_dir), str(outcome.run_dir / "result.json"),
        )
    console.print(summary)
    return outcomes


def _train_local(console: Console, cell: Cell, runs_root: Path, force: bool) -> CellOutcome:
    """The local engine with a progress bar per step and a log line per client and round."""
    spec = cell.spec
    total = spec.rounds * spec.clients_per_round * spec.local_steps
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task("loading model and data", total=total)

        def on_step(loss: float | None) -> None:
            progress.update(task, advance=1, description=f"training  loss {loss:.4f}" if loss is not None else "training")

        def on_event(event: RoundEvent) -> None:
            if event.client is None:
                note = f"  [red]rejected: {', '.join(event.rejected)}[/]" if event.rejected else ""
                loss = f"{event.loss:.4f}" if event.loss is not None else "n/a"
                progress.console.log(f"[bold]round {event.round}/{spec.rounds}[/] done, mean loss {loss}{note}")
            else:
                progress.console.log(f"round {event.round} client {event.client}: loss {event.loss:.4f}")

        outcome = run_federation(cell, runs_root, on_event=on_event, on_step=on_step, force=force)
        progress.update(task, completed=total)
    return outcome


def evaluate_subjects(
    console: Console, run_dirs: Sequence[Path], spec: EvalSpec, registry: Registry, runs_root: Path, include_base: bool = True
) -> list[ScoreRow]:
    """Evaluate the base model(s) and the given cells with a progress bar; print each score as it lands."""
    quiet_libraries()
    cells = [cell_subject(Path(d)) for d in run_dirs]
    subjects: list[Subject] = []
    if include_base:
        for sub in cells:
            base = base_subject(sub.model, sub.template, sub.dtype, sub.heldout)
            twin = next((s for s in subjects if s.key == base.key), None)
            if twin is None:
                subjects.append(base)
            elif not same_heldout(twin.heldout, sub.heldout):
                raise FedbenchError(
                    f"the cells evaluated together hold out different preference pairs ({twin.heldout} vs {sub.heldout}), "
                    "so the base model has no single held-out score to stand beside them",
                    "evaluate cells trained on the same data (and holdout, partition_seed) together: one `fedbench eval` each",
                )
    subjects += cells
    store = Store.in_runs(runs_root)
    console.rule(f"[bold]evaluation: {len(subjects)} models x {', '.join(spec.benchmarks)}[/]")
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console,
        ) as progress:
            task = progress.add_task("answering", total=0)

            def on_start(subject: Subject, bench: str, todo: int) -> None:
                progress.reset(task, total=todo, description=f"{subject.label} {bench}")

            def on_answers(n: int) -> None:
                progress.advance(task, n)

            def on_score(subject: Subject, bench: str, row: ScoreRow) -> None:
                score = "n/a" if row.score is None else f"{row.score:.2f}/{row.scale:g}"
                if row.ci_low is not None and row.ci_high is not None:
                    score += f" [{row.ci_low:.2f}, {row.ci_high:.2f}]"
                fails = f", [red]{row.failures} unparsed[/]" if row.failures else ""
                progress.console.log(f"{subject.label:<32} {bench:<22} {score} ({row.judge}, n={row.n}{fails})")

            def on_skip(subject: Subject, bench: str, reason: str) -> None:
                progress.console.log(f"[yellow]{subject.label}: {bench} skipped:[/] {reason}")

            rows = evaluate(subjects, spec, registry, store, EvalProgress(on_start, on_answers, on_score, on_skip))
    finally:
        store.close()
    console.print(f"scores stored in {store.path}; see them with: fedbench leaderboard --runs {runs_root}")
    return rows
