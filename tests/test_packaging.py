"""A regular (non-editable) install works: the wheel finds its plugins and trains a cell.

The rest of the suite runs on an editable install, which reads files from the source tree and so
cannot see a file the wheel forgot or a path computed for the tree's layout. This test builds the
wheel offline, installs it without dependencies into a scratch folder put first on the path (the
venv's torch, transformers, ... stay the dependencies), and runs the installed console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedbench.harness.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("wheel")
    # built from a copy without build outputs: setuptools reuses build/lib, so a module renamed in the tree would
    # otherwise still ship in the wheel under its old name
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)], check=True, cwd=work
    )
    wheel = next((work / "dist").glob("fedbench-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)], check=True, cwd=work)
    env = os.environ | {"PYTHONPATH": str(work / "site"), "COLUMNS": "200"}
    return work, env


def _fedbench(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # the installed package, run from outside the source tree
    return subprocess.run(
        [sys.executable, "-m", "fedbench.harness.cli", *args], cwd=work, env=env, capture_output=True, text=True
    )


def test_the_wheel_is_what_runs_and_it_lists_every_builtin_plugin(installed: tuple[Path, dict[str, str]]) -> None:
    work, env = installed
    where = subprocess.run(
        [sys.executable, "-c", "import fedbench.harness; print(fedbench.harness.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(work / "site")), where
    out = _fedbench(work, env, "plugins")
    assert out.returncode == 0, out.stdout + out.stderr
    for name in (
        "dpo",
        "kto",
        "original",
        "redistributed",
        "fedavg",
        "scaffold",
        "fedadam",
        "mt_bench_1",
        "advbench",
        "judgelm",
        "keyword",
    ):
        assert name in out.stdout
    assert "failed to load" not in out.stdout


def test_the_wheel_trains_a_one_round_cell(installed: tuple[Path, dict[str, str]], tiny_model: Path, pairs_file: Path) -> None:
    work, env = installed
    out = _fedbench(
        work,
        env,
        "run",
        "--method",
        "kto",
        "--layout",
        "original",
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
        str(work / "runs"),
        "--skip-eval",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert list((work / "runs").glob("kto-original-fedavg-*/adapter/adapter_model.safetensors"))


def test_a_missing_registry_file_says_the_installation_is_incomplete(installed: tuple[Path, dict[str, str]]) -> None:
    work, env = installed
    (work / "site" / "fedbench" / "plugins" / "registry.toml").rename(work / "registry.toml.bak")
    try:
        out = _fedbench(work, env, "run", "--skip-eval")
    finally:
        (work / "registry.toml.bak").rename(work / "site" / "fedbench" / "plugins" / "registry.toml")
    assert out.returncode == 2
    assert "registry" in out.stdout and "incomplete" in out.stdout and "reinstall" in out.stdout
    assert "--config" not in out.stdout


def test_the_wheel_writes_a_report_with_its_script_and_style(installed: tuple[Path, dict[str, str]]) -> None:
    work, env = installed
    runs = work / "report-runs"
    (runs / "unfinished").mkdir(parents=True)  # one cell that has not trained yet and no store: the training side only
    (runs / "unfinished" / "spec.json").write_text(json.dumps(RunSpec().to_dict()))
    out = _fedbench(work, env, "report", "--runs", str(runs), "--out", str(work / "report.html"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    page = (work / "report.html").read_text()
    site = work / "site" / "fedbench" / "harness" / "results" / "static"
    for name in ("report.js", "report.css", "error_trap.js"):
        assert (site / name).read_text() in page, name
