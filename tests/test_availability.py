"""Clients as they are: dropout, availability traces, deadlines with stragglers, and a quorum, each seeded and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_aggregators import tiny_spec

from fedbench.harness.availability import ClientPlan, clients_table, read_trace
from fedbench.harness.checkpoint import RunDir
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.flower.server import FlowerDriver
from fedbench.harness.registry import load_registry
from fedbench.harness.rounds import client_behaviour
from fedbench.harness.spec import RunSpec

CLIENTS = ["user0", "user1", "user2", "user3"]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"dropout": 1.5}, "dropout 1.5 is not a probability in [0, 1]"),
        ({"dropout": -0.1}, "dropout -0.1 is not a probability"),
        ({"deadline": 3.0}, "has a deadline but no speed"),
        ({"speed": "lognormal:0.5"}, "has a speed but no deadline"),
        ({"deadline": 3.0, "speed": "lognormal:wide"}, "'wide' is not a sigma >= 0"),
        ({"min_reports": 0}, "min_reports must be at least 1, got 0"),
        ({"dropuot": 0.1}, "unknown setting 'dropuot'"),
        ({"partial": "no"}, "partial must be bool"),
    ],
)
def test_bad_client_settings_are_refused_before_anything_runs(table: dict, words: str) -> None:
    with pytest.raises(FedbenchError, match=words.replace("[", r"\[").replace("]", r"\]")):
        clients_table(table)
    with pytest.raises(FedbenchError):
        RunSpec(clients=tuple(table.items()))


def test_new_settings_keep_the_hash_at_their_defaults() -> None:
    assert RunSpec(clients=()).hash == RunSpec().hash != RunSpec(clients=(("dropout", 0.2),)).hash


def test_the_leaderboard_tag_says_how_clients_behave() -> None:
    assert RunSpec(clients=(("dropout", 0.2),)).tag == "dropout 20%"
    table = (
        ("availability", "/x/week1.csv"),
        ("deadline", 3.0),
        ("speed", "lognormal:0.5"),
        ("partial", False),
        ("min_reports", 2),
    )
    assert RunSpec(clients=table).tag == "trace week1, deadline 3 lognormal:0.5 whole, min_reports 2"


def test_dropout_is_a_seeded_coin_per_round_and_client() -> None:
    plan = ClientPlan(seed=0, dropout=0.5)
    fates = [[plan.fate(r, c, 4) for c in CLIENTS] for r in range(20)]
    assert fates == [[ClientPlan(seed=0, dropout=0.5).fate(r, c, 4) for c in CLIENTS] for r in range(20)]
    dropped = sum(steps == 0 for row in fates for steps, _ in row)
    assert 25 < dropped < 55 and all(why == "dropped out (clients.dropout = 0.5)" for row in fates for s, why in row if s == 0)
    assert all(ClientPlan(dropout=1.0).fate(r, c, 4)[0] == 0 for r in range(5) for c in CLIENTS)
    assert all(ClientPlan(dropout=0.0).fate(r, c, 4) == (4, "") for r in range(5) for c in CLIENTS)


def test_a_straggler_reports_the_steps_it_completed_or_nothing() -> None:
    speeds = {"fast": 2.0, "slow": 0.5, "stuck": 0.1}
    partial = ClientPlan(speeds=speeds, deadline=4.0)
    assert partial.fate(0, "fast", 4) == (4, "")
    assert partial.fate(0, "slow", 4) == (2, "")  # floor(0.5 x 4) = 2 of 4
    assert partial.fate(0, "stuck", 4) == (0, "missed the deadline: 0 of 4 steps done (speed 0.1)")
    strict = ClientPlan(speeds=speeds, deadline=4.0, partial=False)
    assert strict.fate(0, "slow", 4) == (0, "missed the deadline: 2 of 4 steps done (speed 0.5), clients.partial = false")


def test_lognormal_speeds_are_seeded_per_client() -> None:
    a = ClientPlan.for_run({"deadline": 2.0, "speed": "lognormal:0.5"}, CLIENTS, 3, seed=0)
    assert a.speeds == ClientPlan.for_run({"deadline": 2.0, "speed": "lognormal:0.5"}, CLIENTS, 3, seed=0).speeds
    assert len(set(a.speeds.values())) == 4 and all(v > 0 for v in a.speeds.values())
    assert set(ClientPlan.for_run({"deadline": 2.0, "speed": "lognormal:0"}, CLIENTS, 3, seed=0).speeds.values()) == {1.0}


def test_traces_of_spans_or_rounds(tmp_path: Path) -> None:
    spans = tmp_path / "spans.csv"
    spans.write_text("client,first_round,last_round\nuser0,1,2\nuser1,2,3\nuser0,3,3\n")
    assert read_trace(spans, CLIENTS, 3) == {"user0": {1, 2, 3}, "user1": {2, 3}}
    rows = tmp_path / "rows.csv"
    rows.write_text("client,round\nuser2,2\n")
    plan = ClientPlan.for_run({"availability": str(rows)}, CLIENTS, 3, seed=0)
    assert plan.fate(1, "user2", 4) == (4, "") and plan.fate(0, "user2", 4) == (0, "offline in round 1 (clients.availability)")
    assert plan.fate(1, "user3", 4)[0] == 0  # a client the trace does not list is never online


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("client,round\nuser9,1\n", "line 2: client 'user9' is not in this federation of 4 clients"),
        ("client,round\nuser0,1\nuser1,4\n", "line 3: rounds 4..4 are not within this run's rounds 1..3"),
        ("client,first_round,last_round\nuser0,2,1\n", "rounds 2..1 are not within"),
        ("client,when\nuser0,1\n", "has columns ['client', 'when']"),
        ("client,round\nuser0,first\n", "'first' is not a round number"),
    ],
)
def test_a_trace_naming_unknown_clients_or_rounds_is_refused(tmp_path: Path, text: str, words: str) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    with pytest.raises(FedbenchError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        read_trace(trace, CLIENTS, 3)


def test_refused_before_training_an_engine_that_cannot_play_clients_and_a_quorum_krum_cannot_use(tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    spec = RunSpec(clients=(("dropout", 0.1),))
    with pytest.raises(FedbenchError, match="cannot play an attack or a \\[clients\\] table"):
        client_behaviour(build_cell(spec, registry), FlowerDriver.__new__(FlowerDriver), {}, RunDir(tmp_path, spec))
    krum = RunSpec(aggregator="krum", clients_per_round=5, clients=(("dropout", 0.1), ("min_reports", 2)))
    from fedbench.harness.federation import LocalDriver

    with pytest.raises(FedbenchError, match="needs n > 2f \\+ 2 = 4 updates in a round, got 2"):
        client_behaviour(build_cell(krum, registry), LocalDriver(), dict.fromkeys(CLIENTS, 1), RunDir(tmp_path, krum))


def test_a_round_nobody_reports_in_is_skipped_and_the_history_says_who_and_why(
    tiny_model, pairs_file, tmp_path, monkeypatch
) -> None:
    """Round 2 of 3 has every client offline (as dropout q = 1 would): the adapter does not move, the record says why;
    user0 is slow (speed 0.5, deadline 2: one of its two steps) and reports that one step."""
    trace, speeds = tmp_path / "trace.csv", tmp_path / "speeds.csv"
    trace.write_text("client,round\n" + "".join(f"user{c},{r}\n" for c in range(4) for r in (1, 3)))
    speeds.write_text("client,speed\nuser0,0.5\nuser1,1\nuser2,1\nuser3,2\n")
    settings = (("availability", str(trace)), ("deadline", 2.0), ("speed", str(speeds)))
    saved: list[dict[str, torch.Tensor]] = []
    real_save = RunDir.save_round

    def save_round(self, number, adapter, *rest):  # noqa: ANN001, ANN202
        saved.append({k: v.clone() for k, v in adapter.items()})
        return real_save(self, number, adapter, *rest)

    monkeypatch.setattr(RunDir, "save_round", save_round)
    spec = tiny_spec(tiny_model, pairs_file, rounds=3, clients_per_round=4, local_steps=2, layout="original", clients=settings)
    cell = build_cell(spec, load_registry(entry_points=False))
    outcome = run_federation(cell, tmp_path / "r")
    first, second, third = outcome.history
    assert second.absent == {c: "offline in round 2 (clients.availability)" for c in second.clients}
    assert second.skipped == "0 reports, fewer than clients.min_reports = 1" and second.client_loss == {}
    assert first.absent == {} and first.client_settings["user0"]["steps"] == 1.0 and "user1" not in first.client_settings
    assert third.skipped == "" and set(third.client_loss) == set(CLIENTS)
    one, two, three = saved
    assert all(torch.equal(one[k], two[k]) for k in one) and not all(torch.equal(two[k], three[k]) for k in two)
    assert [r.to_dict().get("absent") for r in outcome.history] == [None, dict(second.absent), None]
    from fedbench.harness.results.report import write_report

    write_report(tmp_path / "r", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "did not report (why)" in page and "offline in round 2 (clients.availability)" in page
    assert "round skipped: 0 reports, fewer than clients.min_reports = 1" in page
    assert "steps per client" in page and "user0 1" in page, "the straggler's completed steps per round"
