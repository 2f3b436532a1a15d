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

The package holds one module per role, each importable on its own, and re-exports their public
names here, so ``fedbench.harness.flower:server_app`` / ``:client_app`` (the component paths of a
generated Flower app) and ``fedbench.harness.flower.simulate`` keep working:

- :mod:`.wire`: the wire format (adapter and state as ``ArrayRecord``, the spec as JSON);
- :mod:`.server`: :class:`FedbenchStrategy`, :func:`discover`, :func:`serve` and ``server_app``;
- :mod:`.client`: :func:`site_examples`, ``client_app`` and the per-process caches;
- :mod:`.launch`: :func:`simulate`, :func:`deploy` and the Flower app they write.

Module-level state lives in the submodule that uses it (the client caches in :mod:`.client`,
``POLL_SECONDS`` in :mod:`.server`): patch it there, not on this package.
"""

from __future__ import annotations

from fedbench.harness.flower.client import client_app, site_examples
from fedbench.harness.flower.launch import FLWR_APP_TOML, Resources, deploy, flwr_command, simulate, write_app
from fedbench.harness.flower.server import POLL_SECONDS, ROSTER, FedbenchStrategy, discover, serve, server_app
from fedbench.harness.flower.wire import from_record, spec_json, to_record

__all__ = [
    "FLWR_APP_TOML",
    "POLL_SECONDS",
    "ROSTER",
    "FedbenchStrategy",
    "Resources",
    "client_app",
    "deploy",
    "discover",
    "flwr_command",
    "from_record",
    "serve",
    "server_app",
    "simulate",
    "site_examples",
    "spec_json",
    "to_record",
    "write_app",
]
