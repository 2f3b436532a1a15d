"""Centralized training, the upper reference point of a federated cell: the same data pooled on one machine."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import Aggregator, ClientUpdate, FedbenchError, Params, hookimpl


class Centralized(Aggregator):
    """Centralized baseline: every example pooled on one client, trained for the federated cell's total steps."""

    name = "centralized"
    regime = "centralized"

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        if len(updates) != 1:
            raise FedbenchError(
                f"the centralized baseline trains one pooled client per round, and got {len(updates)} updates",
                "run it with the pooled layout and clients_per_round = 1 (`fedbench run --agg centralized` sets both)",
            )
        return dict(updates[0].params)  # one client holding all the data: its adapter is the model


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [Centralized]
