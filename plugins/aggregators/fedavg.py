"""FedAvg (McMahan et al. 2017): the example-weighted mean of client adapters."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import (
    Aggregator,
    ClientUpdate,
    Params,
    example_weights,
    hookimpl,
    weighted_mean,
)


class FedAvg(Aggregator):
    """Federated averaging: x <- sum_i (n_i / n) x_i (McMahan et al. 2017)."""

    name = "fedavg"

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        return weighted_mean([u.params for u in updates], example_weights(updates))


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedAvg]
