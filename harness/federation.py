"""The federation's cell and its clients, the client half of a round, and the local engine (``local``).

A :class:`Cell` is a spec with its plugins. :func:`train_one` is the client half every engine runs: one
client's local training from the global adapter. The local engine runs a cell in one process with one
base model and one live LoRA adapter: each sampled client starts from the global adapter (copied in
place, never reloading the model), trains with the method's trainer plus the aggregator's client half,
and hands back its adapter; the cell's skeleton and the round's ending are harness/rounds.py's, as on
every engine.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedbench.harness.attacks import poisoned_examples
from fedbench.harness.baselines import check_baseline, is_baseline, keep_local_adapters
from fedbench.harness.codec import travelling
from fedbench.harness.data import Example
from fedbench.harness.errors import FedbenchError, LayoutRefusal
from fedbench.harness.hardware import (
    Choice,
    describe_execution,
    execution_note,
    gradient_checkpointing,
    peak_memory,
    start_memory_watch,
)
from fedbench.harness.holdout import split_data
from fedbench.harness.interfaces import (
    Aggregator,
    Attack,
    ClientHook,
    ClientUpdate,
    Codec,
    Layout,
    LocalTrainingArgs,
    Method,
    Params,
)
from fedbench.harness.models import load_adapter, read_adapter
from fedbench.harness.refcache import ReferenceCache
from fedbench.harness.registry import Registry
from fedbench.harness.rounds import CellDriver, CellOutcome, Learner, RoundContext, close_round, run_cell
from fedbench.harness.server_side import check_server_side
from fedbench.harness.spec import DYNAMIC, RunSpec
from fedbench.harness.templates import check_template
from fedbench.harness.training import to_dataset, train_client

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from fedbench.harness.checkpoint import RunDir


@dataclass(frozen=True)
class Cell:
    """A spec with its plugins instantiated and checked against each other."""

    spec: RunSpec
    method: Method
    layout: Layout
    aggregator: Aggregator
    codec: Codec | None = None
    """How client updates travel; None (``--codec none``): as they are, bit for bit, their float32 bytes counted."""
    attack: Attack | None = None
    """What the malicious clients do (harness/attacks.py); None (``attack = 'none'``): every client is honest."""


def build_cell(spec: RunSpec, registry: Registry) -> Cell:
    """Instantiate the spec's plugins; refuses a layout that cannot hold the method's data, and a batch its loss
    cannot train with (:meth:`Method.check_batch`).

    A layout's refusal is a :class:`LayoutRefusal` whatever its ``check`` raised, so a caller (matrix
    expansion) can skip the combination by the error's kind; it names the installed layouts that hold the
    method's data form.
    """
    check_template(spec.template)
    method = registry.create("method", spec.method, dict(spec.method_params))
    layout = registry.create("layout", spec.layout, dict(spec.layout_params))
    try:
        layout.check(method)
    except FedbenchError as err:  # LayoutRefusal, or the general kind from a layout (e.g. a third party's)
        kinds = {n: registry.get("layout", n) for n in registry.names("layout")}
        usable = [n for n, k in kinds.items() if method.data_form in getattr(k, "accepts", ()) and not is_baseline(k)]
        fix = f"{err.fix}; layouts that hold {method.data_form} data: {', '.join(usable)}" if err.fix else err.fix
        raise LayoutRefusal(err.problem, fix) from err
    method.check_batch(spec.batch_size)
    aggregator = registry.create("aggregator", spec.aggregator, dict(spec.aggregator_params))
    check_baseline(spec, aggregator)
    check_server_side(spec, aggregator)
    codec = registry.create("codec", spec.codec, dict(spec.codec_params))  # checks the name and settings
    attack = None if spec.attack == "none" else registry.create("attack", spec.attack, dict(spec.attack_params))
    return Cell(spec, method, layout, aggregator, None if spec.codec == "none" else codec, attack)


def client_seed(seed: int, round_index: int, client_id: str) -> int:
    """Per-(round, client) training seed, independent of what ran before (resume-exact)."""
    return zlib.crc32(f"{seed}:{round_index}:{client_id}".encode())


def partition(cell: Cell, for_rounds: bool = True) -> dict[str, list[Example]]:
    """Load, hold out, convert and lay out the cell's data; refuses more clients per round than clients ``for_rounds``."""
    spec = cell.spec
    examples = cell.method.examples(split_data(spec)[0])
    clients = cell.layout.partition(examples, spec.partition_seed)
    if for_rounds and spec.clients_per_round > len(clients):
        raise FedbenchError(
            f"clients_per_round is {spec.clients_per_round} but the data has only {len(clients)} clients",
            f"set clients_per_round to at most {len(clients)}",
        )
    return clients


