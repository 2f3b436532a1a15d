"""Secure aggregation on the Flower engine: each round's fit through Flower's own SecAgg+ protocol.

The server never sees one client's update. Every sampled client trains as on the other engines
(:func:`federation.train_one`, same sampling, seeds and learning rates) and hands its *change*
``x_i - x`` to Flower's ``secaggplus_mod``, which quantizes it, scales it by the client's example
count and masks it; ``SecAggPlusWorkflow`` sums the masked vectors, removes the masks and hands the
legacy strategy here only the example-weighted mean change. This module is the protocol half only: the
round then closes as on every engine (:func:`rounds.close_round`), through the cell's server-side chain
with :class:`SecureMean` as its outer link, which hands the aggregator one merged update,
``ClientUpdate("secure-sum", x + mean change, total examples)``, just as under client-level DP it receives
one noised mean (``server_side.DP_MEAN``), so only aggregators that need no more than the round's mean run
(SCAFFOLD and the local-only baseline are refused).

What still travels in the clear, as SecAgg+ leaves it: each client's example count (SecAgg+
weights by it) and its metrics (training loss and time, which the round's history records per
client as the other engines do). Protocol messages (keys, shares) are not counted in ``bytes_up``;
the masked vectors are (8 bytes per adapter entry, plus the weight).

Precision. SecAgg+ works on integers: a client's value ``v`` (here ``w_i (x_i - x)`` with
``w_i = n_i / max n_j`` over the round's sampled clients, so ``w_i <= 1`` and the weights sum to at least 1)
is clipped to ``[-clipping_range, clipping_range]`` and stochastically rounded onto ``quantization_range``
levels; the weights themselves are rounded to ``1 / quantization_range``. This module picks the largest
quantization range the 2**32 modulus holds for the round's client count (:func:`quantization_range`:
2**30 for two clients, 2**29 for three or four, ...) and a clipping range of :data:`CLIPPING_RANGE`, so
one client's rounding error is below ``2 * 4 / 2**30 ~ 7.5e-9`` per entry (two clients) and the mean's
below ``k`` times that (unbiased, as the rounding is stochastic). A client whose change leaves the
clipping range fails its round loudly rather than being clipped: raise ``clipping_range``. Compared
with the local engine the final adapter differs by that and float32 rounding only (measured: 1.5e-8 on
the test's tiny model; asserted below :data:`TOLERANCE` = 1e-6 in tests/test_secure_aggregation.py).

Wiring: :func:`simulate_secure` is the Flower engine's ``simulate`` with secure aggregation; the
deployment (``flwr run``) path is not wired yet (it would need ``secure_server_app`` /
``secure_client_app`` as the Flower app's components).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from fedbench.harness.checkpoint import RunDir
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import Cell, partition
from fedbench.harness.flower.client import identify, site_for, train_site  # the plain engine's client half
from fedbench.harness.flower.launch import Resources, run_in_simulation
from fedbench.harness.flower.server import discover
from fedbench.harness.flower.wire import spec_json
from fedbench.harness.interfaces import ClientUpdate, Params
from fedbench.harness.rounds import CellDriver, CellOutcome, Round, RoundContext, close_round, run_cell
from fedbench.harness.server_side import ServerSide, Tally, Wrapper, server_side

SECURE_SUM = "secure-sum"
"""The client id of the one update the aggregator receives under secure aggregation: the round's securely summed mean."""

CLIPPING_RANGE = 4.0
"""Largest absolute change of one adapter entry in one round that SecAgg+ carries (a client's ``x_i - x``)."""

MODULUS_RANGE = 2**32
"""SecAgg+'s modulus (Flower's default and maximum)."""

TOLERANCE = 1e-6
"""How far the secure simulation's adapter may be from the local engine's, per entry (float rounding; see the module doc)."""

ENGINE = "flower-secagg"
"""The engine recorded in result.json for a cell trained with secure aggregation."""


