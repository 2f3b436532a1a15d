"""Nothing finished is lost: a crashed, killed or disk-full run resumes to the uninterrupted result."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fedbench.harness import checkpoint
from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import RoundEvent, build_cell, run_federation
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec


def _spec(model: Path, data: Path, **kw) -> RunSpec:
    base = dict(
        model=str(model),
        data=str(data),
        method="kto",
        layout="redistributed",
        rounds=3,
        clients_per_round=2,
        local_steps=2,
        batch_size=2,
        learning_rate=5e-3,
        max_length=64,
        lora_r=4,
        lora_alpha=8,
    )
    return RunSpec(**(base | kw))


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def _crash_after_round(n: int):
    def on_event(event: RoundEvent) -> None:
        if event.client is None and event.round == n:
            raise RuntimeError("simulated crash")

    return on_event


CLIENTS_AS_THEY_ARE = dict(
    aggregator="median",
    clients_per_round=4,
    attack="sign-flip",
    clients=(("dropout", 0.2), ("deadline", 1.0), ("speed", "lognormal:0.5")),
)
"""A robust rule, a malicious client and clients that drop out or run late: all of it seeded, so resume stays exact."""


@pytest.mark.parametrize(
    "settings", [{"aggregator": "fedavg"}, {"aggregator": "scaffold"}, {"aggregator": "fedadam"}, CLIENTS_AS_THEY_ARE]
)
def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tiny_model, pairs_file, tmp_path, settings) -> None:
    """Bit-for-bit: each client's training is seeded by (seed, round, client), checkpoints are exact float32."""
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, **settings)
    straight = run_federation(build_cell(spec, registry), tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_federation(build_cell(spec, registry), tmp_path / "b", on_event=_crash_after_round(1))
    state = checkpoint.scan_runs(tmp_path / "b")[0]
    assert (state.status, state.rounds_done) == ("failed", 1) and "simulated crash" in state.reason
    resumed = run_federation(build_cell(spec, registry), tmp_path / "b")
    assert [h.round for h in resumed.history] == [1, 2, 3]
    a, b = _final(straight.run_dir), _final(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoint.scan_runs(tmp_path / "b")[0].status == "done"
    assert [h.to_dict() | {"round_seconds": 0, "train_seconds": 0} for h in straight.history] == [
        h.to_dict() | {"round_seconds": 0, "train_seconds": 0} for h in resumed.history
    ]


def test_disk_full_keeps_earlier_rounds_and_says_so(tiny_model, pairs_file, tmp_path, monkeypatch) -> None:
    spec = _spec(tiny_model, pairs_file, rounds=2)
    real_save = checkpoint.save_file

    def save_file(tensors, path):  # noqa: ANN001
        if ".tmp-round_00002" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    with pytest.raises(FedbenchError) as err:
        run_federation(build_cell(spec, load_registry(entry_points=False)), tmp_path)
    assert "No space left on device" in err.value.problem and "Rounds up to 1 are intact" in err.value.problem
    assert "rerun" in (err.value.fix or "")
    rounds = tmp_path.glob("*/rounds/*")
    assert [p.name for p in rounds] == ["round_00001"], "no half-written checkpoint is left behind"
    assert checkpoint.RunDir(tmp_path, spec).latest().round == 1


KILL_SCRIPT = """
import os, signal, sys
from fedbench.harness import checkpoint
real = checkpoint.save_file
def save_file(tensors, path):
    real(tensors, path)
    if ".tmp-round_00002" in str(path) and "adapter" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)   # dies in the middle of writing round 2's checkpoint
checkpoint.save_file = save_file
from fedbench.harness.cli import app
app(sys.argv[1:], standalone_mode=True)
"""


def _cli_args(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "run",
        "--method",
        "kto",
        "--layout",
        "redistributed",
        "--agg",
        "fedavg",
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--rounds",
        "3",
        "--clients-per-round",
        "2",
        "--local-steps",
        "2",
        "--skip-eval",
        "--set",
        "batch_size=2",
        "--set",
        "max_length=64",
        "--set",
        "lora_r=4",
        "--set",
        "learning_rate=5e-3",
    ]


@pytest.mark.parametrize("where", ["during round 2", "during a checkpoint write"])
def test_sigkill_then_rerun_matches_an_uninterrupted_run(tiny_model, pairs_file, tmp_path, where) -> None:
    args = _cli_args(tiny_model, pairs_file, tmp_path / "killed")
    env = os.environ | {"COLUMNS": "200"}
    if where == "during a checkpoint write":
        proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], env=env, capture_output=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL
    else:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedbench.harness.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 240
        while not list((tmp_path / "killed").glob("*/rounds/round_00001")) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    state = checkpoint.scan_runs(tmp_path / "killed")[0]
    assert state.status == "interrupted" and state.rounds_done == 1
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    straight = CliRunner().invoke(app, _cli_args(tiny_model, pairs_file, tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    a = _final(next((tmp_path / "straight").glob("kto-*")))
    b = _final(next((tmp_path / "killed").glob("kto-*")))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_runs_lists_states_and_cleans_unfinished(tiny_model, pairs_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    registry = load_registry(entry_points=False)
    run_federation(build_cell(_spec(tiny_model, pairs_file, rounds=1), registry), tmp_path)
    with pytest.raises(RuntimeError):
        run_federation(
            build_cell(_spec(tiny_model, pairs_file, rounds=2, seed=5), registry), tmp_path, on_event=_crash_after_round(1)
        )
    listing = CliRunner().invoke(app, ["runs", "--runs", str(tmp_path)])
    assert listing.exit_code == 0 and "done" in listing.output and "failed: RuntimeError: simulated crash" in listing.output
    declined = CliRunner().invoke(app, ["runs", "--runs", str(tmp_path), "--clean"], input="n\n")
    assert declined.exit_code == 1 and len(checkpoint.scan_runs(tmp_path)) == 2
    cleaned = CliRunner().invoke(app, ["runs", "--runs", str(tmp_path), "--clean", "--yes"])
    assert cleaned.exit_code == 0 and [s.status for s in checkpoint.scan_runs(tmp_path)] == ["done"]
