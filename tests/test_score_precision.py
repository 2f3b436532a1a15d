"""Held-out pairs are scored in float32 whatever precision the cell trained in; ``score_dtype`` chooses another.

The planted adapter moves each pair's implicit reward by 5e-5 to 1e-3 nats: far above float32's rounding of
the summed log-probabilities (about 1e-5 for sums near -60) and below bfloat16's (about 1e-3 on the tiny
model). The truth is the same computation in float64.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fedbench.harness.data import PreferencePair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import LIKELIHOOD_JUDGE, EvalSpec, eval_spec, evaluate
from fedbench.harness.holdout import write_heldout
from fedbench.harness.likelihood import LikelihoodScorer
from fedbench.harness.registry import default_registry
from fedbench.harness.results.model import build_matrix
from fedbench.harness.store import Store
from fedbench.harness.study_table import variant
from fedbench.harness.subjects import Subject

PROMPTS = (
    "What is the capital of France?",
    "Cook the pasta how?",
    "def add(a, b)?",
    "Numbers 0 1 2?",
    "What is 2 plus 1?",
    "Help?",
)
ANSWERS = (
    "Paris is the capital.",
    "I cannot help with that.",
    "In salted water for ten minutes.",
    "The quick brown fox.",
    "return a + b",
    "I'm sorry, but no.",
    "3 4 5 6 7 8 9",
    "Here is a safer alternative you could try instead.",
)
CANDIDATES = [(q, ANSWERS[2 * i % 8], ANSWERS[(2 * i + 1) % 8]) for i, q in enumerate(PROMPTS)] + [
    (q, ANSWERS[(2 * i + 3) % 8], ANSWERS[(2 * i + 6) % 8]) for i, q in enumerate(PROMPTS)
]
BETA = 1000.0
"""Scales the stored margins (printed to 4 decimals) up to where they can be compared with the truth; signs do not change."""
FLOAT32_ROUNDING = 2e-5
"""Nats: float32's error on a margin here (its step for sums near -60 is 7.6e-6), and the smallest margin planted."""


@dataclass(frozen=True)
class Planted:
    model: str
    adapter: Path
    heldout: Path
    margins: dict[str, float]
    """Each pair's true margin (policy - reference on chosen minus on rejected, nats, beta 1), in float64: all positive."""


def _margins(scorer: LikelihoodScorer, pairs: list[tuple[str, str, str]], adapter: Path) -> list[float]:
    prompts = [p for p, _, _ in pairs] * 2
    answers = [c for _, c, _ in pairs] + [r for _, _, r in pairs]
    ref, pol = scorer.score(prompts, answers, None), scorer.score(prompts, answers, adapter)
    n = len(pairs)
    return [(pol[i].total - ref[i].total) - (pol[n + i].total - ref[n + i].total) for i in range(n)]


@pytest.fixture(scope="module")
def planted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """An adapter with tiny LoRA B weights, and held-out pairs whose chosen answer is the one it truly prefers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("planted")
    wrapper = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in wrapper.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * (1e-4 if "lora_B" in name else 0.3))
    wrapper.save_pretrained(root / "adapter")
    truth = LikelihoodScorer(
        AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64), AutoTokenizer.from_pretrained(tiny_model), "chat"
    )
    pairs, margins = [], {}
    for i, ((prompt, a, b), m) in enumerate(zip(CANDIDATES, _margins(truth, CANDIDATES, root / "adapter"))):
        if abs(m) < FLOAT32_ROUNDING:  # within float32's own rounding: no precision in reach would be sure of its sign
            continue
        chosen, rejected = (a, b) if m > 0 else (b, a)
        pairs.append(PreferencePair(f"p{i}", f"user{i % 2}", prompt, chosen, rejected))
        margins[f"p{i}"] = abs(m)
    assert len(pairs) >= 8 and max(margins.values()) < 2e-3
    write_heldout(root / "heldout.jsonl", pairs)
    return Planted(str(tiny_model), root / "adapter", root / "heldout.jsonl", margins)


def _cell(planted: Planted, dtype: str = "bfloat16", seed: int = 0) -> Subject:
    """A DPO cell trained in ``dtype`` whose adapter is the planted one."""
    return Subject(
        f"cell-{dtype}-{seed}",
        planted.model,
        "chat",
        dtype,
        adapter=planted.adapter,
        method="dpo",
        layout="original",
        aggregator="fedavg",
        seed=seed,
        settings_key="k",
        heldout=planted.heldout,
    )


def _spec(**kw: str) -> EvalSpec:
    return EvalSpec(benchmarks=("preference",), benchmark_params=(("preference", {"beta": BETA}),), **kw)


def _stored_margins(store: Store, subject: Subject) -> dict[str, float]:
    """The reward margins the store holds for a subject, in nats at beta 1 (from each judgment's raw text)."""
    judged = store.judgments(subject.key, "preference.reward", LIKELIHOOD_JUDGE)
    return {qid: float(j.raw.split("margin ")[1].split()[0]) / BETA for qid, j in judged.items()}


def test_a_bfloat16_cell_is_scored_in_float32_and_gets_every_sign_below_bfloat16_resolution_right(
    planted: Planted, tmp_path: Path
) -> None:
    store = Store(tmp_path / "results.sqlite")
    cell = _cell(planted, "bfloat16")
    reward = {r.benchmark: r for r in evaluate([cell], _spec(), default_registry(), store)}["preference.reward"]
    assert reward.score == 100.0 and reward.n == len(planted.margins)
    assert reward.judge_setting.endswith("; log-probs in float32") and reward.settings_key == "k+float32"
    stored = _stored_margins(store, cell)
    assert all(abs(stored[p] - m) < FLOAT32_ROUNDING for p, m in planted.margins.items()), (stored, planted.margins)

    # the same cell scored in bfloat16, as before: its rounding of the sums swamps these margins
    reward = {r.benchmark: r for r in evaluate([cell], _spec(score_dtype="bfloat16"), default_registry(), store)}[
        "preference.reward"
    ]
    assert reward.judge_setting.endswith("; log-probs in bfloat16") and reward.settings_key == "k+bfloat16"
    assert reward.score is not None and reward.score < 100.0
    assert max(abs(m - planted.margins[p]) for p, m in _stored_margins(store, cell).items()) > max(planted.margins.values())

    # back to float32: the bfloat16 judgments are not reused
    reward = {r.benchmark: r for r in evaluate([cell], _spec(), default_registry(), store)}["preference.reward"]
    assert reward.score == 100.0 and reward.judge_setting.endswith("; log-probs in float32")
    store.close()


def test_batched_float32_scores_equal_one_at_a_time_with_a_bfloat16_adapter_loaded_exactly(
    planted: Planted, tmp_path: Path
) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    from fedbench.harness.models import serving

    # the planted adapter with its tensors stored in bfloat16, as a bfloat16 trainer could save them
    adapter = tmp_path / "adapter-bf16"
    shutil.copytree(planted.adapter, adapter)
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, adapter / "adapter_model.safetensors")

    scorer = LikelihoodScorer.load(planted.model, "chat", "float32", batch_size=3)
    assert next(scorer.model.parameters()).dtype == torch.float32
    prompts = [p for p, _, _ in CANDIDATES for _ in range(2)] + ["x"]
    answers = [a for _, c, r in CANDIDATES for a in (c, r)] + ["The quick brown fox jumps over the lazy dog. " * 3]
    for served in (adapter, None):
        batched = scorer.score(prompts, answers, served)
        single = [scorer.score([p], [a], served)[0] for p, a in zip(prompts, answers)]
        assert [b.tokens for b in batched] == [s.tokens for s in single]
        assert all(abs(b.total - s.total) <= 1e-4 for b, s in zip(batched, single)), [
            (b.total, s.total) for b, s in zip(batched, single)
        ]
        if served is not None:  # the bfloat16 weights went into the float32 model unrounded
            with serving(scorer.model, served) as model:
                live = get_peft_model_state_dict(model)
            saved = load_file(adapter / "adapter_model.safetensors")
            assert set(live) == set(saved)
            assert all(live[k].dtype == torch.float32 and torch.equal(live[k], saved[k].float()) for k in saved)


