"""The library entry: run a study (a matrix of cells) from Python, with no console attached.

A :class:`Study` is the resolved settings of one ``fedbench run``: the RunSpec settings, which
methods, layouts and aggregators (names, comma lists or 'all'), the seeds, the runs folder, the
engine and the evaluation. :func:`run_study` expands it into cells, trains each through the
engine and evaluates the results::

    from fedbench.harness.study import Study, run_study

    result = run_study(Study(settings={"rounds": 2}, method="kto", layout="all", seeds=(0, 1)))
    for outcome in result.outcomes:
        print(outcome.run_dir, outcome.history[-1].loss)

Progress goes to a :class:`StudyProgress` object the caller supplies: every method is a no-op
here, and ``fedbench run`` passes the rich rendering of :mod:`fedbench.harness.progress`. The
steps are public too: :func:`expand_cells`, :func:`train_cells` and :func:`evaluate_runs` (what
``fedbench eval`` calls). The CLI (:mod:`fedbench.harness.cli`) only turns flags into these calls.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fedbench.harness.baselines import baseline_spec, is_baseline
from fedbench.harness.checkpoint import RunDir
from fedbench.harness.engines import Engine, LocalEngine, TrainingProgress
from fedbench.harness.errors import CellBusy, FedbenchError, Refusal
from fedbench.harness.evaluation import EvalSpec, evaluate
from fedbench.harness.federation import Cell, build_cell
from fedbench.harness.holdout import same_heldout
from fedbench.harness.interfaces import Method
from fedbench.harness.registry import BUILTIN, Registry, default_registry
from fedbench.harness.rounds import CellOutcome
from fedbench.harness.scoring import EvalProgress
from fedbench.harness.spec import RunSpec, check_keys
from fedbench.harness.store import STORE_NAME, ScoreRow, Store
from fedbench.harness.subjects import Subject, base_subject, cell_subject, imported_subjects

Names = str | Sequence[str]
"""Plugin names: one name, a comma list, 'all', or a sequence of names."""

MATRIX_KEYS = ("method", "layout", "aggregator", "seed")
"""Settings that span the matrix: a :class:`Study` holds them in its own fields, not in ``settings``."""


@dataclass(frozen=True)
class Study:
    """One study: the matrix seeds x methods x layouts x aggregators of cells sharing ``settings``, and what to do with it.

    Build it with :meth:`from_settings` from resolved config layers (``spec.resolve_settings``), or directly.
    """

    settings: Mapping[str, Any] = field(default_factory=dict)
    """RunSpec keyword arguments shared by every cell (checked values, as ``spec.resolve_settings`` returns them)."""
    method: Names = RunSpec.method
    layout: Names = RunSpec.layout
    aggregator: Names = RunSpec.aggregator
    seeds: tuple[int, ...] = (RunSpec.seed,)
    """Training seeds: every cell is trained once per seed (cells of one seed sample the same clients)."""
    runs_root: Path = Path("runs")
    """The runs folder: one directory per cell, and the results store."""
    force: bool = False
    """Retrain cells already finished in ``runs_root`` instead of skipping them."""
    engine: Engine = field(default_factory=LocalEngine)
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    skip_eval: bool = False
    """Train only (evaluate later with :func:`evaluate_runs`, i.e. ``fedbench eval``)."""
    baselines: bool = False
    """Add the baseline aggregators (centralized, local only: harness/baselines.py) to the aggregators named;
    ``'all'`` alone leaves them out."""
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """Settings swept over (``--sweep layout_params.paired_fraction=0,0.5,1``): (key, values) pairs, ``TABLE.ENTRY``
    for one entry of a table setting; the matrix is repeated for every combination of values. A combination a
    swept value cannot train (a paired objective at paired_fraction 0) is skipped with the reason."""

    def __post_init__(self) -> None:
        matrix = sorted(set(self.settings) & set(MATRIX_KEYS))
        if matrix:
            raise FedbenchError(
                f"Study.settings holds {', '.join(matrix)}, which span the matrix",
                "pass them as Study's method/layout/aggregator/seeds fields, or build it with Study.from_settings",
            )
        if not self.seeds:
            raise FedbenchError("a study needs at least one seed", "pass seeds=(0,) or more")
        for key, values in self.sweep:
            name = key.partition(".")[0]
            if name in MATRIX_KEYS or name not in RunSpec.__dataclass_fields__ or not values:
                why = "spans the matrix already" if name in MATRIX_KEYS else "has no values" if values == () else "is no setting"
                raise FedbenchError(
                    f"sweep over '{key}': '{name}' {why}",
                    "sweep a run setting (or TABLE.ENTRY of a table setting) over one or more values: "
                    "--sweep layout_params.paired_fraction=0,0.5,1; name methods, layouts, aggregators and seeds directly",
                )
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "runs_root", Path(self.runs_root))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], seeds: Sequence[int] | None = None, **fields: Any) -> Study:
        """A study from resolved settings whose method/layout/aggregator may be names, comma lists or 'all'.

        ``seeds`` (``--seeds``) wins over the settings' ``seed``; ``fields`` are the other Study fields.
        """
        rest = dict(settings)
        matrix = {key: rest.pop(key) for key in ("method", "layout", "aggregator") if key in rest}
        seed = rest.pop("seed", RunSpec.seed)
        return cls(settings=rest, seeds=tuple(seeds) if seeds else (seed,), **matrix, **fields)


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` did: the cells it ran, their training outcomes and the score rows it stored."""

    cells: tuple[Cell, ...]
    outcomes: tuple[CellOutcome, ...]
    scores: tuple[ScoreRow, ...] = ()
    """Empty when the study skipped evaluation."""


