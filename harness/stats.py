"""The statistics behind the leaderboard: confidence intervals, repeated training seeds, paired comparisons.

A leaderboard that ranks fine-tuning variants by a mean over a few hundred questions invites reading
noise as progress. Everything here exists so each number comes with its uncertainty, so differences
between variants are tested on the questions they share, and so a "winner" is only named when the
evidence, corrected for the many comparisons a leaderboard makes, supports it. All resampling is
seeded, so the same results always print the same intervals.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedbench.harness.errors import FedbenchError

CONFIDENCE = 0.95
RESAMPLES = 2000
# Randomised p-values cannot go below 2 / (resamples + 1); with 9999 that floor is 0.0002, so Holm over
# a family of up to ~250 comparisons can still reach 0.05. RESAMPLES (floor 0.001) would cap it near 50.
_PERMUTATIONS = 9999
# Bounds the memory of scipy's jackknife (batch x n) and bootstrap (batch x n) arrays on large benchmarks.
_BATCH = 1000


@dataclass(frozen=True)
class Interval:
    """A confidence interval together with how it was made, so a reader can judge it."""

    low: float
    high: float
    method: str


def _scipy_stats() -> Any:
    """``scipy.stats``, imported when an interval or test is first computed: it takes about half a second, and a
    training run (``fedbench run --skip-eval``) imports this module through the evaluation code without using it."""
    from scipy import stats

    return stats


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise FedbenchError(f"confidence must lie strictly between 0 and 1, got {confidence}.", "pass a level such as 0.95.")


def _finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise FedbenchError(
            f"{what} contain NaN or infinite values.", "drop or re-score the unscored questions before computing statistics."
        )
    return array


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson score interval for a proportion (0..1 scale); None when n == 0.

    Pass rates on small benchmarks sit near 0 or 1, where the textbook normal interval collapses to
    zero width or leaves [0, 1]; Wilson's interval stays inside [0, 1] and keeps close to its nominal
    coverage there, which is why rates use it rather than a bootstrap.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise FedbenchError(f"cannot form a rate from {successes} successes out of {n}.", "pass 0 <= successes <= n with n >= 0.")
    if n == 0:
        return None
    ci = _scipy_stats().binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high), "wilson")


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Interval | None:
    """Seeded bootstrap CI of the mean over questions; None when fewer than 2 values.

    scipy's BCa, because judge scores (1..10) and rates are bounded and skewed towards one end, where
    the percentile interval is biased and under-covers at a benchmark's tens to hundreds of questions;
    BCa corrects bias and skew for the cost of a jackknife. All-equal values give exactly [mean, mean];
    where BCa is otherwise undefined (scipy returns NaN) the same seed's percentile interval is used,
    and `method` says which.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise FedbenchError(f"resamples must be positive, got {resamples}.", f"use the default, {RESAMPLES}.")
    data = _finite(values, "scores")
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        return Interval(float(data[0]), float(data[0]), "bootstrap-percentile")
    low, high = _scipy_bootstrap(data, "BCa", seed, resamples, confidence)
    if np.isfinite(low) and np.isfinite(high):
        return Interval(low, high, "bootstrap-bca")
    low, high = _scipy_bootstrap(data, "percentile", seed, resamples, confidence)
    return Interval(low, high, "bootstrap-percentile")


def _scipy_bootstrap(data: np.ndarray, method: str, seed: int, resamples: int, confidence: float) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's DegenerateDataWarning: the caller checks for NaN instead
        ci = (
            _scipy_stats()
            .bootstrap(
                (data,),
                np.mean,
                n_resamples=resamples,
                batch=_BATCH,
                vectorized=True,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )
            .confidence_interval
        )
    return float(ci.low), float(ci.high)


def score_interval(values: Sequence[float], binary: bool, seed: int = 0) -> Interval | None:
    """Wilson when every value is 0/1 and binary is True (a rate), else bootstrap_mean.

    Values stay on their native scale (0/1 or 1..10), so the interval brackets the same number the
    leaderboard prints. A benchmark declared binary whose values are not all 0/1 (e.g. partial
    credit) is not a rate, so it falls back to the bootstrap rather than miscounting successes.
    """
    data = _finite(values, "scores")
    if binary and np.all((data == 0) | (data == 1)):
        return wilson(int(data.sum()), int(data.size))
    return bootstrap_mean(data, seed=seed)


