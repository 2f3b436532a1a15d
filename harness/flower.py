"""The Flower engine: a cell's rounds as a Flower ServerApp and ClientApp, simulated or deployed.

The server half is :class:`FedbenchStrategy`, a Flower ``Strategy`` around the cell's aggregator
plugin: it samples the same clients as the local engine (a function of seed and round), sends
each the global LoRA adapter plus what the aggregator's client half needs
(:meth:`Aggregator.client_state`, e.g. SCAFFOLD's c and c_i), aggregates the replies with the
plugin and checkpoints every round into the usual run directory. The client half trains one
client with the method plugin (:func:`federation.train_one`, as the local engine does). Only
arrays travel: adapter, control variates and their changes, as ``ArrayRecord``s of numpy arrays.

Which client a SuperNode is comes from its ``--node-config``: ``data-file`` (a site's own examples,
deployment) or ``partition-id`` (one of the cell's partitions, as Flower's simulation engine sets
it). The server learns the nodes' client ids with one ``query`` message before the first round.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from rich.console import Console
from rich.markup import escape

from fedbench.harness.checkpoint import RunDir, atomic_write_json
from fedbench.harness.data import Example, PreferencePair, read_examples
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import (
    Cell, CellOutcome, begin, build_cell, close_round, conclude, finished_outcome, partition, sample_clients, train_one,
)
from fedbench.harness.interfaces import ClientUpdate, Params
from fedbench.harness.models import attach_lora, load_base
from fedbench.harness.refcache import ReferenceCache
from fedbench.harness.registry import default_registry
from fedbench.harness.spec import RunSpec, spec_from_dict
from fedbench.harness.training import to_dataset

POLL_SECONDS = 0.5


# ---------------------------------------------------------------- wire format


def to_record(params: Params) -> ArrayRecord:
    """Tensors as numpy arrays, keys kept; bfloat16 (which numpy lacks) travels as float32."""
    return ArrayRecord({k: _array(t) for k, t in params.items()})


def _array(t: torch.Tensor) -> Any:
    from flwr.app import Array

    t = t.detach().to("cpu")
    return Array(t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy())


def from_record(record: ArrayRecord, like: Params | None = None) -> Params:
    """Tensors back from a record, in the dtype of ``like``'s tensor of the same name when given."""
    out = {}
    for k, array in record.items():
        t = torch.from_numpy(array.numpy().copy())
        out[k] = t.to(like[k].dtype) if like is not None and k in like else t
    return out


# ---------------------------------------------------------------- server half


