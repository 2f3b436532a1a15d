"""The held-out split: per client, deterministic, complete, and never leaking into any layout's training data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fedbench.harness.data import LabeledExample, PreferencePair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.holdout import HOLDOUT_FILE, read_heldout, split_holdout, write_heldout


def make_pairs(sizes: list[int]) -> list[PreferencePair]:
    """Pairs with a unique prompt and unique answers each, clients interleaved (client c holds sizes[c] pairs)."""
    owners = [c for c, size in enumerate(sizes) for _ in range(size)]
    owners = owners[::2] + owners[1::2]  # interleave so input order is not grouped by client
    return [
        PreferencePair(f"p{i}", f"user{c}", f"Question {i}: what is {i} plus 1?", f"{i} plus 1 is {i + 1}.", f"Not {i + 2}, no.")
        for i, c in enumerate(owners)
    ]


PAIRS = make_pairs([12, 7, 5, 3, 2, 1, 1])


def test_split_is_disjoint_complete_and_in_order() -> None:
    train, held = split_holdout(PAIRS, 0.2, seed=0)
    assert {p.id for p in train}.isdisjoint({p.id for p in held})
    assert sorted(train + held, key=PAIRS.index) == PAIRS
    assert train == [p for p in PAIRS if p in train]  # input order kept
    assert held == [p for p in PAIRS if p in held]


def test_every_client_keeps_training_and_holds_out_per_rule() -> None:
    train, held = split_holdout(PAIRS, 0.2, seed=0)
    sizes = Counter(p.client_id for p in PAIRS)
    held_sizes = Counter(p.client_id for p in held)
    train_sizes = Counter(p.client_id for p in train)
    for client, n in sizes.items():
        if n >= 2:
            assert held_sizes[client] >= 1 and train_sizes[client] >= 1
            assert held_sizes[client] == -(-n * 2 // 10)  # ceil(0.2 n)
        else:
            assert held_sizes[client] == 0 and train_sizes[client] == 1


def test_ceil_ignores_float_noise() -> None:
    # 0.3 * 10 is 3.0000000000000004 in floating point: still 3 held out, not 4
    _, held = split_holdout(make_pairs([10]), 0.3, seed=0)
    assert len(held) == 3


def test_deterministic_per_seed_and_independent_per_client() -> None:
    assert split_holdout(PAIRS, 0.25, seed=7) == split_holdout(PAIRS, 0.25, seed=7)
    assert split_holdout(PAIRS, 0.25, seed=7)[1] != split_holdout(PAIRS, 0.25, seed=8)[1]
    # a client's held-out pairs do not depend on the other clients
    _, held_all = split_holdout(PAIRS, 0.25, seed=7)
    only_user0 = [p for p in PAIRS if p.client_id == "user0"]
    _, held_alone = split_holdout(only_user0, 0.25, seed=7)
    assert held_alone == [p for p in held_all if p.client_id == "user0"]


def test_fraction_zero_holds_nothing() -> None:
    train, held = split_holdout(PAIRS, 0.0, seed=3)
    assert train == PAIRS and held == []


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(FedbenchError) as err:
        split_holdout(PAIRS, fraction, seed=0)
    assert str(fraction) in str(err.value) and "[0, 1)" in str(err.value)


def test_fraction_leaving_a_client_without_training_is_refused() -> None:
    pairs = make_pairs([10, 2])
    with pytest.raises(FedbenchError) as err:
        split_holdout(pairs, 0.6, seed=0)  # user1: ceil(0.6 x 2) = 2 of 2
    message = str(err.value)
    assert "user1" in message and "2 pairs" in message and "0.6" in message
    assert err.value.fix is not None and "smaller" in err.value.fix and "0.5" in err.value.fix


def test_heldout_file_round_trip(tmp_path: Path) -> None:
    _, held = split_holdout(PAIRS, 0.2, seed=0)
    path = tmp_path / "run" / HOLDOUT_FILE
    write_heldout(path, held)
    assert read_heldout(path) == held
    assert not list(path.parent.glob(".*.tmp"))
    write_heldout(path, [])
    assert read_heldout(path) == []
    with pytest.raises(FedbenchError):
        read_heldout(tmp_path / "missing.jsonl")


def _training_texts(examples) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for ex in examples:
        if isinstance(ex, LabeledExample):
            out.add((ex.prompt, ex.completion))
        else:
            out.update({(ex.prompt, ex.chosen), (ex.prompt, ex.rejected)})
    return out


def test_no_heldout_pair_reaches_training_under_any_layout() -> None:
    from fedbench.harness.registry import load_registry

    reg = load_registry(entry_points=False)
    train, held = split_holdout(PAIRS, 0.3, seed=11)
    assert held
    held_texts = {(p.prompt, answer) for p in held for answer in (p.chosen, p.rejected)}
    held_prompts = {p.prompt for p in held}
    checked = 0
    for method_name in reg.names("method"):
        method = reg.create("method", method_name)
        for layout_name in reg.names("layout"):
            layout = reg.create("layout", layout_name)
            try:
                layout.check(method)
            except FedbenchError:
                continue
            clients = layout.partition(method.examples(train), 2023)
            for client_id, examples in clients.items():
                assert not _training_texts(examples) & held_texts, (method_name, layout_name, client_id)
                assert not {ex.prompt for ex in examples} & held_prompts, (method_name, layout_name, client_id)
            checked += 1
    assert checked >= 3  # dpo x original, kto x original (KTOO), kto x redistributed (KTOR)