class StudyProgress(TrainingProgress):
    """Callbacks for a study's progress, on top of an engine's :class:`TrainingProgress`; all do nothing here.

    Subclass and override what you show (``fedbench.harness.progress.RichProgress`` draws bars and tables).
    """

    def cell_skipped(self, spec: RunSpec, reason: str) -> None:
        """A combination from 'all' that the layout refuses (a DPO cell on a layout of single responses)."""

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        """Cell ``index`` (1-based) of ``total`` is handed to the engine."""

    def cell_busy(self, cell: Cell, reason: str) -> None:
        """Another process is training this cell: it is skipped here (and not evaluated)."""

    def cell_finished(self, cell: Cell, outcome: CellOutcome) -> None:
        """The engine is done with a cell (``outcome.skipped``: it was already finished)."""

    def cells_trained(self, cells: Sequence[Cell], outcomes: Sequence[CellOutcome]) -> None:
        """Every cell is trained."""

    def evaluation_started(self, subjects: Sequence[Subject], spec: EvalSpec) -> None:
        """Evaluation of these subjects (base models first) begins."""

    def benchmark_started(self, subject: Subject, benchmark: str, todo: int) -> None:
        """A subject starts a benchmark with ``todo`` questions left to answer (or pairs to score)."""

    def answers_done(self, count: int) -> None:
        """``count`` more answers were generated (or pairs scored)."""

    def scored(self, subject: Subject, benchmark: str, row: ScoreRow) -> None:
        """A score landed in the store."""

    def benchmark_skipped(self, subject: Subject, benchmark: str, reason: str) -> None:
        """A benchmark this subject cannot take (the others still run)."""

    def evaluation_stopped(self) -> None:
        """Evaluation ended, finished or not (called before the store is closed)."""

    def evaluation_finished(self, store_path: Path, runs_root: Path, rows: Sequence[ScoreRow]) -> None:
        """Every score is stored in ``store_path``."""


def quiet_libraries() -> None:
    """Silence per-step chatter from transformers/datasets so fedbench's own progress is readable."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="(transformers|trl|peft)")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on orders it leaves out of epsilon


def run_study(study: Study, registry: Registry | None = None, progress: StudyProgress | None = None) -> StudyResult:
    """Expand the study into cells, train each through ``study.engine``, then evaluate them unless ``skip_eval``.

    ``registry``: where plugin names are looked up (default: the installed plugins). Cells finished
    in ``study.runs_root`` are skipped (unless ``force``) and unfinished ones resume.
    """
    registry = registry if registry is not None else default_registry()
    progress = progress or StudyProgress()
    cells = expand_cells(study, registry, progress)
    if not cells:
        raise FedbenchError("no runnable cell in the requested matrix", "check --method/--layout (dpo cannot use redistributed)")
    outcomes = train_cells(cells, study.engine, study.runs_root, study.force, progress)
    scores: list[ScoreRow] = []
    if not study.skip_eval:
        scores = evaluate_runs([o.run_dir for o in outcomes], study.evaluation, registry, study.runs_root, progress=progress)
    return StudyResult(tuple(cells), tuple(outcomes), tuple(scores))


def in_all(plugin: type) -> bool:
    """Whether 'all' expands to this plugin: the study's matrix. A method joins when it is one of the study's two
    objectives (``Method.study``); a layout unless it needs its own setting to mean much (``Layout.in_all``); an
    aggregator unless it is a rule outside the study's seven (``Aggregator.opt_in``: the robust ones)."""
    if isinstance(plugin, type) and issubclass(plugin, Method):
        return plugin.study
    return bool(getattr(plugin, "in_all", True)) and not getattr(plugin, "opt_in", False)