@dataclass
class RoundEvent:
    """What progress reporting sees after each client and each round."""

    round: int
    client: str | None = None
    loss: float | None = None
    rejected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClientData:
    """One client's training set, as its trainer reads it (built once per client and reused every round)."""

    client_id: str
    dataset: datasets.Dataset
    num_examples: int


def train_one(
    learner: Learner,
    client: ClientData,
    round_index: int,
    global_params: Params,
    hook: ClientHook | None,
    steps: int | None = None,
) -> ClientUpdate:
    """One client's local training from the global adapter: the client half of every engine.

    ``steps``: fewer steps than planned (a straggler reporting what it completed by the deadline). What the client
    trained with where it varies per client (its steps when dynamic or cut short, the method's local settings)
    goes into the update's metrics, and from there into the round's history. Under a codec the update carries its
    encoding (what travels) and, as its params, the decoded encoding: the server holds only that, so the client's
    own copy (which its aggregator's client half reads) is that too.
    """
    cell = learner.cell
    spec = cell.spec
    start = cell.aggregator.start_params(client.client_id, global_params)
    load_adapter(learner.peft_model, start)
    cut_short = steps is not None
    steps = spec.steps_for(client.num_examples, learner.num_clients) if steps is None else steps
    args = local_args(spec, round_index, client.client_id, learner.workdir, learner.checkpointing, steps)
    t0 = time.perf_counter()
    # A new trainer starts at row 0 (KTO's sampler is sequential): a per-(round, client) seeded
    # shuffle lets every round see other rows, and stays reproducible for resume.
    data = client.dataset.shuffle(seed=args.seed % 2**32)
    result = train_client(
        cell.method, learner.peft_model, learner.tokenizer, data, args, hook, learner.on_step, learner.reference
    )
    metrics = {"loss": result.loss, "train_seconds": time.perf_counter() - t0} | cell.method.local_settings(client.dataset)
    if spec.local_steps == DYNAMIC or cut_short:
        metrics["steps"] = float(steps)
    adapter = read_adapter(learner.peft_model)
    if cell.attack is not None and client.client_id in learner.malicious:  # poisoned before it is encoded: as it travels
        adapter = cell.attack.poison_update(start, adapter, torch.Generator().manual_seed(args.seed))
    params, encoded = travelling(cell.codec, round_index, start, adapter, client.client_id)
    update = ClientUpdate(client.client_id, params, client.num_examples, encoded=encoded, metrics=metrics)
    return hook.finish(update, result.steps, args.learning_rate) if hook is not None else update


def local_args(
    spec: RunSpec, round_index: int, client_id: str, workdir: Path | str, checkpointing: bool, steps: int
) -> LocalTrainingArgs:
    """The trainer settings of one client in one round: the spec's, the round's learning rate and the client's seed."""
    return LocalTrainingArgs(
        output_dir=str(workdir),
        steps=steps,
        batch_size=spec.batch_size,
        grad_accum=spec.grad_accum,
        learning_rate=spec.lr_at(round_index),
        max_length=spec.max_length,
        seed=client_seed(spec.seed, round_index, client_id),
        bf16=spec.dtype == "bfloat16",
        gradient_checkpointing=checkpointing,
    )


