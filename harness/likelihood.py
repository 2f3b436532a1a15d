"""Likelihood scoring of given completions under the base model or a saved adapter, and preference verdicts.

No text is generated: :class:`LikelihoodScorer` runs one forward pass over prompt + completion and
sums the log-probabilities of the completion's tokens. :func:`judge_pairs` turns the scores of a
pair's chosen and rejected answers into an objective's implicit reward margin (:data:`REWARDS`) and a likelihood margin.

Tokenization follows TRL 1.x's DPOTrainer/KTOTrainer data preparation, so a completion is scored on
exactly the tokens training pushed up or down:

* ``chat`` template: the prompt is the user message rendered with ``add_generation_prompt=True``;
  prompt + completion is the two-message conversation rendered without it. The completion is what
  follows the two token sequences' common prefix: the answer plus whatever the template closes the
  assistant turn with (for ChatML ``<|im_end|>\\n``, i.e. the EOS token and a newline). Nothing else
  is appended, as TRL appends no EOS to conversational data.
* named templates (``alpaca``, ``vicuna_v1.1``): the formatted prompt, and the prompt + answer + the
  tokenizer's EOS token (appended unless the answer already ends with it), each tokenized with the
  tokenizer's default special tokens, as TRL does for plain-text data.

TRL finds the completion start per pair from both answers at once; here it is found per (prompt,
answer), as KTOTrainer does. The two only differ when a template's tokens merge across the
prompt/answer boundary differently for the two answers.

Truncation to ``max_length`` tokens: TRL 1.x keeps the start of prompt + completion (its default
``truncation_mode="keep_start"``): the whole prompt and the completion's start, and drops examples
whose prompt alone fills ``max_length`` from training. The scorer does the same while the prompt is
shorter than ``max_length``. A prompt that fills it (an example TRL would not train on) keeps its
last tokens and the completion's first ``min(len(completion), max_length // 2)`` tokens, so every
answer still gets a score; pass the ``max_length`` training used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from fedbench.harness.data import PreferencePair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.models import load_base, serving
from fedbench.harness.prefix import shared_prefixes_once
from fedbench.harness.templates import check_template, completion_for, prompt_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SequenceLogp:
    """log p(completion | prompt) of one completion: the sum over its tokens and how many were scored."""

    total: float
    """Sum of log p(completion token | prompt, earlier completion tokens)."""
    tokens: int
    """Completion tokens scored (after truncation)."""

    @property
    def mean(self) -> float:
        """Mean per-token log-probability (NaN when no token was scored)."""
        return self.total / self.tokens if self.tokens else math.nan


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def truncate(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut prompt + completion to ``max_length`` tokens the way the module docstring describes."""
    if len(prompt_ids) + len(completion_ids) <= max_length:
        return prompt_ids, completion_ids
    if len(prompt_ids) < max_length:  # TRL's keep_start: the whole prompt, the completion's start
        return prompt_ids, completion_ids[: max_length - len(prompt_ids)]
    keep = min(len(completion_ids), max_length // 2)  # TRL would drop this example; score the completion's start
    return prompt_ids[len(prompt_ids) - (max_length - keep) :], completion_ids[:keep]


class LikelihoodScorer:
    """Batched log p(completion | prompt) under the base model or the base plus a saved PEFT adapter.

    Sequences are sorted by length, right-padded and run ``batch_size`` at a time under
    ``torch.no_grad`` with the model in eval mode; a batched score equals the one-by-one score.

    The forward pass runs in the model's precision. Evaluation loads it in float32 whatever a cell
    trained in (``EvalSpec.score_dtype``): a pair's margin is a difference of differences of sums
    over tens of tokens, often smaller than bfloat16's rounding of those sums.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        template: str,
        max_length: int = 512,
        batch_size: int = 8,
    ) -> None:
        check_template(template)
        if template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise FedbenchError("the model's tokenizer has no chat template", "set template = 'alpaca' or 'vicuna_v1.1'")
        if max_length < 2:
            raise FedbenchError(
                f"likelihood max_length {max_length} is too short", "use at least 2 tokens (training's max_length)"
            )
        if batch_size < 1:
            raise FedbenchError(f"likelihood batch_size {batch_size} must be at least 1", "use a batch size such as 8")
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, model_name: str, template: str, dtype: str = "float32", **kw: Any) -> LikelihoodScorer:
        """A scorer over the process-wide base model (:func:`~fedbench.harness.models.load_base`)."""
        model, tokenizer = load_base(model_name, dtype)
        return cls(model, tokenizer, template, **kw)

    def _chat_ids(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        out = self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
        )
        # return_dict=True gives a BatchEncoding; the stub's return type is the union of every mode
        return list(cast("Mapping[str, list[int]]", out)["input_ids"])

    def tokenize(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        """(prompt token ids, completion token ids) as scored: TRL's tokenization, then :func:`truncate`."""
        if self.template == "chat":
            messages = prompt_for(self.template, prompt)
            prompt_ids = self._chat_ids(messages, add_generation_prompt=True)
            full_ids = self._chat_ids(messages + completion_for(self.template, completion), add_generation_prompt=False)
        else:
            text = prompt_for(self.template, prompt)
            eos = self.tokenizer.eos_token or ""
            answer = completion if completion.endswith(eos) else completion + eos
            prompt_ids = list(self.tokenizer(text)["input_ids"])
            full_ids = list(self.tokenizer(text + answer)["input_ids"])
        start = _common_prefix_length(prompt_ids, full_ids)
        return truncate(full_ids[:start], full_ids[start:], self.max_length)

    def score(self, prompts: Sequence[str], completions: Sequence[str], adapter: Path | None = None) -> list[SequenceLogp]:
        """log p(completions[i] | prompts[i]) for every i, in input order, under the base (adapter None) or the adapter."""
        if len(prompts) != len(completions):
            raise FedbenchError(
                f"{len(prompts)} prompts but {len(completions)} completions to score",
                "pass one completion per prompt (repeat a prompt to score several answers to it)",
            )
        encoded = [self.tokenize(p, c) for p, c in zip(prompts, completions)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]), reverse=True)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        device = next(self.model.parameters()).device
        results: list[SequenceLogp | None] = [None] * len(encoded)
        with serving(self.model, adapter) as model, torch.no_grad(), shared_prefixes_once(model):
            model.eval()
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids = encoded[i][0] + encoded[i][1]
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention[row, : len(ids)] = 1
                # Only the positions that predict a completion token are projected onto the vocabulary: the batch's
                # span of them, a fraction of its [rows, length, vocabulary] float32 logits (400 MiB at 8 x 256 tokens)
                spans = {i: (max(len(encoded[i][0]), 1), len(encoded[i][0]) + len(encoded[i][1])) for i in batch}
                low = min(first for first, _ in spans.values()) - 1
                high = max(max(end for _, end in spans.values()) - 1, low + 1)
                kept = torch.arange(low, high, device=device)
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False, logits_to_keep=kept
                ).logits
                for row, i in enumerate(batch):
                    first, end = spans[i]  # a first token with nothing before it has no prediction to score
                    if end <= first:
                        results[i] = SequenceLogp(0.0, 0)
                        continue
                    # position t-1 predicts token t; only the completion's rows go through log_softmax
                    row_logp = torch.log_softmax(logits[row, first - 1 - low : end - 1 - low].float(), dim=-1)
                    targets = input_ids[row, first:end].to(row_logp.device)
                    total = row_logp.gather(-1, targets[:, None]).sum().item()
                    results[i] = SequenceLogp(float(total), end - first)
        return [r for r in results if r is not None]


