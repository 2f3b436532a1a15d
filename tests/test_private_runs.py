"""Client-level differential privacy in a run (harness/server_side.py's PrivateMean): what a researcher relies on
when a cell reports an epsilon. The mechanism and the accountant on their own are in test_privacy.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec, resolve_settings, spec_from_dict
from tests.test_resume import _crash_after_round, _spec


def _equal_clients(path: Path, clients: int = 4, per_client: int = 6) -> Path:
    """Clients of one size: FedAvg's example weights are then DP-FedAvg's uniform ones."""
    rows = [
        {"id": f"p{c}-{i}", "client_id": f"user{c}", "prompt": f"{c} and {i}?", "chosen": f"{c + i}.", "rejected": "No idea."}
        for c in range(clients)
        for i in range(per_client)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _adapter(outcome) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return load_file(outcome.adapter_dir / "adapter_model.safetensors")


def test_no_noise_and_no_clip_is_plain_fedavg_bit_for_bit(tiny_model: Path, tmp_path: Path) -> None:
    data = _equal_clients(tmp_path / "equal.jsonl")
    registry = load_registry(entry_points=False)
    plain = _spec(tiny_model, data, aggregator="fedavg", holdout=0.0, rounds=2)
    private = spec_from_dict(plain.to_dict() | {"privacy": {"clip_norm": math.inf, "noise_multiplier": 0.0}})
    assert private.hash != plain.hash
    a = _adapter(run_federation(build_cell(plain, registry), tmp_path / "a"))
    outcome = run_federation(build_cell(private, registry), tmp_path / "b")
    b = _adapter(outcome)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert outcome.history[-1].privacy["clipped"] == 0 and math.isinf(outcome.history[-1].privacy["epsilon"])


def test_the_clip_bounds_what_a_round_can_move_and_epsilon_grows_to_its_target(tiny_model: Path, tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    data = _equal_clients(tmp_path / "equal.jsonl")
    clip = 1e-3
    spec = _spec(
        tiny_model, data, aggregator="fedavg", holdout=0.0, rounds=3, privacy=(("clip_norm", clip), ("target_epsilon", 8.0))
    )
    moves: list[float] = []
    cell = build_cell(spec, registry)
    outcome = run_federation(cell, tmp_path)
    rounds = sorted((outcome.run_dir / "rounds").iterdir())
    previous = None
    for folder in rounds:
        adapter = load_file(folder / "adapter.safetensors")
        if previous is not None:
            moves.append(math.sqrt(sum(float((adapter[k] - previous[k]).double().pow(2).sum()) for k in adapter)))
        previous = adapter
    records = [r.privacy for r in outcome.history]
    assert all(r["clipped"] == 2 for r in records), "updates of this size all exceed a 1e-3 clip"
    sigma = records[0]["noise_multiplier"] * clip / spec.clients_per_round
    size = sum(t.numel() for t in previous.values())  # type: ignore[union-attr]
    # clipped mean <= C, plus noise of norm about sigma * sqrt(size): nothing moves further
    assert all(move <= clip + 3 * sigma * math.sqrt(size) for move in moves) and moves
    epsilons = [r["epsilon"] for r in records]
    assert epsilons == sorted(epsilons) and epsilons[-1] <= 8.0 + 1e-6 and epsilons[-1] > 7.0
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert result["privacy"]["epsilon"] == pytest.approx(epsilons[-1])


def test_a_private_run_resumes_bit_for_bit(tiny_model: Path, pairs_file: Path, tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, aggregator="fedadam", privacy=(("clip_norm", 0.05), ("noise_multiplier", 1.0)))
    straight = run_federation(build_cell(spec, registry), tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_federation(build_cell(spec, registry), tmp_path / "b", on_event=_crash_after_round(1))
    resumed = run_federation(build_cell(spec, registry), tmp_path / "b")
    a, b = _adapter(straight), _adapter(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "the noise is seeded by (seed, round)"
    assert straight.history[-1].privacy == resumed.history[-1].privacy


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"clip_norm": -1.0, "noise_multiplier": 1.0}, "clip norm is -1.0"),
        ({"clip_norm": 1.0, "noise_multiplier": -0.5}, "noise multiplier is -0.5"),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1.5}, "1.5"),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "target_epsilon": 2.0}, "and has both"),
        ({"clip_norm": 1.0, "noise": 1.0}, "unknown setting 'noise'"),
        ({"noise_multiplier": 1.0}, "no clip_norm"),
    ],
)
def test_bad_privacy_settings_are_refused_before_anything_runs(table: dict, message: str) -> None:
    with pytest.raises(FedbenchError, match=message):
        RunSpec(**resolve_settings(None, None, {"privacy": table}))


def test_dp_refuses_an_aggregator_that_reads_each_update_and_an_unreachable_epsilon(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(FedbenchError, match="reads each client's update") as err:
        build_cell(
            _spec(tiny_model, pairs_file, aggregator="scaffold", privacy=(("clip_norm", 1.0), ("noise_multiplier", 1.0))),
            registry,
        )
    assert "fedavg" in err.value.fix
    unreachable = _spec(tiny_model, pairs_file, aggregator="fedavg", privacy=(("clip_norm", 1.0), ("target_epsilon", 1e-9)))
    with pytest.raises(FedbenchError, match="1e-09"):
        run_federation(build_cell(unreachable, registry), tmp_path)
    assert not list(tmp_path.glob("*/rounds/*")), "refused before any round trained"


def test_a_cells_privacy_and_codec_settings_name_its_leaderboard_row() -> None:
    spec = RunSpec(privacy=(("clip_norm", 0.1), ("target_epsilon", 8.0)), codec="int8", codec_params=(("block_size", 64),))
    assert spec.tag == "DP eps<=8 C=0.1, int8 block_size=64"
    assert RunSpec().tag == "" and RunSpec(privacy=(("clip_norm", 1.0), ("noise_multiplier", 1.1))).tag == "DP z=1.1 C=1"
