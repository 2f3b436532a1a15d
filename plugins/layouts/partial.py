"""The partial layout: a share of each client's pairs stays intact on it, the rest is split and redistributed.

It makes pair availability a measured variable between the study's two layouts: ``paired_fraction = 1`` is the
original layout's data, ``0`` the redistributed one's. Which pairs stay intact is drawn per client with the
partition seed, nested in p (the pairs kept at 0.25 are among those kept at 0.5), so a sweep over p changes
one thing at a time. The split pairs' halves are shuffled across clients exactly as the redistributed layout
shuffles everything (its own code, on the split halves only), each client getting back as many as it gave.

A paired objective trains on the intact pairs only (a split pair is two single responses it cannot use); an
unpaired one trains on everything: the intact pairs' halves on their own client, plus its share of the shuffle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from fedbench.api import Example, FedbenchError, LabeledExample, Layout, Method, hookimpl, pair_of

from .redistributed import Redistributed


class Partial(Layout):
    """A paired_fraction of each client's pairs kept intact, the rest split into single responses and redistributed."""

    name = "partial"
    suffix = "P"
    in_all = False

    def __init__(self, paired_fraction: float = 0.5) -> None:
        """``paired_fraction``: the share of each client's pairs kept intact (rounded per client), in [0, 1]."""
        if isinstance(paired_fraction, bool) or not isinstance(paired_fraction, (int, float)) or not 0 <= paired_fraction <= 1:
            raise FedbenchError(
                f"layout partial: paired_fraction {paired_fraction!r} is not a share in [0, 1]",
                "set layout_params.paired_fraction between 0 (the redistributed layout's data) and 1 (the original's)",
            )
        self.paired_fraction = float(paired_fraction)

    def check(self, method: Method) -> None:
        """Refuse a paired objective when no pair stays intact (its data would be empty)."""
        if method.data_form == "paired" and self.paired_fraction == 0:
            raise FedbenchError(
                f"method '{method.name}' trains on pairs, and layout 'partial' with paired_fraction 0 keeps none intact",
                "set layout_params.paired_fraction above 0, or train an unpaired objective (kto, apo-zero-unpaired)",
            )

    def kept(self, examples: Sequence[Example], seed: int) -> set[str]:
        """Ids of the pairs kept intact: per client, the first round(p x n) of its n pairs in a shuffle seeded by
        the partition seed and the client (so the choice at a smaller p is a prefix of the one at a larger p)."""
        by_client: dict[str, dict[str, None]] = {}
        for ex in examples:
            by_client.setdefault(ex.client_id, {})[pair_of(ex)] = None
        kept: set[str] = set()
        for client_id, ids in by_client.items():
            order = sorted(ids)
            random.Random(f"{seed}:{client_id}").shuffle(order)
            kept.update(order[: math.floor(self.paired_fraction * len(order) + 0.5)])
        return kept

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        kept = self.kept(examples, seed)
        # a split pair's halves are shuffled; a pair (a paired objective's example) that is not kept is dropped
        split = [ex for ex in examples if pair_of(ex) not in kept and isinstance(ex, LabeledExample)]
        clients: dict[str, list[Example]] = {}
        for ex in examples:  # clients in first-appearance order, as the other layouts keep them
            clients.setdefault(ex.client_id, [])
        for ex in examples:
            if pair_of(ex) in kept:
                clients[ex.client_id].append(ex)
        for client_id, share in Redistributed().partition(split, seed).items():
            clients[client_id].extend(share)
        return {cid: exs for cid, exs in clients.items() if exs}


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [Partial]
