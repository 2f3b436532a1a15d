"""The Flower engine: simulation reaches the local engine's adapter, a localhost deployment trains, errors are clear."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_pairs
from safetensors.torch import load_file
from typer.testing import CliRunner

from fedbench.harness.cli import app
from fedbench.harness.data import read_examples, write_examples
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, partition, run_federation
from fedbench.harness.holdout import HOLDOUT_FILE, read_heldout
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec

flower = pytest.importorskip("fedbench.harness.flower", reason="Flower is not installed: pip install 'fedbench[flower]'")

BIN = Path(sys.executable).parent
# Every adapter entry moves by ~5e-3 over the two rounds (asserted below). Both engines run the same
# float32 operations in the same order on one CPU thread (conftest sets OMP_NUM_THREADS=1, and Ray gives
# each simulated client one CPU, hence one thread), so they agree bit for bit today; 1e-6 leaves room
# for a reduction order that another thread count could change, and is still 5000x below what a wrong
# client, learning rate, round or control variate would do to the adapter.
TOLERANCE = 1e-6


def spec_for(model: Path, data: Path, **overrides) -> RunSpec:
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
        method="kto",
        layout="original",
    )
    return RunSpec(**(base | overrides))


def final_adapter(run_dir: Path, round_number: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "rounds" / f"round_{round_number:05d}" / "adapter.safetensors")


@pytest.mark.parametrize(("aggregator", "codec"), [("fedavg", "none"), ("fedadam", "int8"), ("scaffold", "bf16")])
def test_simulation_reaches_the_local_engines_adapter(tiny_model, tmp_path, aggregator, codec) -> None:
    """Also with a codec: the Flower client sends the encoded arrays, the server decodes them, as the local engine does."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=3)  # 2 of 3 per round: sampling must agree too
    spec = spec_for(tiny_model, data, aggregator=aggregator, seed=2, codec=codec)  # seed 2: user1+user2, then user1+user0
    registry = load_registry(entry_points=False)
    local = run_federation(build_cell(spec, registry), tmp_path / "local")
    simulated = flower.simulate(build_cell(spec, registry), tmp_path / "flower", flower.Resources(num_cpus=1, num_gpus=0))

    a, b = final_adapter(local.run_dir, 2), final_adapter(simulated.run_dir, 2)
    start = final_adapter(local.run_dir, 1)
    assert a.keys() == b.keys()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3, "round 2 must move the adapter"
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE
    assert [h.clients for h in simulated.history] == [h.clients for h in local.history]
    assert len({tuple(sorted(h.clients)) for h in local.history}) == 2, "the two rounds sample different pairs of clients"
    assert [h.loss for h in simulated.history] == pytest.approx([h.loss for h in local.history], abs=1e-6)
    assert [h.bytes_up for h in simulated.history] == [h.bytes_up for h in local.history], "bytes counted encoded on both"
    result = json.loads((simulated.run_dir / "result.json").read_text())
    assert result["engine"] == "flower" and result["hash"] == spec.hash
    assert (simulated.adapter_dir / "adapter_model.safetensors").is_file(), "the PEFT adapter is written as by the local engine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float) -> None:
    """Until the SuperLink accepts connections: `flwr run` gives up at once on a closed port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the SuperLink exited while starting"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the SuperLink did not listen on port {port} within {seconds} s")


def _stop(processes: list[subprocess.Popen], grace: float) -> float:
    """Terminate, wait up to ``grace`` seconds, kill what is left; returns how long it took."""
    started = time.monotonic()
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(timeout=max(0.1, grace - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return time.monotonic() - started


def test_localhost_deployment_trains_a_round_from_each_sites_own_file(tiny_model, tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=2)
    common = ["--method", "kto", "--layout", "redistributed", "--data", str(data)]
    sets = [
        "--set",
        f"model='{tiny_model}'",
        "--set",
        "max_length=64",
        "--set",
        "lora_r=4",
        "--set",
        "lora_alpha=8",
        "--set",
        "batch_size=2",
        "--set",
        "learning_rate=0.005",
    ]
    runner = CliRunner()
    parted = runner.invoke(app, ["partition", "--out", str(tmp_path / "sites"), *common, *sets], env={"COLUMNS": "300"})
    assert parted.exit_code == 0, parted.output
    sites = sorted((tmp_path / "sites").glob("*.jsonl"))
    assert [s.stem for s in sites] == ["user0", "user1"]

    port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = os.environ | {"FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = [
        subprocess.Popen(
            [str(BIN / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation", "--port", str(port)],
            env=env,
            stdout=(logs / "superlink.log").open("w"),
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        _wait_for_port(port, processes[0], 60)
        for i, site in enumerate(sites):
            processes.append(
                subprocess.Popen(
                    [
                        str(BIN / "flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--port",
                        str(_free_port()),
                        "--node-config",
                        f'data-file="{site}" client-id="{site.stem}"',
                    ],
                    env=env,
                    stdout=(logs / f"supernode{i}.log").open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
        os.environ["FLWR_HOME"] = str(home)  # `flwr run` (a child of this process) reads the connection from here
        try:
            started = time.monotonic()
            done = runner.invoke(
                app,
                [
                    "run",
                    *common,
                    *sets,
                    "--agg",
                    "fedavg",
                    "--rounds",
                    "1",
                    "--clients-per-round",
                    "2",
                    "--local-steps",
                    "2",
                    "--engine",
                    "flower",
                    "--superlink",
                    "test",
                    "--skip-eval",
                    "--out",
                    str(tmp_path / "runs"),
                ],
            )
            took = time.monotonic() - started
        finally:
            del os.environ["FLWR_HOME"]
        server_log = "".join(p.read_text() for p in sorted(logs.iterdir()))
        assert done.exit_code == 0, done.output + server_log
        assert took < 300
    finally:
        stop_seconds = _stop(processes, grace=20)
    assert stop_seconds < 25 and all(p.returncode is not None for p in processes)

    (run_dir,) = (tmp_path / "runs").glob("kto-redistributed-fedavg-*")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["engine"] == "flower"
    # each site has 6 pairs, ceil(0.2 x 6) = 2 of which the demo profile's holdout keeps out: 4 pairs -> 8 KTO examples
    assert json.loads((run_dir / "flower-clients.json").read_text()) == {"clients": {"user0": 8, "user1": 8}}
    assert len(read_heldout(run_dir / HOLDOUT_FILE)) == 4  # the server holds the data here, so it wrote the held-out pairs
    assert sorted(result["history"][0]["clients"]) == ["user0", "user1"]
    # the same cell on the local engine, from the same (centrally laid-out) data, lands on the same adapter
    spec = RunSpec(**result["spec"] | {"lora_targets": tuple(result["spec"]["lora_targets"])})
    local = run_federation(build_cell(spec, load_registry(entry_points=False)), tmp_path / "local")
    a, b = final_adapter(local.run_dir, 1), final_adapter(run_dir, 1)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE


def test_flower_engine_without_flower_says_how_to_install(monkeypatch, pairs_file, tmp_path) -> None:
    for name in [m for m in sys.modules if m == "flwr" or m.startswith("flwr.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without Flower looks like to import
    for name in [m for m in sys.modules if m == "fedbench.harness.flower" or m.startswith("fedbench.harness.flower.")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its submodules: a cached one would not import flwr again
    result = CliRunner().invoke(
        app, ["run", "--data", str(pairs_file), "--engine", "flower", "--skip-eval", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--engine flower needs Flower" in result.output and "pip install 'fedbench[flower]'" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--superlink", "x"], "only apply to the Flower engine"),
        (["--engine", "flwr"], "Did you mean 'flower'?"),
        (["--engine", "flower", "--min-nodes", "3"], "--min-nodes applies to a deployment"),
    ],
)
def test_engine_flags_are_checked(pairs_file, tmp_path, flags, message) -> None:
    result = CliRunner().invoke(
        app, ["run", "--data", str(pairs_file), *flags, "--skip-eval", "--out", str(tmp_path)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and message in result.output, result.output


def test_site_data_comes_from_the_node_config(pairs_file, tmp_path) -> None:
    registry = load_registry(entry_points=False)
    kto = build_cell(RunSpec(data=str(pairs_file), method="kto", layout="redistributed"), registry)
    clients = partition(kto)
    write_examples(tmp_path / "site.jsonl", clients["user1"])
    assert read_examples(tmp_path / "site.jsonl") == clients["user1"]
    assert flower.site_examples(kto, {"data-file": str(tmp_path / "site.jsonl"), "client-id": "user1"}) == (
        "user1",
        clients["user1"],
    )
    assert flower.site_examples(kto, {"partition-id": 2, "num-partitions": 4}) == ("user2", clients["user2"])

    with pytest.raises(FedbenchError, match="partition-id 0 of num-partitions 3, but the cell's data has 4 clients"):
        flower.site_examples(kto, {"partition-id": 0, "num-partitions": 3})
    with pytest.raises(FedbenchError, match="names no data"):
        flower.site_examples(kto, {})
    dpo = build_cell(RunSpec(data=str(pairs_file), method="dpo", layout="original"), registry)
    with pytest.raises(FedbenchError, match="holds labelled single responses but method 'dpo' needs preference pairs"):
        flower.site_examples(dpo, {"data-file": str(tmp_path / "site.jsonl")})
    pairs_site = flower.site_examples(kto, {"data-file": str(pairs_file)})
    assert pairs_site[0] == "pairs" and len(pairs_site[1]) == 2 * 24, "a site's own pair file is unpaired for KTO (KTOO)"


def test_arrays_travel_with_names_and_dtypes() -> None:
    params = {"a.lora_A": torch.randn(2, 3), "b.lora_B": torch.randn(3, 2).to(torch.bfloat16)}
    back = flower.from_record(flower.to_record(params), like=params)
    assert list(back) == list(params)
    assert torch.equal(back["a.lora_A"], params["a.lora_A"]) and back["b.lora_B"].dtype == torch.bfloat16
    assert torch.equal(back["b.lora_B"], params["b.lora_B"])


def test_scaffold_sends_a_client_only_its_own_control_variate() -> None:
    registry = load_registry(entry_points=False)
    scaffold = registry.create("aggregator", "scaffold")
    x = {"w": torch.zeros(2)}
    scaffold.setup(x, num_clients=2)
    scaffold.load_state_dict({"c/w": torch.ones(2), "ci/u1/w": torch.full((2,), 2.0), "ci/u2/w": torch.full((2,), 3.0)})
    assert set(scaffold.client_state("u1")) == {"c/w", "ci/u1/w"}
    assert set(scaffold.client_state("new")) == {"c/w"}
    fedadam = registry.create("aggregator", "fedadam")
    fedadam.setup(x, 2)
    assert fedadam.client_state("u1") == {}, "an aggregator without a client half sends nothing"


def test_a_local_run_interrupted_after_round_one_resumes_on_flower(tiny_model, tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=2)
    spec = spec_for(tiny_model, data, aggregator="fedadam")  # server state (m, v) must carry over
    registry = load_registry(entry_points=False)
    whole = run_federation(build_cell(spec, registry), tmp_path / "whole")
    interrupted = run_federation(build_cell(spec, registry), tmp_path / "resumed")
    (interrupted.run_dir / "result.json").unlink()
    for leftover in ("rounds/round_00002", "adapter"):
        shutil.rmtree(interrupted.run_dir / leftover)

    resumed = flower.simulate(build_cell(spec, registry), tmp_path / "resumed", flower.Resources(num_cpus=1, num_gpus=0))

    assert resumed.history[0] == interrupted.history[0], "round 1 comes from the checkpoint, not retrained (timings would differ)"
    assert [h.round for h in resumed.history] == [1, 2]
    a, b = final_adapter(whole.run_dir, 2), final_adapter(resumed.run_dir, 2)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE
