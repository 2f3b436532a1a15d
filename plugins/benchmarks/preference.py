"""Held-out preference pairs: does the trained model rank a pair's chosen answer above its rejected one?

Every preference objective trains an implicit reward, so whether a cell's adapter gives a held-out pair's
chosen answer the higher reward is the direct measure of what preference training learnt (TRL logs it as
reward accuracy on training batches). Each cell is ranked by its own objective's reward (``Method.reward``,
read from the run's spec): beta * log(pi(y|x) / pi_ref(y|x)) for DPO and its kin, KTO and APO; beta times
the mean per-token log-probability for SimPO; the log odds of the mean per-token probability for ORPO. The
two reference-free rewards are increasing in the mean per-token log-probability, so for SimPO and ORPO cells
reward accuracy equals likelihood accuracy. Likelihood accuracy is the same measure for every objective. It costs a few
forward passes and no judge, so it gives a signal on any machine, and per client it shows whether
the federation serves its small and unusual clients. The passes run in float32 whatever the cell
trained in (the evaluation's ``score_dtype``), since the margins that decide a pair are small.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fedbench.api import (
    REWARDS,
    Benchmark,
    FedbenchError,
    Judgment,
    PreferencePair,
    Question,
    Request,
    SequenceLogp,
    hookimpl,
    judge_pairs,
    read_heldout,
    trained_reward,
)


class Preference(Benchmark):
    """Held-out preference pairs: implicit-reward accuracy and likelihood accuracy (%), per client; no judge."""

    name = "preference"
    scale = 100.0
    default_judge = "likelihood"
    judge_fixed = True
    rate = True
    request = Request.LIKELIHOOD
    metrics = ("reward", "likelihood")
    """``reward``: share of pairs whose chosen answer gets the higher implicit reward of the cell's objective
    (beta * log(pi/pi_ref) unless the objective is reference-free; the base model: 50% by definition).
    ``likelihood``: share whose chosen answer has the higher mean
    per-token log-probability under the model itself (defined for the base model too)."""
    base_scores = {"reward": 50.0}

    def __init__(self, beta: float = 0.1) -> None:
        """``beta`` only scales the reported reward margins; the accuracies do not depend on it."""
        self.beta = beta

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        """The held-out pairs a run wrote (``<run dir>/heldout.jsonl``), one question per pair."""
        if source is None:
            raise FedbenchError(
                "the preference benchmark scores a run's held-out pairs and was given none",
                "train with holdout > 0 (the default 0.1); its run directory then holds heldout.jsonl",
            )
        pairs = read_heldout(Path(source))
        reward = trained_reward(Path(source))
        questions = [Question(p.id, p.prompt, client=p.client_id, choices=(p.chosen, p.rejected), reward=reward) for p in pairs]
        return questions if limit is None else questions[:limit]

    def score_choices(
        self,
        questions: Sequence[Question],
        policy: Sequence[Sequence[SequenceLogp]],
        reference: Sequence[Sequence[SequenceLogp]] | None,
    ) -> dict[str, list[Judgment]]:
        pairs = [PreferencePair(q.id, q.client, q.prompt, q.choices[0], q.choices[1]) for q in questions]
        reward = questions[0].reward if questions and questions[0].reward else "log_ratio"
        verdicts = judge_pairs(
            pairs, [(c, r) for c, r in policy], None if reference is None else [(c, r) for c, r in reference], self.beta, reward
        )
        out = {
            "likelihood": [
                Judgment(
                    v.pair_id, float(v.likelihood_correct), f"mean log-prob margin (chosen - rejected) {v.likelihood_margin:+.4f}"
                )
                for v in verdicts
            ]
        }
        if reference is not None:
            out["reward"] = [
                Judgment(
                    v.pair_id,
                    float(bool(v.reward_correct)),
                    f"implicit reward margin {v.reward_margin:+.4f} ({REWARDS[reward]}"
                    + (")" if reward == "log_odds" else f"; beta {self.beta})"),  # ORPO's odds have no beta
                )
                for v in verdicts
            ]
        return out


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [Preference]