REWARDS: dict[str, str] = {
    "log_ratio": "beta x log(pi / pi_ref) of the whole answer (DPO and its kin, KTO, APO)",
    "mean_logp": "beta x mean per-token log pi, no reference (SimPO)",
    "log_odds": "log odds of the answer's mean per-token probability, no reference (ORPO)",
}
"""The implicit rewards preference objectives raise, by name (``Method.reward``): the preference benchmark ranks a
held-out pair's answers by the subject's own. The two reference-free ones are increasing functions of the mean
per-token log-probability, so they rank a pair exactly as the likelihood metric does."""


def reward_of(reward: str, beta: float, answer: SequenceLogp, reference: SequenceLogp | None) -> float | None:
    """One answer's implicit reward of kind ``reward`` (:data:`REWARDS`); None for ``log_ratio`` without a reference."""
    if reward == "log_ratio":
        return None if reference is None else beta * (answer.total - reference.total)
    if reward == "mean_logp":
        return beta * answer.mean
    if reward == "log_odds":  # log(p / (1 - p)) with log p the mean per-token log-probability (ORPO's odds)
        return answer.mean - math.log1p(-math.exp(min(answer.mean, -1e-12)))
    raise FedbenchError(f"unknown implicit reward '{reward}'", f"use one of: {', '.join(REWARDS)}")