def quantization_range(clients_per_round: int) -> int:
    """The largest power of two such that the round's summed integers stay below the modulus (and fit numpy's int32)."""
    return 2 ** min(30, 31 - math.ceil(math.log2(max(clients_per_round, 2))))


def check_secure(cell: Cell) -> None:
    """Refuse what SecAgg+ cannot carry, naming why: an aggregator reading each update, DP, a codec, a baseline."""
    spec, aggregator = cell.spec, cell.aggregator
    if aggregator.needs_each_update:
        raise FedbenchError(
            f"aggregator '{spec.aggregator}' reads each client's update, but secure aggregation hands the aggregator "
            "only the round's securely summed mean",
            "use an aggregator that needs only the mean (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad), "
            "or drop secure aggregation",
        )
    if aggregator.regime != "federated":
        raise FedbenchError(
            f"aggregator '{spec.aggregator}' is the {aggregator.regime} baseline: no updates are combined, so there is "
            "nothing to aggregate securely",
            "run the baseline without secure aggregation",
        )
    if spec.privacy:
        raise FedbenchError(
            "client-level DP together with secure aggregation is not supported yet (DP clips each client's update on "
            "the server, which secure aggregation never sees; distributed noise is future work)",
            "drop [privacy] or drop secure aggregation",
        )
    if cell.codec is not None and spec.codec != "none":
        raise FedbenchError(
            f"codec '{spec.codec}' cannot apply under secure aggregation: SecAgg+ sends its own quantized, masked vectors",
            "set codec = 'none' (or drop secure aggregation)",
        )
    if spec.clients_per_round < 2:
        raise FedbenchError(
            f"secure aggregation needs at least 2 clients per round, and this cell samples {spec.clients_per_round}",
            "set clients_per_round to 2 or more",
        )


# --- client half ------------------------------------------------------------------------------------


def client_change(
    params: Params, keys: list[str], arrays: list[np.ndarray], clipping_range: float, client_id: str, round_index: int
) -> list[np.ndarray]:
    """What a client hands SecAgg+: its change ``x_i - x`` per adapter tensor (float64, in ``keys`` order).

    Refuses a change SecAgg+ would clip (beyond ``clipping_range``) or that is not finite, rather than let the
    protocol distort it silently: the client then drops out of the round, which SecAgg+ survives while enough
    neighbours remain (and halts otherwise, the server naming this reason).
    """
    changes = [params[k].detach().to("cpu", torch.float64).numpy() - a.astype(np.float64) for k, a in zip(keys, arrays)]
    largest = max((float(np.abs(c).max()) for c in changes if c.size), default=0.0)
    if not math.isfinite(largest):
        raise FedbenchError(
            f"client '{client_id}' sent NaN or Inf in round {round_index + 1} (diverged local training)",
            "try a lower learning rate",
        )
    if largest > clipping_range:
        raise FedbenchError(
            f"client '{client_id}' changed an adapter entry by {largest:g} in round {round_index + 1}, "
            f"beyond SecAgg+'s clipping range {clipping_range:g}",
            "lower the learning rate, or pass a larger clipping_range to simulate_secure",
        )
    return changes


secure_client_app = ClientApp()
"""The ClientApp of a secure-aggregation run: answers ``query`` as the plain one, trains through ``secaggplus_mod``."""


@secure_client_app.query()
def _secure_identify(msg: Message, context: Context) -> Message:
    return identify(msg, context)


