"""Run directories: the spec, per-round checkpoints and the final adapter, all written atomically.

A checkpoint is a directory written under a temporary name, fsynced and renamed into place,
so a crash mid-write leaves either the previous checkpoint or the new one, never half of one.
Tensors go to safetensors, everything else to JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Params
from fedbench.harness.spec import RunSpec

ROUND_PREFIX = "round_"
KEEP_ROUNDS = 2


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace a file's content in one step: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _contiguous(params: Params) -> Params:
    return {k: v.detach().contiguous().cpu() for k, v in params.items()}


@dataclass(frozen=True)
class Checkpoint:
    round: int
    adapter: Params
    server_state: Params
    history: list[dict[str, Any]]


class RunDir:
    """One cell's directory, named by the cell and the spec's hash."""

    def __init__(self, root: Path, spec: RunSpec) -> None:
        self.spec = spec
        self.path = Path(root) / f"{spec.cell}-{spec.hash}"
        self.rounds_dir = self.path / "rounds"
        self.adapter_dir = self.path / "adapter"

    def prepare(self) -> None:
        """Create the directory and record the spec it belongs to."""
        self.rounds_dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.path / "spec.json"
        if not spec_file.exists():
            atomic_write_json(spec_file, self.spec.to_dict())

    @property
    def done(self) -> bool:
        return (self.path / "result.json").is_file()

    def latest(self) -> Checkpoint | None:
        """The newest complete round's checkpoint; temporaries from a crash are ignored."""
        if not self.rounds_dir.is_dir():
            return None
        complete = sorted(
            p for p in self.rounds_dir.iterdir() if p.name.startswith(ROUND_PREFIX) and (p / "round.json").is_file()
        )
        if not complete:
            return None
        last = complete[-1]
        meta = json.loads((last / "round.json").read_text())
        return Checkpoint(
            round=meta["round"],
            adapter=load_file(last / "adapter.safetensors"),
            server_state=load_file(last / "server.safetensors"),
            history=meta["history"],
        )

    def save_round(self, round_number: int, adapter: Params, server_state: Params, history: list[dict[str, Any]]) -> Path:
        """Write round ``round_number``'s checkpoint atomically and prune old ones."""
        final = self.rounds_dir / f"{ROUND_PREFIX}{round_number:05d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=self.rounds_dir))
        try:
            save_file(_contiguous(adapter), tmp / "adapter.safetensors")
            save_file(_contiguous(server_state), tmp / "server.safetensors")
            (tmp / "round.json").write_text(json.dumps({"round": round_number, "history": history}, indent=1))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.rounds_dir)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = round_number - 1
            raise FedbenchError(
                f"could not save the checkpoint of round {round_number} in {self.rounds_dir} ({err.strerror or err})."
                + (f" Rounds up to {previous} are intact." if previous else ""),
                "free disk space (or pick another --out) and rerun the same command: it resumes from the last complete round",
            ) from err
        for old in sorted(self.rounds_dir.glob(f"{ROUND_PREFIX}*"))[:-KEEP_ROUNDS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the cell done; a later run skips it."""
        atomic_write_json(self.path / "result.json", summary)
        (self.path / "failed.json").unlink(missing_ok=True)

    def mark_failed(self, reason: str) -> None:
        """Record why the cell stopped, for `fedbench runs`; its complete rounds stay usable for resume."""
        atomic_write_json(self.path / "failed.json", {"reason": reason})


@dataclass(frozen=True)
class RunState:
    """What `fedbench runs` shows for one run directory."""

    path: Path
    cell: str
    rounds_done: int
    rounds: int
    status: str
    """'done', 'interrupted' (resumable), 'failed' or 'empty'."""
    reason: str = ""


def scan_runs(root: Path) -> list[RunState]:
    """The state of every run directory under a runs folder, read from files alone (no model loaded)."""
    states = []
    for path in sorted(p for p in Path(root).iterdir() if (p / "spec.json").is_file()) if Path(root).is_dir() else []:
        spec = json.loads((path / "spec.json").read_text())
        cell = f"{spec['method']}-{spec['layout']}-{spec['aggregator']}"
        rounds_dir = path / "rounds"
        done_rounds = [int(p.name[len(ROUND_PREFIX):]) for p in rounds_dir.glob(f"{ROUND_PREFIX}*") if (p / "round.json").is_file()] if rounds_dir.is_dir() else []
        last = max(done_rounds, default=0)
        if (path / "result.json").is_file():
            states.append(RunState(path, cell, spec["rounds"], spec["rounds"], "done"))
        elif (path / "failed.json").is_file():
            reason = json.loads((path / "failed.json").read_text()).get("reason", "")
            states.append(RunState(path, cell, last, spec["rounds"], "failed", reason))
        else:
            states.append(RunState(path, cell, last, spec["rounds"], "interrupted" if last else "empty"))
    return states
