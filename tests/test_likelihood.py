"""Likelihood scoring: TRL's tokenization, batched == one by one, and a planted preference the verdicts recover."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fedbench.harness.data import PreferencePair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.likelihood import LikelihoodScorer, SequenceLogp, judge_pairs, truncate

PAIRS = [
    PreferencePair("a", "user0", "What is the capital of France?", "Paris is the capital.", "I cannot help with that."),
    PreferencePair("b", "user0", "Cook the pasta how?", "In salted water for ten minutes.", "The quick brown fox."),
    PreferencePair("c", "user1", "def add(a, b)?", "return a + b", "I'm sorry, but no."),
    PreferencePair("d", "user1", "Numbers 0 1 2?", "3 4 5 6 7 8 9", "Here is a safer alternative you could try instead."),
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model: Path):
    """A private copy of the tiny model (not load_base's shared one), so LoRA attached here stays here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return model, tokenizer


def manual_logp(model, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    """Sum of log p(completion token | everything before it), straight from the logits (differentiable)."""
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logp[len(prompt_ids) - 1 :].sum()


def test_chat_tokenization_matches_trl(model_and_tokenizer) -> None:
    _, tokenizer = model_and_tokenizer
    scorer = LikelihoodScorer(*model_and_tokenizer, template="chat")
    prompt_ids, completion_ids = scorer.tokenize("What is 2 plus 1?", "3.")
    user = [{"role": "user", "content": "What is 2 plus 1?"}]
    assert tokenizer.decode(prompt_ids) == tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    # TRL's conversational completion: the answer plus the template's end of turn (EOS), no extra EOS
    assert tokenizer.decode(completion_ids) == "3.<|im_end|>\n"


def test_named_template_appends_eos(model_and_tokenizer) -> None:
    _, tokenizer = model_and_tokenizer
    scorer = LikelihoodScorer(*model_and_tokenizer, template="alpaca")
    prompt_ids, completion_ids = scorer.tokenize("What is 2 plus 1?", "3.")
    assert tokenizer.decode(prompt_ids).endswith("### Response:\n")
    assert tokenizer.decode(completion_ids) == "3." + tokenizer.eos_token


def test_truncation_keeps_prompt_then_completion_start() -> None:
    p, c = list(range(10)), list(range(100, 110))
    assert truncate(p, c, 30) == (p, c)
    assert truncate(p, c, 14) == (p, c[:4])  # TRL keep_start
    assert truncate(p, c, 10) == (p[5:], c[:5])  # prompt fills max_length: its end, the completion's start
    assert truncate(p, c[:2], 10) == (p[2:], c[:2])


def test_score_matches_manual_logits(model_and_tokenizer) -> None:
    model, _ = model_and_tokenizer
    scorer = LikelihoodScorer(*model_and_tokenizer, template="chat")
    pair = PAIRS[0]
    [got] = scorer.score([pair.prompt], [pair.chosen])
    prompt_ids, completion_ids = scorer.tokenize(pair.prompt, pair.chosen)
    with torch.no_grad():
        want = manual_logp(model.eval(), prompt_ids, completion_ids).item()
    assert got.tokens == len(completion_ids)
    assert got.total == pytest.approx(want, abs=1e-4)
    assert got.mean == pytest.approx(want / len(completion_ids), abs=1e-5)


@pytest.mark.parametrize("template", ["chat", "vicuna_v1.1"])
def test_batched_equals_one_by_one(model_and_tokenizer, template: str) -> None:
    scorer = LikelihoodScorer(*model_and_tokenizer, template=template, batch_size=3)
    prompts = [p.prompt for p in PAIRS for _ in range(2)] + ["x"]
    answers = [a for p in PAIRS for a in (p.chosen, p.rejected)] + ["The quick brown fox jumps over the lazy dog. " * 3]
    batched = scorer.score(prompts, answers)
    single = [scorer.score([p], [a])[0] for p, a in zip(prompts, answers)]
    assert [s.tokens for s in batched] == [s.tokens for s in single]
    for b, s in zip(batched, single):
        assert b.total == pytest.approx(s.total, abs=1e-4)
        assert b.total < 0


def test_truncated_scoring_counts_fewer_tokens(model_and_tokenizer) -> None:
    full = LikelihoodScorer(*model_and_tokenizer, template="chat")
    short = LikelihoodScorer(*model_and_tokenizer, template="chat", max_length=24)
    long_answer = "Cook the pasta in salted water for ten minutes, then drain it and add the sauce and cheese."
    [a] = full.score(["Cook?"], [long_answer])
    [b] = short.score(["Cook?"], [long_answer])
    prompt_ids, completion_ids = short.tokenize("Cook?", long_answer)
    assert len(prompt_ids) + len(completion_ids) == 24 and b.tokens == len(completion_ids) < a.tokens


def test_load_and_mismatched_lengths(tiny_model: Path) -> None:
    scorer = LikelihoodScorer.load(str(tiny_model), "chat", max_length=64)
    assert scorer.max_length == 64
    with pytest.raises(FedbenchError):
        scorer.score(["a", "b"], ["c"])
    with pytest.raises(FedbenchError):
        LikelihoodScorer(scorer.model, scorer.tokenizer, "no-such-template")


def _train_planted_adapter(model, scorer: LikelihoodScorer, prefer_chosen: bool, target: Path, steps: int = 40) -> Path:
    """A LoRA adapter trained with plain torch (DPO's loss, beta 1) to prefer one answer of every pair."""
    from fedbench.harness.models import LoraSettings, attach_lora, fresh_adapter

    wrapper = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0, targets=("q_proj", "v_proj")))
    fresh_adapter(wrapper, seed=0)
    tokens = [(scorer.tokenize(p.prompt, p.chosen), scorer.tokenize(p.prompt, p.rejected)) for p in PAIRS]
    with torch.no_grad(), wrapper.disable_adapter():
        wrapper.eval()
        ref = [(manual_logp(wrapper, *c), manual_logp(wrapper, *r)) for c, r in tokens]
    params = [p for p in wrapper.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.02)
    sign = 1.0 if prefer_chosen else -1.0
    wrapper.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.stack(
            [
                -torch.nn.functional.logsigmoid(sign * ((manual_logp(wrapper, *c) - rc) - (manual_logp(wrapper, *r) - rr)))
                for (c, r), (rc, rr) in zip(tokens, ref)
            ]
        ).mean()
        loss.backward()
        optimizer.step()
    wrapper.eval()
    wrapper.save_pretrained(target)
    return target


