"""Norm-bounded averaging (Sun et al. 2019): every update clipped to an L2 norm before the mean."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import Aggregator, ClientUpdate, FedbenchError, Params, flat_deltas, hookimpl, scaled_sum


class NormBound(Aggregator):
    """Norm bounding (Sun et al. 2019): each update x_i - x scaled to an L2 norm of at most `max_norm`, then averaged.

    Sun, Kairouz, Suresh and McMahan, "Can You Really Backdoor Federated Learning?", 2019, Section 3:
        Delta_i <- Delta_i / max(1, ||Delta_i||_2 / M)          (M = ``max_norm``, over the whole adapter)
        x <- x + (1/n) sum_i Delta_i                             (the paper's FedAvg step: the round's mean)
    A boosted (scaled) update then moves the adapter no further than an honest one of norm M. The paper adds
    Gaussian noise for its "weak DP" variant: that is fedavg with [privacy] (harness/privacy.py), so this rule
    reads each update and is refused under [privacy].
    """

    name = "norm-bound"
    opt_in = True
    needs_each_update = True

    def __init__(self, max_norm: float | None = None) -> None:
        if max_norm is None or not max_norm > 0:
            raise FedbenchError(
                f"norm-bound needs a positive max_norm, got {max_norm}",
                "set aggregator_params.max_norm to an honest update's L2 norm (e.g. the median_norm a [privacy] run records)",
            )
        self.max_norm = max_norm

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        norms = flat_deltas(global_params, updates).norm(dim=1).tolist()
        return scaled_sum(global_params, updates, [1 / len(updates) / max(1.0, norm / self.max_norm) for norm in norms])


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [NormBound]
