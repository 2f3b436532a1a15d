"""The server half of the Flower engine: the strategy, client discovery and the ServerApp.

:class:`FedbenchStrategy` is a Flower ``Strategy`` around the cell's aggregator plugin: it samples
the same clients as the local engine (a function of seed and round), sends each the global LoRA
adapter plus what the aggregator's client half needs (:meth:`Aggregator.client_state`), aggregates
the replies with the plugin and checkpoints every round into the usual run directory
(:func:`rounds.close_round`, as every engine does). :func:`discover` learns which client
each SuperNode holds with one ``query`` message before the first round, and :func:`serve` is the
ServerApp's main: the cell's skeleton (:func:`rounds.run_cell`) with :class:`FlowerDriver`, which fixes
(or, on resume, reloads) the federation and runs the rounds as this strategy.

``server_app`` is the deployment ServerApp, named as ``fedbench.harness.flower:server_app`` in the
Flower app that :func:`fedbench.harness.flower.launch.write_app` writes; the package re-exports it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from rich.console import Console
from rich.markup import escape

from fedbench.harness.checkpoint import RunDir, atomic_write_json
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import Cell, build_cell
from fedbench.harness.flower.wire import encoded_from_records, from_record, spec_json, to_record
from fedbench.harness.interfaces import ClientUpdate
from fedbench.harness.registry import default_registry
from fedbench.harness.rounds import CellDriver, Round, RoundContext, close_round, run_cell
from fedbench.harness.spec import RunSpec, spec_from_dict

POLL_SECONDS = 0.5
"""How often :func:`discover` asks the SuperLink whether the awaited SuperNodes have connected."""


class FedbenchStrategy(Strategy):
    """A Flower strategy whose sampling, aggregation and server state are the fedbench cell's.

    ``ctx.clients`` is the federation (client id -> example count), fixed when the run started, so
    sampling never depends on which SuperNodes happen to be up; ``nodes`` maps the connected
    ones to Flower node ids, and a sampled client without a node is a failure for that round.
    Flower's round counter starts at 1 in every ServerApp run; ``ctx.start`` (0-based) maps it
    onto the cell's rounds, so a resumed run continues the same trajectory as the local engine.
    """

    def __init__(self, ctx: RoundContext, nodes: Mapping[str, int], log: Console) -> None:
        self.ctx = ctx
        self.nodes = dict(nodes)
        self.log = log
        self._round = Round(0, (), 0.0)
        self._sent: dict[str, Message] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        ctx = self.ctx
        self._round = ctx.open_round(ctx.start + server_round - 1)
        adapter = to_record(ctx.global_params)
        self._sent = {}
        for cid in self._round.sampled:
            if cid not in self.nodes:
                continue
            content = RecordDict(
                {
                    "arrays": adapter,
                    "client-state": to_record(ctx.cell.aggregator.client_state(cid)),
                    "config": ConfigRecord(
                        {
                            "spec": spec_json(ctx.cell.spec),
                            "round": self._round.index,
                            "client-id": cid,
                            "num-clients": len(ctx.clients),
                        }
                    ),
                }
            )
            self._sent[cid] = Message(content=content, message_type="train", dst_node_id=self.nodes[cid])
        return list(self._sent.values())

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Updates in sampling order (as the local engine sums them); a failed, silent or absent client is rejected.

        An update that travelled encoded arrives as its encoding alone; the server-side chain decodes it. A round
        in which no client at all sent an update fails the run instead: nothing trained means something is wrong
        everywhere, and continuing would only copy the adapter forward.
        """
        ctx, rnd = self.ctx, self._round
        sent_ids = {m.metadata.message_id: cid for cid, m in self._sent.items()}
        by_client = {sent_ids[m.metadata.reply_to_message_id]: m for m in replies if m.metadata.reply_to_message_id in sent_ids}
        updates: list[ClientUpdate] = []
        failures: dict[str, str] = {}
        for cid in rnd.sampled:
            reply = by_client.get(cid)
            if cid not in self._sent:
                failures[cid] = "its SuperNode is not connected"
            elif reply is None:
                failures[cid] = "no reply before the round's timeout"
            elif reply.has_error():
                failures[cid] = f"client failed: {reply.error.reason}"
            else:
                updates.append(self._update(cid, reply.content))
        if not updates:
            detail = "; ".join(f"{cid}: {why}" for cid, why in failures.items())
            raise FedbenchError(
                f"round {rnd.index + 1}: no sampled client sent an update ({detail})",
                "read the SuperNodes' logs (or the error above), fix the cause and rerun the same command: "
                "it resumes from the last complete round",
            )
        record = close_round(ctx, rnd, updates, failures)
        loss, reasons = record.loss, record.rejected
        note = escape(", rejected: " + "; ".join(f"{c} ({why})" for c, why in reasons.items())) if reasons else ""
        shown = "n/a" if loss is None else f"{loss:.4f}"
        self.log.log(f"[bold]round {record.round}/{ctx.cell.spec.rounds}[/] done, mean loss {shown}{note}")
        return to_record(ctx.global_params), MetricRecord({"loss": loss if loss is not None else float("nan")})

    def _update(self, cid: str, content: RecordDict) -> ClientUpdate:
        """One client's reply as the update it stands for: its adapter, or (under a codec) its encoding alone."""
        like = self.ctx.global_params
        arrays = content.array_records["arrays"]
        encoded = None
        if "encoding" in content.config_records and self.ctx.cell.codec is not None:
            encoded = encoded_from_records(arrays, content.config_records["encoding"])
        return ClientUpdate(
            cid,
            {} if encoded is not None else from_record(arrays, like),
            self.ctx.clients[cid],
            encoded=encoded,
            extras=from_record(content.array_records["extras"], like),
            # scalars by the client's construction; flwr types record values as every value kind
            metrics={k: float(v) for k, v in content["metrics"].items()},  # type: ignore[arg-type]
        )

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []  # benchmarks run after training, on the final adapter (fedbench eval)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        spec = self.ctx.cell.spec
        self.log.log(
            f"fedbench cell {spec.cell} ({spec.hash}): rounds {self.ctx.start + 1}..{spec.rounds}, "
            f"{len(self.nodes)} of {len(self.ctx.clients)} clients connected"
        )


