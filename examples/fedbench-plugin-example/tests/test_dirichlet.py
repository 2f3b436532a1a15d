"""The Dirichlet layout, tested with fedbench.api's fake pairs only."""

from __future__ import annotations

from collections import Counter

import pytest
from fedbench_plugin_example.dirichlet import Dirichlet, fedbench_layouts

from fedbench.api import FedbenchError, LabeledExample, Method, fake_pairs


def _ids(clients: dict) -> list[str]:
    return sorted(ex.id for examples in clients.values() for ex in examples)


def test_registered_through_the_hook() -> None:
    assert fedbench_layouts() == [Dirichlet]


@pytest.mark.parametrize("alpha", [0.01, 0.5, 100.0])
def test_every_example_once_and_every_client_keeps_one(alpha: float) -> None:
    pairs = fake_pairs(n=40, clients=6, seed=1)
    clients = Dirichlet(alpha).partition(pairs, seed=7)
    assert set(clients) == {p.client_id for p in pairs}
    assert _ids(clients) == sorted(p.id for p in pairs)
    assert all(len(examples) >= 1 for examples in clients.values())


def test_seeded() -> None:
    pairs = fake_pairs(n=40, clients=6)
    assert Dirichlet().partition(pairs, seed=3) == Dirichlet().partition(pairs, seed=3)
    assert Dirichlet().partition(pairs, seed=3) != Dirichlet().partition(pairs, seed=4)


def _sources_per_client(alpha: float) -> float:
    """Mean number of source clients ("classes") a client holds, over seeds: the skew the layout produces."""
    pairs = fake_pairs(n=120, clients=6)
    counts = []
    for seed in range(20):
        for examples in Dirichlet(alpha).partition(pairs, seed).values():
            counts.append(len({ex.client_id for ex in examples}))
    return sum(counts) / len(counts)


def test_small_alpha_skews_more_than_large() -> None:
    assert _sources_per_client(0.1) < _sources_per_client(1.0) < _sources_per_client(100.0)
    assert _sources_per_client(100.0) > 5.5  # nearly IID: almost every client holds every source


def test_accepts_unpaired_examples_and_both_data_forms() -> None:
    unpaired = [
        LabeledExample(f"{p.id}-{good}", p.client_id, p.prompt, p.chosen if good else p.rejected, good)
        for p in fake_pairs(n=12, clients=3)
        for good in (True, False)
    ]
    clients = Dirichlet().partition(unpaired, seed=0)
    assert _ids(clients) == sorted(ex.id for ex in unpaired)
    assert Counter(type(ex) for ex in sum(clients.values(), [])) == {LabeledExample: 24}

    class Paired(Method):
        name, data_form = "paired-method", "paired"

        def build_trainer(self, *args):
            raise NotImplementedError

        def records(self, examples, template):
            return []

    Dirichlet().check(Paired())  # does not raise


def test_refuses_a_non_positive_alpha() -> None:
    with pytest.raises(FedbenchError, match="alpha must be positive"):
        Dirichlet(alpha=0)
