"""The federation loop (engine ``local``): rounds of sampled clients trained one after another.

One process, one base model, one live LoRA adapter: each sampled client starts from the
global adapter (copied in place, never reloading the model), trains with the method's
trainer plus the aggregator's client half, and hands back its adapter; the aggregator's
server half forms the next global adapter, which is checkpointed after every round.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedbench.harness.aggregation import params_nbytes, validate_updates
from fedbench.harness.baselines import check_baseline, client_adapter_dir, local_adapters
from fedbench.harness.checkpoint import CLIENT_STATE_DIR, CODEC_STATE_DIR, RoundRecord, RunDir, RunResult, as_records
from fedbench.harness.codec import decode_update, encode_update
from fedbench.harness.data import Example, PreferencePair, load_pairs
from fedbench.harness.errors import FedbenchError, LayoutRefusal
from fedbench.harness.hardware import (
    Choice,
    describe_execution,
    execution_note,
    gradient_checkpointing,
    peak_memory,
    start_memory_watch,
)
from fedbench.harness.holdout import HOLDOUT_FILE, split_holdout, write_heldout
from fedbench.harness.interfaces import Aggregator, ClientHook, ClientUpdate, Codec, Layout, LocalTrainingArgs, Method, Params
from fedbench.harness.models import attach_lora, fresh_adapter, load_adapter, load_base, read_adapter
from fedbench.harness.refcache import ReferenceCache
from fedbench.harness.registry import Registry
from fedbench.harness.spec import DYNAMIC, RunSpec
from fedbench.harness.templates import check_template
from fedbench.harness.training import to_dataset, train_client

if TYPE_CHECKING:
    from fedbench.harness.privacy import PrivacySettings


@dataclass(frozen=True)
class Cell:
    """A spec with its plugins instantiated and checked against each other."""

    spec: RunSpec
    method: Method
    layout: Layout
    aggregator: Aggregator
    codec: Codec | None = None
    """How client updates travel; None (``--codec none``): as they are, bit for bit, their float32 bytes counted."""


def build_cell(spec: RunSpec, registry: Registry) -> Cell:
    """Instantiate the spec's plugins; refuses a layout that cannot hold the method's data.

    The refusal is a :class:`LayoutRefusal` whatever the layout's ``check`` raised, so a caller
    (matrix expansion) can skip the combination by the error's kind.
    """
    check_template(spec.template)
    method = registry.create("method", spec.method, dict(spec.method_params))
    layout = registry.create("layout", spec.layout, dict(spec.layout_params))
    try:
        layout.check(method)
    except LayoutRefusal:
        raise
    except FedbenchError as err:  # a layout (e.g. a third party's) that raises the general kind
        raise LayoutRefusal(err.problem, err.fix) from err
    aggregator = registry.create("aggregator", spec.aggregator, dict(spec.aggregator_params))
    check_baseline(spec, aggregator)
    if spec.privacy and aggregator.needs_each_update:
        raise FedbenchError(
            f"aggregator '{spec.aggregator}' reads each client's update, but client-level DP hands the aggregator only the "
            "round's noised mean",
            "use an aggregator that needs only the mean (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad), "
            "or drop [privacy]",
        )
    codec = registry.create("codec", spec.codec, dict(spec.codec_params))  # checks the name and settings
    return Cell(spec, method, layout, aggregator, None if spec.codec == "none" else codec)


def sample_clients(client_ids: Sequence[str], k: int, seed: int, round_index: int) -> list[str]:
    """The round's clients: a function of (seed, round) alone, so a resumed run samples the same ones."""
    return random.Random(f"{seed}:{round_index}").sample(sorted(client_ids), k)


def client_seed(seed: int, round_index: int, client_id: str) -> int:
    """Per-(round, client) training seed, independent of what ran before (resume-exact)."""
    return zlib.crc32(f"{seed}:{round_index}:{client_id}".encode())


def split_data(spec: RunSpec) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The data's (training, held-out) pairs: the held-out split comes first, before any method or layout."""
    return split_holdout(load_pairs(spec.data, dict(spec.data_columns)), spec.holdout, spec.partition_seed)


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