ROSTER = "flower-clients.json"
"""The federation a Flower run started with (client id -> examples), kept in its run directory for resume."""


def discover(
    grid: Grid, spec: RunSpec, expected: int, timeout: float | None, log: Console
) -> tuple[dict[str, int], dict[str, int]]:
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
            raise FedbenchError(
                f"SuperNode {node} could not load its data: {reply.error.reason}",
                "fix that node's --node-config or data file and rerun",
            )
        site = reply.content["site"]
        cid = str(site["client-id"])
        if cid in nodes:
            raise FedbenchError(
                f"SuperNodes {nodes[cid]} and {node} both hold client '{cid}'",
                "give every SuperNode its own data-file or partition-id",
            )
        # an int by the client's construction; flwr types record values as every value kind
        nodes[cid], counts[cid] = node, int(site["num-examples"])  # type: ignore[arg-type]
    if len(nodes) < expected:
        raise FedbenchError(
            f"{len(nodes)} of the {expected} SuperNodes waited for answered which client they hold",
            "read the SuperNodes' logs, restart the missing ones and rerun (or lower --min-nodes)",
        )
    return counts, nodes


class FlowerDriver(CellDriver):
    """The Flower engine's part of the cell: the federation from the SuperNodes, the rounds as :class:`FedbenchStrategy`.

    The federation is fixed on a fresh start and saved (``flower-clients.json``); a resumed run waits for those
    clients' SuperNodes, and samples among all of them as the first start did.
    """

    engine = "flower"

    def __init__(self, grid: Grid, log: Console, min_nodes: int | None, timeout: float | None, attempt: str) -> None:
        self.grid, self.log, self.min_nodes, self.timeout, self.attempt = grid, log, min_nodes, timeout, attempt
        self.nodes: dict[str, int] = {}  # client -> SuperNode id

    def federation(self, cell: Cell, run_dir: RunDir, force: bool) -> dict[str, int]:
        spec = cell.spec
        roster_file = run_dir.path / ROSTER
        roster = None if force or not roster_file.is_file() else json.loads(roster_file.read_text())["clients"]
        checkpoint = None if force else run_dir.latest()
        if roster is not None and checkpoint is not None and checkpoint.round >= spec.rounds:
            clients = roster  # every round is checkpointed: only the adapter is left to write
        else:
            expected = len(roster) if roster is not None else (self.min_nodes or spec.clients_per_round)
            counts, nodes = discover(self.grid, spec, expected, self.timeout, self.log)
            if roster is None:
                clients, self.nodes = counts, nodes
                atomic_write_json(roster_file, {"clients": clients})
            else:
                strangers = sorted(set(nodes) - set(roster))
                if strangers:
                    self.log.log(f"[yellow]ignoring clients that joined after the run started: {', '.join(strangers)}[/]")
                clients, self.nodes = roster, {c: n for c, n in nodes.items() if c in roster}
        if spec.clients_per_round > len(clients):
            raise FedbenchError(
                f"clients_per_round is {spec.clients_per_round} but the federation has {len(clients)} clients",
                f"start more SuperNodes (--min-nodes) or set clients_per_round to at most {len(clients)}",
            )
        return clients

    def rounds(self, ctx: RoundContext) -> None:
        strategy = FedbenchStrategy(ctx, self.nodes, self.log)
        remaining = ctx.cell.spec.rounds - ctx.start
        strategy.start(self.grid, to_record(ctx.global_params), num_rounds=remaining, timeout=self.timeout)  # type: ignore[arg-type]  # flwr's stub says float; None (no limit) works

    def ending(self, ctx: RoundContext) -> dict[str, Any]:
        return {"attempt": self.attempt}


def serve(grid: Grid, context: Context, preset: Mapping[str, Any] | None = None) -> None:
    """The ServerApp's main: train the cell named by the run config, writing the usual run directory.

    Config keys (``[tool.flwr.app.config]`` or ``preset``): ``spec`` (the RunSpec as JSON), ``out``
    (runs folder), ``min-nodes`` (SuperNodes that make up the federation on a fresh start),
    ``timeout`` (seconds per round and for discovery; absent or None: no limit), ``force``, and
    ``attempt`` (written to result.json, so the launcher knows the result is this run's).
    """
    config = dict(context.run_config) | dict(preset or {})
    spec = spec_from_dict(json.loads(str(config["spec"])))
    log = Console(stderr=True)
    timeout = float(config["timeout"]) if config.get("timeout") else None
    min_nodes = int(config["min-nodes"]) if config.get("min-nodes") else None
    driver = FlowerDriver(grid, log, min_nodes, timeout, str(config.get("attempt", "")))
    outcome = run_cell(build_cell(spec, default_registry()), Path(str(config["out"])), driver, bool(config.get("force", False)))
    if outcome.skipped:
        log.log(f"{spec.cell} is already finished in {outcome.run_dir}")


server_app = ServerApp()
"""The deployment ServerApp (``fedbench.harness.flower:server_app`` in the generated Flower app)."""


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    serve(grid, context)