def seeds_interval(
    per_seed: Sequence[Sequence[float]], seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Interval | None:
    """Interval of the mean over training seeds that accounts for both seeds and questions.

    Training seeds can differ by more than a question-level interval admits, so pooling them would
    overstate certainty. Two-level percentile bootstrap of the mean of per-seed means: resample seeds
    with replacement, then questions within each chosen seed. scipy has no hierarchical bootstrap, so
    both levels are drawn with numpy.random.default_rng(seed), vectorised over resamples (the only
    loop is over distinct seeds); counting question noise at both levels errs towards wider intervals.
    Seeds with < 2 values are left out; one seed left gives bootstrap_mean; none gives None.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise FedbenchError(f"resamples must be positive, got {resamples}.", f"use the default, {RESAMPLES}.")
    groups = [data for data in (_finite(v, "scores") for v in per_seed) if data.size >= 2]
    if not groups:
        return None
    if len(groups) == 1:
        return bootstrap_mean(groups[0], seed=seed, resamples=resamples, confidence=confidence)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(groups), size=(resamples, len(groups)))
    seed_means = np.empty(chosen.shape)
    for g, data in enumerate(groups):
        slots = chosen == g
        picks = rng.integers(0, data.size, size=(int(slots.sum()), data.size))
        seed_means[slots] = data[picks].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(seed_means.mean(axis=1), [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), "seeds x questions bootstrap")


@dataclass(frozen=True)
class Comparison:
    """Variant a against variant b on the units both were scored on."""

    a: str
    b: str
    difference: float
    interval: Interval | None
    p_value: float
    p_holm: float
    n: int


def _mean_axis(x: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis)


def paired_comparison(
    a: Mapping[tuple[int, str], float], b: Mapping[tuple[int, str], float], label_a: str, label_b: str, seed: int = 0
) -> Comparison | None:
    """Compare two variants on the (training seed, question id) units both have; None below 2 units.

    Pairing cancels question difficulty, so it detects far smaller differences than two overlapping
    intervals. Interval of mean d = a - b: seeds_interval over per-seed d when several seeds are
    shared (bootstrap_mean of all d if that gives None), else bootstrap_mean. p: two-sided sign-flip
    test on d (scipy.stats.permutation_test, permutation_type='samples'; exact up to 13 units, else
    9999 seeded flips), which assumes nothing about d's shape; 1.0 when all d are 0. p_holm = p until holm().
    """
    keys = sorted(a.keys() & b.keys())
    if len(keys) < 2:
        return None
    d = _finite([a[k] - b[k] for k in keys], f"scores of '{label_a}' and '{label_b}'")
    train_seeds = sorted({k[0] for k in keys})
    interval = None
    if len(train_seeds) > 1:
        per_seed = [[a[k] - b[k] for k in keys if k[0] == s] for s in train_seeds]
        interval = seeds_interval(per_seed, seed=seed)
    if interval is None:
        interval = bootstrap_mean(d, seed=seed)
    if np.all(d == 0):
        p_value = 1.0
    else:
        p_value = float(
            _scipy_stats()
            .permutation_test(
                (d,),
                _mean_axis,
                permutation_type="samples",
                vectorized=True,
                n_resamples=_PERMUTATIONS,
                batch=_BATCH,
                alternative="two-sided",
                rng=np.random.default_rng(seed),
            )
            .pvalue
        )
    return Comparison(label_a, label_b, float(d.mean()), interval, p_value, p_value, len(keys))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given, monotone and capped at 1.

    A leaderboard compares many pairs at once, and at alpha = 0.05 one in twenty null comparisons
    would look significant by luck. Holm controls the chance of any false win across the whole
    family, is never less powerful than Bonferroni, and needs no assumption about how the
    comparisons depend on each other (they share questions and variants, so they do).
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise FedbenchError(f"p-values must lie in [0, 1], got {list(p_values)}.", "pass the raw p-values of the comparisons.")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(x) for x in adjusted]


def holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The same comparisons with p_holm filled in over the whole family.

    The family is whatever is passed in, so pass every comparison the leaderboard reports at once:
    adjusting group by group would quietly loosen the correction.
    """
    adjusted = holm_adjust([c.p_value for c in comparisons])
    return [dataclasses.replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]


def winner(comparisons_for_group: Sequence[Comparison], scores: Mapping[str, float], alpha: float = 0.05) -> str | None:
    """The best-scoring variant of one (aggregator, benchmark) group, or None when it is not separated.

    A leaderboard that bolds the top mean invites readers to treat a coin flip as a result. The
    variant with the highest score is named only if, for every other variant in `scores` (the
    runner-up included), a Holm-adjusted comparison shows p_holm < alpha with the difference in its
    favour; comparisons may be oriented either way (a - b or b - a). A tie for first, a single
    variant, or a missing comparison (too few shared units) gives None.
    """
    if not 0.0 < alpha < 1.0:
        raise FedbenchError(f"alpha must lie strictly between 0 and 1, got {alpha}.", "pass a level such as 0.05.")
    if len(scores) < 2:
        return None
    ranked = sorted(scores, key=lambda label: scores[label], reverse=True)
    best = ranked[0]
    if math.isclose(scores[best], scores[ranked[1]], rel_tol=0.0, abs_tol=1e-12):
        return None
    for rival in ranked[1:]:
        found = [c for c in comparisons_for_group if {c.a, c.b} == {best, rival}]
        if not any(c.p_holm < alpha and (c.difference if c.a == best else -c.difference) > 0 for c in found):
            return None
    return best


@dataclass(frozen=True)
class ClientSpread:
    """How evenly a federated model serves its clients, beyond the average."""

    clients: int
    mean: float
    worst: float
    p10: float
    spread: float
    worst_client: str


def client_spread(per_client: Mapping[str, float]) -> ClientSpread | None:
    """Fairness summary across clients; None when there are none.

    Federated averaging can raise the mean while leaving small or unusual clients behind, so the
    leaderboard shows the unweighted mean of client scores next to the worst client, the 10th
    percentile (numpy's linear interpolation) and the max - min spread. Ties for worst go to the
    alphabetically first client, so the name is stable across runs.
    """
    if not per_client:
        return None
    names = sorted(per_client)
    scores = _finite([per_client[name] for name in names], "client scores")
    worst = int(np.argmin(scores))
    return ClientSpread(
        clients=len(names),
        mean=float(scores.mean()),
        worst=float(scores[worst]),
        p10=float(np.percentile(scores, 10, method="linear")),
        spread=float(scores.max() - scores.min()),
        worst_client=names[worst],
    )


@dataclass(frozen=True)
class GapClosed:
    """Where a federated score lies between local-only (0%) and centralized training (100%), on shared units."""

    gap: float | None
    """100 (F - L) / (C - L) in percent; None when C = L (no gap to close) or nothing is shared."""
    interval: Interval | None
    n: int
    note: str = ""
    means: tuple[float, float, float] | None = None
    """F, L and C on the shared units: the three numbers the gap is computed from."""


def gap_closed(
    federated: Mapping[object, float],
    local: Mapping[object, float],
    centralized: Mapping[object, float],
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> GapClosed:
    """The share of the local-only -> centralized gap a federated cell closes, with a paired percentile bootstrap.

    The three score the same units (held-out pairs, per seed); units are resampled jointly, so the
    interval carries the question-to-question covariance of the three. A ratio's bootstrap
    distribution is skewed and undefined where a resample's C - L is 0, so percentile (not BCa) is used
    and resamples with a zero denominator are dropped (scipy's bootstrap has no way to drop them, so the
    resampling is numpy's, seeded); a gap smaller than one unit's worth of score is
    reported as no gap at all, since the ratio would then be noise divided by noise.
    """
    units = sorted(set(federated) & set(local) & set(centralized), key=repr)
    if not units:
        return GapClosed(None, None, 0, "the three cells share no scored units")
    f, lo, c = (np.array([d[u] for u in units], dtype=float) for d in (federated, local, centralized))
    means = (float(f.mean()), float(lo.mean()), float(c.mean()))
    span = c.mean() - lo.mean()
    if abs(span) * len(units) < max(np.abs(c - lo).max(), 1e-12):
        return GapClosed(None, None, len(units), "centralized and local only score the same: no gap to close", means)
    gap = 100.0 * (f.mean() - lo.mean()) / span
    if len(units) < 2:
        return GapClosed(float(gap), None, 1, "one shared unit: no interval", means)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(units), size=(resamples, len(units)))
    spans = c[picks].mean(axis=1) - lo[picks].mean(axis=1)
    keep = spans != 0
    ratios = 100.0 * (f[picks][keep].mean(axis=1) - lo[picks][keep].mean(axis=1)) / spans[keep]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return GapClosed(float(gap), Interval(float(low), float(high), "paired bootstrap-percentile"), len(units), "", means)
