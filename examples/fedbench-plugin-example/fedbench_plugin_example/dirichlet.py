"""The ``dirichlet`` layout: label skew, the standard non-IID partition of federated learning benchmarks."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fedbench.api import Example, FedbenchError, Layout, hookimpl

FEDBENCH_API = 2


class Dirichlet(Layout):
    """Label skew: each source client's examples are split over the clients in Dirichlet(alpha) proportions (seeded)."""

    name = "dirichlet"
    accepts = frozenset({"paired", "unpaired"})

    def __init__(self, alpha: float = 0.5) -> None:
        """``alpha`` is the concentration: small (0.1) gives each client a few sources, large (100) is close to IID."""
        if not alpha > 0:
            raise FedbenchError(f"dirichlet alpha must be positive, got {alpha}", "use a positive concentration, e.g. alpha=0.5")
        self.alpha = alpha

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        """The source client id plays the label ("class"), as in NIID-Bench's label-skew partition (Li et al. 2022).

        There are as many clients as source clients, with the same ids. For every class, its examples
        are shuffled and divided over the clients by proportions drawn from Dirichlet(alpha); a client
        left empty then takes one example from the largest client, so every client keeps at least one.
        Pairs move as a whole, so paired and unpaired data both work.
        """
        classes: dict[str, list[Example]] = {}
        for ex in examples:
            classes.setdefault(ex.client_id, []).append(ex)
        clients = list(classes)  # first-appearance order: stable for a given data file
        rng = random.Random(seed)
        out: dict[str, list[Example]] = {cid: [] for cid in clients}
        for members in classes.values():
            members = list(members)
            rng.shuffle(members)
            counts = _apportion(len(members), _dirichlet(rng, self.alpha, len(clients)))
            start = 0
            for cid, count in zip(clients, counts):
                out[cid].extend(members[start : start + count])
                start += count
        for cid in clients:
            if not out[cid]:
                donor = max(clients, key=lambda c: len(out[c]))
                out[cid].append(out[donor].pop())
        return out


def _dirichlet(rng: random.Random, alpha: float, k: int) -> list[float]:
    """One draw from the symmetric Dirichlet(alpha) on k categories, by normalised Gamma(alpha, 1) draws."""
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
    total = sum(draws)
    if total == 0.0:  # every draw underflowed (tiny alpha): all mass on one category
        draws[rng.randrange(k)] = total = 1.0
    return [d / total for d in draws]


def _apportion(n: int, shares: Sequence[float]) -> list[int]:
    """Split n items by shares into integers summing to n (largest remainder; ties to the lower index)."""
    quotas = [n * s for s in shares]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [Dirichlet]