@secure_client_app.train(mods=[secaggplus_mod])
def _secure_train(msg: Message, context: Context) -> Message:
    """One client's round: train from the global adapter, reply with its change as a legacy FitRes for the mod to mask."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = fitins.config
    site = site_for(context, str(config["spec"]))
    spec = site.cell.spec
    keys = json.loads(str(config["keys"]))
    arrays = parameters_to_ndarrays(fitins.parameters)
    round_index = int(config["round"])
    update = train_site(site, config, {k: torch.from_numpy(a.copy()) for k, a in zip(keys, arrays, strict=True)})
    if update.extras:
        raise FedbenchError(
            f"aggregator '{spec.aggregator}' sends extras from its client half, which secure aggregation cannot carry",
            "use an aggregator that needs only the round's mean, or drop secure aggregation",
        )
    changes = client_change(update.params, keys, arrays, float(config["clipping-range"]), site.data.client_id, round_index)
    metrics = {k: float(v) for k, v in update.metrics.items()}
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(changes), site.data.num_examples, metrics)  # type: ignore[arg-type]
    return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


# --- server half ------------------------------------------------------------------------------------


def short_reason(reason: str) -> str:
    """A failed node's error as one line: the client's own message out of the traceback Ray and Flower wrap it in."""
    marker = "Message: "
    text = reason[reason.rindex(marker) + len(marker) :] if marker in reason else reason
    text = text.strip().removesuffix(")").removesuffix("'>").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if marker not in reason and lines:
        lines = lines[-1:]
    return " ".join(lines)[:500]


class _WatchedGrid:
    """The Grid as SecAgg+ sees it, keeping each node's error replies so a halted round can say why."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.errors: dict[int, str] = {}

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        messages = list(messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                self.errors[reply.metadata.src_node_id] = short_reason(str(reply.error.reason))
        answered = {reply.metadata.src_node_id for reply in replies}
        for node in {m.metadata.dst_node_id for m in messages} - answered:
            self.errors.setdefault(node, "no reply before the timeout")
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def _legacy_strategy(round_state: dict[str, Any]) -> Any:
    """A legacy Flower strategy that only hands out the round's fit instructions and keeps what SecAgg+ sums."""
    from flwr.server.strategy import Strategy

    class _SecureStrategy(Strategy):
        def initialize_parameters(self, client_manager: Any) -> None:
            return None

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[tuple[Any, Any]]:
            return list(round_state["instructions"])

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> tuple[None, dict[str, Any]]:
            round_state["results"] = list(results)
            return None, {}

        def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> list[Any]:
            return []

        def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> tuple[None, dict[str, Any]]:
            return None, {}

        def evaluate(self, server_round: int, parameters: Any) -> None:
            return None

    return _SecureStrategy()


class SecureMean(Wrapper):
    """The server-side link of secure aggregation: the round's per-client updates, which the server never sees,
    become the one mean SecAgg+ unmasked (:attr:`mean_change`, set by the protocol half each round), merged onto
    the global adapter; validation and the aggregator then see that one update. A rejected mean rejects every
    client that contributed to it. What travelled up is SecAgg+'s masked int64 vector per client, weight included."""

    def __init__(self, inner: ServerSide) -> None:
        super().__init__(inner)
        self.mean_change: Params = {}
        """The round's example-weighted mean change x_i - x, float64, in the adapter's key order."""

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        merged_params = {}
        for k, x in global_params.items():
            change = self.mean_change[k].reshape(x.shape)
            merged_params[k] = (x.detach().to("cpu", torch.float64) + change).to(x.dtype).to(x.device)
        merged = ClientUpdate(SECURE_SUM, merged_params, sum(u.num_examples for u in updates))
        new = self.inner.aggregate(round_index, global_params, [merged], tally)
        if SECURE_SUM in tally.rejected:
            why = tally.rejected.pop(SECURE_SUM)
            tally.rejected |= {u.client_id: f"the round's secure mean was rejected: {why}" for u in updates}
        return new

    def upload_bytes(self, update: ClientUpdate) -> int:
        return 8 * (sum(t.numel() for t in self.mean_change.values()) + 1)


class SecureDriver(CellDriver):
    """The secure-aggregation engine's part of the cell: the federation from the SuperNodes, each round's fit
    through SecAgg+ (the protocol half), the round closed as on every engine."""

    engine = ENGINE

    def __init__(
        self,
        grid: Grid,
        context: Context,
        timeout: float | None,
        num_shares: int | float,
        reconstruction_threshold: int | float,
        clipping_range: float,
        attempt: str,
    ) -> None:
        from rich.console import Console

        self.grid, self.context, self.timeout, self.attempt = grid, context, timeout, attempt
        self.num_shares, self.reconstruction_threshold, self.clipping_range = num_shares, reconstruction_threshold, clipping_range
        self.log = Console(stderr=True)
        self.nodes: dict[str, int] = {}
        self.secure_mean: SecureMean | None = None

    def federation(self, cell: Cell, run_dir: RunDir, force: bool) -> dict[str, int]:
        check_secure(cell)
        clients, self.nodes = discover(self.grid, cell.spec, len(partition(cell)), self.timeout, self.log)
        return clients

    def server(self, cell: Cell, num_clients: int) -> ServerSide:
        self.secure_mean = SecureMean(server_side(cell, num_clients))
        return self.secure_mean

    def rounds(self, ctx: RoundContext) -> None:
        from flwr.server.client_manager import SimpleClientManager
        from flwr.server.compat.legacy_context import LegacyContext
        from flwr.server.server_config import ServerConfig
        from flwr.server.workflow import SecAggPlusWorkflow

        spec = ctx.cell.spec
        workflow = SecAggPlusWorkflow(
            self.num_shares,
            self.reconstruction_threshold,
            max_weight=1.0,  # set per round in _protocol: the largest sampled client's example count
            clipping_range=self.clipping_range,
            quantization_range=quantization_range(spec.clients_per_round),
            modulus_range=MODULUS_RANGE,
            timeout=self.timeout,
        )
        round_state: dict[str, Any] = {}
        legacy = LegacyContext(
            self.context,
            config=ServerConfig(num_rounds=spec.rounds - ctx.start),
            strategy=_legacy_strategy(round_state),
            client_manager=SimpleClientManager(),
        )
        for r in range(ctx.start, spec.rounds):
            rnd = ctx.open_round(r)
            updates, failures = self._protocol(ctx, rnd, workflow, legacy, round_state)
            record = close_round(ctx, rnd, updates, failures)
            loss = "n/a" if record.loss is None else f"{record.loss:.4f}"
            self.log.log(f"[bold]round {record.round}/{spec.rounds}[/] done (SecAgg+), mean loss {loss}")

    def _protocol(
        self, ctx: RoundContext, rnd: Round, workflow: Any, legacy: Any, round_state: dict[str, Any]
    ) -> tuple[list[ClientUpdate], dict[str, str]]:
        """One round of SecAgg+ over the sampled nodes' training: each contributor's example count and metrics as
        its (adapter-less) update, the unmasked mean change handed to :class:`SecureMean`, and the clients that
        failed, each with why."""
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
        from flwr.server.compat.grid_client_proxy import GridClientProxy
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
        from flwr.server.workflow.constant import Key as WorkflowKey

        spec, r, nodes = ctx.cell.spec, rnd.index, self.nodes
        keys = list(ctx.global_params)
        arrays = [ctx.global_params[k].detach().to("cpu").float().numpy() for k in keys]
        parameters = ndarrays_to_parameters(arrays)
        failures = {cid: "its SuperNode is not connected" for cid in rnd.sampled if cid not in nodes}
        instructions = []
        for cid in rnd.sampled:
            if cid in failures:
                continue
            if ctx.cell.aggregator.client_state(cid):
                raise FedbenchError(
                    f"aggregator '{spec.aggregator}' sends per-client state, which secure aggregation does not carry",
                    "use an aggregator that needs only the round's mean",
                )
            config = {
                "spec": spec_json(spec),
                "round": r,
                "client-id": cid,
                "num-clients": len(ctx.clients),
                "keys": json.dumps(keys),
                "clipping-range": self.clipping_range,
            }
            proxy = GridClientProxy(nodes[cid], self.grid, legacy.run_id)
            instructions.append((proxy, FitIns(parameters, config)))  # type: ignore[arg-type]
        # weights n_i / max n_j <= 1 over the round's clients: no overflow, the whole quantization range used, and
        # the weights sum to at least 1, so the mean's rounding error is never amplified
        workflow.max_weight = float(max(ctx.clients[cid] for cid in rnd.sampled))
        round_state.clear()
        round_state["instructions"] = instructions
        legacy.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: r + 1})
        legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(parameters, keep_input=True)
        watched = _WatchedGrid(self.grid)
        workflow(watched, legacy)
        node_to_client = {n: c for c, n in nodes.items()}
        results = round_state.get("results")
        if not results:
            detail = "; ".join(f"{node_to_client.get(n, n)}: {why}" for n, why in watched.errors.items()) or "no reason reported"
            raise FedbenchError(
                f"round {r + 1}: secure aggregation halted ({detail})",
                "read the error above, fix the cause and rerun the same command: it resumes from the last complete round",
            )
        by_client = {node_to_client[proxy.node_id]: fitres for proxy, fitres in results}
        for cid in rnd.sampled:
            if cid not in by_client and cid not in failures:
                failures[cid] = f"dropped out of secure aggregation: {watched.errors.get(nodes[cid], 'no reply')}"
        mean_change = parameters_to_ndarrays(results[0][1].parameters)  # SecAgg+ puts the same sum in every result
        assert self.secure_mean is not None  # built by server(), before any round
        self.secure_mean.mean_change = {
            k: torch.from_numpy(np.asarray(d, dtype=np.float64)) for k, d in zip(keys, mean_change, strict=True)
        }
        updates = [
            ClientUpdate(cid, {}, int(fitres.num_examples), metrics={k: float(v) for k, v in fitres.metrics.items()})
            for cid in rnd.sampled
            if (fitres := by_client.get(cid)) is not None
        ]
        return updates, failures

    def ending(self, ctx: RoundContext) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "secure_aggregation": {"protocol": "secaggplus", "clipping_range": self.clipping_range},
        }


