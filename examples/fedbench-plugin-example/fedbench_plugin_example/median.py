"""The ``lower-median`` aggregator: the coordinate-wise lower median of the client adapters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedbench.api import Aggregator, ClientUpdate, Params, hookimpl

FEDBENCH_API = 2


class LowerMedian(Aggregator):
    """Coordinate-wise lower median of client adapters: every coordinate is a value some client sent.

    fedbench's built-in ``median`` is Yin et al.'s (2018), the mean of the two middle values for an even count;
    this one keeps the lower of them, for a rule whose output never leaves the clients' values.
    """

    name = "lower-median"

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
    return [LowerMedian]
