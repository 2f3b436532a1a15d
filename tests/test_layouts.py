"""Layouts follow the study's rules: original keeps data home, redistributed shuffles with seed 2023."""

from __future__ import annotations

from collections import Counter

import pytest

from fedbench.harness.data import load_pairs, unpair
from fedbench.harness.errors import FedbenchError, LayoutRefusal
from fedbench.harness.federation import build_cell
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.plugins.layouts.original import Original
from fedbench.plugins.layouts.redistributed import Redistributed
from fedbench.plugins.methods.dpo import DPO
from fedbench.plugins.methods.kto import KTO


@pytest.fixture(scope="module")
def examples():
    return unpair(load_pairs("demo"))


def test_original_keeps_both_halves_of_a_pair_on_its_client(examples) -> None:
    clients = Original().partition(examples, 2023)
    for cid, items in clients.items():
        assert all(ex.client_id == cid for ex in items)
    assert sum(map(len, clients.values())) == len(examples)


def test_redistributed_keeps_counts_and_is_reproducible(examples) -> None:
    before = Counter(ex.client_id for ex in examples)
    first = Redistributed().partition(examples, 2023)
    again = Redistributed().partition(examples, 2023)
    other = Redistributed().partition(examples, 7)
    assert {cid: len(items) for cid, items in first.items()} == before
    assert first == again
    assert first != other
    assert sorted(ex.id for items in first.values() for ex in items) == sorted(ex.id for ex in examples)


def test_redistributed_really_splits_pairs_across_clients(examples) -> None:
    where = {ex.id: cid for cid, items in Redistributed().partition(examples, 2023).items() for ex in items}
    pair_ids = {ex.id[:-1] for ex in examples}
    split = sum(where[f"{p}+"] != where[f"{p}-"] for p in pair_ids)
    assert split / len(pair_ids) > 0.5
    moved = sum(where[ex.id] != ex.client_id for ex in examples)
    assert moved / len(examples) > 0.5


def test_dpo_with_redistributed_is_refused_with_the_reason() -> None:
    with pytest.raises(FedbenchError) as err:
        Redistributed().check(DPO())
    assert "a paired objective (DPO, IPO, SimPO, ...) needs both responses of a pair" in err.value.problem
    assert "--layout original" in (err.value.fix or "")
    Redistributed().check(KTO())
    Original().check(DPO())


def test_layout_plugins_are_registered() -> None:
    assert load_registry(entry_points=False).get("layout", "redistributed") is Redistributed


def test_demo_data_is_non_iid_with_a_safety_slice() -> None:
    pairs = load_pairs("demo")
    sizes = sorted(Counter(p.client_id for p in pairs).values(), reverse=True)
    assert len(pairs) >= 240 and len(sizes) >= 8
    assert sizes[0] >= 4 * sizes[-1], "client sizes should be skewed as real users' are"
    refusals = [p for p in pairs if any(w in p.chosen.lower() for w in ("can't", "cannot", "sorry", "won't"))]
    assert len(refusals) >= 15
    assert len({p.client_id for p in refusals}) >= 3


def test_a_paired_objective_on_a_layout_without_pairs_names_the_layouts_it_can_use() -> None:
    registry = load_registry(entry_points=False)
    for layout, params in (("redistributed", ()),):
        with pytest.raises(LayoutRefusal) as err:
            build_cell(RunSpec(method="ipo", layout=layout, layout_params=params), registry)
        assert "layouts that hold paired data: original" in (err.value.fix or "")
