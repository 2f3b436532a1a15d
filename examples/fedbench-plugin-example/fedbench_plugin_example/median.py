"""The ``median`` aggregator: the coordinate-wise median of the client adapters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedbench.api import Aggregator, ClientUpdate, Params, hookimpl

FEDBENCH_API = 2


class Median(Aggregator):
    """Coordinate-wise median of client adapters (Yin et al. 2018): robust to a minority of outlying clients."""

    name = "median"

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        """Every coordinate takes the median of the clients' values; example counts are ignored on purpose.

        Weighting by n_i would let one client claiming many examples drag the result, which is what a
        robust rule is for. With an even number of clients torch returns the lower of the two middle
        values, so every coordinate is one that some client actually sent.
        """
        return {
            key: torch.stack([u.params[key].to(ref) for u in updates]).median(dim=0).values for key, ref in global_params.items()
        }


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [Median]
