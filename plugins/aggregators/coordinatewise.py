"""Coordinate-wise median and trimmed mean (Yin et al. 2018): each coordinate of the adapter from the clients' values alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fedbench.api import Aggregator, ClientUpdate, FedbenchError, Params, hookimpl, stacked


class Median(Aggregator):
    """Coordinate-wise median of the client adapters (Yin et al. 2018): a minority of outlying clients cannot drag it.

    Yin, Chen, Ramchandran and Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
    ICML 2018, Definition 1: every coordinate k of the new adapter is med{x_i[k] : i in the round}, the usual
    one-dimensional median (the mean of the two middle values when n is even). Example counts do not weigh in:
    a client could claim any count. Robust while fewer than half of a round's clients are Byzantine.
    """

    name = "median"
    opt_in = True
    needs_each_update = True

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        n = len(updates)
        out = {}
        for key, values in stacked(global_params, updates).items():
            ordered = values.sort(dim=0).values
            out[key] = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        return out


class TrimmedMean(Aggregator):
    """Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the `trim` share of highest and lowest values.

    Yin et al. 2018, Definition 2: for beta in [0, 1/2), trmean_beta drops, in every coordinate, the beta n largest
    and the beta n smallest of the clients' values and averages the n - 2 beta n left; here beta n is rounded down,
    k = floor(beta n). It tolerates up to a beta share of Byzantine clients, so a round where k = 0 (too few
    clients for ``trim``) is plain averaging and is refused. Example counts do not weigh in, as in the paper.
    """

    name = "trimmed-mean"
    opt_in = True
    needs_each_update = True

    def __init__(self, trim: float = 0.2) -> None:
        if not 0 < trim < 0.5:
            raise FedbenchError(f"trimmed-mean: got trim={trim}", "set aggregator_params.trim in (0, 0.5), e.g. 0.2")
        self.trim = trim

    def trimmed(self, n: int) -> int:
        """k = floor(beta n), the values dropped at each end of a coordinate among n."""
        return math.floor(self.trim * n + 1e-9)  # 0.2 * 5 is 1, not 0.9999

    def check(self, updates: int) -> None:
        if self.trimmed(updates) < 1:
            raise FedbenchError(
                f"trimmed-mean with trim = {self.trim} drops floor({self.trim} x {updates}) = 0 values at each end of "
                f"{updates} updates: that is the plain mean, with no robustness",
                f"raise clients_per_round (and clients.min_reports) to at least {math.ceil(1 / self.trim - 1e-9)}, or "
                f"aggregator_params.trim to at least {1 / updates:.3g} (below 0.5)",
            )

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        n, k = len(updates), self.trimmed(len(updates))
        return {key: values.sort(dim=0).values[k : n - k].mean(dim=0) for key, values in stacked(global_params, updates).items()}


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [Median, TrimmedMean]
