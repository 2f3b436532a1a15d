"""The preference-objective family: each loss moves a planted pair the right way, impossible runs are refused, and
the preference benchmark ranks each cell by its own objective's implicit reward.

Every objective trains a fresh adapter on the tiny model for a few steps on pairs whose chosen answer is planted
(the same right answer, a wrong one rejected); the margin each objective rewards must grow. The loss-type lists
fedbench checks names against are compared with TRL's own, so a TRL upgrade that adds or drops one shows here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fedbench.api import PreferencePair
from fedbench.harness.errors import FedbenchError, MethodRefusal
from fedbench.harness.federation import build_cell
from fedbench.harness.holdout import write_heldout
from fedbench.harness.interfaces import LocalTrainingArgs, Method, needs
from fedbench.harness.likelihood import REWARDS, LikelihoodScorer, SequenceLogp, judge_pairs
from fedbench.harness.models import LoraSettings, attach_lora, load_adapter, load_base, read_adapter
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec, resolve_settings, spec_from_dict
from fedbench.harness.study import Study, expand_cells
from fedbench.harness.training import to_dataset, train_client
from fedbench.plugins.benchmarks.preference import Preference
from fedbench.plugins.methods import dpo, kto

OBJECTIVES = ("dpo", "ipo", "robust-dpo", "apo-zero", "simpo", "orpo", "kto", "apo-zero-unpaired")
PAIRS = [
    PreferencePair(f"p{i}", "user0", f"What is {i} plus 1?", f"{i} plus 1 is {i + 1}.", "I don't know the answer.")
    for i in range(4)
]


@pytest.fixture(scope="module")
def live(tiny_model: Path):  # noqa: ANN201 - (PEFT model, tokenizer, its untrained adapter)
    model, tokenizer = load_base(str(tiny_model), "float32")
    peft = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    return peft, tokenizer, read_adapter(peft)


def _scores(scorer: LikelihoodScorer) -> list[tuple[SequenceLogp, SequenceLogp]]:
    flat = scorer.score([p.prompt for p in PAIRS] * 2, [p.chosen for p in PAIRS] + [p.rejected for p in PAIRS])
    return list(zip(flat[: len(PAIRS)], flat[len(PAIRS) :]))


def _margin(method: Method, policy: list, reference: list) -> float:  # noqa: ANN001 - lists of score pairs
    """The chosen-minus-rejected margin of the objective's own implicit reward, summed over the planted pairs."""
    verdicts = judge_pairs(PAIRS, policy, reference, beta=1.0, reward=method.reward)
    return sum(v.reward_margin or 0.0 for v in verdicts)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_each_objective_widens_the_planted_pairs_margin(name: str, live, tmp_path: Path) -> None:  # noqa: ANN001
    peft, tokenizer, untrained = live
    load_adapter(peft, untrained)
    method = load_registry(entry_points=False).create("method", name)
    scorer = LikelihoodScorer(peft, tokenizer, "chat", max_length=64)
    base = _scores(scorer)  # the untrained adapter is the base model: the reference
    data = to_dataset(method.records(method.examples(PAIRS), "chat"))
    args = LocalTrainingArgs(str(tmp_path), steps=6, batch_size=4, grad_accum=1, learning_rate=1e-2, max_length=64, seed=0)
    result = train_client(method, peft, tokenizer, data, args)
    assert result.steps == 6
    assert _margin(method, _scores(scorer), base) > _margin(method, base, base)


def test_the_loss_lists_are_trls() -> None:
    from trl import DPOConfig, KTOConfig

    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert set(re.findall(r"`'(\w+)'`", help_text)) == set(dpo.LOSSES)
    assert tuple(KTOConfig.__dataclass_fields__["loss_type"].metadata["choices"]) == kto.LOSSES


def test_an_unknown_loss_type_lists_the_valid_ones() -> None:
    with pytest.raises(FedbenchError, match="loss_type 'sigmod' is not a loss of TRL's DPOTrainer") as err:
        dpo.DPO(loss_type="sigmod")
    assert all(name in (err.value.fix or "") for name in dpo.LOSSES)
    with pytest.raises(FedbenchError, match="one of: kto, apo_zero_unpaired"):
        kto.KTO(loss_type="bco")


def test_loss_weights_must_match_the_loss_types_in_number() -> None:
    with pytest.raises(FedbenchError, match=r"3 loss_weights for 2 loss types \(sigmoid, sft\)"):
        dpo.DPO(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5, 0.2])
    assert dpo.DPO(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.2]).loss_type == ("sigmoid", "sft")


