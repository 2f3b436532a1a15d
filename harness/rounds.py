"""One cell, one skeleton; one round, one close. Every engine (local, Flower, Flower with SecAgg+) runs through here.

A cell's training, whatever the engine::

    run_cell(cell, runs_root, driver)
      done and not forced? ─── yes ──> the finished outcome (skipped)
      run_dir.prepare()                the run directory and its spec.json
      driver.federation(run_dir)       the clients: the local layout, or the SuperNodes that answered
      load_base + attach_lora          one live PEFT model
      begin                            fresh adapter, or the newest checkpoint; the server-side chain
      driver.rounds(ctx)               per round: open_round -> clients train -> close_round(ctx, round, updates)
      driver.ending(ctx)               what the engine records (attempt, execution, memory, ...)
      conclude                         PEFT adapter/, result.json
      (any error: failed.json with the reason, then raised)

``close_round`` is the round's one ending on every engine: the updates go through the cell's server-side
chain (harness/server_side.py: decode, validate, private or secure mean, aggregate), the round's
:class:`RoundRecord` is built (only here), the reference cache and the checkpoint are written.
"""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fedbench.harness.attacks import ATTACK_FILE, malicious_clients, record_attack
from fedbench.harness.availability import ClientPlan
from fedbench.harness.checkpoint import (
    CLIENT_STATE_DIR,
    CODEC_STATE_DIR,
    RoundRecord,
    RunDir,
    RunResult,
    as_records,
    save_peft_adapter,
)
from fedbench.harness.errors import FedbenchError
from fedbench.harness.holdout import HOLDOUT_FILE, split_data, write_heldout
from fedbench.harness.interfaces import ClientUpdate, Params
from fedbench.harness.models import attach_lora, fresh_adapter, load_adapter, load_base
from fedbench.harness.server_side import ServerSide, Tally, server_side

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from fedbench.harness.federation import Cell
    from fedbench.harness.refcache import ReferenceCache


def sample_clients(client_ids: Sequence[str], k: int, seed: int, round_index: int) -> list[str]:
    """The round's clients: a function of (seed, round) alone, so a resumed run samples the same ones."""
    return random.Random(f"{seed}:{round_index}").sample(sorted(client_ids), k)


@dataclass(frozen=True)
class Round:
    """One round as it was opened (:meth:`RoundContext.open_round`): its index, its clients and when it started."""

    index: int
    """0-based; the history records ``index + 1``."""
    sampled: tuple[str, ...]
    """The round's clients in sampling order, those that will fail included."""
    started: float
    """``time.perf_counter()`` at the start, for the round's wall time."""
    absent: Mapping[str, str] = field(default_factory=dict)
    """Sampled clients that will not report (harness/availability.py) -> why."""
    steps: Mapping[str, int] = field(default_factory=dict)
    """Sampled clients that report fewer steps than planned (past the deadline) -> the steps they report."""

    @property
    def reporting(self) -> tuple[str, ...]:
        """The sampled clients that train and report, in sampling order."""
        return tuple(c for c in self.sampled if c not in self.absent)


@dataclass
class Learner:
    """What a process trains clients with: the cell, the live PEFT model and its tokenizer, and how it trains.

    The local engine holds one for all clients, a Flower client one per message; a server holds one for the
    model it writes the adapter from and never trains with it.
    """

    cell: Cell
    peft_model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    num_clients: int
    """The federation's size (dynamic local steps need it)."""
    workdir: Path
    """The trainers' scratch folder."""
    reference: ReferenceCache | None = None
    """The reference model's cached log-probs (harness/refcache.py), for methods that use them."""
    checkpointing: bool = False
    """Gradient checkpointing, as :func:`federation.checkpointing_for` decided for the run."""
    on_step: Callable[[float | None], None] | None = None
    """Hears every local optimizer step (progress)."""
    malicious: frozenset[str] = frozenset()
    """The clients the cell's attack makes malicious (harness/attacks.py); empty without one."""


@dataclass
class RoundContext:
    """One cell's rounds in one process: where they are written, who takes part, the live model, the server-side
    chain, and the state carried from round to round (the global adapter and the history), which
    :func:`close_round` advances."""

    run_dir: RunDir
    learner: Learner
    clients: dict[str, int]
    """The federation: client id -> its number of training examples."""
    server: ServerSide
    global_params: Params
    history: list[RoundRecord]
    start: int
    """The first round (0-based) this process runs: 0, or the newest checkpoint's round on resume."""
    plan: ClientPlan = field(default_factory=ClientPlan)
    """How the sampled clients behave (harness/availability.py): who reports, and how many steps."""

    @property
    def cell(self) -> Cell:
        return self.learner.cell

    def open_round(self, index: int) -> Round:
        """Round ``index`` begins: its clients, sampled as on every engine (a function of seed and round), and what each
        of them will report (the run's client plan: a function of seed, round and client)."""
        spec, started = self.cell.spec, time.perf_counter()
        sampled = tuple(sample_clients(list(self.clients), spec.clients_per_round, spec.seed, index))
        absent, steps = {}, {}
        for cid in sampled:
            planned = spec.steps_for(self.clients[cid], len(self.clients))
            done, why = self.plan.fate(index, cid, planned)
            if why:
                absent[cid] = why
            elif done < planned:
                steps[cid] = done
        return Round(index, sampled, started, absent, steps)


