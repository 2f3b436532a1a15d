"""The lower-median aggregator, tested with fedbench.api's fake adapters and updates only."""

from __future__ import annotations

import torch
from fedbench_plugin_example.median import LowerMedian, fedbench_aggregators

from fedbench.api import ClientUpdate, fake_params, fake_updates


def test_registered_through_the_hook() -> None:
    assert fedbench_aggregators() == [LowerMedian]


def test_is_the_coordinate_wise_median() -> None:
    global_params = fake_params(seed=0)
    updates = fake_updates(global_params, n=5, seed=1)
    new = LowerMedian().aggregate(global_params, updates)
    assert list(new) == list(global_params)
    for key, ref in global_params.items():
        stacked = torch.stack([u.params[key] for u in updates])
        assert new[key].shape == ref.shape and new[key].dtype == ref.dtype
        assert (stacked < new[key]).sum(0).max() <= 2 and (stacked > new[key]).sum(0).max() <= 2


def test_an_outlying_client_cannot_move_it_far() -> None:
    global_params = fake_params(seed=0)
    honest = fake_updates(global_params, n=4, seed=2, scale=0.01)
    attacker = ClientUpdate("attacker", {k: v + 1e6 for k, v in global_params.items()}, num_examples=10_000)
    new = LowerMedian().aggregate(global_params, [*honest, attacker])
    for key, ref in global_params.items():
        assert (new[key] - ref).abs().max() < 0.1


def test_keeps_the_global_adapters_dtype() -> None:
    global_params = {k: v.to(torch.bfloat16) for k, v in fake_params(seed=3).items()}
    updates = [
        ClientUpdate(u.client_id, {k: v.float() for k, v in u.params.items()}, u.num_examples)
        for u in fake_updates(global_params, n=3, seed=4)
    ]
    new = LowerMedian().aggregate(global_params, updates)
    assert all(t.dtype == torch.bfloat16 for t in new.values())
