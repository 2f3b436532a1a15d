"""The library entry (harness/study.py), the engine seam (harness/engines.py) and the typed run records."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fedbench.harness.checkpoint import RoundRecord, RunDir, RunResult, atomic_write_json
from fedbench.harness.engines import Engine, FlowerDeployment, FlowerSimulation, LocalEngine, engine_from_flags
from fedbench.harness.errors import FedbenchError, LayoutRefusal
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.study import Study, StudyProgress, expand_cells, run_study

TINY = dict(rounds=1, clients_per_round=2, local_steps=1, batch_size=2, max_length=64, lora_r=4, lora_alpha=8)


class Recorder(StudyProgress):
    """Every callback it gets, with its arguments: what a caller without a console sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


for _name in [n for n in dir(StudyProgress) if not n.startswith("_")]:
    setattr(Recorder, _name, lambda self, *args, _name=_name: self.calls.append((_name, args)))


def test_all_layouts_skip_a_refused_combination_by_its_kind_and_named_ones_fail(pairs_file: Path) -> None:
    registry = load_registry(entry_points=False)
    progress = Recorder()
    study = Study(settings={"data": str(pairs_file)}, method="dpo,kto", layout="all", aggregator="fedavg", seeds=(0, 3))
    cells = expand_cells(study, registry, progress)
    assert [(c.spec.seed, c.spec.method, c.spec.layout) for c in cells] == [
        (0, "dpo", "original"),
        (0, "kto", "original"),
        (0, "kto", "redistributed"),
        (3, "dpo", "original"),
        (3, "kto", "original"),
        (3, "kto", "redistributed"),
    ]
    skipped = [args for name, args in progress.calls if name == "cell_skipped"]
    assert [spec.cell for spec, _ in skipped] == ["dpo-redistributed-fedavg"] * 2 and "cannot hold" in skipped[0][1]
    with pytest.raises(LayoutRefusal, match="cannot hold"):
        expand_cells(Study(method="dpo", layout="redistributed"), registry)


def test_study_from_settings_takes_the_matrix_out_of_the_settings() -> None:
    study = Study.from_settings({"method": "all", "layout": "original", "seed": 4, "rounds": 2}, runs_root="r", force=True)
    assert (study.method, study.layout, study.aggregator, study.seeds) == ("all", "original", RunSpec.aggregator, (4,))
    assert dict(study.settings) == {"rounds": 2} and study.runs_root == Path("r") and isinstance(study.engine, LocalEngine)
    assert Study.from_settings({"seed": 4}, seeds=[1, 2]).seeds == (1, 2), "--seeds wins over seed"
    with pytest.raises(FedbenchError, match="span the matrix"):
        Study(settings={"method": "kto"})