def run_federation(
    cell: Cell,
    runs_root: Path,
    on_event: Callable[[RoundEvent], None] | None = None,
    on_step: Callable[[float | None], None] | None = None,
    force: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> CellOutcome:
    """Train one cell to its last round, resuming from its newest complete checkpoint.

    ``on_note`` hears, once, the precision and gradient-checkpointing choices the cell trains with.
    """
    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    clients = partition(cell)
    start_memory_watch()
    model, tokenizer = load_base(cell.spec.model, cell.spec.dtype)
    peft_model = attach_lora(model, cell.spec.lora)
    global_params, start, history = begin(cell, run_dir, peft_model, len(clients), force)
    checkpointing = checkpointing_for(cell, model)
    note = execution_note(cell.spec.dtype, checkpointing)
    if on_note:
        on_note(describe_execution(note))
    try:
        history, global_params = _rounds(
            cell, run_dir, clients, peft_model, tokenizer, global_params, start, history, on_event, on_step, checkpointing.value
        )
    except Exception as err:
        run_dir.mark_failed(f"{type(err).__name__}: {err}")
        raise
    extra: dict[str, Any] = {"execution": note, "memory": peak_memory()}
    if cell.aggregator.regime == "local":
        global_params, extra["local_only"] = _keep_local_adapters(cell, run_dir, peft_model, clients, global_params)
    return conclude(cell, run_dir, peft_model, global_params, history, engine="local", extra=extra)


def _keep_local_adapters(
    cell: Cell, run_dir: RunDir, peft_model: Any, clients: dict[str, list[Example]], fresh: Params
) -> tuple[Params, dict[str, Any]]:
    """A local-only cell's ending: every trained client's adapter saved for per-client scoring, and the largest
    client's as the cell's adapter (what the generation benchmarks answer with); see harness/baselines.py."""
    trained, largest, never = local_adapters(cell.aggregator, {cid: len(ex) for cid, ex in clients.items()})
    for cid in trained:  # one client's adapter in memory at a time, however many clients trained
        load_adapter(peft_model, cell.aggregator.client_states.get(cid) or fresh)
        save_peft_adapter(peft_model, client_adapter_dir(run_dir.path, cid))
    summary = {"clients_trained": len(trained), "clients_never_sampled": never, "generation_adapter_client": largest}
    return cell.aggregator.client_states.get(largest) or fresh, summary


def finished_outcome(run_dir: RunDir) -> CellOutcome:
    """The outcome of a cell a previous run already finished (skipped unless forced)."""
    result = run_dir.result()
    if result is None:
        raise FedbenchError(
            f"{run_dir.path} has not finished training", "rerun `fedbench run` with the same settings to finish it"
        )
    return CellOutcome(run_dir.path, run_dir.adapter_dir, result.history, skipped=True)


def begin(cell: Cell, run_dir: RunDir, peft_model: Any, num_clients: int, force: bool) -> tuple[Params, int, list[RoundRecord]]:
    """Global adapter, first round to run and history: fresh (seeded), or from the newest complete checkpoint.

    Shared by every engine, so a run started on one engine resumes on another.
    """
    run_dir.prepare()
    heldout = run_dir.path / HOLDOUT_FILE
    if cell.spec.holdout > 0 and not heldout.is_file():
        try:
            write_heldout(heldout, split_data(cell.spec)[1])
        except FedbenchError:
            pass  # a deployment's server may hold no data: the cell is then evaluated without `preference`
    if cell.spec.privacy:  # derive (or refuse) a target epsilon's noise before any round trains
        privacy_settings(cell.spec, num_clients)
    checkpoint = None if force else run_dir.latest()
    for plugin, folder in ((cell.aggregator, CLIENT_STATE_DIR), (cell.codec, CODEC_STATE_DIR)):
        if plugin is not None:
            store = run_dir.client_states(folder)
            store.discard_after(0 if checkpoint is None else checkpoint.round)  # a crashed round's files, or a forced rerun's
            plugin.use_client_states(store)
    if checkpoint is None:
        global_params = fresh_adapter(peft_model, cell.spec.seed)
        cell.aggregator.setup(global_params, num_clients)
        return global_params, 0, []
    cell.aggregator.setup(checkpoint.adapter, num_clients)
    cell.aggregator.load_state_dict(checkpoint.server_state)
    return checkpoint.adapter, checkpoint.round, checkpoint.history


def conclude(
    cell: Cell,
    run_dir: RunDir,
    peft_model: Any,
    global_params: Params,
    history: list[RoundRecord],
    engine: str,
    extra: dict[str, Any] | None = None,
) -> CellOutcome:
    """Write the final adapter in PEFT format and mark the cell done (``engine`` is recorded, not hashed).

    ``extra``: more keys for ``result.json``; ``attempt`` (the Flower launch's nonce) is the one in use.
    """
    load_adapter(peft_model, global_params)
    save_peft_adapter(peft_model, run_dir.adapter_dir)
    more = dict(extra or {})
    history = as_records(history)
    spent = [h.privacy for h in history if h.privacy]
    if spent:
        more["privacy"] = dict(spent[-1])  # what the whole run spent (a round with nothing accepted records none)
    run_dir.finish(RunResult(cell.spec, engine, history, attempt=more.pop("attempt", None), extra=more))
    return CellOutcome(run_dir.path, run_dir.adapter_dir, history)


def train_one(
    cell: Cell,
    peft_model: Any,
    tokenizer: Any,
    data: Any,
    global_params: Params,
    hook: ClientHook | None,
    round_index: int,
    client_id: str,
    num_examples: int,
    workdir: Path,
    on_step: Callable[[float | None], None] | None = None,
    reference: ReferenceCache | None = None,
    checkpointing: bool = False,
    num_clients: int | None = None,
) -> ClientUpdate:
    """One client's local training from the global adapter: the client half of every engine.

    ``checkpointing``: gradient checkpointing, as :func:`checkpointing_for` decided for the run.
    ``num_clients``: the federation's size, which dynamic local steps need. What the client trained
    with where it varies per client (its steps when dynamic, the method's local settings) goes into
    the update's metrics, and from there into the round's history.
    """
    spec = cell.spec
    start = cell.aggregator.start_params(client_id, global_params)
    load_adapter(peft_model, start)
    if spec.local_steps == DYNAMIC and num_clients is None:
        raise ValueError("dynamic local steps need the federation's client count")
    steps = spec.steps_for(num_examples, num_clients or 1)
    args = local_args(spec, round_index, client_id, workdir, checkpointing, steps)
    t0 = time.perf_counter()
    # A new trainer starts at row 0 (KTO's sampler is sequential): a per-(round, client) seeded
    # shuffle lets every round see other rows, and stays reproducible for resume.
    result = train_client(
        cell.method, peft_model, tokenizer, data.shuffle(seed=args.seed % 2**32), args, hook, on_step, reference
    )
    metrics = {"loss": result.loss, "train_seconds": time.perf_counter() - t0} | cell.method.local_settings(data)
    if spec.local_steps == DYNAMIC:
        metrics["steps"] = float(steps)
    params, encoded = read_adapter(peft_model), None
    if cell.codec is not None:  # what the server receives is the decoded encoding, so the client's own copy is too
        cell.codec.client_states.at_round(round_index + 1)
        encoded = encode_update(cell.codec, start, params, client_id)
        params = decode_update(cell.codec, start, encoded)
    update = ClientUpdate(client_id, params, num_examples, encoded=encoded, metrics=metrics)
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


def close_round(
    cell: Cell,
    run_dir: RunDir,
    round_index: int,
    global_params: Params,
    updates: Sequence[ClientUpdate],
    history: list[RoundRecord],
    started: float,
    failures: dict[str, str] | None = None,
    reference: ReferenceCache | None = None,
    sampled: Sequence[str] | None = None,
    num_clients: int | None = None,
) -> tuple[Params, list[str]]:
    """Validate and aggregate a round's updates, append its history entry and checkpoint it.

    ``failures`` are sampled clients that sent no update (a distributed engine's failed node),
    recorded with the rejected ones; ``sampled`` is the round's sampling order (default: the
    updates' order); ``num_clients`` is the federation's size (client-level DP's sampling rate needs it).
    Returns the new global adapter and every rejected client's id.
    """
    accepted, rejections = validate_updates(global_params, updates)
    cell.aggregator.client_states.at_round(round_index + 1)  # per-client state the round changes belongs to it
    privacy: dict[str, float] = {}
    merged = accepted
    if accepted and cell.spec.privacy:
        merged, privacy = private_round(cell, round_index, global_params, accepted, num_clients)
    if merged:
        global_params = cell.aggregator.aggregate(global_params, merged)
    rejected = {x.client_id: x.reason for x in rejections} | dict(failures or {})
    losses = [u.metrics["loss"] for u in accepted if math.isfinite(u.metrics["loss"])]
    federated = cell.aggregator.regime == "federated"  # a baseline's data sits where it trains: nothing travels
    history.append(
        RoundRecord(
            round=round_index + 1,
            lr=cell.spec.lr_at(round_index),
            clients=tuple(sampled) if sampled is not None else tuple(u.client_id for u in updates),
            loss=sum(losses) / len(losses) if losses else None,
            client_loss={u.client_id: u.metrics["loss"] for u in updates},
            client_settings={u.client_id: settings for u in updates if (settings := client_settings(u.metrics))},
            rejected=rejected,
            bytes_down=params_nbytes(global_params) * (len(updates) + len(failures or {})) if federated else 0,
            bytes_up=sum((u.encoded.nbytes if u.encoded else params_nbytes(u.params)) + params_nbytes(u.extras) for u in updates)
            if federated
            else 0,
            train_seconds=sum(u.metrics.get("train_seconds", 0.0) for u in updates),
            round_seconds=time.perf_counter() - started,
            privacy=privacy,
        )
    )
    if reference is not None:
        reference.save()  # before the checkpoint, so a checkpointed round never needs rescoring
    run_dir.save_round(round_index + 1, global_params, cell.aggregator.state_dict(), history)
    cell.aggregator.client_states.checkpointed()
    if cell.codec is not None:
        cell.codec.client_states.checkpointed()
    return global_params, list(rejected)


def privacy_settings(spec: RunSpec, num_clients: int) -> PrivacySettings:
    """The run's DP settings, a ``target_epsilon`` turned into its noise multiplier for this federation's sampling rate."""
    from fedbench.harness.privacy import run_privacy

    settings = run_privacy(tuple(sorted(dict(spec.privacy).items())), spec.clients_per_round / num_clients, spec.rounds)
    if settings is None:
        raise ValueError("the spec has no [privacy] settings")
    return settings


DP_MEAN = "dp-mean"
"""The client id of the one update an aggregator receives under client-level DP: the round's noised mean."""


def private_round(
    cell: Cell, round_index: int, global_params: Params, accepted: Sequence[ClientUpdate], num_clients: int | None
) -> tuple[list[ClientUpdate], dict[str, float]]:
    """Client-level DP (DP-FedAvg, harness/privacy.py) ahead of the aggregator's rule: the accepted updates become one,
    their clipped mean plus seeded Gaussian noise, which the aggregator then treats like any round's updates
    (so FedAvgM, FedAdam and the rest post-process a private mean). The mean weighs each clipped update 1/m, m the
    round's sampled clients. Returns it with the round's privacy record."""
    from fedbench.harness.privacy import dp_mean, epsilon_spent

    spec = cell.spec
    if num_clients is None:
        raise ValueError("client-level DP needs the federation's client count for its sampling rate")
    rate = spec.clients_per_round / num_clients
    settings = privacy_settings(spec, num_clients)
    noised, norms = dp_mean(
        global_params, [u.params for u in accepted], settings, spec.seed, round_index, max(spec.clients_per_round, len(accepted))
    )
    merged = ClientUpdate(DP_MEAN, noised, sum(u.num_examples for u in accepted))
    record = {
        "epsilon": epsilon_spent(settings.noise_multiplier, rate, round_index + 1, settings.delta),
        "delta": settings.delta,
        "noise_multiplier": settings.noise_multiplier,
        "clip_norm": settings.clip_norm,
        "clipped": float(sum(n > settings.clip_norm for n in norms)),
        "median_norm": statistics.median(norms),
    }
    return [merged], record


MEASURED = ("loss", "train_seconds")
"""Update metrics that are measurements; the others say what the client trained with (see ``ClientUpdate.metrics``)."""


def client_settings(metrics: dict[str, float]) -> dict[str, float]:
    """What a client trained with where it varies per client and round: its metrics less the measurements."""
    return {k: v for k, v in metrics.items() if k not in MEASURED}


def _rounds(
    cell: Cell,
    run_dir: RunDir,
    clients: dict[str, list[Example]],
    peft_model: Any,
    tokenizer: Any,
    global_params: Params,
    start: int,
    history: list[RoundRecord],
    on_event: Callable[[RoundEvent], None] | None,
    on_step: Callable[[float | None], None] | None,
    checkpointing: bool,
) -> tuple[list[RoundRecord], Params]:
    """Rounds ``start`` .. last, each checkpointed; returns the history and the final global adapter."""
    spec = cell.spec
    datasets_by_client = {cid: to_dataset(cell.method.records(ex, spec.template)) for cid, ex in clients.items()}
    reference = ReferenceCache.for_run(run_dir.path, cell.method, spec)
    for r in range(start, spec.rounds):
        started = time.perf_counter()
        updates: list[ClientUpdate] = []
        for cid in sample_clients(list(clients), spec.clients_per_round, spec.seed, r):
            hook = cell.aggregator.client_hook(cid, global_params)
            update = train_one(
                cell,
                peft_model,
                tokenizer,
                datasets_by_client[cid],
                global_params,
                hook,
                r,
                cid,
                len(clients[cid]),
                run_dir.path / "tmp",
                on_step,
                reference,
                checkpointing,
                len(clients),
            )
            updates.append(update)
            if on_event:
                on_event(RoundEvent(r + 1, cid, update.metrics["loss"]))
        global_params, rejected = close_round(
            cell, run_dir, r, global_params, updates, history, started, reference=reference, num_clients=len(clients)
        )
        if on_event:
            on_event(RoundEvent(r + 1, None, history[-1].loss, rejected))
    return history, global_params


def save_peft_adapter(peft_model: Any, target: Path) -> None:
    """The final adapter in PEFT's own format (loadable by PEFT and vLLM), written to a temp dir and renamed."""
    import os
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target.parent))
    peft_model.save_pretrained(tmp, safe_serialization=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
