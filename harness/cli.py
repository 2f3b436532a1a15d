"""The ``fedbench`` command line: run cells of the matrix, list plugins.

A thin layer: each command turns its flags into a call of the library (``run`` and ``eval`` build a
:class:`~fedbench.harness.study.Study` / ``EvalSpec`` and call :mod:`fedbench.harness.study`, whose
progress :mod:`fedbench.harness.progress` renders) and prints a :class:`FedbenchError` as problem and fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.interfaces import needs
from fedbench.harness.registry import default_registry, load_registry, registry_toml
from fedbench.harness.spec import RunSpec, parse_seeds, resolve_settings, tomllib

SCORE_DTYPE_HELP = "precision of held-out pair scoring: float32 (default, whatever the cells trained in), bfloat16 or auto"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Federated preference fine-tuning benchmark (DPO, KTO).",
    pretty_exceptions_show_locals=False,  # a bug's traceback, not thousands of lines of a store's rows
)


def _console() -> Console:
    """A console sized for the terminal at call time (rich reads COLUMNS when it is created)."""
    return Console()


def _fail(err: FedbenchError) -> None:
    console = _console()
    console.print(f"[bold red]error:[/] {escape(err.problem)}")  # escaped: "fedbench[flower]" is not markup
    if err.fix:
        console.print(f"  [bold]fix:[/] {escape(err.fix)}")
    raise typer.Exit(2)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` flags as settings; ``TABLE.KEY=VALUE`` sets one entry of a table (``attack_params.fraction=0.25``)."""
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise FedbenchError(f"--set '{item}' is not KEY=VALUE", "write e.g. --set lora_r=16")
        key, raw = (part.strip() for part in item.split("=", 1))
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        table, dot, entry = key.partition(".")
        if not dot:
            out[key] = value
        elif isinstance(out.setdefault(table, {}), dict):
            out[table][entry] = value
        else:
            raise FedbenchError(f"--set '{item}': '{table}' was set to a value, not a table", f"set {table}.NAME=VALUE only")
    return out


