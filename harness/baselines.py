"""The two baselines every federated cell is read against: centralized training and local-only training.

* **Centralized** (``--agg centralized``, layout ``pooled``): the same training examples pooled on one
  client, the upper reference point federation tries to approach without sharing data. It is matched
  to the federated cells it stands beside on optimizer steps and examples seen: the same rounds,
  learning-rate schedule, batch size and seed, with one client per round doing ``clients_per_round x
  local_steps`` steps, so both train ``rounds x clients_per_round x local_steps`` steps of ``batch_size``
  examples. Under ``local_steps = "dynamic"`` both already train about three epochs over their data in
  expectation (``RunSpec.steps_for``), so the pooled client keeps ``dynamic``. KTOO and KTOR pool to
  the same examples, so one centralized KTO cell stands beside both.
* **Local only** (``--agg local``): each client trains its own adapter from the base model on its own
  data and nothing is aggregated. It follows the federated cell's schedule exactly (same seed, so the
  same clients in the same rounds, with the same steps and learning rates), continuing from its own
  adapter each time it is sampled: every client spends the compute it would spend in the federation,
  and the cell's total equals the federated cell's. A client never sampled trains zero steps and keeps
  the base model. Each client's adapter is scored on that client's own held-out pairs; the generation
  benchmarks, which cannot afford hundreds of adapters, answer with the largest client's adapter.

Both are ordinary cells (hashed, resumable, locked) of two built-in aggregator plugins whose ``regime``
says which baseline they are; ``--agg all`` leaves them out unless ``--baselines`` is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fedbench.harness.checkpoint import save_peft_adapter
from fedbench.harness.errors import FedbenchError
from fedbench.harness.models import load_adapter
from fedbench.harness.spec import DYNAMIC, RunSpec

if TYPE_CHECKING:
    from peft import PeftModel

    from fedbench.harness.interfaces import Aggregator, Params

POOLED_LAYOUT = "pooled"
CLIENT_ADAPTERS = "client_adapters"
"""A local-only cell's per-client adapters, one PEFT directory per trained client, beside ``adapter/``."""


def is_baseline(plugin: type) -> bool:
    """A plugin only the baselines use (an aggregator whose regime is not federated, the pooled layout)."""
    return getattr(plugin, "regime", "federated") != "federated" or bool(getattr(plugin, "baseline", False))


def centralized_spec(spec: RunSpec) -> RunSpec:
    """The centralized twin of a federated spec: pooled data, one client per round, the same total steps (module docstring)."""
    steps = spec.local_steps if spec.local_steps == DYNAMIC else spec.clients_per_round * int(spec.local_steps)
    return dataclasses.replace(spec, layout=POOLED_LAYOUT, clients_per_round=1, local_steps=steps)


def check_baseline(spec: RunSpec, aggregator: Aggregator) -> None:
    """Refuse a centralized cell that is not one pooled client per round, naming the rule."""
    if aggregator.regime != "centralized":
        return
    if spec.clients_per_round != 1 or spec.layout != POOLED_LAYOUT:
        raise FedbenchError(
            f"the centralized baseline trains one pooled client per round, but this cell has layout '{spec.layout}' and "
            f"clients_per_round = {spec.clients_per_round}",
            "run it through `fedbench run --agg centralized` (or Study), which sets layout = 'pooled', clients_per_round = 1 "
            "and local_steps = clients_per_round x local_steps of the federated cells; or set those three yourself",
        )


def client_adapter_dir(run_dir: Path, client_id: str) -> Path:
    """Where a local-only cell keeps one client's adapter (the id quoted, so any client name is a safe folder)."""
    return Path(run_dir) / CLIENT_ADAPTERS / quote(client_id, safe="")


def local_adapters(aggregator: Aggregator, sizes: Mapping[str, int]) -> tuple[list[str], str, list[str]]:
    """A local-only cell's outcome: the clients that trained (their adapters are in the aggregator's client states),
    the client whose adapter answers the generation benchmarks (the one with the most training examples among those
    trained), and the clients never sampled."""
    trained = sorted(aggregator.client_states.clients())
    never = sorted(set(sizes) - set(trained))
    largest = max(trained or sizes, key=lambda cid: (sizes.get(cid, 0), cid))
    return trained, largest, never


def keep_local_adapters(
    aggregator: Aggregator, run_path: Path, peft_model: PeftModel, sizes: Mapping[str, int], fresh: Params
) -> tuple[Params, dict[str, Any]]:
    """A local-only cell's ending: every trained client's adapter saved for per-client scoring, and the largest
    client's returned as the cell's adapter (what the generation benchmarks answer with), with the summary
    ``result.json`` records (``local_only``). ``fresh``: the adapter of a client that never trained."""
    trained, largest, never = local_adapters(aggregator, sizes)
    for cid in trained:  # one client's adapter in memory at a time, however many clients trained
        load_adapter(peft_model, aggregator.client_states.get(cid) or fresh)
        save_peft_adapter(peft_model, client_adapter_dir(run_path, cid))
    summary = {"clients_trained": len(trained), "clients_never_sampled": never, "generation_adapter_client": largest}
    return aggregator.client_states.get(largest) or fresh, summary


def baseline_spec(spec: RunSpec, regime: str) -> RunSpec:
    """A baseline cell's spec from the federated settings it stands beside: the centralized twin (pooled, step-matched),
    and for both baselines none of the federated cells' privacy, codec or aggregator settings, which concern what
    travels between clients and server (a baseline sends nothing) or another aggregator's rule."""
    if regime == "federated":
        return spec
    plain = dataclasses.replace(spec, privacy=(), codec="none", codec_params=(), aggregator_params=())
    return centralized_spec(plain) if regime == "centralized" else plain
