"""Krum and Multi-Krum (Blanchard et al. 2017): keep the updates closest to their nearest neighbours."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedbench.api import Aggregator, ClientUpdate, FedbenchError, Params, flat_deltas, hookimpl, weighted_mean


class Krum(Aggregator):
    """Krum (Blanchard et al. 2017): the one client adapter whose n - f - 2 nearest neighbours are closest to it.

    Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
    Descent", NeurIPS 2017: with n updates of which at most f (``byzantine``) are Byzantine, each update V_i scores
    s(i) = sum of ||V_i - V_j||^2 over its n - f - 2 closest other updates; Krum keeps the lowest-scoring one
    (ties: the first in the round's order), Multi-Krum the m lowest and averages them (m = n - f by default).
    The guarantee needs n > 2f + 2, so a round with fewer updates is refused. Example counts do not weigh in.
    """

    name = "krum"
    opt_in = True
    needs_each_update = True

    def __init__(self, byzantine: int = 1) -> None:
        if byzantine < 0:
            raise FedbenchError(f"{self.name}: got byzantine={byzantine}", "set aggregator_params.byzantine to 0 or more")
        self.byzantine = byzantine

    def selected(self, n: int) -> int:
        """How many of n updates are kept and averaged (Krum: one)."""
        return 1

    def check(self, updates: int) -> None:
        f = self.byzantine
        if updates <= 2 * f + 2:
            raise FedbenchError(
                f"{self.name} with byzantine = f = {f} needs n > 2f + 2 = {2 * f + 2} updates in a round, got {updates}",
                f"raise clients_per_round (and clients.min_reports) to at least {2 * f + 3}"
                + (f", or lower aggregator_params.byzantine to {(updates - 3) // 2}" if updates >= 3 else ""),
            )

    def scores(self, global_params: Params, updates: Sequence[ClientUpdate]) -> torch.Tensor:
        """s(i): the summed squared distances from update i to its n - f - 2 nearest other updates."""
        deltas = flat_deltas(global_params, updates)
        distances = torch.cdist(deltas, deltas).square()
        distances.fill_diagonal_(float("inf"))  # an update is not its own neighbour
        nearest = len(updates) - self.byzantine - 2
        return distances.sort(dim=1).values[:, :nearest].sum(dim=1)

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        m = self.selected(len(updates))
        keep = torch.sort(self.scores(global_params, updates), stable=True).indices[:m].tolist()
        chosen = [updates[i].params for i in sorted(keep)]
        mean = weighted_mean(chosen, [1 / m] * m)
        return {k: mean[k].to(ref) for k, ref in global_params.items()}


class MultiKrum(Krum):
    """Multi-Krum (Blanchard et al. 2017): the mean of the m client adapters with the lowest Krum scores."""

    name = "multi-krum"

    def __init__(self, byzantine: int = 1, m: int | None = None) -> None:
        super().__init__(byzantine)
        if m is not None and m < 1:
            raise FedbenchError(f"multi-krum: got m={m}", "set aggregator_params.m to 1 or more, or leave it out for n - f")
        self.m = m

    def selected(self, n: int) -> int:
        return n - self.byzantine if self.m is None else self.m

    def check(self, updates: int) -> None:
        super().check(updates)
        if self.m is not None and self.m > updates - self.byzantine:
            raise FedbenchError(
                f"multi-krum keeps m = {self.m} updates, more than n - f = {updates} - {self.byzantine} of a round's "
                f"{updates}: a Byzantine update would always be among them",
                f"set aggregator_params.m to at most {updates - self.byzantine}, or leave it out for n - f",
            )


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [Krum, MultiKrum]
