"""Faster CPU paths for the same maths: eager attention in training, the labelled positions' log-probabilities in
one pass over the vocabulary.

Both came out of profiling a local step of KTO and DPO on SmolLM2-135M at the study's shapes (batch
4, sequences of about 70 tokens, ``benchmarks/profile_step.py``), where per-operator cost rather
than matrix products decides the step time:

* **Attention.** PyTorch's CPU flash-attention kernel, which transformers' ``sdpa`` choice runs,
  has a slow backward at these lengths (14 ms per layer call at batch 4); transformers' ``eager``
  attention (a matrix product, softmax and matrix product) is used while training instead, and
  ``sdpa`` stays for generation and scoring outside training.
* **Log-probabilities.** See :func:`one_pass_log_probs_on_cpu`.

One client's 5 local steps on the demo data, the variants interleaved in one process (medians of
3, on a shared 2-core machine): KTO 6.1 s with both, 7.4 s with ``sdpa``; DPO 6.5 s with both,
7.6 s with ``sdpa``, 7.1 s with TRL's tiled log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

import torch


@contextmanager
def eager_attention_on_cpu(model: Any) -> Iterator[None]:
    """Train with transformers' ``eager`` attention when the model is on a CPU; the previous choice is restored after.

    ``model`` is the PEFT wrapper or the transformers model; a model whose attention cannot be
    switched (no ``set_attn_implementation``) or that runs on a GPU is left as it is.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(getattr(base, "config", None), "_attn_implementation", None)
    on_cpu = next(base.parameters()).device.type == "cpu"
    if not on_cpu or before in (None, "eager") or not hasattr(base, "set_attn_implementation"):
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


FULL_VOCAB_LIMIT = 1 << 24
"""Largest tokens x vocabulary product scored here (the logits in the autocast dtype, 32 MiB in bfloat16, plus, with
gradients, the float32 log-probs of every tile kept for the backward, 64 MiB); TRL's chunked kernel, which recomputes
its tiles in the backward to bound memory, takes anything larger."""


@contextmanager
def one_pass_log_probs_on_cpu() -> Iterator[None]:
    """Score the labelled positions' log-probabilities in one product with the vocabulary on a CPU, not TRL's tiles.

    TRL 1.16's DPO and KTO trainers get per-token log-probabilities (and entropy, mean logit, top-1
    flags for their metrics) from ``ChunkedLogProbFunction``, which projects onto the vocabulary in
    tiles and, without Triton, folds each tile with a dozen full-width float32 passes, then
    recomputes every tile in the backward and accumulates each tile's gradient with a float32 copy
    of the head's weights: 105-160 ms per backward for 100 tokens of SmolLM2, where one bfloat16
    product and autograd take 21 ms. At the study's shapes the logits of the labelled positions are
    tens of MiB, so here they are made in one product, normalised in cache-sized tiles of rows
    (:func:`vocabulary_log_probs`), and autograd does the rest. The values are the same
    definitions (to float32 rounding: the test compares them); anything above
    :data:`FULL_VOCAB_LIMIT`, or on a GPU, still goes to TRL's kernel. Without that TRL function,
    nothing changes.
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if original is None:
        yield
        return
    trl_utils._ChunkedLogProbFunction = _OnePassLogProbs(original)  # type: ignore[misc,assignment]  # a stand-in object
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = original  # type: ignore[misc]


class _OnePassLogProbs:
    """Stands in for TRL's ``ChunkedLogProbFunction`` (its ``apply`` signature and five outputs)."""

    def __init__(self, chunked: Any) -> None:
        self.chunked = chunked

    def apply(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor | None, ...]:
        if hidden.device.type != "cpu" or hidden.shape[0] * weight.shape[0] > FULL_VOCAB_LIMIT:
            return self.chunked.apply(
                hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping, logit_scale, outputs
            )
        return vocabulary_log_probs(hidden, weight, bias, targets, temperature, final_logit_softcapping, logit_scale, outputs)


