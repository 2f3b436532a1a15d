"""The pooled layout: every example on one client, the data of the centralized baseline."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import Example, Layout, hookimpl

POOLED = "pooled"


class Pooled(Layout):
    """Every example on one client named 'pooled' (paired or unpaired): the centralized baseline's data."""

    name = POOLED
    baseline = True

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        return {POOLED: list(examples)} if examples else {}


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [Pooled]