MEASURED = ("loss", "train_seconds")
"""Update metrics that are measurements; the others say what the client trained with (see ``ClientUpdate.metrics``)."""


def client_settings(metrics: Mapping[str, float]) -> dict[str, float]:
    """What a client trained with where it varies per client and round: its metrics less the measurements."""
    return {k: v for k, v in metrics.items() if k not in MEASURED}


def close_round(
    ctx: RoundContext, rnd: Round, updates: Sequence[ClientUpdate], failures: Mapping[str, str] | None = None
) -> RoundRecord:
    """The round's ending on every engine: its updates through the server-side chain, its history entry, its checkpoint.

    ``failures``: sampled clients that sent no update (a distributed engine's failed node), recorded with the
    rejected ones. Advances ``ctx`` to the new global adapter and returns the round's record.
    """
    cell, tally = ctx.cell, Tally()
    global_params = ctx.server.aggregate(rnd.index, ctx.global_params, updates, tally)
    rejected = tally.rejected | dict(failures or {})
    losses = [u.metrics["loss"] for u in updates if u.client_id not in rejected and math.isfinite(u.metrics["loss"])]
    record = RoundRecord(
        round=rnd.index + 1,
        lr=cell.spec.lr_at(rnd.index),
        clients=rnd.sampled,
        loss=sum(losses) / len(losses) if losses else None,
        client_loss={u.client_id: u.metrics["loss"] for u in updates},
        client_settings={u.client_id: settings for u in updates if (settings := client_settings(u.metrics))},
        rejected=rejected,
        bytes_down=ctx.server.download_bytes(global_params, len(rnd.sampled)),
        bytes_up=sum(ctx.server.upload_bytes(u) for u in updates),
        train_seconds=sum(u.metrics.get("train_seconds", 0.0) for u in updates),
        round_seconds=time.perf_counter() - rnd.started,
        privacy=tally.privacy,
        skipped=tally.skipped,
        absent=dict(rnd.absent),
    )
    ctx.history.append(record)
    ctx.global_params = global_params
    if ctx.learner.reference is not None:
        ctx.learner.reference.save()  # before the checkpoint, so a checkpointed round never needs rescoring
    ctx.run_dir.save_round(rnd.index + 1, global_params, cell.aggregator.state_dict(), ctx.history)
    for plugin in (cell.aggregator, cell.codec):
        if plugin is not None:
            plugin.client_states.checkpointed()
    return record


@dataclass(frozen=True)
class CellOutcome:
    """What an engine hands back for a trained cell: where it is and its rounds' history."""

    run_dir: Path
    adapter_dir: Path
    history: list[RoundRecord]
    skipped: bool = False
    """True when the cell was already finished and not trained again (no ``force``)."""

    def __post_init__(self) -> None:
        # an engine that read a history back from JSON may pass its entries as dicts
        object.__setattr__(self, "history", as_records(self.history))


def finished_outcome(run_dir: RunDir) -> CellOutcome:
    """The outcome of a cell a previous run already finished (skipped unless forced)."""
    result = run_dir.result()
    if result is None:
        raise FedbenchError(
            f"{run_dir.path} has not finished training", "rerun `fedbench run` with the same settings to finish it"
        )
    return CellOutcome(run_dir.path, run_dir.adapter_dir, result.history, skipped=True)


class CellDriver(ABC):
    """An engine's part of :func:`run_cell`: who the clients are, how the rounds run, what the result records."""

    engine: ClassVar[str]
    """What ``result.json`` records as the engine."""
    plays_clients: ClassVar[bool] = False
    """Whether the cell's clients run in this process, so the harness can play how they behave: malicious ones
    poisoning their data and updates (harness/attacks.py), dropouts and stragglers (harness/availability.py). An
    engine that cannot refuses a cell with an attack or a ``[clients]`` table before training."""

    @abstractmethod
    def federation(self, cell: Cell, run_dir: RunDir, force: bool) -> dict[str, int]:
        """The federation's clients (id -> training examples), checked against the cell's clients per round."""

    def learner(
        self, cell: Cell, run_dir: RunDir, peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, clients: Mapping[str, int]
    ) -> Learner:
        """The live model this process holds (default: one that never trains here, as on a server)."""
        return Learner(cell, peft_model, tokenizer, len(clients), run_dir.path / "tmp")

    def server(self, cell: Cell, num_clients: int) -> ServerSide:
        """The round's server-side chain (default: the cell's, harness/server_side.py)."""
        return server_side(cell, num_clients)

    @abstractmethod
    def rounds(self, ctx: RoundContext) -> None:
        """Run rounds ``ctx.start`` .. last, each ending in :func:`close_round`."""

    def ending(self, ctx: RoundContext) -> dict[str, Any]:
        """What this engine adds to the cell's :class:`RunResult` (its typed fields by name); may replace the
        adapter the cell ends with (``ctx.global_params``)."""
        return {}