def _names(registry: Registry, kind: str, value: Names) -> tuple[list[str], bool]:
    """Plugin names from 'all' (the study's matrix: built-in plugins that :func:`in_all` admits, so installing a plugin
    package never grows it), 'every' (every plugin of the kind but the baselines, third-party ones included), a comma
    list or a sequence, each checked; the flag says whether 'all' or 'every' was used."""
    if isinstance(value, str):
        if value.strip() in ("all", "every"):
            every = [n for n in registry.names(kind) if not is_baseline(registry.get(kind, n))]
            if value.strip() == "every":
                return every, True
            return [n for n in every if in_all(registry.get(kind, n)) and _builtin(registry, kind, n)], True
        value = value.split(",")
    names = [v.strip() for v in value if v.strip()]
    for name in names:
        registry.get(kind, name)
    return names, False


def _builtin(registry: Registry, kind: str, name: str) -> bool:
    record = registry.find(kind, name)
    return record is not None and record.source == BUILTIN


def expand_cells(study: Study, registry: Registry, progress: StudyProgress | None = None) -> list[Cell]:
    """Every cell of the seed x method x layout x aggregator product the study names, plugins instantiated.

    A combination that cannot train (:class:`Refusal`: the layout cannot hold the method's data, the loss needs a
    bigger batch) is skipped with a note when it came from 'all' or 'every', and is an error when the user named
    both sides explicitly. Cells of one seed sample
    the same clients in every round (sampling is a function of seed and round), so variants compare paired.
    A centralized baseline becomes the pooled twin of the settings (:func:`baselines.centralized_spec`),
    one per method and seed whatever the layouts, since every layout pools to the same examples.
    """
    progress = progress or StudyProgress()
    methods, all_m = _names(registry, "method", study.method)
    layouts, all_l = _names(registry, "layout", study.layout)
    aggs, _ = _names(registry, "aggregator", study.aggregator)
    if study.baselines:
        aggs += [n for n in registry.names("aggregator") if n not in aggs and is_baseline(registry.get("aggregator", n))]
    cells: list[Cell] = []
    # with several layouts, each takes its own share of layout_params (checked once per swept setting)
    swept = [(s, _own_layout_params(registry, layouts, s) if len(layouts) > 1 else None) for s in _swept(study)]
    refused: list[str] = []
    combos = itertools.product(swept, study.seeds, methods, layouts, aggs)
    for (shared, per_layout), seed, method, layout, agg in combos:
        settings = dict(shared) | ({"layout_params": per_layout[layout]} if per_layout is not None else {})
        spec = RunSpec(**settings | {"seed": seed}, method=method, layout=layout, aggregator=agg)
        regime = getattr(registry.get("aggregator", agg), "regime", "federated")
        spec = baseline_spec(spec, regime)
        if regime == "centralized" and any(c.spec == spec for c in cells):
            continue
        try:
            cells.append(build_cell(spec, registry))
        except Refusal as err:
            if not (all_m or all_l or study.sweep or len(methods) > 1 or len(layouts) > 1):
                raise  # one method on one layout, named: the user asked for exactly this cell
            refused.append(err.problem)
            progress.cell_skipped(spec, err.problem)
    if refused and not cells:
        raise Refusal("no cell of this study can train: " + "; ".join(dict.fromkeys(refused)), "see each reason above")
    return cells