def serve_secure(
    grid: Grid,
    context: Context,
    cell: Cell,
    runs_root: Path,
    force: bool = False,
    timeout: float | None = None,
    num_shares: int | float = 1.0,
    reconstruction_threshold: int | float = 0.5,
    clipping_range: float = CLIPPING_RANGE,
    attempt: str = "",
) -> None:
    """The ServerApp's main under secure aggregation: the cell's skeleton (:func:`rounds.run_cell`) with
    :class:`SecureDriver`."""
    driver = SecureDriver(grid, context, timeout, num_shares, reconstruction_threshold, clipping_range, attempt)
    outcome = run_cell(cell, runs_root, driver, force)
    if outcome.skipped:
        driver.log.log(f"{cell.spec.cell} is already finished in {outcome.run_dir}")


def simulate_secure(
    cell: Cell,
    runs_root: Path,
    resources: Resources | None = None,
    force: bool = False,
    timeout: float | None = None,
    num_shares: int | float = 1.0,
    reconstruction_threshold: int | float = 0.5,
    clipping_range: float = CLIPPING_RANGE,
) -> CellOutcome:
    """Run the cell in Flower's simulation engine with every round aggregated by SecAgg+ (see the module doc).

    ``num_shares`` / ``reconstruction_threshold``: SecAgg+'s, as ``SecAggPlusWorkflow`` takes them (a float is a
    fraction of the round's clients / of the shares; the defaults make every sampled client every other's neighbour
    and need half the shares to unmask). ``clipping_range``: the largest change of one adapter entry in one round a
    client may send (a client beyond it fails the round). Resumes from the newest checkpoint like the other engines.
    """
    check_secure(cell)
    root = Path(runs_root).resolve()

    def main(grid: Grid, context: Context, attempt: str) -> None:
        serve_secure(grid, context, cell, root, force, timeout, num_shares, reconstruction_threshold, clipping_range, attempt)

    return run_in_simulation(cell, runs_root, resources, force, main, secure_client_app, "Flower simulation, SecAgg+")


__all__ = [
    "CLIPPING_RANGE",
    "ENGINE",
    "SECURE_SUM",
    "TOLERANCE",
    "check_secure",
    "client_change",
    "quantization_range",
    "secure_client_app",
    "serve_secure",
    "short_reason",
    "simulate_secure",
]
