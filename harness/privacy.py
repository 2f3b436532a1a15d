"""Client-level differential privacy for federated rounds: DP-FedAvg (McMahan et al. 2018).

"Learning Differentially Private Recurrent Language Models" (ICLR 2018) makes a whole client's
contribution, not one example's, the unit of privacy. Each round the server

1. clips every sampled client's update x_i - x to L2 norm at most C, over all tensors jointly
   (:func:`clip_update`), so one client can move the mean by a bounded amount;
2. averages the clipped updates with uniform weights 1/m. DP-FedAvg weights clients uniformly,
   not by example count: with example-count weights one client with many examples could dominate
   the mean and the sensitivity would no longer be C/m;
3. adds Gaussian noise of standard deviation z * C / m to that mean update (:func:`add_noise`),
   z being the noise multiplier.

:func:`dp_mean` does all three. The accountant (:func:`epsilon_spent`, :func:`noise_for_epsilon`)
is Google's ``dp_accounting`` library, never a hand-written bound.

Which aggregators keep the guarantee: the noise goes onto the clipped mean update *before* the
aggregator's server rule. Whatever the server does with the noised mean afterwards is
post-processing and keeps the guarantee: FedAvg and FedProx (x + noised mean update), FedAvgM
(momentum on it), FedAdam, FedYogi and FedAdagrad (adaptive steps along it). SCAFFOLD also uploads
control variates (``ClientUpdate.extras``), which would be neither clipped nor noised, so the
harness refuses DP with it (and with any aggregator that reads each client's update).

``torch`` is the only heavy import here; ``dp_accounting`` is imported inside the accountant
functions, so importing this module stays light.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fedbench.harness.aggregation import placed_like, weighted_mean
from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Params

if TYPE_CHECKING:
    from dp_accounting import DpEvent
    from dp_accounting.rdp import RdpAccountant

MAX_NOISE_MULTIPLIER = 1000.0
"""Largest noise multiplier :func:`noise_for_epsilon` considers: beyond it the model learns nothing anyway."""


@dataclass(frozen=True)
class PrivacySettings:
    """A run's client-level DP settings: clip norm C, noise multiplier z, delta, and an optional epsilon target.

    ``clip_norm`` may be ``math.inf`` (no clipping) only with ``noise_multiplier`` 0: noise scaled
    to an unbounded sensitivity would be infinite. ``target_epsilon`` is what a run asks for; the
    noise multiplier that reaches it comes from :func:`noise_for_epsilon`.
    """

    clip_norm: float
    noise_multiplier: float
    delta: float
    target_epsilon: float | None = None

    def __post_init__(self) -> None:
        c, z, delta = self.clip_norm, self.noise_multiplier, self.delta
        if not c > 0:  # also catches NaN
            raise FedbenchError(
                f"DP clip norm is {c}; it must be > 0",
                "set clip_norm to a positive L2 norm (a typical update norm, e.g. its median over a round), or inf for none",
            )
        if not (z >= 0 and math.isfinite(z)):
            raise FedbenchError(
                f"DP noise multiplier is {z}; it must be a finite number >= 0",
                "set noise_multiplier >= 0 (0 = no noise; about 1 is typical), or derive it from target_epsilon",
            )
        if math.isinf(c) and z > 0:
            raise FedbenchError(
                f"DP clip norm is inf with noise multiplier {z}: noise z*C would be infinite",
                "set a finite clip_norm, or noise_multiplier 0 to train without noise",
            )
        if not 0 < delta < 1:
            raise FedbenchError(
                f"DP delta is {delta}; it must lie strictly between 0 and 1",
                "set delta below 1/N for N clients (e.g. 1e-5)",
            )
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise FedbenchError(
                f"DP target epsilon is {self.target_epsilon}; it must be > 0",
                "set target_epsilon to a positive number (e.g. 1 to 10), or leave it unset",
            )


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    """L2 norm of all tensors together, accumulated in float64 so a large adapter's sum does not lose bits."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(t, dtype=torch.float64)) ** 2 for t in tensors))


def clip_update(global_params: Params, client_params: Params, clip_norm: float) -> tuple[Params, float]:
    """Client params whose update x_i - x has joint L2 norm <= C, and the update's norm before clipping.

    The update is scaled by min(1, C / ||x_i - x||) as one vector over all tensors, as DP-FedAvg
    clips, so the sensitivity bound holds for the whole adapter. An update already within C is
    returned unchanged (same values, no round trip through x + (x_i - x)). Inputs are not modified;
    the result lives on the global adapter's devices and dtypes.
    """
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    xi = placed_like([client_params[k] for k in keys], x)
    delta = torch._foreach_sub(xi, x)
    norm = _norm(delta)
    if norm <= clip_norm:
        return dict(zip(keys, xi)), norm
    torch._foreach_mul_(delta, clip_norm / norm)
    return dict(zip(keys, torch._foreach_add(x, delta))), norm