_LOG_PROBS_ONLY: ContextVar[bool] = ContextVar("fedbench_log_probs_only", default=False)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def log_probs_only() -> Iterator[None]:
    """Inside, :func:`vocabulary_log_probs` computes the log-probabilities alone and returns None for every extra.

    TRL's DPO and KTO heads always ask for entropy and mean logits (for their metrics), also on the
    no-grad passes whose callers read ``.log_probs`` and nothing else: the reference scoring and
    KTO's KL estimate. Each extra is one more pass over the [tokens, vocabulary] logits; on a demo
    KTO client-round, skipping them on those passes cut the head's time from 0.40 s to 0.32 s.
    """
    token = _LOG_PROBS_ONLY.set(True)
    try:
        yield
    finally:
        _LOG_PROBS_ONLY.reset(token)


def log_probs_only_in(function: F) -> F:
    """``function`` run inside :func:`log_probs_only` (for a pass whose caller reads only the log-probs)."""

    @wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with log_probs_only():
            return function(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


TILE_ELEMENTS = 1 << 22
"""Logits per tile of rows (16 MiB in float32, SmolLM2: 85 rows): the float32 work on a tile stays in the CPU's cache,
and tiles stay under glibc's 32 MiB ``mmap`` threshold, above which every allocation page-faults afresh."""


def vocabulary_log_probs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float = 1.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = (),
) -> tuple[torch.Tensor | None, ...]:
    """Log-probability of each target under ``hidden @ weight.T (+ bias)``, plus the requested extras, in TRL's order.

    The logits are scaled by ``logit_scale``, soft-capped, divided by ``temperature`` and normalised
    in float32; the product runs in the autocast dtype when autocast is on (as TRL's kernel does).
    Returns (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1), None for an extra not in
    ``outputs`` (or for every extra inside :func:`log_probs_only`); only log_probs and entropy carry
    gradients.

    The product runs once for all rows (the head's weights, 57 MiB in bfloat16 for SmolLM2, stream
    from memory once per call: tiling the product itself cost 15% more head time); the float32
    normalisation then goes through tiles of :data:`TILE_ELEMENTS` logits, each its own small
    autograd graph. One [240, 49152] float32 tensor (a KTO reference batch) is 47 MiB: every pass
    over it streams from memory, and glibc hands each such allocation fresh pages that fault in.
    Measured in isolation on this project's 2-core CPU, 240 rows with entropy and mean logits took
    120-160 ms in one piece and about 40 ms in tiles.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    outputs = () if _LOG_PROBS_ONLY.get() else outputs
    logits = hidden.to(dtype) @ weight.to(dtype).t()
    if bias is not None:
        logits = logits + bias.to(dtype)
    rows = max(1, TILE_ELEMENTS // weight.shape[0])
    tiles = [
        _tile_log_probs(tile, target, temperature, softcap, logit_scale, outputs)
        for tile, target in zip(logits.split(rows), targets.split(rows))
    ]
    if len(tiles) == 1:
        return tiles[0]
    return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*tiles))


def _tile_log_probs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    softcap: float | None,
    logit_scale: float,
    outputs: tuple[str, ...],
) -> tuple[torch.Tensor | None, ...]:
    """:func:`vocabulary_log_probs` of one tile of rows of the logits."""
    z = logits
    if logit_scale != 1.0 or softcap is not None or temperature != 1.0:
        z = logits.float() * logit_scale
        if softcap is not None:
            z = softcap * torch.tanh(z / softcap)
        z = z / temperature
    log_p = torch.log_softmax(z, dim=-1, dtype=torch.float32)  # normalised in float32 (a tile-sized copy on a CPU)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1, dtype=torch.float32) if "mean_logits" in outputs else None
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None  # argmax: the first of tied maxima
    return log_probs, entropy, log_sum_sq, mean_logits, is_top1