class FedbenchStrategy(Strategy):
    """A Flower strategy whose sampling, aggregation and server state are the fedbench cell's.

    ``clients`` is the federation (client id -> example count), fixed when the run started, so
    sampling never depends on which SuperNodes happen to be up; ``nodes`` maps the connected
    ones to Flower node ids, and a sampled client without a node is a failure for that round.
    Flower's round counter starts at 1 in every ServerApp run; ``first_round`` (0-based) maps it
    onto the cell's rounds, so a resumed run continues the same trajectory as the local engine.
    """

    def __init__(
        self, cell: Cell, run_dir: RunDir, clients: Mapping[str, int], nodes: Mapping[str, int], first_round: int,
        history: list[dict[str, Any]], global_params: Params, log: Console,
    ) -> None:
        self.cell = cell
        self.run_dir = run_dir
        self.clients = dict(clients)
        self.nodes = dict(nodes)
        self.first_round = first_round
        self.history = history
        self.global_params = global_params
        self.log = log
        self._sampled: list[str] = []
        self._sent: dict[str, Message] = {}
        self._started = 0.0

    def _round_index(self, server_round: int) -> int:
        return self.first_round + server_round - 1

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        spec = self.cell.spec
        r = self._round_index(server_round)
        self._started = time.perf_counter()
        self._sampled = sample_clients(list(self.clients), spec.clients_per_round, spec.seed, r)
        adapter = to_record(self.global_params)
        self._sent = {}
        for cid in self._sampled:
            if cid not in self.nodes:
                continue
            content = RecordDict({
                "arrays": adapter,
                "client-state": to_record(self.cell.aggregator.client_state(cid)),
                "config": ConfigRecord({"spec": spec_json(spec), "round": r, "client-id": cid, "num-clients": len(self.clients)}),
            })
            self._sent[cid] = Message(content=content, message_type="train", dst_node_id=self.nodes[cid])
        return list(self._sent.values())

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Updates in sampling order (as the local engine sums them); a failed, silent or absent client is rejected.

        A round in which no client at all sent an update fails the run instead: nothing trained
        means something is wrong everywhere, and continuing would only copy the adapter forward.
        """
        r = self._round_index(server_round)
        sent_ids = {m.metadata.message_id: cid for cid, m in self._sent.items()}
        by_client = {sent_ids[m.metadata.reply_to_message_id]: m for m in replies if m.metadata.reply_to_message_id in sent_ids}
        updates: list[ClientUpdate] = []
        failures: dict[str, str] = {}
        for cid in self._sampled:
            reply = by_client.get(cid)
            if cid not in self._sent:
                failures[cid] = "its SuperNode is not connected"
            elif reply is None:
                failures[cid] = "no reply before the round's timeout"
            elif reply.has_error():
                failures[cid] = f"client failed: {reply.error.reason}"
            else:
                content = reply.content
                updates.append(ClientUpdate(
                    cid, from_record(content["arrays"], self.global_params), self.clients[cid],
                    extras=from_record(content["extras"], self.global_params),
                    metrics={k: float(v) for k, v in content["metrics"].items()},
                ))
        if not updates:
            detail = "; ".join(f"{cid}: {why}" for cid, why in failures.items())
            raise FedbenchError(
                f"round {r + 1}: no sampled client sent an update ({detail})",
                "read the SuperNodes' logs (or the error above), fix the cause and rerun the same command: it resumes from the last complete round",
            )
        self.global_params, rejected = close_round(
            self.cell, self.run_dir, r, self.global_params, updates, self.history, self._started, failures, sampled=self._sampled,
        )
        loss = self.history[-1]["loss"]
        reasons = self.history[-1]["rejected"]
        note = escape(", rejected: " + "; ".join(f"{c} ({reasons[c]})" for c in rejected)) if rejected else ""
        self.log.log(f"[bold]round {r + 1}/{self.cell.spec.rounds}[/] done, mean loss {'n/a' if loss is None else f'{loss:.4f}'}{note}")
        return to_record(self.global_params), MetricRecord({"loss": loss if loss is not None else float("nan")})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []  # benchmarks run after training, on the final adapter (fedbench eval)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        spec = self.cell.spec
        self.log.log(
            f"fedbench cell {spec.cell} ({spec.hash}): rounds {self.first_round + 1}..{spec.rounds}, "
            f"{len(self.nodes)} of {len(self.clients)} clients connected"
        )


def spec_json(spec: RunSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


ROSTER = "flower-clients.json"
"""The federation a Flower run started with (client id -> examples), kept in its run directory for resume."""


def discover(grid: Grid, spec: RunSpec, expected: int, timeout: float | None, log: Console) -> tuple[dict[str, int], dict[str, int]]:
    """Wait for ``expected`` SuperNodes, then ask each which client it holds: (client -> examples, client -> node id).

    A node that cannot load its data fails the run with its reason; one the SuperLink reports as
    unavailable (e.g. the stale entry of a restarted SuperNode) is skipped with a warning.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if deadline is not None and time.monotonic() > deadline:
            raise FedbenchError(
                f"only {len(node_ids)} of {expected} SuperNodes connected within {timeout:.0f} s",
                "start the missing SuperNodes (or lower --min-nodes) and rerun: finished rounds are kept",
            )
        time.sleep(POLL_SECONDS)
    question = ConfigRecord({"spec": spec_json(spec)})
    sent = {n: Message(RecordDict({"config": question}), message_type="query", dst_node_id=n) for n in node_ids}
    replies = list(grid.send_and_receive(list(sent.values()), timeout=timeout))
    target = {m.metadata.message_id: n for n, m in sent.items()}
    counts: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for reply in replies:
        node = target.get(reply.metadata.reply_to_message_id)
        if node is None:
            continue
        if reply.has_error():
            if reply.metadata.src_node_id != node:  # the SuperLink answered for a node it could not reach
                log.log(f"[yellow]SuperNode {node} is unavailable ({reply.error.reason}); going on without it[/]")
                continue
            raise FedbenchError(f"SuperNode {node} could not load its data: {reply.error.reason}", "fix that node's --node-config or data file and rerun")
        site = reply.content["site"]
        cid = str(site["client-id"])
        if cid in nodes:
            raise FedbenchError(f"SuperNodes {nodes[cid]} and {node} both hold client '{cid}'", "give every SuperNode its own data-file or partition-id")
        nodes[cid], counts[cid] = node, int(site["num-examples"])
    if len(nodes) < expected:
        raise FedbenchError(
            f"{len(nodes)} of the {expected} SuperNodes waited for answered which client they hold",
            "read the SuperNodes' logs, restart the missing ones and rerun (or lower --min-nodes)",
        )
    return counts, nodes


