"""One writer per cell: a cell another process is training is skipped, shown as running, never cleaned,
and the lock of a killed process is taken over."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from fedbench.harness.cli import app

TRAIN = [
    "--method",
    "kto",
    "--layout",
    "original",
    "--agg",
    "fedavg",
    "--rounds",
    "1",
    "--clients-per-round",
    "2",
    "--local-steps",
    "1",
    "--skip-eval",
    "--set",
    "batch_size=2",
    "--set",
    "max_length=64",
    "--set",
    "lora_r=4",
]

HOLD = """
import sys, time
from pathlib import Path
from fedbench.harness.checkpoint import RunDir
with RunDir.at(Path(sys.argv[1])).claim():
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_cell_held_by_another_process_is_skipped_shown_running_and_taken_over_once_it_dies(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    args = ["run", *TRAIN, "--model", str(tiny_model), "--data", str(pairs_file), "--out", str(runs)]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    (cell,) = runs.glob("kto-original-fedavg-*")
    finished = (cell / "result.json").stat().st_mtime_ns

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cell)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = CliRunner().invoke(app, [*args, "--force"], env={"COLUMNS": "200"})
        assert busy.exit_code == 0, busy.output
        assert "being trained by another fedbench process" in busy.output and f"pid {holder.pid}" in busy.output
        assert (cell / "result.json").stat().st_mtime_ns == finished  # not retrained under the other writer
        listed = CliRunner().invoke(app, ["runs", "--runs", str(runs), "--clean", "--yes"], env={"COLUMNS": "200"})
        assert "running: pid" in listed.output and cell.is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock, leaving its owner file behind
        holder.wait()
    assert (cell / ".owner.json").is_file()
    again = CliRunner().invoke(app, [*args, "--force"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert (cell / "result.json").stat().st_mtime_ns != finished and not (cell / ".owner.json").exists()