def checkpointing_for(cell: Cell, model: Any) -> Choice:
    """The run's gradient checkpointing: as set, or decided from the model's shape and this machine's free memory."""
    spec = cell.spec
    sequences = spec.batch_size * (2 if cell.method.data_form == "paired" else 1)
    return gradient_checkpointing(spec.gradient_checkpointing, model.config, sequences, spec.max_length, spec.dtype)


@dataclass
class LocalDriver(CellDriver):
    """The local engine's part of the cell: every client in this process, one after another."""

    on_event: Callable[[RoundEvent], None] | None = None
    on_step: Callable[[float | None], None] | None = None
    on_note: Callable[[str], None] | None = None
    examples: dict[str, list[Example]] = field(default_factory=dict)
    note: dict[str, Any] = field(default_factory=dict)
    engine = "local"
    plays_clients = True

    def federation(self, cell: Cell, run_dir: RunDir, force: bool) -> dict[str, int]:
        self.examples = partition(cell)
        start_memory_watch()  # before the model loads: the run's peak includes it
        return {cid: len(examples) for cid, examples in self.examples.items()}

    def learner(
        self, cell: Cell, run_dir: RunDir, peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, clients: Mapping[str, int]
    ) -> Learner:
        checkpointing = checkpointing_for(cell, peft_model)
        self.note = execution_note(cell.spec.dtype, checkpointing)
        if self.on_note:
            self.on_note(describe_execution(self.note))
        reference = ReferenceCache.for_run(run_dir.path, cell.method, cell.spec)
        return Learner(
            cell, peft_model, tokenizer, len(clients), run_dir.path / "tmp", reference, checkpointing.value, self.on_step
        )

    def rounds(self, ctx: RoundContext) -> None:
        cell = ctx.cell
        data = {
            cid: ClientData(cid, to_dataset(cell.method.records(self.training(ctx, cid), cell.spec.template)), len(examples))
            for cid, examples in self.examples.items()
        }
        for r in range(ctx.start, cell.spec.rounds):
            rnd = ctx.open_round(r)
            updates = []
            for cid in rnd.reporting:
                hook = cell.aggregator.client_hook(cid, ctx.global_params)
                update = train_one(ctx.learner, data[cid], r, ctx.global_params, hook, rnd.steps.get(cid))
                updates.append(update)
                if self.on_event:
                    self.on_event(RoundEvent(r + 1, cid, update.metrics["loss"]))
            record = close_round(ctx, rnd, updates)
            if self.on_event:
                self.on_event(RoundEvent(r + 1, None, record.loss, list(record.rejected)))

    def training(self, ctx: RoundContext, client_id: str) -> list[Example]:
        """What a client trains on: its examples, poisoned by the cell's attack when the client is malicious."""
        examples, attack = self.examples[client_id], ctx.cell.attack
        if attack is None or client_id not in ctx.learner.malicious:
            return examples
        return poisoned_examples(attack, client_id, examples, ctx.cell.spec.seed)

    def ending(self, ctx: RoundContext) -> dict[str, Any]:
        fields: dict[str, Any] = {"execution": self.note, "memory": peak_memory()}
        if ctx.cell.aggregator.regime == "local":
            ctx.global_params, fields["local_only"] = keep_local_adapters(
                ctx.cell.aggregator, ctx.run_dir.path, ctx.learner.peft_model, ctx.clients, ctx.global_params
            )
        return fields


def run_federation(
    cell: Cell,
    runs_root: Path,
    on_event: Callable[[RoundEvent], None] | None = None,
    on_step: Callable[[float | None], None] | None = None,
    force: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> CellOutcome:
    """Train one cell on the local engine to its last round, resuming from its newest complete checkpoint.

    ``on_note`` hears, once, the precision and gradient-checkpointing choices the cell trains with.
    """
    return run_cell(cell, runs_root, LocalDriver(on_event, on_step, on_note), force)