def noise_generator(seed: int, round_index: int) -> torch.Generator:
    """The CPU generator a round's noise is drawn from, seeded from (seed, round) alone.

    Deterministic so a resumed run draws the same noise for the same round, bit for bit, and
    different rounds draw independent noise. CPU so the bits do not depend on the accelerator.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(zlib.crc32(f"dp:{seed}:{round_index}".encode()))
    return generator


def add_noise(
    global_params: Params, mean_params: Params, settings: PrivacySettings, num_sampled: int, seed: int, round_index: int
) -> Params:
    """x + (mean - x) + N(0, (z C / m)^2): the round's mean update with DP-FedAvg's Gaussian noise.

    ``num_sampled`` (m) is the number of clients whose clipped updates were averaged with weights
    1/m, so one client moves the mean by at most C/m and noise of std z * C / m gives the noise
    multiplier z that :func:`epsilon_spent` accounts for. Noise is drawn in float32 on the CPU from
    :func:`noise_generator`, tensor by tensor in sorted-name order (independent of the adapter's key
    order), then moved to each tensor's device and dtype. With z == 0 the mean comes back unchanged.
    """
    if num_sampled < 1:
        raise FedbenchError(
            f"DP noise needs the number of averaged clients, got {num_sampled}",
            "pass num_sampled >= 1: the number of clipped updates in the mean",
        )
    if settings.noise_multiplier == 0:
        return {k: mean_params[k].clone() for k in global_params}
    std = settings.noise_multiplier * settings.clip_norm / num_sampled
    generator = noise_generator(seed, round_index)
    noise = {
        k: torch.randn(global_params[k].shape, generator=generator, dtype=torch.float32) * std for k in sorted(global_params)
    }
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    delta = torch._foreach_sub(placed_like([mean_params[k] for k in keys], x), x)
    torch._foreach_add_(delta, placed_like([noise[k] for k in keys], x))
    return dict(zip(keys, torch._foreach_add(x, delta)))


def dp_mean(
    global_params: Params,
    client_params_list: Sequence[Params],
    settings: PrivacySettings,
    seed: int,
    round_index: int,
    denominator: int | None = None,
) -> tuple[Params, list[float]]:
    """The round's DP-FedAvg mean: clip each client's update, average with weight 1/m each, add noise.

    Returns the new params and each client's update norm before clipping (in input order), which
    is what a run reports to show how often C bites. m is ``denominator``, the round's sampled
    clients (default: the updates given): fixed, so a client whose update is rejected or missing
    changes the mean by its absence, never the weights of the others (the fixed-denominator
    estimator of DP-FedAvg), and the noise keeps the scale z C / m the accountant assumes.
    The mean is FedAvg's own ``weighted_mean`` with weights 1/m (the global adapter taking what is
    left, 1 - k/m, when only k < m clients are given), so with noise 0, clip inf and clients of equal
    size a DP round is FedAvg's round bit for bit.
    """
    if not client_params_list:
        raise FedbenchError(
            "DP mean of 0 client updates",
            "sample at least one client per round (every sampled client's update was rejected?)",
        )
    clipped: list[Params] = []
    norms: list[float] = []
    for params in client_params_list:
        kept, norm = clip_update(global_params, params, settings.clip_norm)
        clipped.append(kept)
        norms.append(norm)
    m = denominator or len(clipped)
    if m < len(clipped):
        raise ValueError(f"DP mean: denominator {m} is below the {len(clipped)} updates averaged")
    mean = weighted_mean([*clipped, global_params], [1.0 / m] * len(clipped) + [1.0 - len(clipped) / m])
    return add_noise(global_params, mean, settings, m, seed, round_index), norms


def _check_rate_and_rounds(sampling_rate: float, rounds: int) -> None:
    if not 0 < sampling_rate <= 1:
        raise FedbenchError(
            f"DP sampling rate is {sampling_rate}; it must lie in (0, 1]",
            "use clients per round / total clients",
        )
    if rounds < 0:
        raise FedbenchError(f"DP accounting over {rounds} rounds", "use a number of rounds >= 0")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise FedbenchError(f"DP delta is {delta}; it must lie strictly between 0 and 1", "set delta below 1/N (e.g. 1e-5)")


def _round_event(noise_multiplier: float, sampling_rate: float, rounds: int) -> DpEvent:
    """``rounds`` DP-FedAvg rounds as one dp_accounting event: a Poisson-subsampled Gaussian, self-composed."""
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), rounds
    )


def rdp_accountant(noise_multiplier: float, sampling_rate: float, rounds: int) -> RdpAccountant:
    """dp_accounting's RDP accountant after ``rounds`` Poisson-subsampled Gaussian rounds (its default orders).

    Exposed so a report can show the optimal RDP order or delta for a given epsilon; most callers
    want :func:`epsilon_spent`.
    """
    from dp_accounting.rdp import RdpAccountant

    _check_rate_and_rounds(sampling_rate, rounds)
    return RdpAccountant().compose(_round_event(noise_multiplier, sampling_rate, rounds))


def epsilon_spent(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``rounds`` DP-FedAvg rounds with noise multiplier z and sampling rate q.

    Each round is ``PoissonSampledDpEvent(q, GaussianDpEvent(z))``, composed ``rounds`` times and
    accounted with dp_accounting's RDP accountant (add-or-remove-one-client adjacency). fedbench
    samples a fixed-size uniform set of m of N clients per round (q = m / N); analysing it as Poisson
    subsampling with rate q is the standard approximation DP-FedAvg itself uses (McMahan et al. 2018),
    not an exact bound for fixed-size sampling (dp_accounting's ``SampledWithoutReplacementDpEvent``, under
    replace-one adjacency, would be the exact event). z == 0 gives inf (no privacy); 0 rounds give 0.
    """
    _check_rate_and_rounds(sampling_rate, rounds)
    _check_delta(delta)
    if noise_multiplier < 0:
        raise FedbenchError(f"DP noise multiplier is {noise_multiplier}; it must be >= 0", "use noise_multiplier >= 0")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return float(rdp_accountant(noise_multiplier, sampling_rate, rounds).get_epsilon(delta))