@dataclass(frozen=True)
class PairVerdict:
    """How a model ranks one held-out pair's chosen answer against its rejected one."""

    pair_id: str
    client_id: str
    reward_margin: float | None
    """The implicit reward margin (chosen - rejected) of the objective's reward: DPO's beta*((pol_c - ref_c) -
    (pol_r - ref_r)) by default; None for the base model under a reward that needs a reference."""
    reward_correct: bool | None
    """reward_margin > 0; None for the base model (its margin is 0 by definition: 50%)."""
    likelihood_margin: float
    """Mean per-token log p(chosen) minus mean per-token log p(rejected) under the policy."""
    likelihood_correct: bool
    """likelihood_margin > 0."""


def judge_pairs(
    pairs: Sequence[PreferencePair],
    policy: Sequence[tuple[SequenceLogp, SequenceLogp]],
    reference: Sequence[tuple[SequenceLogp, SequenceLogp]] | None,
    beta: float,
    reward: str = "log_ratio",
) -> list[PairVerdict]:
    """A verdict per pair from (chosen, rejected) scores under the policy and the reference (base) model.

    ``reward`` is the implicit reward the margin is taken of (:data:`REWARDS`): the one the subject's objective
    trained. ``reference`` None means the policy is the base model itself: no ``log_ratio`` margin. Policy and
    reference scores of an answer must come from the same tokenization (same template and max_length).
    """
    if len(policy) != len(pairs) or (reference is not None and len(reference) != len(pairs)):
        raise FedbenchError(
            f"{len(pairs)} pairs but {len(policy)} policy scores"
            + ("" if reference is None else f" and {len(reference)} reference scores"),
            "score the chosen and rejected answer of every pair under each model",
        )
    if not beta > 0:
        raise FedbenchError(f"DPO beta {beta} must be positive", "use the beta the method trained with (e.g. 0.1)")
    verdicts = []
    for index, pair in enumerate(pairs):
        chosen, rejected = policy[index]
        likelihood_margin = chosen.mean - rejected.mean
        ref_chosen = ref_rejected = None
        if reference is not None:
            ref_chosen, ref_rejected = reference[index]
            if (ref_chosen.tokens, ref_rejected.tokens) != (chosen.tokens, rejected.tokens):
                raise FedbenchError(
                    f"pair '{pair.id}': policy and reference scored different token counts "
                    f"({chosen.tokens}/{rejected.tokens} vs {ref_chosen.tokens}/{ref_rejected.tokens})",
                    "score both models with one LikelihoodScorer (same template and max_length)",
                )
        good, bad = reward_of(reward, beta, chosen, ref_chosen), reward_of(reward, beta, rejected, ref_rejected)
        margin = None if good is None or bad is None else good - bad
        verdicts.append(
            PairVerdict(
                pair_id=pair.id,
                client_id=pair.client_id,
                reward_margin=margin,
                reward_correct=None if margin is None else margin > 0,
                likelihood_margin=likelihood_margin,
                likelihood_correct=likelihood_margin > 0,
            )
        )
    return verdicts