def test_planted_adapters_give_full_and_zero_reward_accuracy(model_and_tokenizer, tmp_path: Path) -> None:
    model, _ = model_and_tokenizer
    torch.manual_seed(0)
    scorer = LikelihoodScorer(*model_and_tokenizer, template="chat", batch_size=3)
    good = _train_planted_adapter(model, scorer, True, tmp_path / "good")
    bad = _train_planted_adapter(model, scorer, False, tmp_path / "bad")

    def logps(adapter: Path | None) -> list[tuple[SequenceLogp, SequenceLogp]]:
        scores = scorer.score([p.prompt for p in PAIRS] * 2, [p.chosen for p in PAIRS] + [p.rejected for p in PAIRS], adapter)
        return list(zip(scores[: len(PAIRS)], scores[len(PAIRS) :]))

    base = logps(None)
    for adapter, expected in ((good, True), (bad, False)):
        verdicts = judge_pairs(PAIRS, logps(adapter), base, beta=0.1)
        assert [v.pair_id for v in verdicts] == [p.id for p in PAIRS]
        assert all(v.reward_correct is expected for v in verdicts), [v.reward_margin for v in verdicts]
        assert all(abs(v.reward_margin) > 0.05 for v in verdicts)  # clearly planted, not a rounding accident
    # the base model again, after adapters were served: the same scores (the adapter is really off)
    again = logps(None)
    assert all(a[0].total == pytest.approx(b[0].total, abs=1e-5) for a, b in zip(again, base))


def test_judge_pairs_rules() -> None:
    pairs = PAIRS[:2]
    policy = [(SequenceLogp(-4.0, 2), SequenceLogp(-9.0, 3)), (SequenceLogp(-10.0, 5), SequenceLogp(-2.0, 2))]
    reference = [(SequenceLogp(-5.0, 2), SequenceLogp(-8.0, 3)), (SequenceLogp(-9.0, 5), SequenceLogp(-3.0, 2))]
    first, second = judge_pairs(pairs, policy, reference, beta=0.5)
    assert first.reward_margin == pytest.approx(0.5 * ((-4 + 5) - (-9 + 8)))  # +1.0
    assert first.reward_correct is True
    assert first.likelihood_margin == pytest.approx(-2.0 - -3.0) and first.likelihood_correct is True
    assert second.reward_margin == pytest.approx(0.5 * ((-10 + 9) - (-2 + 3))) and second.reward_correct is False
    assert second.likelihood_margin == pytest.approx(-2.0 - -1.0) and second.likelihood_correct is False
    assert (first.pair_id, first.client_id) == ("a", "user0")

    base = judge_pairs(pairs, policy, None, beta=0.1)
    assert all(v.reward_margin is None and v.reward_correct is None for v in base)
    assert [v.likelihood_correct for v in base] == [True, False]

    with pytest.raises(FedbenchError):
        judge_pairs(pairs, policy[:1], None, beta=0.1)
    with pytest.raises(FedbenchError):
        judge_pairs(pairs, policy, [(SequenceLogp(-1.0, 1), SequenceLogp(-1.0, 3))] * 2, beta=0.1)
    assert math.isnan(SequenceLogp(0.0, 0).mean)


def test_judge_continuation_logprobs_match_a_full_forward(tiny_model: Path) -> None:
    """The judge's cached-prompt scoring (only the prompt's last position projected) equals scoring each whole sequence."""
    from fedbench.harness.generation import GenerationSettings, HFGenerator
    from fedbench.harness.models import serving

    gen = HFGenerator(str(tiny_model), GenerationSettings(max_new_tokens=4), dtype="float32")
    prompt, continuations = "Rating: [[", ["3]]", "10]]"]
    got = gen.continuation_logprobs([prompt], continuations)[0]
    tok = gen.tokenizer
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    for cont, value in zip(continuations, got):
        cont_ids = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad(), serving(gen.model, None) as base:  # another test may have left LoRA in the shared model
            logits = base(input_ids=torch.tensor([prompt_ids + cont_ids])).logits[0].float()
        logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
        expected = logp.gather(-1, torch.tensor(cont_ids)[:, None]).sum().item()
        assert value == pytest.approx(expected, abs=1e-4)