def test_a_kl_estimating_loss_at_batch_one_is_refused_before_training() -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(MethodRefusal, match="'kto' needs a per-device batch of at least 2, got 1: its KL reference point"):
        build_cell(RunSpec(method="kto", layout="original", batch_size=1), registry)
    with pytest.raises(MethodRefusal, match="loss aot compares"):
        build_cell(RunSpec(method="dpo", method_params=(("loss_type", "aot"),), layout="original", batch_size=1), registry)
    for name, params in (("apo-zero-unpaired", ()), ("kto", (("loss_type", "apo_zero_unpaired"),)), ("dpo", ())):
        build_cell(RunSpec(method=name, method_params=params, layout="original", batch_size=1), registry)
    # under 'every' the refused cells are skipped, the rest run
    cells = expand_cells(Study(settings={"batch_size": 1}, method="every", layout="original"), registry)
    assert {c.spec.method for c in cells} == set(OBJECTIVES) - {"kto"}


def test_all_is_the_studys_two_and_every_is_the_family() -> None:
    registry = load_registry(entry_points=False)
    study = expand_cells(Study(method="all", layout="all"), registry)
    assert [c.spec.cell for c in study] == ["dpo-original-fedavg", "kto-original-fedavg", "kto-redistributed-fedavg"]
    every = {c.spec.cell for c in expand_cells(Study(method="every", layout="all"), registry)}
    assert {f"{m}-original-fedavg" for m in OBJECTIVES} < every
    assert "apo-zero-unpaired-redistributed-fedavg" in every and "simpo-redistributed-fedavg" not in every


def test_what_each_objective_needs_is_shown() -> None:
    registry = load_registry(entry_points=False)
    shown = {name: needs(registry.get("method", name)) for name in OBJECTIVES}
    assert shown["dpo"] == "pairs, reference model"
    assert shown["simpo"] == shown["orpo"] == "pairs, no reference"
    assert shown["kto"] == "single responses, reference model, batch >= 2"
    assert shown["apo-zero-unpaired"] == "single responses, reference model"


@pytest.mark.parametrize(
    ("name", "reward"), [("dpo", "log_ratio"), ("kto", "log_ratio"), ("simpo", "mean_logp"), ("orpo", "log_odds")]
)
def test_the_preference_benchmark_ranks_a_cell_by_its_objectives_own_reward(name: str, reward: str, tmp_path: Path) -> None:
    write_heldout(tmp_path / "heldout.jsonl", PAIRS[:2])
    (tmp_path / "spec.json").write_text(json.dumps({"method": name}))
    bench = Preference()
    questions = bench.questions(str(tmp_path / "heldout.jsonl"))
    assert {q.reward for q in questions} == {reward}
    # the policy prefers the chosen answer per token (short), the reference's summed log-ratio says the rejected one
    policy = [[SequenceLogp(-2.0, 2), SequenceLogp(-9.0, 6)]] * 2
    reference = [[SequenceLogp(-1.0, 2), SequenceLogp(-9.5, 6)]] * 2
    verdicts = bench.score_choices(questions, policy, reference)
    assert [j.score for j in verdicts["likelihood"]] == [1.0, 1.0]
    assert [j.score for j in verdicts["reward"]] == ([0.0, 0.0] if reward == "log_ratio" else [1.0, 1.0])
    assert REWARDS[reward] in verdicts["reward"][0].raw


def test_a_loss_list_from_a_config_keeps_the_spec_hashable_and_its_hash() -> None:
    settings = resolve_settings(None, None, {"method_params": {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.2]}})
    spec = RunSpec(**settings, method="dpo", layout="original")
    assert hash(spec) and spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # as spec.json keeps it
    assert spec.hash == "9be4d1f1038b"  # as when the lists stayed lists: a spec's hash is read from its JSON


def test_the_table_names_each_objective_as_its_plugins_say_and_keeps_the_studys_three() -> None:
    from fedbench.harness.study_table import variant

    assert [variant("dpo", "original"), variant("kto", "original"), variant("kto", "redistributed")] == ["DPO", "KTOO", "KTOR"]
    assert [variant("ipo", "original"), variant("simpo", "original"), variant("simpo", "partial")] == ["IPO", "SimPO", "SimPO/P"]
    assert [variant("apo-zero-unpaired", "original"), variant("apo-zero-unpaired", "redistributed")] == ["APO0-U/O", "APO0-U/R"]
    assert variant("not-a-plugin", "original") == "NOT-A-PLUGIN-original"
