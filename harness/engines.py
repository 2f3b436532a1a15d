"""Engines: how one cell of the matrix is trained. One seam, three implementations.

An :class:`Engine` turns a :class:`~fedbench.harness.federation.Cell` into a finished run directory
and hands back its :class:`~fedbench.harness.rounds.CellOutcome`:

- :class:`LocalEngine`: the rounds in this process, clients one after another (``federation.run_federation``);
- :class:`FlowerSimulation`: Flower's simulation engine (Ray), one virtual SuperNode per client;
- :class:`FlowerDeployment`: a Flower app submitted to a running SuperLink.

Every engine writes the same run directory, so a cell started on one resumes on another. Flower is
an optional dependency: its engines import ``fedbench.harness.flower`` only when built through
:func:`engine_from_flags` or when they train, and say how to install it when it is missing.

Progress is reported to a :class:`TrainingProgress` object the caller supplies (every method is a
no-op by default); the local engine reports steps and rounds, the Flower engines log their own rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.federation import Cell, RoundEvent, run_federation
from fedbench.harness.rounds import CellOutcome

ENGINES = ("local", "flower")
"""The names ``--engine`` accepts (``flower`` is a simulation, or a deployment with a SuperLink)."""


class TrainingProgress:
    """Callbacks an engine calls while it trains one cell. Subclass and override what you show; all do nothing here."""

    def training_started(self, cell: Cell, total_steps: int | None) -> None:
        """The engine starts ``cell`` (loading model and data first); ``total_steps`` local steps over all rounds
        and clients (None when they vary per client: dynamic local steps)."""

    def step(self, loss: float | None) -> None:
        """One local optimizer step finished, with its loss when the trainer logged one."""

    def round_event(self, event: RoundEvent) -> None:
        """A client finished its local training (``event.client`` set), or a round closed (``event.client`` None)."""

    def training_stopped(self, cell: Cell, outcome: CellOutcome | None) -> None:
        """Training of ``cell`` ended: with its outcome, or None when it raised."""

    def note(self, text: str) -> None:
        """A line worth telling the user, e.g. the precision and gradient checkpointing the cell trains with."""


@runtime_checkable
class Engine(Protocol):
    """Trains a cell into its run directory under ``runs_root``, resuming from its newest complete round.

    A cell already finished there is not trained again unless ``force`` (the outcome says ``skipped``).
    """

    name: ClassVar[str]
    """What ``result.json`` records as the engine ('local' or 'flower')."""

    def train(
        self, cell: Cell, runs_root: Path, force: bool = False, progress: TrainingProgress | None = None
    ) -> CellOutcome: ...


@dataclass(frozen=True)
class LocalEngine:
    """All clients in this process, one after another, on one base model with one live LoRA adapter."""

    name: ClassVar[str] = "local"

    def train(self, cell: Cell, runs_root: Path, force: bool = False, progress: TrainingProgress | None = None) -> CellOutcome:
        progress = progress or TrainingProgress()
        spec = cell.spec
        steps = spec.local_steps if isinstance(spec.local_steps, int) else None  # dynamic: varies per client
        progress.training_started(cell, spec.rounds * spec.clients_per_round * steps if steps else None)
        try:
            outcome = run_federation(
                cell, runs_root, on_event=progress.round_event, on_step=progress.step, force=force, on_note=progress.note
            )
        except BaseException:
            progress.training_stopped(cell, None)
            raise
        progress.training_stopped(cell, outcome)
        return outcome


@dataclass(frozen=True)
class FlowerSimulation:
    """Flower's simulation engine (Ray): one virtual SuperNode per client, in parallel as the resources allow.

    ``client_cpus`` / ``client_gpus``: what each simulated client gets (default one CPU, and one GPU
    when CUDA is there; 0.5 puts two on a GPU). ``timeout``: seconds before a silent client is
    rejected for the round (default none: a simulated client is slow, never gone).
    """

    client_cpus: float | None = None
    client_gpus: float | None = None
    timeout: float | None = None
    secure_aggregation: bool = False
    """Every round through Flower's SecAgg+ (harness/flower/secure.py): the server sees only the round's sum."""
    name: ClassVar[str] = "flower"

    def check(self, cell: Cell) -> None:
        """Refuse, before any cell of the study trains, a cell this engine cannot run."""
        refuse_on_flower(cell)
        if self.secure_aggregation:
            from fedbench.harness.flower.secure import check_secure

            check_secure(cell)

    def train(self, cell: Cell, runs_root: Path, force: bool = False, progress: TrainingProgress | None = None) -> CellOutcome:
        self.check(cell)
        flower = load_flower()
        resources = flower.Resources.auto(self.client_cpus, self.client_gpus)
        if self.secure_aggregation:
            from fedbench.harness.flower.secure import simulate_secure

            return simulate_secure(cell, runs_root, resources, force=force, timeout=self.timeout)
        return flower.simulate(cell, runs_root, resources, force=force, timeout=self.timeout)


def refuse_on_flower(cell: Cell) -> None:
    """What a Flower engine cannot run: the local-only baseline (nothing travels, so there is no federation) and a
    codec with per-client memory (Flower's clients live in other processes, which do not keep it between rounds)."""
    if cell.aggregator.regime == "local":
        raise FedbenchError(
            f"cell {cell.spec.cell} is the local-only baseline: every client trains alone and nothing travels, "
            "so there is no federation for Flower to run",
            "train it with the local engine (--engine local, the default); the federated cells can still run on Flower",
        )
    if cell.codec is not None and cell.codec.keeps_client_state:
        raise FedbenchError(
            f"codec '{cell.spec.codec}' keeps memory per client (its error feedback), which Flower's client processes "
            "would lose between rounds",
            "use a stateless codec on Flower (fp16, bf16, int8), or train with the local engine, which persists it",
        )


@dataclass(frozen=True)
class FlowerDeployment:
    """A Flower app submitted to a running SuperLink (``superlink``: a connection in Flower's config.toml).

    ``min_nodes``: SuperNodes that make up the federation on a fresh start (default clients_per_round);
    ``timeout``: seconds before a silent client is rejected for the round.
    """

    superlink: str
    min_nodes: int | None = None
    timeout: float = 3600
    name: ClassVar[str] = "flower"

    def check(self, cell: Cell) -> None:
        """Refuse, before any cell of the study trains, a cell this engine cannot run."""
        refuse_on_flower(cell)

    def train(self, cell: Cell, runs_root: Path, force: bool = False, progress: TrainingProgress | None = None) -> CellOutcome:
        self.check(cell)
        flower = load_flower()
        return flower.deploy(cell, runs_root, self.superlink, self.min_nodes, timeout=self.timeout, force=force)


def engine_from_flags(
    name: str,
    superlink: str | None = None,
    client_cpus: float | None = None,
    client_gpus: float | None = None,
    min_nodes: int | None = None,
    round_timeout: float | None = None,
    secure_aggregation: bool = False,
) -> Engine:
    """The engine ``fedbench run``'s flags name, with the flags checked against it.

    A Flower engine checks here that Flower is installed, so a missing install stops the command
    before any cell starts.
    """
    flower_only = {
        "--superlink": superlink,
        "--client-cpus": client_cpus,
        "--client-gpus": client_gpus,
        "--min-nodes": min_nodes,
        "--round-timeout": round_timeout,
        "--secure-aggregation": secure_aggregation or None,
    }
    if name == "local":
        given = [flag for flag, value in flower_only.items() if value is not None]
        if given:
            raise FedbenchError(f"{', '.join(given)} only apply to the Flower engine", "add --engine flower, or drop them")
        return LocalEngine()
    if name != "flower":
        raise unknown_name("engine", name, ENGINES)
    load_flower()
    if superlink:
        if client_cpus is not None or client_gpus is not None:
            raise FedbenchError(
                "--client-cpus/--client-gpus size simulated clients; a deployment's SuperNodes bring their own",
                "drop them, or drop --superlink to simulate",
            )
        if secure_aggregation:
            raise FedbenchError(
                "--secure-aggregation runs on Flower's simulation engine; a deployment (--superlink) does not carry it yet",
                "drop --superlink to simulate with secure aggregation, or drop --secure-aggregation",
            )
        return FlowerDeployment(superlink, min_nodes, timeout=round_timeout or 3600)
    if min_nodes is not None:
        raise FedbenchError(
            "--min-nodes applies to a deployment (--superlink); a simulation starts one node per client",
            "drop --min-nodes, or add --superlink",
        )
    return FlowerSimulation(client_cpus, client_gpus, round_timeout, secure_aggregation)


def load_flower() -> Any:
    """The Flower engine module, or a clear error saying how to install Flower."""
    import importlib

    try:
        flower = importlib.import_module("fedbench.harness.flower")
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in {"flwr", "ray"}:
            raise
        raise FedbenchError(
            f"--engine flower needs Flower, and the module '{(err.name or '').split('.')[0]}' is not installed",
            "pip install 'fedbench[flower]'  (Flower with its Ray simulation engine), or use --engine local",
        ) from err
    return flower
