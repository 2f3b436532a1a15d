"""Layouts follow the study's rules: original keeps data home, redistributed shuffles with seed 2023, partial lies between."""

from __future__ import annotations

from collections import Counter

import pytest

from fedbench.harness.data import load_pairs, unpair
from fedbench.harness.errors import FedbenchError, LayoutRefusal
from fedbench.harness.federation import build_cell
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.study import Study, expand_cells
from fedbench.plugins.layouts.original import Original
from fedbench.plugins.layouts.partial import Partial
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


@pytest.mark.parametrize("unpaired", [False, True])
def test_partial_at_one_is_the_original_layouts_data(unpaired: bool) -> None:
    pairs = load_pairs("demo")
    data = unpair(pairs) if unpaired else pairs
    assert Partial(paired_fraction=1).partition(data, 2023) == Original().partition(data, 2023)


def test_partial_at_zero_is_the_redistributed_layouts_data(examples) -> None:
    assert Partial(paired_fraction=0).partition(examples, 2023) == Redistributed().partition(examples, 2023)


def test_partial_keeps_a_share_of_each_clients_pairs_and_redistributes_the_rest(examples) -> None:
    pairs = load_pairs("demo")
    layout = Partial(paired_fraction=0.5)
    kept = layout.kept(pairs, 2023)
    per_client = Counter(p.client_id for p in pairs)
    kept_per_client = Counter(p.client_id for p in pairs if p.id in kept)
    assert all(abs(kept_per_client[c] - n / 2) <= 0.5 for c, n in per_client.items())
    assert kept < Partial(paired_fraction=0.75).kept(pairs, 2023), "the pairs kept at a smaller share are kept at a larger"
    # a paired objective sees the intact pairs only, on their own clients
    paired = layout.partition(pairs, 2023)
    assert sorted(p.id for items in paired.values() for p in items) == sorted(kept)
    assert all(p.client_id == cid for cid, items in paired.items() for p in items)
    # an unpaired one sees every half: an intact pair's both halves at home, each client keeping its count
    unpaired = layout.partition(examples, 2023)
    assert {cid: len(items) for cid, items in unpaired.items()} == Counter(ex.client_id for ex in examples)
    where = {ex.id: cid for cid, items in unpaired.items() for ex in items}
    assert all(where[f"{p.id}+"] == where[f"{p.id}-"] == p.client_id for p in pairs if p.id in kept)
    assert sum(where[ex.id] != ex.client_id for ex in examples if ex.id[:-1] not in kept) > 0


@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_partial_refuses_a_paired_fraction_outside_zero_to_one(value: object) -> None:
    with pytest.raises(FedbenchError, match=f"paired_fraction {value!r} is not a share in \\[0, 1\\]"):
        Partial(paired_fraction=value)  # type: ignore[arg-type]


def test_a_paired_objective_on_a_layout_without_pairs_names_the_layouts_it_can_use() -> None:
    registry = load_registry(entry_points=False)
    for layout, params in (("redistributed", ()), ("partial", (("paired_fraction", 0.0),))):
        with pytest.raises(LayoutRefusal) as err:
            build_cell(RunSpec(method="ipo", layout=layout, layout_params=params), registry)
        assert "layouts that hold paired data: original, partial" in (err.value.fix or "")
    build_cell(RunSpec(method="kto", layout="partial", layout_params=(("paired_fraction", 0.0),)), registry)


def test_partial_joins_every_layout_but_not_the_studys_all() -> None:
    registry = load_registry(entry_points=False)
    layouts = {
        mode: {c.spec.layout for c in expand_cells(Study(method="kto", layout=mode), registry)} for mode in ("all", "every")
    }
    assert layouts == {"all": {"original", "redistributed"}, "every": {"original", "redistributed", "partial"}}


def test_a_sweep_over_paired_fraction_gives_one_tagged_cell_per_value_and_skips_what_cannot_train() -> None:
    from fedbench.harness.cli import _parse_sweeps
    from fedbench.harness.study import StudyProgress

    skipped: list[str] = []

    class Notes(StudyProgress):
        def cell_skipped(self, spec, reason: str) -> None:  # type: ignore[no-untyped-def]
            skipped.append(f"{spec.method} {spec.tag}: {reason}")

    sweep = _parse_sweeps(["layout_params.paired_fraction=0,0.5,1"])
    assert sweep == (("layout_params.paired_fraction", (0, 0.5, 1)),)
    study = Study(method="dpo,kto", layout="partial", sweep=sweep)
    cells = expand_cells(study, load_registry(entry_points=False), Notes())
    assert sorted((c.spec.method, c.spec.tag) for c in cells) == [
        ("dpo", "paired_fraction=0.5"),
        ("dpo", "paired_fraction=1"),
        ("kto", "paired_fraction=0"),
        ("kto", "paired_fraction=0.5"),
        ("kto", "paired_fraction=1"),
    ], "one row per p: the tag names it"
    assert len(skipped) == 1 and skipped[0].startswith("dpo paired_fraction=0: ") and "keeps none intact" in skipped[0]
    assert _parse_sweeps(["lora_r=[4, 8]"]) == (("lora_r", (4, 8)),)
    with pytest.raises(FedbenchError, match="spans the matrix"):
        Study(sweep=(("method", ("dpo",)),))
    with pytest.raises(FedbenchError, match="is no setting"):
        Study(sweep=(("lora_rank", (4,)),))


def test_named_lists_train_what_can_train_and_each_layout_takes_its_own_parameters() -> None:
    """The issue's command: --method ipo,simpo,apo-zero-unpaired --layout original,redistributed,partial
    --set layout_params.paired_fraction=0.5 runs the valid cells and skips the rest with the reason."""
    from fedbench.harness.study import StudyProgress

    skipped: list[str] = []

    class Notes(StudyProgress):
        def cell_skipped(self, spec, reason: str) -> None:  # type: ignore[no-untyped-def]
            skipped.append(f"{spec.method}/{spec.layout}: {reason}")

    registry = load_registry(entry_points=False)
    settings = {"layout_params": (("paired_fraction", 0.5),)}
    study = Study(settings=settings, method="ipo,simpo,apo-zero-unpaired", layout="original,redistributed,partial")
    cells = {(c.spec.method, c.spec.layout): c.spec for c in expand_cells(study, registry, Notes())}
    assert set(cells) == {(m, lay) for m in ("ipo", "simpo", "apo-zero-unpaired") for lay in ("original", "partial")} | {
        ("apo-zero-unpaired", "redistributed")
    }
    assert cells[("ipo", "partial")].layout_params == (("paired_fraction", 0.5),)
    assert cells[("ipo", "original")].layout_params == (), "original takes no parameters: its cell is the plain one"
    assert sorted(s.split(":")[0] for s in skipped) == ["ipo/redistributed", "simpo/redistributed"]
    assert all("cannot hold" in s for s in skipped)
    with pytest.raises(FedbenchError, match="layout_params alpha: none of the layouts original, partial takes it"):
        expand_cells(Study(settings={"layout_params": (("alpha", 1.0),)}, method="kto", layout="original,partial"), registry)
    with pytest.raises(LayoutRefusal):
        expand_cells(Study(method="ipo", layout="redistributed"), registry)  # exactly one cell, named: an error
    with pytest.raises(FedbenchError, match="no cell of this study can train"):
        expand_cells(Study(method="ipo,simpo", layout="redistributed"), registry)
