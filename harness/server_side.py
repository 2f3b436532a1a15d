"""The server side of a round: a chain of links around the cell's aggregator, the way Flower wraps a strategy.

Flower adds client-level DP to any strategy by wrapping it (``DifferentialPrivacyServerSideFixedClipping``:
clip the replies, call the wrapped strategy, add noise). fedbench builds every server-side feature the same
way, so :func:`~fedbench.harness.rounds.close_round` is one call into the chain whatever the cell runs with::

    Decode (codec) -> Validate -> Quorum ([clients]) -> PrivateMean (client-level DP) -> Aggregate (the aggregator plugin)
    SecureMean (flower/secure.py) -> Validate -> Aggregate

Each link does one thing to the round's updates and hands the rest to the link it wraps; what the round's
record needs from it (a rejection, the privacy spent) goes into the round's :class:`Tally`. Under secure
aggregation the server never sees an update, only the protocol's mean, so :class:`SecureMean` stands in for
the updates before validation, which then checks that one mean. A baseline (harness/baselines.py) sends
nothing, which :class:`NothingTravels` says to the traffic count. A new server-side feature is a new link
(a :class:`Wrapper`), not a new branch in the round.
"""

from __future__ import annotations

import dataclasses
import statistics
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fedbench.harness.aggregation import params_nbytes, validate_updates
from fedbench.harness.codec import decode_update
from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Aggregator, ClientUpdate, Codec, Params
from fedbench.harness.spec import RunSpec

if TYPE_CHECKING:
    from fedbench.harness.federation import Cell
    from fedbench.harness.privacy import PrivacySettings


@dataclass
class Tally:
    """What the links of the chain tell the round's record (``RoundRecord``) besides the new adapter."""

    rejected: dict[str, str] = field(default_factory=dict)
    """Each client whose update a link refused -> why."""
    privacy: dict[str, float] = field(default_factory=dict)
    """The round's privacy record (:class:`PrivateMean`); empty without client-level DP."""
    skipped: str = ""
    """Why the round left the global adapter as it was (too few updates for the rule); empty when it aggregated."""


class ServerSide(ABC):
    """One link of the chain. ``aggregate`` turns the round's updates into the next global adapter; the traffic
    counts say what the round cost on the wire. The defaults count tensors as they travelled."""

    @abstractmethod
    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        """The next global adapter from the current one and the round's updates (``round_index`` 0-based)."""

    def upload_bytes(self, update: ClientUpdate) -> int:
        """Bytes one client sent back: its codec's encoding when encoded, else its adapter, plus its extras."""
        sent = update.encoded.nbytes if update.encoded is not None else params_nbytes(update.params)
        return sent + params_nbytes(update.extras)

    def download_bytes(self, global_params: Params, sampled: int) -> int:
        """Bytes sent down to the round's ``sampled`` clients: the global adapter to each."""
        return params_nbytes(global_params) * sampled


class Aggregate(ServerSide):
    """The innermost link: the aggregator plugin's rule. Nothing to do in a round where no update is left; a round
    with fewer updates than the rule's guarantee needs (``Aggregator.check``) is skipped, saying why."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        self.aggregator.client_states.at_round(round_index + 1)  # per-client state the round changes belongs to it
        if not updates:
            return global_params
        try:
            self.aggregator.check(len(updates))
        except FedbenchError as err:  # fewer updates arrived than the rule's guarantee needs
            tally.skipped = err.problem
            return global_params
        return self.aggregator.aggregate(global_params, updates)


class Wrapper(ServerSide):
    """A link around another: whatever it does not override, the link it wraps does."""

    def __init__(self, inner: ServerSide) -> None:
        self.inner = inner

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        return self.inner.aggregate(round_index, global_params, updates, tally)

    def upload_bytes(self, update: ClientUpdate) -> int:
        return self.inner.upload_bytes(update)

    def download_bytes(self, global_params: Params, sampled: int) -> int:
        return self.inner.download_bytes(global_params, sampled)


class Decode(Wrapper):
    """An update that arrived as its codec's encoding alone (Flower's wire) becomes ``x + decode(encoding)``.

    An in-process client (the local engine) has decoded its own update already, as its aggregator's client
    half needs the decoded adapter; its update arrives with both, and is left as it is."""

    def __init__(self, inner: ServerSide, codec: Codec) -> None:
        super().__init__(inner)
        self.codec = codec

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        decoded = [
            dataclasses.replace(u, params=decode_update(self.codec, global_params, u.encoded))
            if u.encoded is not None and not u.params
            else u
            for u in updates
        ]
        return self.inner.aggregate(round_index, global_params, decoded, tally)


class Quorum(Wrapper):
    """A round with fewer valid reports than ``clients.min_reports`` (harness/availability.py, at least 1) keeps the
    global adapter, and its record says why."""

    def __init__(self, inner: ServerSide, min_reports: int) -> None:
        super().__init__(inner)
        self.min_reports = min_reports

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        if len(updates) < self.min_reports:
            tally.skipped = f"{len(updates)} reports, fewer than clients.min_reports = {self.min_reports}"
            return global_params
        return self.inner.aggregate(round_index, global_params, updates, tally)


class Validate(Wrapper):
    """Refuses an update with wrong keys, shapes or dtypes, or NaN/Inf (harness/aggregation.py), naming why."""

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        accepted, rejections = validate_updates(global_params, updates)
        tally.rejected |= {x.client_id: x.reason for x in rejections}
        return self.inner.aggregate(round_index, global_params, accepted, tally)


DP_MEAN = "dp-mean"
"""The client id of the one update an aggregator receives under client-level DP: the round's noised mean."""