def serve(grid: Grid, context: Context, preset: Mapping[str, Any] | None = None) -> None:
    """The ServerApp's main: train the cell named by the run config, writing the usual run directory.

    Config keys (``[tool.flwr.app.config]`` or ``preset``): ``spec`` (the RunSpec as JSON), ``out``
    (runs folder), ``min-nodes`` (SuperNodes that make up the federation on a fresh start),
    ``timeout`` (seconds per round and for discovery; absent or None: no limit), ``force``, and
    ``attempt`` (written to result.json, so the launcher knows the result is this run's).

    The federation is fixed on a fresh start and saved (``flower-clients.json``); a resumed run
    waits for those clients' SuperNodes, and samples among all of them as the first start did.
    """
    config = dict(context.run_config) | dict(preset or {})
    spec = spec_from_dict(json.loads(str(config["spec"])))
    log = Console(stderr=True)
    cell = build_cell(spec, default_registry())
    run_dir = RunDir(Path(str(config["out"])), spec)
    force = bool(config.get("force", False))
    if run_dir.done and not force:
        log.log(f"{spec.cell} is already finished in {run_dir.path}")
        return
    run_dir.prepare()
    timeout = float(config["timeout"]) if config.get("timeout") else None
    try:
        roster_file = run_dir.path / ROSTER
        roster = None if force or not roster_file.is_file() else json.loads(roster_file.read_text())["clients"]
        checkpoint = None if force else run_dir.latest()
        if roster is not None and checkpoint is not None and checkpoint.round >= spec.rounds:
            clients, nodes = roster, {}  # every round is checkpointed: only the adapter is left to write
        else:
            expected = len(roster) if roster is not None else int(config.get("min-nodes", spec.clients_per_round))
            counts, nodes = discover(grid, spec, expected, timeout, log)
            if roster is None:
                clients = counts
                atomic_write_json(roster_file, {"clients": clients})
            else:
                strangers = sorted(set(nodes) - set(roster))
                if strangers:
                    log.log(f"[yellow]ignoring clients that joined after the run started: {', '.join(strangers)}[/]")
                clients, nodes = roster, {c: n for c, n in nodes.items() if c in roster}
        if spec.clients_per_round > len(clients):
            raise FedbenchError(
                f"clients_per_round is {spec.clients_per_round} but the federation has {len(clients)} clients",
                f"start more SuperNodes (--min-nodes) or set clients_per_round to at most {len(clients)}",
            )
        model, _ = load_base(spec.model, spec.dtype)
        peft_model = attach_lora(model, spec.lora)
        global_params, start, history = begin(cell, run_dir, peft_model, len(clients), force)
        strategy = FedbenchStrategy(cell, run_dir, clients, nodes, start, history, global_params, log)
        strategy.start(grid, to_record(global_params), num_rounds=spec.rounds - start, timeout=timeout)
        conclude(cell, run_dir, peft_model, strategy.global_params, strategy.history, engine="flower", extra={"attempt": config.get("attempt", "")})
    except Exception as err:
        reason = err.problem if isinstance(err, FedbenchError) else f"{type(err).__name__}: {err}"
        run_dir.mark_failed(reason)
        raise


server_app = ServerApp()
"""The deployment ServerApp (``fedbench.harness.flower:server_app`` in the generated Flower app)."""


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    serve(grid, context)


# ---------------------------------------------------------------- client half


@dataclass
class _Site:
    """One SuperNode's client for one spec: its examples as a training set, loaded once per process."""

    cell: Cell
    client_id: str
    num_examples: int
    dataset: Any


# Per-process caches. A Ray simulation actor serves many virtual nodes and many rounds, so these
# save reloading data; a deployed SuperNode starts a fresh ClientApp process per message (Flower
# 1.42), where they hold one entry and each round reloads model and data.
_SITES: dict[tuple[str, str], _Site] = {}
_PARTITIONS: dict[str, dict[str, list[Example]]] = {}
_REFERENCES: dict[str, ReferenceCache | None] = {}


