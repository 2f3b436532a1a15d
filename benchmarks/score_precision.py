"""Stored held-out verdicts against an independent float32 recomputation: ``.venv/bin/python benchmarks/score_precision.py``

For every finished cell of a runs folder (default ``runs/``) that the ``preference`` benchmark scored,
each held-out pair's implicit reward margin beta * ((pi_c - ref_c) - (pi_r - ref_r)) and likelihood
margin (mean per-token log p(chosen) - log p(rejected) under the cell) are recomputed outside fedbench's
scorer: the base model loaded with plain transformers in float32, the cell's adapter put on a fresh
copy with peft's ``PeftModel.from_pretrained`` (a local-only cell: each client's own adapter), one
sequence at a time with no padding and no batch, log-softmax summed over the completion's tokens. The
tokens are fedbench's (``LikelihoodScorer.tokenize``: TRL's tokenization, which tests/test_likelihood.py
checks), so what is compared is the arithmetic: precision, batching and padding, and adapter loading.

Per cell it prints the pairs compared, how many stored per-question verdicts (``results.sqlite``,
judge ``likelihood``) have the recomputed sign, the accuracy both ways, the precision the store says the
row was scored in and the largest difference between stored and recomputed reward margins (stored
with 4 decimals). A fresh demo scored in float32 should agree on every pair ("sign agreement 57/57");
rows scored in bfloat16 turned a few. Not a test: it never asserts; the exit status is 1 when a sign
disagrees, 2 when there was nothing to compare.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fedbench.harness.baselines import client_adapter_dir
from fedbench.harness.checkpoint import RESULT_FILE
from fedbench.harness.data import PreferencePair
from fedbench.harness.evaluation import LIKELIHOOD_JUDGE
from fedbench.harness.holdout import read_heldout
from fedbench.harness.likelihood import LikelihoodScorer
from fedbench.harness.models import resolve_model
from fedbench.harness.store import STORE_NAME, Store
from fedbench.harness.subjects import Subject, cell_subject

REWARD, LIKELIHOOD = "preference.reward", "preference.likelihood"
STORED_MARGIN = re.compile(r"margin ([+-]?[0-9.]+) \(beta ([0-9.eE+-]+)\)")
"""The stored reward judgment's text: ``implicit reward margin +0.1234 (beta 0.1)``."""


@dataclass(frozen=True)
class Totals:
    """log p summed over a completion's tokens, and how many tokens."""

    total: float
    tokens: int


