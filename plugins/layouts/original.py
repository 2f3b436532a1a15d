"""The original layout: every example stays on the client its data came from."""

from __future__ import annotations

from collections.abc import Sequence

from fedbench.api import Example, Layout, hookimpl


class Original(Layout):
    """Each client keeps its own data (for KTO both halves of a pair stay on the pair's client: KTOO)."""

    name = "original"
    suffix = "O"

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        clients: dict[str, list[Example]] = {}
        for ex in examples:
            clients.setdefault(ex.client_id, []).append(ex)
        return clients


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [Original]
