"""FedAvgM (Hsu et al. 2019): FedAvg's mean update applied through server momentum."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedbench.api import (
    Aggregator,
    ClientUpdate,
    FedbenchError,
    Params,
    export_state,
    filled_like,
    hookimpl,
    import_state,
    mean_delta,
)


class FedAvgM(Aggregator):
    """Server momentum: v <- beta v + Delta; x <- x + eta v (Hsu et al. 2019).

    Hsu, Qi and Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated
    Visual Classification", 2019:
        Delta = sum_i (n_i/n)(x_i - x)
        v <- beta v + Delta        (v_0 = 0, so round 1 steps by eta Delta)
        x <- x + eta v
    This is heavy-ball momentum, not an exponential average: the reference code's
    beta v + (1 - beta) Delta shrinks every step by (1 - beta) and is not Hsu's rule.
    Defaults: server_lr eta 1.0, momentum beta 0.9 (with beta 0 and eta 1 this is FedAvg).
    """

    name = "fedavgm"

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        if server_lr <= 0 or not (0 <= momentum < 1):
            raise FedbenchError(
                f"fedavgm: got server_lr={server_lr}, momentum={momentum}", "use server_lr > 0 and 0 <= momentum < 1"
            )
        self.server_lr = server_lr
        self.momentum = momentum
        self.v: Params = {}

    def setup(self, global_params: Params, num_clients: int | None = None) -> None:
        self.v = filled_like(global_params, 0.0)

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        keys = list(global_params)
        delta = mean_delta(global_params, updates)
        v = [self.v[k] for k in keys]
        torch._foreach_mul_(v, self.momentum)
        torch._foreach_add_(v, [delta[k] for k in keys])
        return dict(zip(keys, torch._foreach_add([global_params[k] for k in keys], v, alpha=self.server_lr)))

    def state_dict(self) -> Params:
        return export_state("v", self.v)

    def load_state_dict(self, state: Params) -> None:
        import_state("v", state, self.v)


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedAvgM]