def test_cells_trained_in_either_precision_share_one_scorer_and_one_reference_pass(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    passes: list[Path | None] = []
    load, score = LikelihoodScorer.load, LikelihoodScorer.score

    def counted_load(
        cls: type[LikelihoodScorer], model: str, template: str, dtype: str = "float32", **kw: object
    ) -> LikelihoodScorer:
        loads.append(dtype)
        return load(model, template, dtype, **kw)

    def counted_score(self: LikelihoodScorer, prompts: list[str], completions: list[str], adapter: Path | None = None) -> list:
        passes.append(adapter)
        return score(self, prompts, completions, adapter)

    monkeypatch.setattr(LikelihoodScorer, "load", classmethod(counted_load))
    monkeypatch.setattr(LikelihoodScorer, "score", counted_score)
    store = Store(tmp_path / "results.sqlite")
    cells = [_cell(planted, "bfloat16"), _cell(planted, "float32")]
    rows = evaluate(cells, _spec(), default_registry(), store)
    assert loads == ["float32"]  # keyed by the scoring precision, not the cells' training precision
    assert passes.count(None) == 1 and passes.count(planted.adapter) == 2
    assert [r.score for r in rows if r.benchmark == "preference.reward"] == [100.0, 100.0]

    passes.clear()
    evaluate(cells, _spec(), default_registry(), store)
    assert passes == []  # scored in this precision already: the stored judgments stand
    store.close()


def test_rows_of_different_precision_never_pool_on_the_leaderboard(planted: Planted, tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    seeds = [_cell(planted, "bfloat16", seed) for seed in (0, 1)]
    evaluate(seeds, _spec(score_dtype="bfloat16"), default_registry(), store)
    evaluate(seeds[:1], _spec(), default_registry(), store)  # only seed 0 is scored again, in float32
    matrix = build_matrix(store.scores(), questions=lambda r: store.question_scores(r.subject, r.benchmark, r.judge))
    entry = matrix.cells[("fedavg", "preference.reward", variant("dpo", "original"))]
    assert entry.seeds == (0,) and entry.score == 100.0
    assert [r.judge_setting.rsplit("; ", 1)[1] for r in entry.runs] == ["log-probs in float32"]
    store.close()


def test_score_dtype_is_an_eval_setting_checked_like_the_others() -> None:
    assert EvalSpec().score_dtype == "float32"
    assert eval_spec({"score_dtype": "bfloat16"}, {}).score_dtype == "bfloat16"
    assert eval_spec({"score_dtype": "bfloat16"}, {"score_dtype": "auto"}).score_dtype == "auto"
    with pytest.raises(FedbenchError, match="score_dtype 'float64'"):
        eval_spec(None, {"score_dtype": "float64"})


def test_the_command_line_sets_the_scoring_precision_and_names_a_bad_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedbench.harness.cli import app

    for command in (["eval", str(tmp_path)], ["run", "--profile", "demo", "--out", str(tmp_path)]):
        out = CliRunner().invoke(app, [*command, "--score-dtype", "fp8"], env={"COLUMNS": "200"})
        assert out.exit_code == 2 and "score_dtype 'fp8' is not one of" in out.output, out.output
