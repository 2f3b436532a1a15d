"""Local-only training, the lower reference point of a federated cell: what a client gets without joining."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import Aggregator, ClientUpdate, Params, hookimpl


class LocalOnly(Aggregator):
    """Local-only baseline: each client trains its own adapter from the base model on its own data; nothing is shared."""

    name = "local"
    needs_each_update = True
    regime = "local"

    def start_params(self, client_id: str, global_params: Params) -> Params:
        # the global adapter never moves from its fresh start (LoRA B = 0: the base model itself)
        own = self.client_states.get(client_id)
        return global_params if own is None else own

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        for update in updates:
            self.client_states.put(update.client_id, update.params)
        return global_params


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [LocalOnly]
