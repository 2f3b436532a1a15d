"""FedAvg (McMahan et al. 2017): the example-weighted mean of client adapters."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.harness.aggregation import example_weights, weighted_mean
from fedbench.harness.hookspecs import hookimpl
from fedbench.harness.interfaces import Aggregator, ClientUpdate, Params


class FedAvg(Aggregator):
    """Federated averaging: x <- sum_i (n_i / n) x_i (McMahan et al. 2017)."""

    name = "fedavg"

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        return weighted_mean([u.params for u in updates], example_weights(updates))


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedAvg]
