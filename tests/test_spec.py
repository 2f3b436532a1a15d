"""Run configs: layered, checked for unknown keys and wrong types, hashed stably."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbench.harness.errors import FedbenchError
from fedbench.harness.spec import RunSpec, resolve_settings


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("roundz = 3\n")
    with pytest.raises(FedbenchError, match=r"unknown setting 'roundz'\. Did you mean 'rounds'\?"):
        resolve_settings(None, config, {})


def test_wrong_type_is_named(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('rounds = "three"\n')
    with pytest.raises(FedbenchError, match=r"'rounds' must be int, got str"):
        resolve_settings(None, config, {})


def test_layers_override_in_order(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('rounds = 5\nlora_targets = ["q_proj"]\n[method_params]\nbeta = 0.2\n')
    settings = resolve_settings({"rounds": 2, "seed": 4}, config, {"rounds": 7, "model": None})
    spec = RunSpec(**settings)
    assert (spec.rounds, spec.seed, spec.lora_targets, dict(spec.method_params)) == (7, 4, ("q_proj",), {"beta": 0.2})


@pytest.mark.parametrize("field", ["rounds", "clients_per_round", "local_steps"])
def test_counts_below_one_are_refused(field: str) -> None:
    with pytest.raises(FedbenchError, match=f"{field} must be at least 1"):
        RunSpec(**{field: 0})


def test_hash_is_stable_and_tracks_every_setting() -> None:
    assert RunSpec().hash == RunSpec().hash
    assert RunSpec(seed=1).hash != RunSpec().hash
    assert RunSpec(method_params=(("beta", 0.2),)).hash != RunSpec().hash


def test_learning_rate_follows_a_cosine_over_rounds() -> None:
    spec = RunSpec(rounds=4, learning_rate=1.0, min_learning_rate=0.0)
    lrs = [spec.lr_at(r) for r in range(4)]
    assert lrs[0] == 1.0 and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] > 0
    assert RunSpec(lr_schedule="constant").lr_at(2) == RunSpec().learning_rate


@pytest.mark.parametrize("holdout", [-0.1, 1.0, 1.5])
def test_a_holdout_outside_zero_to_one_is_refused_with_the_value(holdout: float) -> None:
    with pytest.raises(FedbenchError) as err:
        RunSpec(holdout=holdout)
    assert str(holdout) in err.value.problem and "[0, 1)" in err.value.problem


def test_seeds_do_not_change_the_settings_key() -> None:
    assert RunSpec(seed=0).settings_key == RunSpec(seed=3).settings_key != RunSpec(seed=0, rounds=9).settings_key
    assert RunSpec(seed=0).hash != RunSpec(seed=3).hash
