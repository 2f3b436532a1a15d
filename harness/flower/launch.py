"""The launchers of the Flower engine: run a cell in Flower's simulation engine, or submit it to a SuperLink.

:func:`simulate` starts one virtual SuperNode per client under Ray (:class:`Resources` says how
much of the machine each gets); :func:`deploy` writes a Flower app whose components are
``fedbench.harness.flower:server_app`` / ``client_app`` (:data:`FLWR_APP_TOML`, :func:`write_app`)
and runs ``flwr run`` against a SuperLink. Both return the cell's :class:`CellOutcome` as the local
engine does, or fail with the reason the Flower run left the cell unfinished.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedbench.harness.checkpoint import RunDir
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import Cell, partition
from fedbench.harness.flower.client import client_app
from fedbench.harness.flower.server import serve
from fedbench.harness.flower.wire import spec_json
from fedbench.harness.rounds import CellOutcome, finished_outcome


@dataclass(frozen=True)
class Resources:
    """What Flower's simulation engine gives each client: Ray runs as many at once as these fit."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @classmethod
    def auto(cls, num_cpus: float | None = None, num_gpus: float | None = None) -> Resources:
        """One CPU per client; one GPU per client when CUDA is there (set a fraction to share GPUs)."""
        gpus = num_gpus if num_gpus is not None else (1.0 if torch.cuda.is_available() else 0.0)
        return cls(num_cpus if num_cpus is not None else 1.0, gpus)


def _outcome(run_dir: RunDir, attempt: str, where: str) -> CellOutcome:
    """The cell as this attempt finished it, or the reason the Flower run left it unfinished."""
    result = run_dir.result()
    if result is not None and result.attempt == attempt:
        return CellOutcome(run_dir.path, run_dir.adapter_dir, result.history)
    reason = run_dir.failure()
    if reason is None:
        reason = f"this run wrote no result.json in {run_dir.path}"
    raise FedbenchError(
        f"the Flower run ended without finishing {run_dir.spec.cell}: {reason}",
        f"see the log above ({where}); fix the cause and rerun the same command: it resumes from the last complete round",
    )


def _server_config(cell: Cell, runs_root: Path, min_nodes: int, timeout: float | None, force: bool) -> dict[str, Any]:
    config = {
        "spec": spec_json(cell.spec),
        "out": str(Path(runs_root).resolve()),
        "min-nodes": min_nodes,
        "force": force,
        "attempt": uuid.uuid4().hex,
    }
    return config | ({"timeout": timeout} if timeout else {})


def simulate(
    cell: Cell, runs_root: Path, resources: Resources | None = None, force: bool = False, timeout: float | None = None
) -> CellOutcome:
    """Run the cell in Flower's simulation engine (Ray): one virtual SuperNode per client, in parallel as resources allow.

    ``timeout`` (seconds per round) defaults to none: a simulated client is slow, never gone, and
    rejecting it would silently leave the local engine's trajectory.
    """
    preset = _server_config(cell, runs_root, len(partition(cell)), timeout, force)

    def main(grid: Grid, context: Context, attempt: str) -> None:
        serve(grid, context, preset | {"attempt": attempt})

    return run_in_simulation(cell, runs_root, resources, force, main, client_app, "Flower simulation")


def run_in_simulation(
    cell: Cell,
    runs_root: Path,
    resources: Resources | None,
    force: bool,
    main: Callable[[Grid, Context, str], None],
    client: ClientApp,
    where: str,
) -> CellOutcome:
    """One cell through ``run_simulation``: a virtual SuperNode per client running ``client``, the server running
    ``main(grid, context, attempt)``; a finished cell is not run again unless ``force``. Shared by the plain and the
    secure-aggregation simulation (harness/flower/secure.py)."""
    try:
        import ray  # noqa: F401  (flwr imports it lazily, after the run has started)
    except ModuleNotFoundError as err:
        raise FedbenchError(
            "Flower's simulation engine needs Ray, which is not installed", "pip install 'fedbench[flower]'  (flwr[simulation])"
        ) from err
    from flwr.simulation import run_simulation

    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    resources = resources or Resources.auto()
    attempt = uuid.uuid4().hex
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        main(grid, context, attempt)

    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)  # fedbench logs each round; Flower's banner and summary repeat it
    try:
        run_simulation(
            server_app=app,
            client_app=client,
            num_supernodes=len(partition(cell)),
            backend_config={"client_resources": {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}},
        )
    finally:
        flwr_logger.setLevel(level)
    return _outcome(run_dir, attempt, where)


FLWR_APP_TOML = """\
# A Flower app written by `fedbench run --engine flower --superlink ...`: its components are fedbench's own.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedbench-cell"
version = "1.0.0"
description = "fedbench cell {cell} ({hash})"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedbench"

[tool.flwr.app.components]
serverapp = "fedbench.harness.flower:server_app"
clientapp = "fedbench.harness.flower:client_app"

[tool.flwr.app.config]
{config}
"""


def write_app(target: Path, config: Mapping[str, Any], cell: Cell) -> Path:
    """A Flower app folder whose run config is this cell: what ``flwr run`` bundles and submits."""
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in config.items())
    target.mkdir(parents=True, exist_ok=True)
    (target / "pyproject.toml").write_text(FLWR_APP_TOML.format(cell=cell.spec.cell, hash=cell.spec.hash, config=lines))
    return target


def flwr_command() -> str:
    """The ``flwr`` CLI of this environment."""
    sibling = Path(sys.executable).with_name("flwr")
    found = str(sibling) if sibling.is_file() else shutil.which("flwr")
    if not found:
        raise FedbenchError("the `flwr` command is not installed in this environment", "pip install 'fedbench[flower]'")
    return found


def deploy(
    cell: Cell,
    runs_root: Path,
    superlink: str,
    min_nodes: int | None = None,
    timeout: float | None = 3600,
    force: bool = False,
) -> CellOutcome:
    """Submit the cell to a running SuperLink (``superlink`` names a connection in Flower's config.toml) and wait.

    ``min_nodes`` is the federation's size on a fresh start (default: clients_per_round); a
    sampled client whose site has not answered within ``timeout`` seconds is rejected for the
    round. The ServerApp writes the run directory on the SuperLink's machine: run this there
    (or on a shared file system) to see the result here.
    """
    run_dir = RunDir(runs_root, cell.spec)
    if run_dir.done and not force:
        return finished_outcome(run_dir)
    config = _server_config(cell, runs_root, min_nodes or cell.spec.clients_per_round, timeout, force)
    app_dir = write_app(Path(runs_root) / ".flower-apps" / cell.spec.hash, config, cell)
    subprocess.run([flwr_command(), "run", str(app_dir), superlink, "--stream"], check=False)
    return _outcome(run_dir, config["attempt"], f"`flwr run` against SuperLink connection '{superlink}'")