def test_run_study_trains_without_a_console_and_reports_through_the_callbacks(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    study = Study(
        settings=TINY | {"model": str(tiny_model), "data": str(pairs_file)},
        method="kto",
        layout="original",
        runs_root=tmp_path,
        skip_eval=True,
    )
    progress = Recorder()
    result = run_study(study, load_registry(entry_points=False), progress)
    (outcome,) = result.outcomes
    assert result.scores == () and not outcome.skipped and outcome.run_dir.parent == tmp_path
    assert [h.round for h in outcome.history] == [1] and isinstance(outcome.history[0], RoundRecord)
    names = progress.names()
    assert (
        names[0] == "cell_started"
        and names[1] == "training_started"
        and names[-3:] == ["training_stopped", "cell_finished", "cells_trained"]
    )
    assert names.count("step") == TINY["clients_per_round"] * TINY["local_steps"]
    assert names.count("round_event") == TINY["clients_per_round"] + 1  # each client, then the round
    again = run_study(study, load_registry(entry_points=False))
    assert again.outcomes[0].skipped and again.outcomes[0].history == outcome.history


def test_engine_flags_pick_the_engine() -> None:
    assert isinstance(engine_from_flags("local"), LocalEngine) and isinstance(LocalEngine(), Engine)
    with pytest.raises(FedbenchError, match="only apply to the Flower engine"):
        engine_from_flags("local", round_timeout=5)
    if "fedbench.harness.flower" in sys.modules or _has_flower():
        assert engine_from_flags("flower", client_gpus=0) == FlowerSimulation(None, 0)
        assert engine_from_flags("flower", superlink="lab", min_nodes=3) == FlowerDeployment("lab", 3, 3600)


def _has_flower() -> bool:
    import importlib.util

    return importlib.util.find_spec("flwr") is not None


HISTORY_ENTRY = {  # a round as the untyped version wrote it (close_round's dict), keys in its order
    "round": 1,
    "lr": 0.0005,
    "clients": ["user1", "user0"],
    "loss": 0.6931,
    "client_loss": {"user1": 0.7, "user0": 0.6862},
    "rejected": {"user2": "no reply before the round's timeout"},
    "bytes_down": 4096,
    "bytes_up": 4100,
    "train_seconds": 1.25,
    "round_seconds": 2.5,
}


def test_result_and_checkpoint_files_of_the_untyped_version_load_and_rewrite_byte_for_byte(tmp_path: Path) -> None:
    spec = RunSpec(rounds=1)
    run_dir = RunDir(tmp_path, spec)
    run_dir.prepare()
    old = {
        "spec": spec.to_dict(),
        "hash": spec.hash,
        "rounds": 1,
        "engine": "flower",
        "history": [HISTORY_ENTRY],
        "attempt": "a1",
    }
    atomic_write_json(run_dir.path / "result.json", old)
    before = (run_dir.path / "result.json").read_bytes()

    result = run_dir.result()
    assert isinstance(result, RunResult) and result.spec == spec and result.engine == "flower" and result.attempt == "a1"
    assert result.history == [RoundRecord.from_dict(HISTORY_ENTRY)] and result.traffic == (4096, 4100)
    assert result.history[0].clients == ("user1", "user0") and result.history[0].loss == 0.6931
    run_dir.finish(result)
    assert (run_dir.path / "result.json").read_bytes() == before

    history = [RoundRecord.from_dict(HISTORY_ENTRY)]
    run_dir.save_round(1, {"w": torch.zeros(2)}, {"s": torch.ones(1)}, history)
    assert json.loads((run_dir.rounds_dir / "round_00001" / "round.json").read_text()) == {"round": 1, "history_lines": 1}
    assert (run_dir.path / "history.jsonl").read_text() == json.dumps(HISTORY_ENTRY) + "\n"
    assert run_dir.latest().history == history == result.history
    # a checkpoint written before history.jsonl existed keeps its history in round.json, and still loads
    (run_dir.rounds_dir / "round_00001" / "round.json").write_text(json.dumps({"round": 1, "history": [HISTORY_ENTRY]}))
    (run_dir.path / "history.jsonl").unlink()
    assert RunDir(tmp_path, spec).latest().history == history
    assert RunDir.at(run_dir.path).result() == result and RunDir.at(run_dir.path).spec == spec
    assert RunDir(tmp_path, RunSpec(rounds=2)).result() is None


def test_the_history_grows_by_one_line_per_round_and_a_crashed_rounds_line_is_cut(tmp_path: Path) -> None:
    spec = RunSpec(rounds=3)
    run_dir = RunDir(tmp_path, spec)
    run_dir.prepare()
    records = [RoundRecord.from_dict(HISTORY_ENTRY | {"round": r}) for r in (1, 2, 3)]
    history_file = run_dir.path / "history.jsonl"
    sizes = []
    for r in (1, 2):
        run_dir.save_round(r, {"w": torch.zeros(2)}, {}, records[:r])
        sizes.append(history_file.stat().st_size)
    assert sizes[1] == 2 * sizes[0], "round 2 appended one line; round 1's was not rewritten"
    with open(history_file, "a") as fh:  # round 3 logged its line, then the process died before its checkpoint
        fh.write(json.dumps(HISTORY_ENTRY | {"round": 3}) + "\n" + '{"round": 4, "trunc')
    resumed = RunDir(tmp_path, spec)
    assert resumed.latest().history == records[:2], "the checkpoint reads its own lines only"
    changed = replace(records[2], loss=0.5)
    resumed.save_round(3, {"w": torch.zeros(2)}, {}, [*records[:2], changed])
    lines = history_file.read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2, 3] and json.loads(lines[2])["loss"] == 0.5
