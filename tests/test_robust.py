"""The robust aggregators against hand-worked numbers, and their refusals: before training and in a round."""

from __future__ import annotations

import re

import pytest
import torch

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Aggregator, ClientUpdate, Params
from fedbench.harness.registry import load_registry
from fedbench.harness.server_side import Aggregate, Tally, check_server_side
from fedbench.harness.spec import RunSpec
from fedbench.harness.study import Study, expand_cells
from fedbench.plugins.aggregators.coordinatewise import Median, TrimmedMean
from fedbench.plugins.aggregators.krum import Krum, MultiKrum
from fedbench.plugins.aggregators.normbound import NormBound

ZERO = {"w": torch.zeros(3)}


def rows(*values: list[float], examples: int = 1) -> list[ClientUpdate]:
    """One update per row, its tensor ``w`` = the row (the global adapter is ZERO unless a test says otherwise)."""
    return [ClientUpdate(f"c{i}", {"w": torch.tensor(v)}, examples) for i, v in enumerate(values)]


def test_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() -> None:
    odd = rows([1.0, 10.0, -2.0], [2.0, 20.0, -4.0], [3.0, -100.0, 100.0])
    assert Median().aggregate(ZERO, odd)["w"].tolist() == [2.0, 10.0, -2.0]
    even = [*odd, *rows([4.0, 0.0, 0.0])]
    assert Median().aggregate(ZERO, even)["w"].tolist() == [2.5, 5.0, -1.0]


def test_median_ignores_example_counts() -> None:
    heavy = rows([0.0, 0.0, 0.0], examples=1000) + rows([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert Median().aggregate(ZERO, heavy)["w"].tolist() == [1.0, 1.0, 1.0]


def test_trimmed_mean_drops_floor_beta_n_values_at_each_end() -> None:
    five = rows([1.0, 5.0, 0.0], [2.0, -50.0, 0.0], [3.0, 1.0, 0.0], [4.0, 2.0, 0.0], [100.0, 3.0, 30.0])
    # trim 0.2 of 5: k = 1; column 0 keeps 2, 3, 4; column 1 keeps 1, 2, 3; column 2 keeps 0, 0, 0
    assert TrimmedMean(trim=0.2).aggregate(ZERO, five)["w"].tolist() == [3.0, 2.0, 0.0]
    # trim 0.45 of 5: k = 2, the median
    assert TrimmedMean(trim=0.45).aggregate(ZERO, five)["w"].tolist() == [3.0, 2.0, 0.0]


def line(*points: float) -> list[ClientUpdate]:
    return [ClientUpdate(f"c{i}", {"w": torch.tensor([p])}, 1) for i, p in enumerate(points)]


def test_krum_scores_and_picks_by_hand() -> None:
    """Points 0, 1, 2, 3 and a Byzantine 100, f = 1: each scores its n - f - 2 = 2 nearest neighbours' squared distances.

    s(0) = 1 + 4 = 5, s(1) = 1 + 1 = 2, s(2) = 1 + 1 = 2, s(3) = 1 + 4 = 5, s(100) = 97^2 + 98^2 = 19013.
    """
    updates, x = line(0.0, 1.0, 2.0, 3.0, 100.0), {"w": torch.zeros(1)}
    assert Krum(byzantine=1).scores(x, updates).tolist() == [5.0, 2.0, 2.0, 5.0, 19013.0]
    assert Krum(byzantine=1).aggregate(x, updates)["w"].tolist() == [1.0]  # the tie 1 / 2 goes to the first
    assert MultiKrum(byzantine=1).aggregate(x, updates)["w"].tolist() == [1.5]  # m = n - f = 4: 0, 1, 2, 3
    assert MultiKrum(byzantine=1, m=3).aggregate(x, updates)["w"].tolist() == [1.0]  # 1, 2 and then 0 before 3


def test_norm_bound_clips_each_update_then_averages() -> None:
    x = {"w": torch.tensor([1.0, 1.0])}
    updates = [  # deltas (3, 4) of norm 5 -> (0.6, 0.8); (0.3, 0.4) of norm 0.5 stays
        ClientUpdate("big", {"w": torch.tensor([4.0, 5.0])}, 100),
        ClientUpdate("small", {"w": torch.tensor([1.3, 1.4])}, 1),
    ]
    assert torch.allclose(NormBound(max_norm=1.0).aggregate(x, updates)["w"], torch.tensor([1.45, 1.6]))


def test_a_rule_keeps_the_global_adapters_dtype_and_device() -> None:
    x: Params = {"w": torch.zeros(3, dtype=torch.float64)}
    for rule in (Median(), TrimmedMean(trim=0.4), Krum(byzantine=0), NormBound(max_norm=1.0)):
        out = rule.aggregate(x, rows([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [0.0, 0.0, 1.0]))
        assert out["w"].dtype == torch.float64, rule.name


@pytest.mark.parametrize(
    ("rule", "n", "words"),
    [
        (Krum(byzantine=1), 4, "needs n > 2f + 2 = 4 updates in a round, got 4"),
        (MultiKrum(byzantine=2, m=3), 6, "needs n > 2f + 2 = 6 updates in a round, got 6"),
        (MultiKrum(byzantine=1, m=5), 5, "m = 5 updates, more than n - f = 5 - 1"),
        (TrimmedMean(trim=0.2), 4, "drops floor(0.2 x 4) = 0 values"),
    ],
)
def test_a_round_the_guarantee_cannot_hold_for_is_refused_with_the_numbers(rule: Aggregator, n: int, words: str) -> None:
    with pytest.raises(FedbenchError, match=re.escape(words)):
        rule.check(n)


def test_refused_before_training_from_the_spec() -> None:
    spec = RunSpec(aggregator="krum", clients_per_round=4)
    with pytest.raises(FedbenchError, match="2f \\+ 2 = 4") as err:
        check_server_side(spec, Krum())
    assert "at least 5" in err.value.fix
    check_server_side(RunSpec(aggregator="krum", clients_per_round=5), Krum())
    with pytest.raises(FedbenchError, match="client-level DP"):
        check_server_side(RunSpec(aggregator="median", privacy=(("clip_norm", 1.0), ("noise_multiplier", 1.0))), Median())


def test_a_round_with_too_few_updates_is_skipped_and_says_why() -> None:
    tally, x = Tally(), {"w": torch.zeros(1)}
    assert Aggregate(Krum(byzantine=1)).aggregate(0, x, line(1.0, 2.0, 3.0), tally) is x
    assert "got 3" in tally.skipped


def test_bad_settings_are_refused() -> None:
    for make in (lambda: TrimmedMean(trim=0.5), lambda: Krum(byzantine=-1), lambda: MultiKrum(m=0), NormBound):
        with pytest.raises(FedbenchError):
            make()


def test_agg_all_keeps_meaning_the_studys_seven() -> None:
    registry = load_registry(entry_points=False)
    cells = expand_cells(Study(settings={}, method="kto", layout="redistributed", aggregator="all"), registry)
    assert sorted(c.spec.aggregator for c in cells) == sorted(
        ["fedavg", "fedprox", "scaffold", "fedavgm", "fedyogi", "fedadagrad", "fedadam"]
    )
    for name in ("median", "trimmed-mean", "krum", "multi-krum", "norm-bound"):
        assert registry.get("aggregator", name).opt_in