def privacy_settings(spec: RunSpec, num_clients: int) -> PrivacySettings:
    """The run's DP settings, a ``target_epsilon`` turned into its noise multiplier for this federation's sampling rate."""
    from fedbench.harness.privacy import run_privacy

    settings = run_privacy(tuple(sorted(dict(spec.privacy).items())), spec.clients_per_round / num_clients, spec.rounds)
    if settings is None:
        raise ValueError("the spec has no [privacy] settings")
    return settings


class PrivateMean(Wrapper):
    """Client-level DP (DP-FedAvg, harness/privacy.py) ahead of the aggregator's rule: the accepted updates become
    one, their clipped mean plus seeded Gaussian noise, which the aggregator then treats like any round's updates
    (so FedAvgM, FedAdam and the rest post-process a private mean). The mean weighs each clipped update 1/m, m the
    round's sampled clients. Built before any round trains, so a target epsilon out of reach is refused then."""

    def __init__(self, inner: ServerSide, spec: RunSpec, num_clients: int) -> None:
        super().__init__(inner)
        self.spec = spec
        self.rate = spec.clients_per_round / num_clients
        self.settings = privacy_settings(spec, num_clients)

    def aggregate(self, round_index: int, global_params: Params, updates: Sequence[ClientUpdate], tally: Tally) -> Params:
        if not updates:
            return self.inner.aggregate(round_index, global_params, updates, tally)
        from fedbench.harness.privacy import dp_mean, epsilon_spent

        spec, settings = self.spec, self.settings
        m = max(spec.clients_per_round, len(updates))
        noised, norms = dp_mean(global_params, [u.params for u in updates], settings, spec.seed, round_index, m)
        tally.privacy = {
            "epsilon": epsilon_spent(settings.noise_multiplier, self.rate, round_index + 1, settings.delta),
            "delta": settings.delta,
            "noise_multiplier": settings.noise_multiplier,
            "clip_norm": settings.clip_norm,
            "clipped": float(sum(n > settings.clip_norm for n in norms)),
            "median_norm": statistics.median(norms),
        }
        merged = ClientUpdate(DP_MEAN, noised, sum(u.num_examples for u in updates))
        return self.inner.aggregate(round_index, global_params, [merged], tally)


class NothingTravels(Wrapper):
    """A baseline's round (harness/baselines.py): its data sits where it trains, so nothing goes down or up."""

    def upload_bytes(self, update: ClientUpdate) -> int:
        return 0

    def download_bytes(self, global_params: Params, sampled: int) -> int:
        return 0


def check_server_side(spec: RunSpec, aggregator: Aggregator) -> None:
    """Refuse, before training, an aggregator the chain cannot feed: under client-level DP it receives only the round's
    noised mean; a robust rule refuses a round of ``clients_per_round`` updates its guarantee cannot hold for."""
    if spec.privacy and aggregator.needs_each_update:
        raise FedbenchError(
            f"aggregator '{spec.aggregator}' reads each client's update, but client-level DP hands the aggregator only the "
            "round's noised mean",
            "use an aggregator that needs only the mean (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad), "
            "or drop [privacy]",
        )
    if aggregator.regime == "federated":
        aggregator.check(spec.clients_per_round)


def server_side(cell: Cell, num_clients: int) -> ServerSide:
    """The cell's chain, innermost first: the aggregator, DP's private mean, the quorum of ``[clients]``, validation,
    the codec's decoding."""
    chain: ServerSide = Aggregate(cell.aggregator)
    if cell.spec.privacy:
        chain = PrivateMean(chain, cell.spec, num_clients)
    if cell.spec.clients:
        chain = Quorum(chain, dict(cell.spec.clients).get("min_reports", 1))
    chain = Validate(chain)
    if cell.codec is not None:
        chain = Decode(chain, cell.codec)
    if cell.aggregator.regime != "federated":
        chain = NothingTravels(chain)
    return chain