def run_cell(cell: Cell, runs_root: Path, driver: CellDriver, force: bool = False) -> CellOutcome:
    """Train one cell to its last round on the driver's engine, resuming from its newest complete checkpoint.

    A finished cell is not trained again unless ``force`` (the outcome says ``skipped``). Whatever fails on
    the way is recorded in the run directory (``failed.json``, for ``fedbench runs``) and raised.
    """
    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    try:
        run_dir.prepare()
        clients = driver.federation(cell, run_dir, force)
        malicious, plan = client_behaviour(cell, driver, clients, run_dir)
        model, tokenizer = load_base(cell.spec.model, cell.spec.dtype)
        learner = driver.learner(cell, run_dir, attach_lora(model, cell.spec.lora), tokenizer, clients)
        learner.malicious = malicious
        ctx = begin(run_dir, learner, clients, driver.server(cell, len(clients)), force)
        ctx.plan = plan
        driver.rounds(ctx)
        fields = driver.ending(ctx)
        return conclude(ctx, RunResult(cell.spec, driver.engine, ctx.history, **fields))
    except Exception as err:
        run_dir.mark_failed(err.problem if isinstance(err, FedbenchError) else f"{type(err).__name__}: {err}")
        raise


def client_behaviour(
    cell: Cell, driver: CellDriver, clients: Mapping[str, int], run_dir: RunDir
) -> tuple[frozenset[str], ClientPlan]:
    """How the federation's clients behave: the malicious ones (written to ``attack.json``) and the client plan.

    Refuses, before training: an engine that cannot play clients, an attack share that leaves no honest client, a
    trace naming clients or rounds the run does not have, and a ``min_reports`` the aggregator's guarantee cannot
    hold for when reports can be lost."""
    spec = cell.spec
    if (cell.attack is not None or spec.clients) and not driver.plays_clients:
        raise FedbenchError(
            f"the {driver.engine} engine's clients run in other processes, where fedbench cannot play an attack or "
            "a [clients] table",
            "run them on the local engine (leave out --engine), or set attack = 'none' and drop [clients]",
        )
    plan = ClientPlan.for_run(dict(spec.clients), list(clients), spec.rounds, spec.seed) if spec.clients else ClientPlan()
    if plan.loses_reports and cell.aggregator.regime == "federated":
        cell.aggregator.check(plan.min_reports)
    if cell.attack is None:
        return frozenset(), plan
    malicious = malicious_clients(cell.attack, list(clients), spec.seed)
    record_attack(run_dir.path / ATTACK_FILE, spec, malicious, len(clients))
    return frozenset(malicious), plan


def begin(run_dir: RunDir, learner: Learner, clients: dict[str, int], server: ServerSide, force: bool) -> RoundContext:
    """The rounds' starting point: a fresh (seeded) global adapter, or the newest complete checkpoint's.

    The same on every engine, so a run started on one resumes on another.
    """
    cell = learner.cell
    heldout = run_dir.path / HOLDOUT_FILE
    if cell.spec.holdout > 0 and not heldout.is_file():
        try:
            write_heldout(heldout, split_data(cell.spec)[1])
        except FedbenchError:
            pass  # a deployment's server may hold no data: the cell is then evaluated without `preference`
    checkpoint = None if force else run_dir.latest()
    for plugin, folder in ((cell.aggregator, CLIENT_STATE_DIR), (cell.codec, CODEC_STATE_DIR)):
        if plugin is not None:
            store = run_dir.client_states(folder)
            store.discard_after(0 if checkpoint is None else checkpoint.round)  # a crashed round's files, or a forced rerun's
            plugin.use_client_states(store)
    if checkpoint is None:
        global_params = fresh_adapter(learner.peft_model, cell.spec.seed)
        cell.aggregator.setup(global_params, len(clients))
        return RoundContext(run_dir, learner, clients, server, global_params, [], 0)
    cell.aggregator.setup(checkpoint.adapter, len(clients))
    cell.aggregator.load_state_dict(checkpoint.server_state)
    return RoundContext(run_dir, learner, clients, server, checkpoint.adapter, checkpoint.history, checkpoint.round)


def conclude(ctx: RoundContext, result: RunResult) -> CellOutcome:
    """Write the final adapter in PEFT format and mark the cell done with its result."""
    load_adapter(ctx.learner.peft_model, ctx.global_params)
    save_peft_adapter(ctx.learner.peft_model, ctx.run_dir.adapter_dir)
    ctx.run_dir.finish(result)
    return CellOutcome(ctx.run_dir.path, ctx.run_dir.adapter_dir, ctx.history)
