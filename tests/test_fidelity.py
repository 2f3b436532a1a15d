"""The study's training rules: KTO's balanced desirable weight per client and round, FedLLM-Bench's dynamic local steps."""

from __future__ import annotations

import warnings

import pytest

from fedbench.api import fake_pairs
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, partition, run_federation
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec, resolve_settings
from fedbench.plugins.methods.kto import KTO
from tests.test_federation import tiny_spec
from tests.test_hardware import trainer_settings_seen


def test_dynamic_steps_follow_fedllm_bench_on_hand_worked_numbers() -> None:
    paper = RunSpec(local_steps="dynamic", rounds=200, clients_per_round=10, batch_size=8, grad_accum=1)
    # a client is sampled 200 x 10 / 747 = 2.677 times in expectation; 3 epochs of n examples over those visits:
    assert paper.steps_for(100, 747) == 15  # 3 x 100 / 2.677 = 112.05 examples per visit / 8 = 14.006 -> 15
    assert paper.steps_for(13, 747) == 2  # 39 / 2.677 = 14.57 / 8 = 1.82 -> 2
    assert paper.steps_for(1, 747) == 1  # never below one step
    assert RunSpec(local_steps="dynamic", rounds=200, clients_per_round=10, batch_size=1, grad_accum=8).steps_for(100, 747) == 15
    assert RunSpec(local_steps=4).steps_for(100, 747) == 4, "a fixed count ignores the client's size"


def test_local_steps_takes_a_count_or_dynamic() -> None:
    assert resolve_settings(None, None, {"local_steps": "7"})["local_steps"] == 7  # --local-steps 7
    assert resolve_settings(None, None, {"local_steps": "dynamic"})["local_steps"] == "dynamic"
    with pytest.raises(FedbenchError, match="'local_steps' must be an integer or 'dynamic'"):
        resolve_settings(None, None, {"local_steps": "often"})
    with pytest.raises(FedbenchError, match="local_steps must be at least 1"):
        RunSpec(local_steps=0)


def test_a_dynamic_run_records_each_clients_steps(tiny_model, pairs_file, tmp_path) -> None:
    spec = tiny_spec(tiny_model, pairs_file, method="dpo", layout="original", local_steps="dynamic", rounds=2, holdout=0.0)
    cell = build_cell(spec, load_registry(entry_points=False))
    sizes = {cid: len(ex) for cid, ex in partition(cell).items()}
    history = run_federation(cell, tmp_path).history
    for record in history:
        assert set(record.client_settings) == set(record.clients)
        for cid, settings in record.client_settings.items():
            assert settings == {"steps": spec.steps_for(sizes[cid], len(sizes))}
    assert len({s["steps"] for r in history for s in r.client_settings.values()}) > 1, "uneven clients train unevenly"


def _labelled(good: int, bad: int):  # noqa: ANN202 - a datasets.Dataset
    import datasets

    rows = [{"prompt": "p", "completion": "c", "label": True}] * good + [{"prompt": "p", "completion": "c", "label": False}] * bad
    return datasets.Dataset.from_list(rows)


def test_balanced_weight_is_undesirable_over_desirable_with_a_fallback_for_one_sided_clients() -> None:
    kto = KTO(desirable_weight="balanced")
    assert kto.local_settings(_labelled(3, 1)) == {"desirable_weight": pytest.approx(1 / 3)}
    assert kto.local_settings(_labelled(2, 5)) == {"desirable_weight": pytest.approx(2.5)}
    assert kto.local_settings(_labelled(0, 4)) == {"desirable_weight": 1.0, "balanced_fallback": 1.0}
    assert kto.local_settings(_labelled(4, 0)) == {"desirable_weight": 1.0, "balanced_fallback": 1.0}
    assert KTO(desirable_weight=1.5).local_settings(_labelled(3, 1)) == {}, "fixed weights do not vary per client"
    with pytest.raises(FedbenchError, match="'often' is not a number or 'balanced'"):
        KTO(desirable_weight="often")
    with pytest.raises(FedbenchError, match="undesirable weight of 1"):
        KTO(desirable_weight="balanced", undesirable_weight=2.0)


def test_fixed_weights_outside_the_papers_range_are_warned_about() -> None:
    pairs = fake_pairs(8)  # unpaired: as many desirable as undesirable examples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KTO(desirable_weight=1.2).examples(pairs)  # ratio 1.2: inside [1, 4/3]
    with pytest.warns(UserWarning, match=r"is 2.00 on this data, outside the KTO paper's recommended \[1, 1.33\]"):
        KTO(desirable_weight=2.0).examples(pairs)


def test_a_balanced_kto_run_trains_and_records_each_clients_weight(tiny_model, pairs_file, tmp_path, monkeypatch) -> None:
    used = trainer_settings_seen(monkeypatch, "desirable_weight")
    spec = tiny_spec(
        tiny_model, pairs_file, method="kto", layout="redistributed", method_params=(("desirable_weight", "balanced"),)
    )
    cell = build_cell(spec, load_registry(entry_points=False))
    clients = partition(cell)
    history = run_federation(cell, tmp_path).history
    recorded = [r.client_settings[cid]["desirable_weight"] for r in history for cid in r.clients]
    assert used == pytest.approx(recorded), "the trainer used the weight the history records"
    for record in history:
        for cid in record.clients:
            good = sum(1 for ex in clients[cid] if ex.label)
            bad = len(clients[cid]) - good
            expected = bad / good if good and bad else 1.0
            assert record.client_settings[cid]["desirable_weight"] == pytest.approx(expected)


def test_advbench_asks_each_goal_with_the_studys_period_and_samples_like_the_study() -> None:
    from fedbench.plugins.benchmarks.advbench import AdvBench

    raw = AdvBench(trailing_period=False).questions()
    asked = AdvBench().questions()
    assert any(not q.prompt.endswith(".") for q in raw), "the sample goals come without a period"
    assert [q.prompt for q in asked] == [q.prompt if q.prompt.endswith((".", "?", "!")) else q.prompt + "." for q in raw]
    assert AdvBench().temperature(asked[0]) == 0.7