def _parse_sweeps(items: list[str]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``--sweep KEY=V1,V2,...`` flags (or ``KEY=[V1, V2]``, a TOML array) as (key, values) pairs, each value read as TOML."""
    out = []
    for item in items:
        if "=" not in item:
            raise FedbenchError(
                f"--sweep '{item}' is not KEY=V1,V2,...", "write e.g. --sweep layout_params.paired_fraction=0,0.5,1"
            )
        key, raw = (part.strip() for part in item.split("=", 1))
        parts = [raw] if raw.startswith("[") else [p.strip() for p in raw.split(",") if p.strip()]
        values: list[Any] = []
        for part in parts:
            try:
                value = tomllib.loads(f"v = {part}")["v"]
            except tomllib.TOMLDecodeError:
                value = part
            values += value if raw.startswith("[") and isinstance(value, list) else [value]
        out.append((key, tuple(values)))
    return tuple(out)


@app.command()
def run(
    method: str = typer.Option(
        None, "--method", help="a method, a comma list, 'all' (the study's dpo and kto) or 'every' (every objective)"
    ),
    layout: str = typer.Option(
        None,
        "--layout",
        help="original, redistributed, partial, a comma list, 'all' (original, redistributed) or 'every' (installed plugins too)",
    ),
    agg: str = typer.Option(
        None,
        "--agg",
        help="aggregator name, a comma list, 'all' (the study's seven) or 'every' (installed plugins too; no baselines)",
    ),
    baselines: bool = typer.Option(
        False, "--baselines", help="also train the centralized and local-only baselines beside the federated cells"
    ),
    model: str | None = typer.Option(None, help="embedded name, local directory or hub id"),
    data: str | None = typer.Option(None, help="'demo', a .jsonl/.json/.parquet file, fedchatbotpa:FILE or a hub id"),
    rounds: int | None = typer.Option(None, min=None),
    clients_per_round: int | None = typer.Option(None, "--clients-per-round"),
    local_steps: str | None = typer.Option(None, "--local-steps", help="steps per client-round, or 'dynamic'"),
    seed: int | None = typer.Option(None),
    codec: str | None = typer.Option(None, "--codec", help="how client updates travel: none, fp16, bf16, int8, topk"),
    seeds: str | None = typer.Option(None, "--seeds", help="repeat every cell with these training seeds: 0,1,2"),
    config: Path | None = typer.Option(None, "--config", help="TOML run config (any RunSpec field)"),
    profile: str = typer.Option("demo", help="a profile from registry.toml: demo or paper"),
    out: Path = typer.Option(Path("runs"), "--out", help="runs folder: one directory per cell"),
    set_: list[str] = typer.Option(
        [], "--set", help="override any setting: --set lora_r=16, --set eval.pairwise=true (repeatable)"
    ),
    sweep: list[str] = typer.Option(
        [],
        "--sweep",
        help="repeat the matrix for each value: --sweep layout_params.paired_fraction=0,0.5,1 (repeatable: every combination)",
    ),
    force: bool = typer.Option(False, "--force", help="redo finished cells instead of skipping them"),
    benchmarks: str | None = typer.Option(None, "--benchmarks", help="comma list (default: mt_bench_1,vicuna,advbench)"),
    judge: str | None = typer.Option(None, "--judge", help="judge for model-graded benchmarks (llm, judgelm, ...)"),
    backend: str | None = typer.Option(None, "--backend", help="generation backend: auto, hf or vllm"),
    limit: int | None = typer.Option(None, "--limit", help="first N questions of each benchmark"),
    score_dtype: str | None = typer.Option(None, "--score-dtype", help=SCORE_DTYPE_HELP),
    skip_eval: bool = typer.Option(False, "--skip-eval", help="train only; evaluate later with `fedbench eval`"),
    engine: str = typer.Option(
        "local", "--engine", help="local (one process) or flower (Flower simulation, or a deployment with --superlink)"
    ),
    superlink: str | None = typer.Option(
        None, "--superlink", help="flower: submit to this SuperLink connection (Flower's config.toml) instead of simulating"
    ),
    client_cpus: float | None = typer.Option(None, "--client-cpus", help="flower simulation: CPUs per client (default 1)"),
    client_gpus: float | None = typer.Option(
        None, "--client-gpus", help="flower simulation: GPUs per client (default 1 with CUDA, else 0; 0.5 = two per GPU)"
    ),
    min_nodes: int | None = typer.Option(
        None, "--min-nodes", help="flower deployment: SuperNodes that make up the federation (default clients_per_round)"
    ),
    secure_aggregation: bool = typer.Option(
        False,
        "--secure-aggregation",
        help="flower simulation: each round through Flower's SecAgg+, the server sees only the sum (mean-only aggregators)",
    ),
    round_timeout: float | None = typer.Option(
        None,
        "--round-timeout",
        help="flower: seconds before a silent client is rejected for the round (deployment 3600, simulation none)",
    ),
) -> None:
    """Train the named cells of the matrix (resuming unfinished ones), then answer, judge and store the benchmarks."""
    try:
        from fedbench.harness.engines import engine_from_flags
        from fedbench.harness.evaluation import eval_spec
        from fedbench.harness.progress import RichProgress
        from fedbench.harness.study import Study, run_study

        profile_settings = _profile(profile)
        flags = {
            "method": method,
            "layout": layout,
            "aggregator": agg,
            "model": model,
            "data": data,
            "rounds": rounds,
            "clients_per_round": clients_per_round,
            "local_steps": local_steps,
            "seed": seed,
            "codec": codec,
        } | _parse_sets(set_)
        eval_sets = flags.pop("eval", {})
        settings = resolve_settings({k: v for k, v in profile_settings.items() if k != "eval"}, config, flags)
        evaluation = eval_spec(
            profile_settings.get("eval"),
            {"benchmarks": benchmarks, "judge": judge, "backend": backend, "limit": limit, "score_dtype": score_dtype}
            | eval_sets,
        )
        if seeds is not None and seed is not None:
            raise FedbenchError("--seed and --seeds both given", "use --seeds 0,1,2 for several seeds, or --seed N for one")
        study = Study.from_settings(
            settings,
            parse_seeds(seeds) if seeds is not None else None,
            runs_root=out,
            force=force,
            engine=engine_from_flags(engine, superlink, client_cpus, client_gpus, min_nodes, round_timeout, secure_aggregation),
            evaluation=evaluation,
            skip_eval=skip_eval,
            baselines=baselines,
            sweep=_parse_sweeps(sweep),
        )
        run_study(study, default_registry(), RichProgress(_console()))
    except FedbenchError as err:
        _fail(err)


def _profile(name: str) -> dict[str, Any]:
    profiles = registry_toml().get("profiles", {})
    if name not in profiles:
        raise unknown_name("profile", name, profiles)
    return profiles[name]


@app.command("partition")
def partition_(
    out: Path = typer.Option(..., "--out", help="folder for one JSONL file per client"),
    method: str | None = typer.Option(None, "--method", help="a method (its data form decides pairs or labelled examples)"),
    layout: str | None = typer.Option(None, "--layout", help="original, redistributed or partial"),
    data: str | None = typer.Option(None, help="'demo', a .jsonl/.json/.parquet file, fedchatbotpa:FILE or a hub id"),
    config: Path | None = typer.Option(None, "--config", help="TOML run config (any RunSpec field)"),
    profile: str = typer.Option("demo", help="a profile from registry.toml: demo or paper"),
    set_: list[str] = typer.Option([], "--set", help="override any setting: --set partition_seed=7 (repeatable)"),
) -> None:
    """Write each client's laid-out examples to its own file: what one deployment site (a Flower SuperNode) trains on."""
    import json
    import re

    from fedbench.harness.data import write_examples
    from fedbench.harness.federation import build_cell, partition

    try:
        flags = {"method": method, "layout": layout, "data": data} | _parse_sets(set_)
        settings = resolve_settings({k: v for k, v in _profile(profile).items() if k != "eval"}, config, flags)
        spec = RunSpec(**settings)
        clients = partition(build_cell(spec, default_registry()), for_rounds=False)  # sites exist before rounds do
    except FedbenchError as err:
        _fail(err)
    table = Table(title=f"{spec.method} / {spec.layout}: {len(clients)} clients in {out}")
    for col in ("client", "examples", "SuperNode --node-config"):
        table.add_column(col)
    for i, cid in enumerate(sorted(clients)):
        path = (out / f"{cid if re.fullmatch(r'[A-Za-z0-9_.-]+', cid) else f'client-{i:04d}'}.jsonl").resolve()
        write_examples(path, clients[cid])
        table.add_row(cid, str(len(clients[cid])), escape(f"data-file={json.dumps(str(path))} client-id={json.dumps(cid)}"))
    console = _console()
    console.print(table)
    console.print(
        f"train them with the same --method {spec.method} --layout {spec.layout} (and data settings) on the server side"
    )


@app.command()
def plugins() -> None:
    """List every plugin by kind, with where it comes from, plus load failures and API-version warnings."""
    console = _console()
    try:
        registry = load_registry()
    except FedbenchError as err:
        _fail(err)
    table = Table(title="fedbench plugins")
    for col in ("kind", "name", "source", "description", "needs"):
        table.add_column(col)
    for record in sorted(registry.records, key=lambda r: (r.kind, r.name)):
        table.add_row(record.kind, record.name, record.source, record.description, needs(record.plugin))
    console.print(table)
    if registry.failures:
        bad = Table(title="plugins that failed to load", style="red")
        for col in ("source", "plugin", "error"):
            bad.add_column(col)
        for f in registry.failures:
            bad.add_row(f.source, f.target, f.error)
        console.print(bad)
    for w in registry.warnings:  # loaded, but maybe written for another plugin API
        console.print(f"[bold yellow]warning:[/] {escape(f'{w.target} from {w.source}: {w.message}')}")


@app.command("new-plugin")
def new_plugin(
    kind: str = typer.Argument(..., help="method, layout, aggregator, benchmark, judge, codec or attack"),
    name: str = typer.Argument(..., help="plugin name, a Python identifier; the package is fedbench-NAME"),
    out: Path = typer.Option(Path("."), "--out", help="folder to create fedbench-NAME/ in"),
) -> None:
    """Scaffold a plugin package fedbench-NAME/: pyproject with the entry point, the plugin module, a passing test, a README."""
    try:
        from fedbench.harness import newplugin

        newplugin.check(kind, name)
        taken = load_registry().find(kind, name)
        if taken:  # a second 'fedavg' would only fail later, at load time
            raise FedbenchError(
                f"{kind} '{name}' already exists ({taken.source})", "pick another name: plugin names are unique per kind"
            )
        root = newplugin.new_plugin(kind, name, out)
    except FedbenchError as err:
        _fail(err)
    console = _console()
    console.print(f"created {kind} plugin '{name}' in {root}")
    console.print(f"  next: pip install -e {root} && cd {root} && python -m pytest")


@app.command("eval")
def eval_(
    run_dirs: list[Path] = typer.Argument(
        ..., help="finished cells' run directories, or a runs folder: the answers imported into it (fedbench import)"
    ),
    benchmarks: str | None = typer.Option(None, "--benchmarks"),
    judge: str | None = typer.Option(None, "--judge"),
    backend: str | None = typer.Option(None, "--backend"),
    limit: int | None = typer.Option(None, "--limit"),
    score_dtype: str | None = typer.Option(None, "--score-dtype", help=SCORE_DTYPE_HELP),
    profile: str = typer.Option("demo", help="profile whose [eval] settings apply"),
    no_base: bool = typer.Option(False, "--no-base", help="skip the untrained base model"),
    set_: list[str] = typer.Option(
        [], "--set", help='an eval setting, eval.KEY=VALUE (e.g. eval.pairwise=true, eval.judge_contexts=["alone"])'
    ),
) -> None:
    """Evaluate trained cells (and their base model) into the store of the runs folder they are in; or judge again
    the answers imported into a runs folder, with another judge, without generating anything."""
    try:
        from fedbench.harness.evaluation import eval_spec
        from fedbench.harness.progress import RichProgress
        from fedbench.harness.study import evaluate_runs, runs_folder

        sets = _parse_sets(set_)
        if set(sets) - {"eval"}:
            raise FedbenchError(
                f"--set {', '.join(sorted(set(sets) - {'eval'}))}: `fedbench eval` takes eval settings only",
                "write --set eval.KEY=VALUE (training settings belong to `fedbench run`)",
            )
        evaluation = eval_spec(
            _profile(profile).get("eval"),
            {"benchmarks": benchmarks, "judge": judge, "backend": backend, "limit": limit, "score_dtype": score_dtype}
            | sets.get("eval", {}),
        )
        runs_root = runs_folder(run_dirs)
        evaluate_runs(
            run_dirs, evaluation, default_registry(), runs_root, include_base=not no_base, progress=RichProgress(_console())
        )
    except FedbenchError as err:
        _fail(err)


@app.command()
def leaderboard(
    runs: Path = typer.Option(Path("runs"), "--runs", help="runs folder holding results.sqlite"),
    format_: str = typer.Option("rich", "--format", help="rich, markdown, csv, json or html"),
    out: Path | None = typer.Option(None, "--out", help="write to this file instead of the terminal"),
    plot: Path | None = typer.Option(None, "--plot", help="also draw grouped bars with error bars to this PNG"),
    model: str | None = typer.Option(None, "--model", help="only this base model's rows"),
    judge: str | None = typer.Option(None, "--judge", help="only this judge's scores"),
    resources: bool = typer.Option(
        False,
        "--resources",
        "--traffic",
        help="per cell: bytes down/up after the codec (per round and total), epsilon, train time, peak memory instead",
    ),
    compare: bool = typer.Option(False, "--compare", help="the paired differences KTOO-DPO, KTOR-DPO, KTOR-KTOO instead"),
    clients: bool = typer.Option(False, "--clients", help="per-client scores and fairness summary instead"),
    baselines: bool = typer.Option(
        False, "--baselines", help="each federated cell between local-only and centralized training: the gap it closes"
    ),
    lengths: bool = typer.Option(False, "--lengths", help="also show mean answer length (tokens) per cell"),
    judge_checks: bool = typer.Option(
        False,
        "--judge-checks",
        help="the judge instead: head-to-head win rates and position bias, context shift, agreement of two judges, "
        "length-controlled scores",
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        metavar="NAME_OR_PATH",
        help="your entries beside a published table's, with the difference: 'study' (the study's Table 1) "
        "or a CSV of aggregator,benchmark,variant,score",
    ),
) -> None:
    """The study's table with 95% intervals: aggregators x (benchmark x DPO/KTOO/KTOR), separated best entries marked."""
    try:
        from fedbench.harness.results.views import VIEWS, sources

        asked = (
            ("--compare", compare),
            ("--clients", clients),
            ("--baselines", baselines),
            ("--resources", resources),
            ("--judge-checks", judge_checks),
        )
        chosen = [flag for flag, on in asked if on] + (["--reference"] if reference is not None else [])
        if len(chosen) > 1:
            raise FedbenchError(f"{' and '.join(chosen)} are different views", "ask for one at a time")
        view = VIEWS[chosen[0].removeprefix("--") if chosen else "table"]
        read = sources(runs, model, judge, reference)
        shown = view.render(read, format_)
        if format_ == "rich":
            if out:
                Console(file=out.open("w"), width=200).print(shown)
            else:
                _console().print(shown)
        elif out:
            out.write_text(shown)
        else:
            typer.echo(shown)
        if lengths:
            from fedbench.harness.results.render_rich import lengths_rich

            _console().print(lengths_rich(read.matrix))
        if plot:
            from fedbench.harness.results.render_png import plot as draw

            draw(read.matrix, plot)
            _console().print(f"plot written to {plot}")
    except FedbenchError as err:
        _fail(err)


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., help="judgment files (JSONL) or folders holding them"),
    runs: Path = typer.Option(Path("runs"), "--runs", help="runs folder whose results.sqlite receives them"),
    benchmark: str | None = typer.Option(None, "--benchmark", help="the benchmark judged (default: from the folder names)"),
    map_: list[str] = typer.Option([], "--map", help="MODEL_ID=aggregator/method/layout for ids that are no OpenFedLLM run name"),
    base: list[str] = typer.Option([], "--base", help="the base model's id (default alpaca-native); repeatable"),
    judge: str = typer.Option("judgelm", "--judge", help="judge plugin whose parse rule reads the replies"),
    parse: str = typer.Option("strict", "--parse", help="strict (fedbench's JudgeLM parser) or study (the study's rule)"),
) -> None:
    """Import published judgments (answers judged together, one JSONL line per question) as ordinary subjects."""
    try:
        from fedbench.harness.judgment_import import BASE_ID, ImportOptions, import_judgments, parse_map

        options = ImportOptions(benchmark, parse_map(map_), tuple(base or [BASE_ID]), judge, parse)
        found = import_judgments(paths, runs, default_registry(), options)
    except FedbenchError as err:
        _fail(err)
    table = Table(title=f"imported into {runs / 'results.sqlite'}")
    for col in ("file", "benchmark", "answer sets (prompt order)", "judge", "questions", "unparsed replies"):
        table.add_column(col, justify="right" if col in ("questions", "unparsed replies") else "left")
    for f in found:
        aggregators = sorted({s.aggregator for s in f.sources if s.aggregator})
        sets = ", ".join(s.role if len(aggregators) < 2 or not s.aggregator else f"{s.aggregator}/{s.role}" for s in f.sources)
        sets = f"{aggregators[0]}: {sets}" if len(aggregators) == 1 else sets
        table.add_row(f.path.name, f.benchmark, sets, f.judge, str(f.questions), str(f.failures))
    _console().print(table)
    _console().print(f"next: fedbench leaderboard --runs {runs} [--compare | --reference study]; fedbench report --runs {runs}")


