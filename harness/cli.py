"""The ``fedbench`` command line: run cells of the matrix, list plugins."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.registry import Registry, default_registry, load_registry, registry_toml
from fedbench.harness.spec import RunSpec, resolve_settings, tomllib

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Federated preference fine-tuning benchmark (DPO, KTO).")


def _console() -> Console:
    """A console sized for the terminal at call time (rich reads COLUMNS when it is created)."""
    return Console()


def _fail(err: FedbenchError) -> None:
    console = _console()
    console.print(f"[bold red]error:[/] {err.problem}")
    if err.fix:
        console.print(f"  [bold]fix:[/] {err.fix}")
    raise typer.Exit(2)


def _names(registry: Registry, kind: str, value: str) -> tuple[list[str], bool]:
    """Plugin names from 'all' or a comma list, each checked; the flag says whether 'all' was used."""
    if value.strip() == "all":
        return registry.names(kind), True
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        registry.get(kind, name)
    return names, False


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise FedbenchError(f"--set '{item}' is not KEY=VALUE", "write e.g. --set lora_r=16")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def expand_cells(registry: Registry, settings: dict[str, Any], console: Console) -> list[tuple[RunSpec, Any]]:
    """Every (spec, cell) of the method x layout x aggregator product the settings name.

    A combination the layout refuses is skipped with a note when it came from 'all', and is an
    error when the user named both sides explicitly.
    """
    from fedbench.harness.federation import build_cell

    methods, all_m = _names(registry, "method", settings.pop("method", RunSpec.method))
    layouts, all_l = _names(registry, "layout", settings.pop("layout", RunSpec.layout))
    aggs, _ = _names(registry, "aggregator", settings.pop("aggregator", RunSpec.aggregator))
    cells = []
    for method, layout, agg in itertools.product(methods, layouts, aggs):
        spec = RunSpec(**settings, method=method, layout=layout, aggregator=agg)
        try:
            cells.append((spec, build_cell(spec, registry)))
        except FedbenchError as err:
            if (all_m or all_l) and "cannot hold" in err.problem:
                console.print(f"[yellow]skipping {spec.cell}:[/] {err.problem}")
                continue
            raise
    return cells


@app.command()
def run(
    method: str = typer.Option(None, "--method", help="dpo, kto, a comma list or 'all'"),
    layout: str = typer.Option(None, "--layout", help="original, redistributed, a comma list or 'all'"),
    agg: str = typer.Option(None, "--agg", help="aggregator name, a comma list or 'all'"),
    model: Optional[str] = typer.Option(None, help="embedded name, local directory or hub id"),
    data: Optional[str] = typer.Option(None, help="'demo', a .jsonl/.json/.parquet file, fedchatbotpa:FILE or a hub id"),
    rounds: Optional[int] = typer.Option(None, min=None),
    clients_per_round: Optional[int] = typer.Option(None, "--clients-per-round"),
    local_steps: Optional[int] = typer.Option(None, "--local-steps"),
    seed: Optional[int] = typer.Option(None),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML run config (any RunSpec field)"),
    profile: str = typer.Option("demo", help="a profile from registry.toml: demo or paper"),
    out: Path = typer.Option(Path("runs"), "--out", help="runs folder: one directory per cell"),
    set_: list[str] = typer.Option([], "--set", help="override any setting: --set lora_r=16 (repeatable)"),
    force: bool = typer.Option(False, "--force", help="redo finished cells instead of skipping them"),
) -> None:
    """Train the named cells of the matrix (resuming unfinished ones) and print where results are."""
    try:
        _run(method, layout, agg, model, data, rounds, clients_per_round, local_steps, seed, config, profile, out, set_, force)
    except FedbenchError as err:
        _fail(err)


def _run(method, layout, agg, model, data, rounds, clients_per_round, local_steps, seed, config, profile, out, set_, force) -> None:  # noqa: ANN001
    from fedbench.harness.progress import train_cells

    profiles = registry_toml().get("profiles", {})
    if profile not in profiles:
        raise unknown_name("profile", profile, profiles)
    flags = {
        "method": method, "layout": layout, "aggregator": agg, "model": model, "data": data, "rounds": rounds,
        "clients_per_round": clients_per_round, "local_steps": local_steps, "seed": seed,
    } | _parse_sets(set_)
    settings = resolve_settings(profiles[profile], config, flags)
    registry = default_registry()
    console = _console()
    cells = expand_cells(registry, settings, console)
    if not cells:
        raise FedbenchError("no runnable cell in the requested matrix", "check --method/--layout (dpo cannot use redistributed)")
    train_cells(console, [c for _, c in cells], out, force=force)


@app.command()
def plugins() -> None:
    """List every plugin by kind, with where it comes from."""
    console = _console()
    registry = load_registry()
    table = Table(title="fedbench plugins")
    for col in ("kind", "name", "source", "description"):
        table.add_column(col)
    for record in sorted(registry.records, key=lambda r: (r.kind, r.name)):
        table.add_row(record.kind, record.name, record.source, record.description)
    console.print(table)
    if registry.failures:
        bad = Table(title="plugins that failed to load", style="red")
        for col in ("source", "plugin", "error"):
            bad.add_column(col)
        for f in registry.failures:
            bad.add_row(f.source, f.target, f.error)
        console.print(bad)


def main() -> None:  # pragma: no cover - console entry for `python -m`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
