"""The centralized and local-only baselines (harness/baselines.py): which cells a study makes, how their steps
match the federated cells', and that a local-only client never learns from another client's data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.harness.baselines import client_adapter_dir
from fedbench.harness.cli import app
from fedbench.harness.engines import refuse_on_flower
from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import EvalSpec
from fedbench.harness.federation import build_cell, partition, run_federation
from fedbench.harness.interfaces import Judgment
from fedbench.harness.registry import load_registry
from fedbench.harness.results.model import build_matrix, gap_rows
from fedbench.harness.results.render_json import gaps_json
from fedbench.harness.results.text import gap_text
from fedbench.harness.spec import resolve_settings
from fedbench.harness.stats import gap_closed
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study import Study, evaluate_runs, expand_cells
from tests.conftest import write_pairs
from tests.test_federation import tiny_spec


def test_all_leaves_the_baselines_out_and_baselines_adds_one_centralized_cell_per_method(pairs_file: Path) -> None:
    registry = load_registry(entry_points=False)
    settings = {"data": str(pairs_file), "clients_per_round": 3, "local_steps": 4}
    plain = expand_cells(Study(settings=settings, method="all", layout="all", aggregator="all"), registry)
    assert {c.spec.aggregator for c in plain} == {"fedavg", "fedprox", "scaffold", "fedavgm", "fedyogi", "fedadagrad", "fedadam"}
    assert "pooled" not in {c.spec.layout for c in plain}
    cells = expand_cells(Study(settings=settings, method="all", layout="all", aggregator="fedavg", baselines=True), registry)
    labels = [c.spec.cell for c in cells]
    assert labels == [
        "dpo-original-fedavg",
        "dpo-pooled-centralized",
        "dpo-original-local",
        "kto-original-fedavg",
        "kto-pooled-centralized",  # KTOO and KTOR pool to the same examples: one cell stands beside both
        "kto-original-local",
        "kto-redistributed-fedavg",
        "kto-redistributed-local",
    ]
    private = resolve_settings(
        None,
        None,
        {"privacy": {"clip_norm": 0.1, "noise_multiplier": 1.0}, "codec": "int8", "aggregator_params": {"server_lr": 0.1}},
    )
    mixed = expand_cells(
        Study(settings=settings | private, method="kto", layout="original", aggregator="fedadam", baselines=True), registry
    )
    assert [c.spec.cell for c in mixed] == ["kto-original-fedadam", "kto-pooled-centralized", "kto-original-local"]
    assert mixed[0].spec.tag == "DP z=1 C=0.1, int8" and mixed[0].spec.aggregator_params == (("server_lr", 0.1),)
    assert all(c.spec.tag == "" and not c.spec.aggregator_params for c in mixed[1:]), "baselines send nothing to protect"
    central = next(c.spec for c in cells if c.spec.aggregator == "centralized")
    federated = cells[0].spec
    assert (central.clients_per_round, central.local_steps) == (1, 12), "one client doing clients_per_round x local_steps"
    assert (central.rounds, central.batch_size, central.learning_rate, central.seed) == (
        federated.rounds,
        federated.batch_size,
        federated.learning_rate,
        federated.seed,
    )


def test_centralized_with_several_clients_per_round_is_refused_with_the_rule(tiny_model: Path, pairs_file: Path) -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(FedbenchError, match="one pooled client per round") as err:
        build_cell(tiny_spec(tiny_model, pairs_file, aggregator="centralized", layout="pooled"), registry)
    assert "clients_per_round = 2" in err.value.problem and "--agg centralized" in err.value.fix
    with pytest.raises(FedbenchError, match="layout 'redistributed'"):
        build_cell(tiny_spec(tiny_model, pairs_file, aggregator="centralized", clients_per_round=1), registry)


def test_centralized_trains_as_many_steps_on_as_many_examples_as_the_federated_cell(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    registry = load_registry(entry_points=False)
    cells = expand_cells(
        Study(
            settings={"model": str(tiny_model), "data": str(pairs_file), "rounds": 2, "clients_per_round": 2, "local_steps": 2}
            | {"batch_size": 2, "max_length": 64, "lora_r": 4, "lora_alpha": 8},
            method="dpo",
            layout="original",
            aggregator="fedavg,centralized",
        ),
        registry,
    )
    steps: dict[str, int] = {}
    for cell in cells:
        count = [0]
        outcome = run_federation(cell, tmp_path, on_step=lambda _loss, count=count: count.__setitem__(0, count[0] + 1))
        steps[cell.spec.aggregator] = count[0]
        if cell.spec.aggregator == "centralized":
            assert [r.clients for r in outcome.history] == [("pooled",), ("pooled",)]
            assert all(r.bytes_down == r.bytes_up == 0 for r in outcome.history), "pooled data: nothing travels"
            (pooled,) = partition(cell).values()
            assert len(pooled) == sum(len(x) for x in partition(cells[0]).values()), "every training pair on the one client"
    assert steps == {"fedavg": 2 * 2 * 2, "centralized": 2 * 2 * 2}, "same optimizer steps of the same batch size"


def _local_adapter_bytes(run_dir: Path, client: str) -> bytes:
    return (client_adapter_dir(run_dir, client) / "adapter_model.safetensors").read_bytes()


def test_a_local_only_client_learns_nothing_from_another_clients_data(tiny_model: Path, tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    data = write_pairs(tmp_path / "a.jsonl")
    changed = tmp_path / "b.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:
        if row["client_id"] == "user2":  # another client's texts change; the schedule (ids, sizes) does not
            row["chosen"] = "A different answer entirely, " + row["chosen"]
    changed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = {}
    for name, path in (("a", data), ("b", changed)):
        spec = tiny_spec(tiny_model, path, method="kto", layout="original", aggregator="local", rounds=3, local_steps=1)
        cell = build_cell(spec, registry)
        outcome = run_federation(cell, tmp_path / name)
        runs[name] = (outcome, json.loads((outcome.run_dir / "result.json").read_text())["local_only"])
    outcome, summary = runs["a"]
    sampled = {c for record in outcome.history for c in record.clients}
    assert (
        summary["clients_trained"] == len(sampled)
        and set(summary["clients_never_sampled"])
        == {
            "user0",
            "user1",
            "user2",
            "user3",
        }
        - sampled
    )
    assert summary["generation_adapter_client"] == "user0", "the largest trained client answers the generation benchmarks"
    assert (outcome.adapter_dir / "adapter_model.safetensors").read_bytes() == _local_adapter_bytes(outcome.run_dir, "user0")
    others = sorted(sampled - {"user2"})
    assert others, "the schedule trains some client other than user2"
    for client in others:  # bit for bit: nothing of user2's data reaches another client's adapter
        assert _local_adapter_bytes(outcome.run_dir, client) == _local_adapter_bytes(runs["b"][0].run_dir, client)
    if "user2" in sampled:
        assert _local_adapter_bytes(outcome.run_dir, "user2") != _local_adapter_bytes(runs["b"][0].run_dir, "user2")


def test_local_only_scores_each_clients_pairs_with_its_own_adapter(tiny_model: Path, pairs_file: Path, tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    spec = tiny_spec(tiny_model, pairs_file, method="dpo", layout="original", aggregator="local", rounds=1, holdout=0.3)
    outcome = run_federation(build_cell(spec, registry), tmp_path)
    trained = {c for record in outcome.history for c in record.clients}
    rows = evaluate_runs([outcome.run_dir], EvalSpec(benchmarks=("preference",)), registry, tmp_path, include_base=False)
    reward = next(r for r in rows if r.benchmark == "preference.reward")
    assert set(json.loads(reward.per_client or "{}")) == trained, "clients never trained are left out, the rest scored"
    assert "own local-only adapter" in reward.judge_setting
    assert "(beta x log(pi / pi_ref) of the whole answer" in reward.judge_setting, "the setting names the reward it ranks by"


def test_the_local_only_baseline_refuses_a_distributed_engine_before_any_cell_trains(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    from fedbench.harness.engines import FlowerSimulation
    from fedbench.harness.study import run_study

    cell = build_cell(tiny_spec(tiny_model, pairs_file, aggregator="local"), load_registry(entry_points=False))
    with pytest.raises(FedbenchError, match="nothing travels"):
        refuse_on_flower(cell)
    study = Study(
        settings={"model": str(tiny_model), "data": str(pairs_file), "rounds": 1},
        method="kto",
        layout="original",
        aggregator="fedavg,local",
        runs_root=tmp_path / "runs",
        engine=FlowerSimulation(),
    )
    with pytest.raises(FedbenchError, match="nothing travels"):
        run_study(study, load_registry(entry_points=False))
    assert not (tmp_path / "runs").exists(), "refused before the fedavg cell started"


def test_gap_closed_on_hand_worked_numbers() -> None:
    units = range(10)
    local = {u: 50.0 for u in units}
    central = {u: 90.0 for u in units}
    fed = {u: 70.0 for u in units}
    assert gap_closed(fed, local, central).gap == pytest.approx(50.0)
    assert gap_closed({u: 90.0 for u in units}, local, central).gap == pytest.approx(100.0)
    assert gap_closed({u: 40.0 for u in units}, local, central).gap == pytest.approx(-25.0), "worse than local only"
    same = gap_closed(fed, local, local)
    assert same.gap is None and "no gap" in same.note
    assert gap_closed(fed, {99: 1.0}, central).n == 0, "only units all three scored count"


def _held_out_store(tmp_path: Path) -> Store:
    """Held-out reward verdicts for KTOO/KTOR under fedavg, the local-only KTOO/KTOR and one pooled KTO cell."""
    import numpy as np

    store = Store(tmp_path / "results.sqlite")
    rng = np.random.default_rng(3)
    rates = {
        ("kto", "original", "fedavg"): 0.7,
        ("kto", "redistributed", "fedavg"): 0.75,
        ("kto", "original", "local"): 0.5,
        ("kto", "redistributed", "local"): 0.5,
        ("kto", "pooled", "centralized"): 0.9,
    }
    for (method, layout, agg), rate in rates.items():
        subject = f"{method}-{layout}-{agg}"
        values = (rng.random(200) < rate).astype(float)
        verdicts = [Judgment(f"q{i}", float(v), "") for i, v in enumerate(values)]
        clients = {f"q{i}": f"user{i % 4}" for i in range(200)}
        store.add_judgments(subject, "preference.reward", "likelihood", verdicts, clients)
        per_client = {f"user{c}": [100 * float(values[c::4].mean()), 50] for c in range(4)}
        store.put_score(
            ScoreRow(
                subject,
                "preference.reward",
                "likelihood",
                method,
                layout,
                agg,
                "m",
                100 * float(values.mean()),
                100.0,
                200,
                0,
                "s",
                seed=0,
                per_client=json.dumps(per_client),
            )
        )
    return store


def test_the_leaderboard_places_both_baselines_and_the_gap_each_federated_cell_closes(tmp_path: Path) -> None:
    store = _held_out_store(tmp_path)
    scores = store.scores()
    m = build_matrix(scores, questions=lambda r: store.question_scores(r.subject, r.benchmark, r.judge))
    assert m.rows == ["fedavg", "Centralized", "Local only"]
    central = m.entry("Centralized", "preference.reward", "KTOO")
    assert central is not None and central == m.entry("Centralized", "preference.reward", "KTOR"), "one pooled cell beside both"
    assert ("Centralized", "preference.reward") not in m.comparisons, "a cell is not compared with itself"
    gaps = gap_rows(m, lambda r: store.question_scores(r.subject, r.benchmark, r.judge))
    assert [(g.aggregator, g.variant) for g in gaps] == [("fedavg", "KTOO"), ("fedavg", "KTOR")]
    for g in gaps:
        expected = 100 * (g.federated - g.local) / (g.centralized - g.local)
        assert g.gap.gap == pytest.approx(expected) and g.gap.interval is not None
        assert g.gap.interval.low < g.gap.gap < g.gap.interval.high and g.gap.n == 200
        assert g.local_clients is not None and g.local_clients.clients == 4
    record = json.loads(gaps_json(gaps))["gap_closed"][0]
    assert record["gap_closed"] == pytest.approx(gaps[0].gap.gap) and record["local_only_clients"]["clients"] == 4
    store.close()
    out = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path), "--baselines"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "gap closed" in out.output and "fedavg" in out.output, out.output


def test_the_report_shows_each_federated_cell_between_its_baselines(tmp_path: Path) -> None:
    from fedbench.harness.results.report import gather, render

    _held_out_store(tmp_path).close()
    report = gather(tmp_path)
    assert [(g.aggregator, g.variant) for g in report.gaps] == [("fedavg", "KTOO"), ("fedavg", "KTOR")]
    page = render(report)
    assert '<section id="baselines"><h2>Is federation worth it?</h2>' in page
    assert page.count('aria-label="Is federation worth it?') == 1 and gap_text(report.gaps[0].gap) in page