def noise_for_epsilon(target_epsilon: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """The smallest noise multiplier whose :func:`epsilon_spent` is at most ``target_epsilon`` (within 1e-6).

    Calibrated by ``dp_accounting.calibrate_dp_mechanism`` over the same event and accountant as
    :func:`epsilon_spent`, so the two agree. Refuses a target that even z = ``MAX_NOISE_MULTIPLIER``
    cannot reach. 0 rounds need no noise.
    """
    _check_rate_and_rounds(sampling_rate, rounds)
    _check_delta(delta)
    if not target_epsilon > 0:
        raise FedbenchError(f"DP target epsilon is {target_epsilon}; it must be > 0", "set a positive target epsilon")
    if rounds == 0:
        return 0.0
    reachable = epsilon_spent(MAX_NOISE_MULTIPLIER, sampling_rate, rounds, delta)
    if reachable > target_epsilon:
        raise FedbenchError(
            f"DP target epsilon {target_epsilon} is out of reach over {rounds} rounds at sampling rate {sampling_rate} "
            f"and delta {delta}: even noise multiplier {MAX_NOISE_MULTIPLIER:g} spends epsilon {reachable:.4g}",
            "allow a larger epsilon, fewer rounds, fewer clients per round, or a larger delta",
        )
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    return float(
        dp_accounting.calibrate_dp_mechanism(
            RdpAccountant,
            lambda z: _round_event(z, sampling_rate, rounds),
            target_epsilon,
            delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(0.0, 1.0),
        )
    )


PRIVACY_KEYS = ("clip_norm", "noise_multiplier", "target_epsilon", "delta")
DEFAULT_DELTA = 1e-5
"""delta when a run's [privacy] table names none: well below 1/N for federations of up to tens of thousands of clients."""


def privacy_table(table: Mapping[str, Any]) -> PrivacySettings | None:
    """A run's ``[privacy]`` table checked (None when empty). With ``target_epsilon`` the noise multiplier is left 0
    here: it depends on the federation's size and is derived when the run starts (:func:`run_privacy`)."""
    if not table:
        return None
    rule = "write [privacy] clip_norm = 1.0 and noise_multiplier = 1.0 (or target_epsilon = 8.0), optionally delta = 1e-5"
    for key, value in table.items():
        if key not in PRIVACY_KEYS:
            raise FedbenchError(f"[privacy] has an unknown setting '{key}'", f"known settings: {', '.join(PRIVACY_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FedbenchError(f"[privacy] {key} must be a number, got {value!r}", rule)
    if "clip_norm" not in table:
        raise FedbenchError("[privacy] has no clip_norm: client-level DP bounds each client's update by it", rule)
    if ("noise_multiplier" in table) == ("target_epsilon" in table):
        raise FedbenchError(
            "[privacy] needs exactly one of noise_multiplier and target_epsilon"
            + (", and has both" if "noise_multiplier" in table else ", and has neither"),
            "give the noise multiplier, or the epsilon to reach (fedbench then derives the noise)",
        )
    return PrivacySettings(
        float(table["clip_norm"]),
        float(table.get("noise_multiplier", 0.0)),
        float(table.get("delta", DEFAULT_DELTA)),
        None if "target_epsilon" not in table else float(table["target_epsilon"]),
    )


@functools.cache
def run_privacy(table: tuple[tuple[str, Any], ...], sampling_rate: float, rounds: int) -> PrivacySettings | None:
    """A run's DP settings with the noise multiplier resolved: given, or the smallest that keeps ``target_epsilon``
    over ``rounds`` rounds at this sampling rate (clients per round / clients)."""
    settings = privacy_table(dict(table))
    if settings is None or settings.target_epsilon is None:
        return settings
    return dataclasses.replace(
        settings, noise_multiplier=noise_for_epsilon(settings.target_epsilon, sampling_rate, rounds, settings.delta)
    )
