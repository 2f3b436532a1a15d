"""The real third-party package in examples/fedbench-plugin-example, installed as CI installs it.

And the scaffold installed with pip.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.harness.cli import app
from fedbench.harness.registry import load_registry

EXAMPLE = "fedbench-plugin-example"
PLUGINS = {("aggregator", "lower-median"), ("layout", "dirichlet"), ("benchmark", "arith"), ("judge", "exact")}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def example_source() -> str:
    """'fedbench-plugin-example <version>', or a skip saying how to install it (`make test` does)."""
    try:
        version = importlib.metadata.version(EXAMPLE)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{EXAMPLE} is not installed: run `make test`, or `.venv/bin/pip install -e examples/{EXAMPLE} --no-deps`")
    return f"{EXAMPLE} {version}"


def test_fedbench_plugins_lists_the_example_with_its_distribution(example_source: str, monkeypatch) -> None:
    registry = load_registry()
    found = {(r.kind, r.name): r.source for r in registry.records if (r.kind, r.name) in PLUGINS}
    assert found == {key: example_source for key in PLUGINS}
    assert not [f for f in registry.failures + registry.warnings if EXAMPLE in f.source]
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    for kind, name in PLUGINS:
        assert any(row.startswith(f"{kind} {name} {example_source} ") for row in rows), (kind, name)


def test_all_stays_the_studys_matrix_with_a_plugin_installed_and_every_takes_it_in(example_source: str) -> None:
    from fedbench.harness.study import Study, expand_cells

    registry = load_registry()
    cells = {mode: expand_cells(Study(method="kto", layout=mode), registry) for mode in ("all", "every")}
    layouts = {mode: {c.spec.layout for c in found} for mode, found in cells.items()}
    assert layouts["all"] == {"original", "redistributed"} and "dirichlet" in layouts["every"]
    aggregators = {c.spec.aggregator for c in expand_cells(Study(method="kto", aggregator="all"), registry)}
    assert len(aggregators) == 7 and "lower-median" not in aggregators, "the study's seven"


def test_a_run_config_sets_the_example_layouts_alpha(example_source: str, tmp_path) -> None:
    from fedbench.harness.federation import build_cell
    from fedbench.harness.spec import RunSpec, resolve_settings

    config = tmp_path / "run.toml"
    config.write_text('layout = "dirichlet"\nmethod = "kto"\n[layout_params]\nalpha = 0.05\n')
    cell = build_cell(RunSpec(**resolve_settings(None, config, {})), load_registry())
    assert cell.layout.alpha == 0.05
    assert RunSpec(**resolve_settings(None, config, {})).to_dict()["layout_params"] == {"alpha": 0.05}


def test_run_with_the_example_aggregator_and_layout(example_source: str, tiny_model, pairs_file, tmp_path) -> None:
    args = [
        "run",
        "--method",
        "kto",
        "--layout",
        "dirichlet",
        "--agg",
        "lower-median",
        "--model",
        str(tiny_model),
        "--data",
        str(pairs_file),
        "--rounds",
        "2",
        "--clients-per-round",
        "3",
        "--local-steps",
        "1",
        "--out",
        str(tmp_path),
        "--skip-eval",
        "--set",
        "batch_size=2",
        "--set",
        "max_length=64",
        "--set",
        "lora_targets=['q_proj']",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [run_dir] = tmp_path.glob("kto-dirichlet-lower-median-*")
    assert (run_dir / "result.json").is_file() and (run_dir / "adapter").is_dir()


def test_scaffolded_package_installs_with_pip_and_its_tests_pass(tmp_path: Path) -> None:
    """`fedbench new-plugin`, `pip install -e`, its own pytest, `fedbench plugins`: what a plugin author does first (~10 s).

    ``--no-build-isolation`` builds with the venv's setuptools (torch depends on it, so it is always
    there) instead of fetching one: quicker, and works offline. The package is uninstalled whatever happens.
    """
    result = CliRunner().invoke(app, ["new-plugin", "aggregator", "mymedian", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "fedbench-mymedian"
    env = os.environ | {"COLUMNS": "300"}
    pip = [str(BIN / "python"), "-m", "pip"]
    try:
        install = subprocess.run(
            [*pip, "install", "-q", "--no-build-isolation", "--no-deps", "-e", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        tests = subprocess.run(
            [str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-3000:]
        listing = subprocess.run([str(BIN / "fedbench"), "plugins"], capture_output=True, text=True, env=env, timeout=120)
        assert listing.returncode == 0, listing.stderr[-3000:]
        rows = [" ".join(line.replace("│", " ").split()) for line in listing.stdout.splitlines()]
        assert any(row.startswith("aggregator mymedian fedbench-mymedian 0.1.0 ") for row in rows), listing.stdout
    finally:
        subprocess.run([*pip, "uninstall", "-y", "-q", "fedbench-mymedian"], capture_output=True, timeout=120)
    assert subprocess.run([*pip, "show", "-q", "fedbench-mymedian"], capture_output=True).returncode != 0
