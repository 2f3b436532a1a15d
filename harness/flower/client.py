"""The client half of the Flower engine: the ClientApp every SuperNode (simulated or real) runs.

A SuperNode's ``--node-config`` says which client it is: ``data-file`` (a site's own examples,
deployment) or ``partition-id`` (one of the cell's partitions, as Flower's simulation engine sets
it); :func:`site_examples` reads it. The ClientApp answers the server's ``query`` with its client id
and example count, and on ``train`` trains that client for one round with the method plugin
(:func:`federation.train_one`, as the local engine does), replying with the new adapter, the
aggregator's client extras and the metrics.

The per-process caches (``_SITES``, ``_PARTITIONS``, ``_REFERENCES``) live here and only here.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedbench.harness.data import Example, PreferencePair, read_examples
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import Cell, ClientData, build_cell, checkpointing_for, partition, train_one
from fedbench.harness.flower.wire import encoded_to_records, from_record, to_record
from fedbench.harness.interfaces import ClientUpdate, Params
from fedbench.harness.models import attach_lora, load_base
from fedbench.harness.refcache import ReferenceCache
from fedbench.harness.registry import default_registry
from fedbench.harness.rounds import Learner
from fedbench.harness.spec import spec_from_dict
from fedbench.harness.training import to_dataset


@dataclass
class Site:
    """One SuperNode's client for one spec: the cell and the client's training set, loaded once per process."""

    cell: Cell
    data: ClientData


# Per-process caches. A Ray simulation actor serves many virtual nodes and many rounds, so these
# save reloading data; a deployed SuperNode starts a fresh ClientApp process per message (Flower
# 1.42), where they hold one entry and each round reloads model and data.
_SITES: dict[tuple[str, str], Site] = {}
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
            examples = cell.method.examples([e for e in examples if isinstance(e, PreferencePair)])
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
        "start it with --node-config 'data-file=\"/path/client.jsonl\"' (see fedbench partition) "
        "or 'partition-id=0 num-partitions=N'",
    )


def site_for(context: Context, spec_text: str) -> Site:
    """This node's site for the spec the server sent (as JSON), built once per process and spec."""
    spec = spec_from_dict(json.loads(spec_text))
    key = (spec.hash, json.dumps(dict(context.node_config), sort_keys=True, default=str))
    if key not in _SITES:
        from fedbench.harness.study import quiet_libraries

        quiet_libraries()
        cell = build_cell(spec, default_registry())
        client_id, examples = site_examples(cell, context.node_config)
        dataset = to_dataset(cell.method.records(examples, spec.template))
        _SITES[key] = Site(cell, ClientData(client_id, dataset, len(examples)))
    return _SITES[key]


client_app = ClientApp()
"""The ClientApp: every SuperNode (simulated or real) runs it."""


@client_app.query()
def identify(msg: Message, context: Context) -> Message:
    """The answer to the server's ``query``: which client this node holds, and its number of examples."""
    data = site_for(context, str(msg.content["config"]["spec"])).data
    answer = ConfigRecord({"client-id": data.client_id, "num-examples": data.num_examples})
    return Message(RecordDict({"site": answer}), reply_to=msg)


def train_site(site: Site, config: Mapping[str, Any], global_params: Params, state: Params | None = None) -> ClientUpdate:
    """This node's client trains one round from ``global_params`` (the client half of every Flower path: plain and
    secure aggregation), after checking the server addressed the right client. ``config``: the round's
    ``client-id``, ``round`` and ``num-clients``; ``state``: what the aggregator's client half needs (SCAFFOLD's c, c_i)."""
    client_id = site.data.client_id
    sent = str(config["client-id"])
    if sent != client_id:
        raise FedbenchError(f"the server sent client '{sent}' to the node holding '{client_id}'", "restart the run")
    spec, cell = site.cell.spec, site.cell
    model, tokenizer = load_base(spec.model, spec.dtype)
    peft_model = attach_lora(model, spec.lora)
    num_clients = int(config["num-clients"])  # ints by the server's construction
    # a fresh instance per message: one process may serve several clients, and no state may leak between them
    aggregator = default_registry().create("aggregator", spec.aggregator, dict(spec.aggregator_params))
    aggregator.setup(global_params, num_clients)
    if state:
        aggregator.load_state_dict(state)
    if spec.hash not in _REFERENCES:
        _REFERENCES[spec.hash] = ReferenceCache.for_run(None, cell.method, spec)
    with tempfile.TemporaryDirectory(prefix="fedbench-client-") as workdir:
        checkpointing = checkpointing_for(cell, model).value
        learner = Learner(cell, peft_model, tokenizer, num_clients, Path(workdir), _REFERENCES[spec.hash], checkpointing)
        hook = aggregator.client_hook(client_id, global_params)
        return train_one(learner, site.data, int(config["round"]), global_params, hook)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records["config"]
    site = site_for(context, str(config["spec"]))
    state = from_record(msg.content.array_records["client-state"])
    update = train_site(site, config, from_record(msg.content.array_records["arrays"]), state)
    content = RecordDict(
        {"arrays": to_record(update.params), "extras": to_record(update.extras), "metrics": MetricRecord(dict(update.metrics))}
    )
    if update.encoded is not None:  # the codec's arrays travel instead of the adapter; the server decodes them
        content["arrays"], content["encoding"] = encoded_to_records(update.encoded)
    return Message(content, reply_to=msg)