def site_examples(cell: Cell, node_config: Mapping[str, Any]) -> tuple[str, list[Example]]:
    """This node's client id and examples, from its ``--node-config``.

    ``data-file``: the site's own file (pairs, or a client written by ``fedbench partition``);
    the client id is ``client-id`` or the file's stem. ``partition-id`` (with ``num-partitions``):
    the cell's data laid out as the local engine does, client number ``partition-id`` in sorted order.
    """
    if "data-file" in node_config:
        path = Path(str(node_config["data-file"])).expanduser()
        examples = read_examples(path)
        paired = all(isinstance(e, PreferencePair) for e in examples)  # read_examples never mixes the two forms
        if cell.method.data_form == "paired" and not paired:
            raise FedbenchError(
                f"{path} holds labelled single responses but method '{cell.method.name}' needs preference pairs",
                "give this site a pair file (prompt, chosen, rejected) or run an unpaired method such as kto",
            )
        if paired:
            examples = cell.method.examples(examples)
        return str(node_config.get("client-id", path.stem)), examples
    if "partition-id" in node_config:
        if cell.spec.hash not in _PARTITIONS:  # one actor answers for many virtual nodes: lay the data out once
            _PARTITIONS[cell.spec.hash] = partition(cell)
        clients = _PARTITIONS[cell.spec.hash]
        ids = sorted(clients)
        pid, total = int(node_config["partition-id"]), int(node_config.get("num-partitions", len(ids)))
        if total != len(ids) or not 0 <= pid < total:
            raise FedbenchError(
                f"partition-id {pid} of num-partitions {total}, but the cell's data has {len(ids)} clients",
                f"start one SuperNode per client: num-partitions={len(ids)} and partition-id 0..{len(ids) - 1}",
            )
        return ids[pid], clients[ids[pid]]
    raise FedbenchError(
        "this SuperNode's --node-config names no data (keys: " + (", ".join(node_config) or "none") + ")",
        "start it with --node-config 'data-file=\"/path/client.jsonl\"' (see fedbench partition) or 'partition-id=0 num-partitions=N'",
    )


def _site(context: Context, spec_text: str) -> _Site:
    spec = spec_from_dict(json.loads(spec_text))
    key = (spec.hash, json.dumps(dict(context.node_config), sort_keys=True, default=str))
    if key not in _SITES:
        from fedbench.harness.progress import quiet_libraries

        quiet_libraries()
        cell = build_cell(spec, default_registry())
        client_id, examples = site_examples(cell, context.node_config)
        dataset = to_dataset(cell.method.records(examples, spec.template))
        _SITES[key] = _Site(cell, client_id, len(examples), dataset)
    return _SITES[key]


client_app = ClientApp()
"""The ClientApp: every SuperNode (simulated or real) runs it."""


@client_app.query()
def _identify(msg: Message, context: Context) -> Message:
    site = _site(context, str(msg.content["config"]["spec"]))
    answer = ConfigRecord({"client-id": site.client_id, "num-examples": site.num_examples})
    return Message(RecordDict({"site": answer}), reply_to=msg)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    site = _site(context, str(config["spec"]))
    if str(config["client-id"]) != site.client_id:
        raise FedbenchError(f"the server sent client '{config['client-id']}' to the node holding '{site.client_id}'", "restart the run")
    spec, cell = site.cell.spec, site.cell
    model, tokenizer = load_base(spec.model, spec.dtype)
    peft_model = attach_lora(model, spec.lora)
    global_params = from_record(msg.content["arrays"])
    # a fresh instance per message: one process may serve several clients, and no state may leak between them
    aggregator = default_registry().create("aggregator", spec.aggregator, dict(spec.aggregator_params))
    aggregator.setup(global_params, int(config["num-clients"]))
    state = from_record(msg.content["client-state"])
    if state:
        aggregator.load_state_dict(state)
    if spec.hash not in _REFERENCES:
        _REFERENCES[spec.hash] = ReferenceCache.for_run(None, cell.method, spec)
    with tempfile.TemporaryDirectory(prefix="fedbench-client-") as workdir:
        update = train_one(
            cell, peft_model, tokenizer, site.dataset, global_params, aggregator.client_hook(site.client_id, global_params),
            int(config["round"]), site.client_id, site.num_examples, Path(workdir), reference=_REFERENCES[spec.hash],
        )
    content = RecordDict({"arrays": to_record(update.params), "extras": to_record(update.extras), "metrics": MetricRecord(dict(update.metrics))})
    return Message(content, reply_to=msg)


# ---------------------------------------------------------------- launchers