@app.command()
def report(
    runs: Path = typer.Option(Path("runs"), "--runs", help="runs folder: its run directories and results.sqlite"),
    out: Path = typer.Option(Path("report.html"), "--out", help="the HTML file to write"),
) -> None:
    """One self-contained HTML page to share: the table with intervals, each cell's training, every answer and judge reply."""
    try:
        from fedbench.harness.results.report import write_report

        written = write_report(runs, out)
    except FedbenchError as err:
        _fail(err)
    console = _console()
    for note in written.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    size = out.stat().st_size / 1e6
    console.print(
        f"report written to {escape(str(out))} ({size:.1f} MB): {len(written.cells)} cells, "
        f"{len(written.benchmarks)} benchmarks with answers; it opens offline in any browser"
    )


@app.command()
def runs(
    runs_root: Path = typer.Option(Path("runs"), "--runs", help="runs folder"),
    clean: bool = typer.Option(False, "--clean", help="remove run directories that did not finish"),
    yes: bool = typer.Option(False, "--yes", help="do not ask before removing"),
) -> None:
    """Run directories and their state: done, interrupted at round r (resumable), or failed with the reason."""
    import shutil

    from fedbench.harness.checkpoint import scan_runs

    console = _console()
    states = scan_runs(runs_root)
    table = Table(title=f"runs in {runs_root}")
    for col in ("cell", "state", "rounds", "directory"):
        table.add_column(col)
    colors = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red", "empty": "dim"}
    for st in states:
        label = {
            "interrupted": f"interrupted at round {st.rounds_done + 1}",
            "failed": f"failed: {st.reason}",
            "running": f"running: {st.reason}",
        }.get(st.status, st.status)
        table.add_row(st.cell, f"[{colors[st.status]}]{label}[/]", f"{st.rounds_done}/{st.rounds}", st.path.name)
    console.print(table)
    if clean:
        doomed = [st for st in states if st.status not in ("done", "running")]  # never a cell being trained
        if not doomed:
            console.print("nothing to clean")
            return
        if not yes and not typer.confirm(f"remove {len(doomed)} unfinished run director{'y' if len(doomed) == 1 else 'ies'}?"):
            raise typer.Exit(1)
        for st in doomed:
            shutil.rmtree(st.path)
        console.print(f"removed {len(doomed)} unfinished run directories")


def main() -> None:  # pragma: no cover - console entry for `python -m`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