def _own_layout_params(registry: Registry, layouts: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Layout -> the ``layout_params`` entries its constructor takes (``paired_fraction`` goes to ``partial`` only);
    an entry no named layout takes is an error, as with one layout."""
    given = dict(settings.get("layout_params") or ())
    own = {name: registry.parameters("layout", name) for name in layouts}
    unused = sorted(set(given) - {p for params in own.values() for p in params})
    if unused:
        raise FedbenchError(
            f"layout_params {', '.join(unused)}: none of the layouts {', '.join(layouts)} takes it",
            "; ".join(f"{name} takes {', '.join(params) or 'no parameters'}" for name, params in own.items()),
        )
    return {name: tuple((k, v) for k, v in given.items() if k in params) for name, params in own.items()}


def _swept(study: Study) -> list[dict[str, Any]]:
    """The study's settings once per combination of its swept values (once, unchanged, without a sweep)."""
    keys = [key for key, _ in study.sweep]
    out = []
    for values in itertools.product(*(vals for _, vals in study.sweep)):
        settings = dict(study.settings)
        for key, value in zip(keys, values):
            table, dot, entry = key.partition(".")
            settings |= check_keys({table: dict(settings.get(table) or ()) | {entry: value} if dot else value}, "--sweep")
        out.append(settings)
    return out


def train_cells(
    cells: Sequence[Cell],
    engine: Engine | None = None,
    runs_root: Path = Path("runs"),
    force: bool = False,
    progress: StudyProgress | None = None,
) -> list[CellOutcome]:
    """Train each cell in turn through ``engine`` (default: the local one); finished cells are skipped unless ``force``.

    Each cell is trained under its run directory's lock; a cell another process is training is skipped
    with the reason (:meth:`StudyProgress.cell_busy`) and left out of the outcomes. An engine with a ``check(cell)``
    (the Flower engines) refuses a cell it cannot run before the first cell trains.
    """
    engine = engine if engine is not None else LocalEngine()
    progress = progress or StudyProgress()
    check = getattr(engine, "check", None)  # an engine that cannot run some cell says so before any cell trains
    if check is not None:
        for cell in cells:
            check(cell)
    quiet_libraries()
    trained, outcomes = [], []
    for i, cell in enumerate(cells, start=1):
        progress.cell_started(i, len(cells), cell)
        try:
            with RunDir(runs_root, cell.spec).claim():  # one writer per cell, whatever the engine
                outcome = engine.train(cell, runs_root, force, progress)
        except CellBusy as busy:
            progress.cell_busy(cell, busy.problem)
            continue
        trained.append(cell)
        outcomes.append(outcome)
        progress.cell_finished(cell, outcome)
    progress.cells_trained(trained, outcomes)
    return outcomes


def _holds_store(path: Path) -> bool:
    """A runs folder (it holds the results store), as opposed to one cell's run directory inside it."""
    return (Path(path) / STORE_NAME).is_file()


def runs_folder(run_dirs: Sequence[Path]) -> Path:
    """The one runs folder the run directories are in, or are (their results store lives there)."""
    roots = {Path(p).resolve() if _holds_store(p) else Path(p).resolve().parent for p in run_dirs}
    if len(roots) != 1:
        raise FedbenchError("the run directories are in different runs folders", "evaluate one runs folder at a time")
    return roots.pop()


def eval_subjects(run_dirs: Sequence[Path], include_base: bool = True) -> list[Subject]:
    """The finished cells as subjects, preceded by their base model(s): one per (model, template, dtype).

    A runs folder given instead of a cell stands for the subjects imported into its store (``fedbench import``),
    the base model's answers among them: they are judged again on their stored answers, nothing is generated."""
    imported: list[Subject] = []
    for folder in [Path(d) for d in run_dirs if _holds_store(Path(d))]:
        store = Store(folder / STORE_NAME)
        try:
            found = imported_subjects(store)
        finally:
            store.close()
        imported += found
        if not found:
            raise FedbenchError(
                f"{folder} is a runs folder with no imported answers",
                "give the run directories of its cells (fedbench eval runs/<cell>...), or import answers first (fedbench import)",
            )
    cells = [cell_subject(Path(d)) for d in run_dirs if not _holds_store(Path(d))]
    subjects: list[Subject] = imported
    if include_base:
        for sub in cells:
            base = base_subject(sub.model, sub.template, sub.dtype, sub.heldout)
            twin = next((s for s in subjects if s.key == base.key), None)
            if twin is None:
                subjects.append(base)
            elif not same_heldout(twin.heldout, sub.heldout):
                raise FedbenchError(
                    f"the cells evaluated together hold out different preference pairs ({twin.heldout} vs {sub.heldout}), "
                    "so the base model has no single held-out score to stand beside them",
                    "evaluate cells trained on the same data (and holdout, partition_seed) together: one `fedbench eval` each",
                )
    return subjects + cells


def evaluate_runs(
    run_dirs: Sequence[Path],
    spec: EvalSpec | None = None,
    registry: Registry | None = None,
    runs_root: Path | None = None,
    include_base: bool = True,
    progress: StudyProgress | None = None,
) -> list[ScoreRow]:
    """Answer, judge and store every benchmark for finished cells (and their base model), into the runs folder's store.

    ``runs_root`` defaults to the folder the run directories are in (refused when they are in several).
    """
    spec = spec or EvalSpec()
    registry = registry if registry is not None else default_registry()
    progress = progress or StudyProgress()
    runs_root = runs_root if runs_root is not None else runs_folder(run_dirs)
    quiet_libraries()
    subjects = eval_subjects(run_dirs, include_base)
    store = Store.in_runs(runs_root)
    progress.evaluation_started(subjects, spec)
    try:
        callbacks = EvalProgress(progress.benchmark_started, progress.answers_done, progress.scored, progress.benchmark_skipped)
        rows = evaluate(subjects, spec, registry, store, callbacks)
    finally:
        progress.evaluation_stopped()
        store.close()
    progress.evaluation_finished(store.path, runs_root, rows)
    return rows