@dataclass(frozen=True)
class Resources:
    """What Flower's simulation engine gives each client: Ray runs as many at once as these fit."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @classmethod
    def auto(cls, num_cpus: float | None = None, num_gpus: float | None = None) -> Resources:
        """One CPU per client; one GPU per client when CUDA is there (set a fraction to share GPUs)."""
        gpus = num_gpus if num_gpus is not None else (1.0 if torch.cuda.is_available() else 0.0)
        return cls(num_cpus if num_cpus is not None else 1.0, gpus)


def _outcome(run_dir: RunDir, attempt: str, where: str) -> CellOutcome:
    """The cell as this attempt finished it, or the reason the Flower run left it unfinished."""
    if run_dir.done:
        result = json.loads((run_dir.path / "result.json").read_text())
        if result.get("attempt") == attempt:
            return CellOutcome(run_dir.path, run_dir.adapter_dir, result["history"])
    failed = run_dir.path / "failed.json"
    reason = json.loads(failed.read_text())["reason"] if failed.is_file() else f"this run wrote no result.json in {run_dir.path}"
    raise FedbenchError(
        f"the Flower run ended without finishing {run_dir.spec.cell}: {reason}",
        f"see the log above ({where}); fix the cause and rerun the same command: it resumes from the last complete round",
    )


def _server_config(cell: Cell, runs_root: Path, min_nodes: int, timeout: float | None, force: bool) -> dict[str, Any]:
    config = {"spec": spec_json(cell.spec), "out": str(Path(runs_root).resolve()), "min-nodes": min_nodes, "force": force, "attempt": uuid.uuid4().hex}
    return config | ({"timeout": timeout} if timeout else {})


def simulate(cell: Cell, runs_root: Path, resources: Resources | None = None, force: bool = False, timeout: float | None = None) -> CellOutcome:
    """Run the cell in Flower's simulation engine (Ray): one virtual SuperNode per client, in parallel as resources allow.

    ``timeout`` (seconds per round) defaults to none: a simulated client is slow, never gone, and
    rejecting it would silently leave the local engine's trajectory.
    """
    try:
        import ray  # noqa: F401  (flwr imports it lazily, after the run has started)
    except ModuleNotFoundError as err:
        raise FedbenchError("Flower's simulation engine needs Ray, which is not installed", "pip install 'fedbench[flower]'  (flwr[simulation])") from err
    from flwr.simulation import run_simulation

    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    resources = resources or Resources.auto()
    num_clients = len(partition(cell))
    preset = _server_config(cell, runs_root, num_clients, timeout, force)
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        serve(grid, context, preset)

    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)  # fedbench logs each round; Flower's banner and summary repeat it
    try:
        run_simulation(
            server_app=app, client_app=client_app, num_supernodes=num_clients,
            backend_config={"client_resources": {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}},
        )
    finally:
        flwr_logger.setLevel(level)
    return _outcome(run_dir, preset["attempt"], "Flower simulation")


FLWR_APP_TOML = """\
# A Flower app written by `fedbench run --engine flower --superlink ...`: its components are fedbench's own.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedbench-cell"
version = "1.0.0"
description = "fedbench cell {cell} ({hash})"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedbench"

[tool.flwr.app.components]
serverapp = "fedbench.harness.flower:server_app"
clientapp = "fedbench.harness.flower:client_app"

[tool.flwr.app.config]
{config}
"""


def write_app(target: Path, config: Mapping[str, Any], cell: Cell) -> Path:
    """A Flower app folder whose run config is this cell: what ``flwr run`` bundles and submits."""
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in config.items())
    target.mkdir(parents=True, exist_ok=True)
    (target / "pyproject.toml").write_text(FLWR_APP_TOML.format(cell=cell.spec.cell, hash=cell.spec.hash, config=lines))
    return target


def flwr_command() -> str:
    """The ``flwr`` CLI of this environment."""
    sibling = Path(sys.executable).with_name("flwr")
    found = str(sibling) if sibling.is_file() else shutil.which("flwr")
    if not found:
        raise FedbenchError("the `flwr` command is not installed in this environment", "pip install 'fedbench[flower]'")
    return found


def deploy(
    cell: Cell, runs_root: Path, superlink: str, min_nodes: int | None = None, timeout: float | None = 3600, force: bool = False,
) -> CellOutcome:
    """Submit the cell to a running SuperLink (``superlink`` names a connection in Flower's config.toml) and wait.

    ``min_nodes`` is the federation's size on a fresh start (default: clients_per_round); a
    sampled client whose site has not answered within ``timeout`` seconds is rejected for the
    round. The ServerApp writes the run directory on the SuperLink's machine: run this there
    (or on a shared file system) to see the result here.
    """
    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    config = _server_config(cell, runs_root, min_nodes or cell.spec.clients_per_round, timeout, force)
    app_dir = write_app(Path(runs_root) / ".flower-apps" / cell.spec.hash, config, cell)
    subprocess.run([flwr_command(), "run", str(app_dir), superlink, "--stream"], check=False)
    return _outcome(run_dir, config["attempt"], f"`flwr run` against SuperLink connection '{superlink}'")
