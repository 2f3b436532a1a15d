"""The redistributed layout (the study's KTOR): unpaired examples shuffled across clients."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fedbench.api import Example, Layout, hookimpl


class Redistributed(Layout):
    """Unpaired examples shuffled across clients (seed 2023), each client keeping its example count (KTOR)."""

    name = "redistributed"
    suffix = "R"
    accepts = frozenset({"unpaired"})
    refusal = (
        "redistribution shuffles single responses across clients, "
        "and a paired objective (DPO, IPO, SimPO, ...) needs both responses of a pair on the same client"
    )

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        counts: dict[str, int] = {}
        for ex in examples:
            counts[ex.client_id] = counts.get(ex.client_id, 0) + 1
        pool = list(examples)
        random.Random(seed).shuffle(pool)
        clients: dict[str, list[Example]] = {}
        start = 0
        for client_id, count in counts.items():  # first-appearance order: stable for a given data file
            clients[client_id] = pool[start : start + count]
            start += count
        return clients


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [Redistributed]
