"""Federated KTO and DPO on a tiny model: weights move, losses stay finite, checkpoints reload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.models import attach_lora, fresh_adapter, load_base, read_adapter
from fedbench.harness.registry import load_registry
from fedbench.harness.rounds import sample_clients
from fedbench.harness.spec import RunSpec


def tiny_spec(model: Path, data: Path, **overrides) -> RunSpec:
    base = dict(
        model=str(model),
        data=str(data),
        rounds=2,
        clients_per_round=2,
        local_steps=2,
        batch_size=2,
        learning_rate=5e-3,
        max_length=64,
        lora_r=4,
        lora_alpha=8,
    )
    return RunSpec(**(base | overrides))


@pytest.mark.parametrize(("method", "layout"), [("kto", "redistributed"), ("dpo", "original"), ("kto", "original")])
def test_two_round_run_moves_weights_and_checkpoints(tiny_model, pairs_file, tmp_path, method, layout) -> None:
    spec = tiny_spec(tiny_model, pairs_file, method=method, layout=layout)
    cell = build_cell(spec, load_registry(entry_points=False))
    model, _ = load_base(spec.model)
    initial = fresh_adapter(attach_lora(model, spec.lora), spec.seed)

    outcome = run_federation(cell, tmp_path)

    assert [h.round for h in outcome.history] == [1, 2]
    assert all(math.isfinite(h.loss) for h in outcome.history)
    final = load_file(outcome.run_dir / "rounds" / "round_00002" / "adapter.safetensors")
    assert any(not torch.equal(final[k], initial[k]) for k in initial), "training must change the adapter"
    live = read_adapter(attach_lora(model, spec.lora))
    assert all(torch.equal(live[k], final[k]) for k in final), "the saved checkpoint is the trained global adapter"
    peft_weights = load_file(outcome.adapter_dir / "adapter_model.safetensors")
    assert len(peft_weights) == len(final)
    assert json.loads((outcome.run_dir / "spec.json").read_text())["method"] == method
    again = run_federation(cell, tmp_path)
    assert again.skipped and again.history == outcome.history


def test_clients_per_round_above_the_client_count_is_refused(tiny_model, pairs_file, tmp_path) -> None:
    spec = tiny_spec(tiny_model, pairs_file, clients_per_round=9)
    with pytest.raises(FedbenchError, match="clients_per_round is 9 but the data has only 4 clients"):
        run_federation(build_cell(spec, load_registry(entry_points=False)), tmp_path)


def test_client_sampling_depends_only_on_seed_and_round() -> None:
    ids = [f"c{i}" for i in range(10)]
    assert sample_clients(ids, 3, 0, 5) == sample_clients(list(reversed(ids)), 3, 0, 5)
    assert sample_clients(ids, 3, 0, 5) != sample_clients(ids, 3, 0, 6) or sample_clients(ids, 3, 1, 5) != sample_clients(
        ids, 3, 0, 5
    )


def test_missing_lora_target_names_the_available_modules(tiny_model) -> None:
    model, _ = load_base(str(tiny_model))
    with pytest.raises(FedbenchError) as err:
        attach_lora(model, RunSpec(lora_targets=("qkv_proj",)).lora)
    assert "qkv_proj" in err.value.problem and "q_proj" in (err.value.fix or "")


def test_model_path_that_does_not_exist() -> None:
    with pytest.raises(FedbenchError, match="model path './no/such/model' does not exist"):
        load_base("./no/such/model")


def test_cli_run_end_to_end(tiny_model, pairs_file, tmp_path) -> None:
    args = [
        "run",
        "--method",
        "kto",
        "--layout",
        "redistributed",
        "--agg",
        "fedavg",
        "--model",
        str(tiny_model),
        "--data",
        str(pairs_file),
        "--rounds",
        "1",
        "--clients-per-round",
        "2",
        "--local-steps",
        "1",
        "--out",
        str(tmp_path),
        "--skip-eval",
        "--set",
        "batch_size=2",
        "--set",
        "max_length=64",
        "--set",
        "lora_targets=['q_proj']",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run_dirs = list(tmp_path.glob("kto-redistributed-fedavg-*"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "result.json").is_file()
    assert "trained cells" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "dpo", "--layout", "redistributed"],
            "a paired objective (DPO, IPO, SimPO, ...) needs both responses of a pair",
        ),
        (["--method", "ktoo"], "unknown method 'ktoo'. Did you mean 'kto'?"),
        (["--agg", "fedavgm2"], "unknown aggregator 'fedavgm2'"),
        (["--profile", "papr"], "unknown profile 'papr'. Did you mean 'paper'?"),
        (["--set", "roundz=2"], "unknown setting 'roundz'. Did you mean 'rounds'?"),
        (["--rounds", "0"], "rounds must be at least 1"),
    ],
)
def test_cli_bad_input_fails_with_a_clear_message(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "fix:" in result.output