class Float32Scorer:
    """Plain transformers + peft in float32, one unpadded sequence per forward pass."""

    def __init__(self, model_name: str, template: str) -> None:
        from transformers import AutoTokenizer

        self.location = resolve_model(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(self.location)
        self.base = self._fresh()
        self.tokens = LikelihoodScorer(self.base, self.tokenizer, template)  # for its tokenize() only
        self.reference: dict[tuple[str, str], Totals] = {}

    def _fresh(self) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.location, dtype=torch.float32).eval()

    def adapter(self, path: Path) -> torch.nn.Module:
        """A fresh float32 base with the saved adapter on it (never fedbench's shared, in-place LoRA wrapper)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(self._fresh(), str(path)).eval()

    @torch.no_grad()
    def logp(self, model: torch.nn.Module, prompt: str, answer: str) -> Totals:
        prompt_ids, completion_ids = self.tokens.tokenize(prompt, answer)
        ids = torch.tensor([prompt_ids + completion_ids])
        first = max(len(prompt_ids), 1)
        logits = model(input_ids=ids, use_cache=False).logits[0, first - 1 : ids.shape[1] - 1]
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[0, first:, None])
        return Totals(float(logp.sum()), ids.shape[1] - first)

    def base_logp(self, prompt: str, answer: str) -> Totals:
        """The reference (the base alone), once per (prompt, answer) for every cell of this model and template."""
        key = (prompt, answer)
        if key not in self.reference:
            self.reference[key] = self.logp(self.base, prompt, answer)
        return self.reference[key]


@dataclass(frozen=True)
class CellCheck:
    label: str
    precision: str
    pairs: int
    reward_agree: int
    likelihood_agree: int
    stored_accuracy: float
    float32_accuracy: float
    max_margin_diff: float | None


def check_cell(subject: Subject, heldout: Path, adapter: Path, store: Store, scorer: Float32Scorer) -> CellCheck | None:
    """One cell's held-out pairs recomputed and compared with its stored verdicts (None: the store has none)."""
    reward = store.judgments(subject.key, REWARD, LIKELIHOOD_JUDGE)
    likelihood = store.judgments(subject.key, LIKELIHOOD, LIKELIHOOD_JUDGE)
    pairs = [p for p in read_heldout(heldout) if p.id in reward and reward[p.id].score is not None]
    if not pairs:
        return None
    by_adapter: dict[Path, list[PreferencePair]] = {}
    for pair in pairs:
        path = client_adapter_dir(adapter.parent, pair.client_id) if subject.local_only else adapter
        by_adapter.setdefault(path, []).append(pair)
    agree = likelihood_agree = right = 0
    diffs: list[float] = []
    for path, mine in by_adapter.items():
        model = scorer.adapter(path)
        for pair in mine:
            pol = [scorer.logp(model, pair.prompt, a) for a in (pair.chosen, pair.rejected)]
            ref = [scorer.base_logp(pair.prompt, a) for a in (pair.chosen, pair.rejected)]
            found = STORED_MARGIN.search(reward[pair.id].raw)
            beta = float(found.group(2)) if found else 1.0
            margin = beta * ((pol[0].total - ref[0].total) - (pol[1].total - ref[1].total))
            right += margin > 0
            agree += (margin > 0) == (reward[pair.id].score == 1.0)
            if found:
                diffs.append(abs(float(found.group(1)) - margin))
            if pair.id in likelihood:
                mean_margin = pol[0].total / pol[0].tokens - pol[1].total / pol[1].tokens
                likelihood_agree += (mean_margin > 0) == (likelihood[pair.id].score == 1.0)
    row = next((r for r in store.scores() if (r.subject, r.benchmark, r.judge) == (subject.key, REWARD, LIKELIHOOD_JUDGE)), None)
    precision = row.judge_setting.rsplit("log-probs in ", 1)[1] if row and "log-probs in " in row.judge_setting else "unrecorded"
    stored_right = sum(reward[p.id].score == 1.0 for p in pairs)
    return CellCheck(
        subject.label,
        precision,
        len(pairs),
        agree,
        likelihood_agree,
        100.0 * stored_right / len(pairs),
        100.0 * right / len(pairs),
        max(diffs) if diffs else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("runs", nargs="?", type=Path, default=Path("runs"), help="runs folder holding results.sqlite")
    args = parser.parse_args(argv)
    if not (args.runs / STORE_NAME).is_file():
        print(f"no {STORE_NAME} in {args.runs}: run and evaluate cells there first")
        return 2
    store = Store.in_runs(args.runs)
    scorers: dict[tuple[str, str], Float32Scorer] = {}
    checks: list[CellCheck] = []
    for run_dir in sorted(d for d in args.runs.iterdir() if (d / RESULT_FILE).is_file()):
        subject = cell_subject(run_dir)
        if subject.heldout is None or subject.adapter is None:
            continue
        key = (subject.model, subject.template)
        if key not in scorers:
            scorers[key] = Float32Scorer(*key)
        check = check_cell(subject, subject.heldout, subject.adapter, store, scorers[key])
        if check is not None:
            checks.append(check)
    store.close()
    if not checks:
        print(f"no cell in {args.runs} has stored {REWARD} verdicts: evaluate with --benchmarks preference first")
        return 2
    print(f"Recomputed in float32, one pair at a time, plain transformers + peft ({args.runs})\n")
    print(
        "| cell | scored in | pairs | reward sign agreement | likelihood sign agreement | "
        "reward accuracy, stored | reward accuracy, float32 recomputed | max abs reward margin difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in checks:
        diff = "n/a" if c.max_margin_diff is None else f"{c.max_margin_diff:.2g}"
        print(
            f"| {c.label} | {c.precision} | {c.pairs} | {c.reward_agree}/{c.pairs} | {c.likelihood_agree}/{c.pairs} | "
            f"{c.stored_accuracy:.1f} | {c.float32_accuracy:.1f} | {diff} |"
        )
    agree, pairs = sum(c.reward_agree for c in checks), sum(c.pairs for c in checks)
    print(f"\nsign agreement {agree}/{pairs} over {len(checks)} cell(s)")
    return 0 if agree == pairs else 1


if __name__ == "__main__":
    sys.exit(main())
