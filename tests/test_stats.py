"""The leaderboard's statistics: intervals, training seeds, paired tests, Holm, winners, client fairness.

Expected values are worked out here by hand (Wilson's formula, Holm's step-down, numpy's linear
percentile) rather than read back from ``harness.stats``; the resampling tests check properties a
reader relies on (reproducible, brackets the estimate, widens with seed-to-seed variation, finds a
planted effect and not a null one) with seeded data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedbench.harness.errors import FedbenchError
from fedbench.harness.stats import (
    Comparison,
    Interval,
    bootstrap_mean,
    client_spread,
    holm,
    holm_adjust,
    paired_comparison,
    score_interval,
    seeds_interval,
    wilson,
    winner,
)

Z95 = 1.959963984540054  # standard normal quantile at 0.975


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def scores(seed: int, n: int, loc: float = 6.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 1.5, n)


# --- Wilson -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [8, 0, 10])
def test_wilson_matches_the_closed_form(k: int) -> None:
    low, high = wilson_by_hand(k, 10)
    ci = wilson(k, 10)
    assert ci is not None and ci.method == "wilson"
    assert ci.low == pytest.approx(low, abs=1e-9)
    assert ci.high == pytest.approx(high, abs=1e-9)


def test_wilson_stays_inside_zero_one_at_the_edges() -> None:
    none_right, all_right = wilson(0, 10), wilson(10, 10)
    assert none_right is not None and all_right is not None
    assert none_right.low == pytest.approx(0.0, abs=1e-12) and none_right.high < 0.35
    assert all_right.high == pytest.approx(1.0, abs=1e-12) and all_right.low > 0.65


def test_wilson_of_nothing_is_none_and_impossible_counts_are_refused() -> None:
    assert wilson(0, 0) is None
    with pytest.raises(FedbenchError):
        wilson(11, 10)
    with pytest.raises(FedbenchError):
        wilson(1, 10, confidence=1.5)


# --- bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_is_reproducible_per_seed_and_brackets_the_mean() -> None:
    values = scores(1, 80)
    first, again, other = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=4)
    assert first is not None and other is not None
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < values.mean() < first.high
    assert first.method == "bootstrap-bca"


def test_bootstrap_narrows_with_more_questions_and_lower_confidence() -> None:
    few, many = bootstrap_mean(scores(2, 30)), bootstrap_mean(scores(2, 600))
    loose, tight = bootstrap_mean(scores(2, 100)), bootstrap_mean(scores(2, 100), confidence=0.5)
    assert few is not None and many is not None and loose is not None and tight is not None
    assert many.high - many.low < (few.high - few.low) / 2
    assert tight.high - tight.low < loose.high - loose.low


def test_bootstrap_needs_two_values() -> None:
    assert bootstrap_mean([]) is None
    assert bootstrap_mean([7.0]) is None


def test_bootstrap_of_equal_values_is_zero_width_at_that_value() -> None:
    assert bootstrap_mean([7.0] * 12) == Interval(7.0, 7.0, "bootstrap-percentile")


def test_bootstrap_falls_back_to_percentile_when_bca_is_undefined() -> None:
    # jackknife deviations this small underflow when squared, so BCa's acceleration is 0/0
    values = [0.0, 1e-300, 0.0, 2e-300]
    ci = bootstrap_mean(values)
    assert ci is not None and ci.method == "bootstrap-percentile"
    assert ci.low <= np.mean(values) <= ci.high


def test_unscored_questions_are_refused() -> None:
    with pytest.raises(FedbenchError, match="NaN"):
        bootstrap_mean([1.0, float("nan"), 3.0])


def test_score_interval_uses_wilson_only_for_true_rates() -> None:
    rate = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    assert score_interval(rate, binary=True) == wilson(7, 10)
    assert score_interval(rate, binary=False) == bootstrap_mean(rate)
    partial_credit = [1, 0, 0.5, 1, 0, 1]
    assert score_interval(partial_credit, binary=True) == bootstrap_mean(partial_credit)


# --- training seeds ---------------------------------------------------------------------------------


def test_one_seed_equals_the_question_bootstrap() -> None:
    values = list(scores(5, 40))
    assert seeds_interval([values], seed=2) == bootstrap_mean(values, seed=2)
    # a seed with a single scored question cannot be resampled and is left out
    assert seeds_interval([values, [9.0]], seed=2) == bootstrap_mean(values, seed=2)
    assert seeds_interval([[1.0], []]) is None


def test_seed_to_seed_variation_widens_the_interval() -> None:
    per_seed = [list(scores(10 + i, 50, loc=loc)) for i, loc in enumerate((4.0, 6.0, 8.0))]
    across = seeds_interval(per_seed, seed=0)
    pooled = bootstrap_mean([v for values in per_seed for v in values], seed=0)
    assert across is not None and pooled is not None
    assert across.method == "seeds x questions bootstrap"
    assert across.high - across.low > 2 * (pooled.high - pooled.low)
    assert across.low < np.mean([np.mean(v) for v in per_seed]) < across.high
    assert seeds_interval(per_seed, seed=0) == across


# --- paired comparisons -----------------------------------------------------------------------------


def keyed(values: np.ndarray, train_seed: int = 0) -> dict[tuple[int, str], float]:
    return {(train_seed, f"q{i}"): float(v) for i, v in enumerate(values)}


def test_a_planted_difference_is_found() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(5.0, 1.5, 60)
    a = b + 1.0 + rng.normal(0.0, 0.8, 60)
    c = paired_comparison(keyed(a), keyed(b), "KTO", "DPO")
    assert c is not None
    assert (c.a, c.b, c.n) == ("KTO", "DPO", 60)
    assert c.difference == pytest.approx(float(np.mean(a - b)))
    assert c.p_value < 0.01 and c.p_holm == c.p_value
    assert c.interval is not None and c.interval.low > 0


def test_a_null_difference_is_not() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(5.0, 1.5, 60), rng.normal(5.0, 1.5, 60)
    c = paired_comparison(keyed(a), keyed(b), "KTO", "DPO")
    assert c is not None
    assert c.p_value > 0.05
    assert c.interval is not None and c.interval.low < 0 < c.interval.high


def test_only_shared_units_count_and_results_are_deterministic() -> None:
    rng = np.random.default_rng(2)
    a, b = keyed(rng.normal(6, 1, 30)), keyed(rng.normal(5, 1, 30))
    with_extras = {**a, (0, "only-in-a"): 1e6, (7, "q0"): -1e6}
    assert paired_comparison(with_extras, {**b, (0, "only-in-b"): 5.0}, "A", "B") == paired_comparison(a, b, "A", "B")
    assert paired_comparison(a, b, "A", "B", seed=9) == paired_comparison(a, b, "A", "B", seed=9)
    assert paired_comparison({(0, "q0"): 1.0}, {(0, "q0"): 0.0}, "A", "B") is None
    assert paired_comparison(a, {(0, "zzz"): 1.0}, "A", "B") is None


def test_identical_variants_give_p_one_and_a_zero_interval() -> None:
    a = keyed(np.arange(10.0))
    c = paired_comparison(a, dict(a), "A", "B")
    assert c is not None
    assert c.p_value == 1.0 and c.difference == 0.0
    assert c.interval == Interval(0.0, 0.0, "bootstrap-percentile")


def test_several_training_seeds_use_the_two_level_interval() -> None:
    rng = np.random.default_rng(3)
    a, b = {}, {}
    for s in range(3):
        base = rng.normal(5, 1, 40)
        a |= keyed(base + 0.5 + rng.normal(0, 1, 40), s)
        b |= keyed(base, s)
    c = paired_comparison(a, b, "A", "B")
    assert c is not None and c.n == 120
    assert c.interval is not None and c.interval.method == "seeds x questions bootstrap"


def test_small_samples_get_an_exact_sign_flip_p_value() -> None:
    # 4 positive differences: of the 2**4 sign patterns only all-plus and all-minus are as extreme
    c = paired_comparison(keyed(np.array([2.0, 3.0, 4.0, 5.0])), keyed(np.ones(4)), "A", "B")
    assert c is not None and c.p_value == pytest.approx(2 / 16)


# --- Holm -------------------------------------------------------------------------------------------


def test_holm_on_a_hand_worked_family() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_edge_cases() -> None:
    assert holm_adjust([0.5, 0.4, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # 0.4*3 = 1.2 -> 1
    assert holm_adjust([]) == []
    assert holm_adjust([0.02]) == [0.02]
    with pytest.raises(FedbenchError):
        holm_adjust([0.1, 1.2])


def test_holm_fills_p_holm_and_keeps_the_rest() -> None:
    family = [Comparison("A", "B", 1.0, None, p, p, 10) for p in (0.01, 0.04, 0.03, 0.005)]
    adjusted = holm(family)
    assert [c.p_holm for c in adjusted] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [c.p_value for c in adjusted] == [0.01, 0.04, 0.03, 0.005]


# --- winner -----------------------------------------------------------------------------------------


def comparison(a: str, b: str, difference: float, p_holm: float) -> Comparison:
    return Comparison(a, b, difference, None, p_holm, p_holm, 50)


def test_a_separated_best_variant_wins_in_either_orientation() -> None:
    means = {"KTO": 7.0, "DPO": 6.0, "SFT": 4.0}
    as_a = [comparison("KTO", "DPO", 1.0, 0.01), comparison("KTO", "SFT", 3.0, 0.001)]
    as_b = [comparison("DPO", "KTO", -1.0, 0.01), comparison("SFT", "KTO", -3.0, 0.001)]
    assert winner(as_a, means) == "KTO"
    assert winner(as_b, means) == "KTO"


def test_no_winner_without_separation() -> None:
    means = {"KTO": 7.0, "DPO": 6.9, "SFT": 4.0}
    assert winner([comparison("KTO", "DPO", 0.1, 0.40), comparison("KTO", "SFT", 3.0, 0.001)], means) is None
    # significant, but the comparison says the leader is worse: contradictory, so no winner
    assert winner([comparison("KTO", "DPO", -0.1, 0.01), comparison("KTO", "SFT", 3.0, 0.001)], means) is None
    # the runner-up is separated but a noisier third variant is not
    assert winner([comparison("KTO", "DPO", 0.1, 0.01), comparison("KTO", "SFT", 3.0, 0.2)], means) is None
    assert winner([comparison("KTO", "SFT", 3.0, 0.001)], means) is None  # no comparison with the runner-up
    assert winner([comparison("KTO", "DPO", 1.0, 0.01)], {"KTO": 7.0, "DPO": 7.0}) is None
    assert winner([], {"KTO": 7.0}) is None


# --- clients ----------------------------------------------------------------------------------------


def test_client_spread_on_a_hand_example() -> None:
    summary = client_spread({"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.6, "e": 0.8})
    assert summary is not None
    assert summary.clients == 5
    assert summary.mean == pytest.approx(0.7)
    assert (summary.worst, summary.worst_client) == (0.5, "b")
    # linear 10th percentile of [0.5, 0.6, 0.7, 0.8, 0.9]: position 0.1 * 4 = 0.4 -> 0.5 + 0.4 * 0.1
    assert summary.p10 == pytest.approx(0.54)
    assert summary.spread == pytest.approx(0.4)


def test_client_spread_edge_cases() -> None:
    assert client_spread({}) is None
    tied = client_spread({"zed": 0.2, "amy": 0.2, "bob": 0.9})
    assert tied is not None and tied.worst_client == "amy"
