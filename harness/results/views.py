"""The leaderboard's views, registered by name: what each one reads and the formats it renders to.

A view is a slice of the results (the study's table, its paired comparisons, per-client scores, the
baselines' gap closed, a published table beside yours, what each cell cost) built once from
:class:`Sources`, then handed to the renderer of the asked format. ``fedbench leaderboard`` only picks a
view and a format; a new view is one more entry in :data:`VIEWS`, a new format one more renderer per view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.judge_checks import AnswerTexts, checks_json, checks_markdown, checks_rich, gather_checks
from fedbench.harness.results import render_csv, render_html, render_json, render_markdown, render_rich
from fedbench.harness.results.model import Matrix, QuestionScores, client_views, gap_rows, store_matrix, store_questions
from fedbench.harness.results.published import ReferenceTable, load_reference, reference_view
from fedbench.harness.results.runs import client_attackers, client_losses, resource_rows
from fedbench.harness.store import STORE_NAME, PairVerdict, ScoreRow, Store

T = TypeVar("T")


@dataclass(frozen=True)
class Sources:
    """What a view may read: the runs folder, the study's table of its store, per-question scores, a published table."""

    runs: Path
    matrix: Matrix
    questions: QuestionScores
    reference: ReferenceTable | None = None
    scores: Sequence[ScoreRow] = ()
    """Every score row of the store (of ``--model`` when given), every judge and judging context: the judge checks
    compare what the table, showing one score per entry, leaves out."""
    answers: AnswerTexts = lambda _: {}
    """A score row's answer texts by question."""
    pairs: Callable[[], Sequence[PairVerdict]] = lambda: ()
    """Every head-to-head verdict of the store (``pairwise`` judging), read when a view asks (the judge checks)."""


@dataclass(frozen=True)
class View(Generic[T]):
    """A named view: ``build`` slices the sources, each of ``formats`` renders the slice (a string, or a rich
    renderable for ``rich``)."""

    name: str
    build: Callable[[Sources], T]
    formats: Mapping[str, Callable[[T], Any]]

    def render(self, sources: Sources, format_: str) -> Any:
        if format_ not in self.formats:
            raise unknown_name("format for this view", format_, self.formats)
        return self.formats[format_](self.build(sources))


def _gaps(s: Sources) -> Any:
    found = gap_rows(s.matrix, s.questions)
    if not found:
        raise FedbenchError(
            "no federated cell has both baselines scored on a per-client benchmark in this store",
            "train them beside the federated cells (`fedbench run ... --baselines`) with the `preference` benchmark",
        )
    return found


def _beside(s: Sources) -> Any:
    if s.reference is None:
        raise FedbenchError("the reference view needs a published table", "pass --reference study or a CSV path")
    return reference_view(s.matrix, s.reference)


VIEWS: dict[str, View[Any]] = {
    v.name: v
    for v in (
        View(
            "table",
            lambda s: s.matrix,
            {
                "rich": render_rich.to_rich,
                "markdown": render_markdown.to_markdown,
                "csv": render_csv.to_csv,
                "json": render_json.to_json,
                "html": render_html.to_html,
            },
        ),
        View(
            "compare",
            lambda s: s.matrix,
            {
                "rich": render_rich.compare_rich,
                "markdown": render_markdown.compare_markdown,
                "csv": render_csv.compare_csv,
                "json": render_json.compare_json,
            },
        ),
        View(
            "clients",
            lambda s: client_views(
                s.matrix,
                losses=lambda r: client_losses(s.runs, r.subject),
                attackers=lambda r: client_attackers(s.runs, r.subject),
            ),
            {"rich": render_rich.clients_rich, "markdown": render_markdown.clients_markdown, "json": render_json.clients_json},
        ),
        View(
            "baselines",
            _gaps,
            {"rich": render_rich.gaps_rich, "markdown": render_markdown.gaps_markdown, "json": render_json.gaps_json},
        ),
        View(
            "reference",
            _beside,
            {
                "rich": render_rich.reference_rich,
                "markdown": render_markdown.reference_markdown,
                "csv": render_csv.reference_csv,
                "json": render_json.reference_json,
            },
        ),
        View(
            "judge-checks",
            lambda s: gather_checks(s.scores, s.questions, s.answers, s.pairs()),
            {"rich": checks_rich, "markdown": checks_markdown, "json": checks_json},
        ),
        View(
            "resources",
            lambda s: resource_rows(s.runs),
            {
                "rich": render_rich.resources_rich,
                "markdown": render_markdown.resources_markdown,
                "csv": render_csv.resources_csv,
                "json": render_json.resources_json,
            },
        ),
    )
}
"""Every view by name, the study's table first."""


def sources(runs: Path, model: str | None = None, judge: str | None = None, reference: str | None = None) -> Sources:
    """Read a runs folder's store into the study's table, and the published table named by ``reference`` (a built-in
    name or a CSV path); with a published table and no store, your side is empty."""
    has_store = (runs / STORE_NAME).is_file()
    if not has_store and reference is None:
        raise FedbenchError(f"no results in {runs} (no {STORE_NAME})", "run `fedbench run` first, or pass --runs")
    published = load_reference(reference) if reference is not None else None
    store = Store(runs / STORE_NAME) if has_store else Store(Path(":memory:"))  # no store: the published table alone
    every = [r for r in store.scores() if model is None or r.model == model]
    answers: AnswerTexts = lambda r: store.answers(r.subject, r.benchmark)  # noqa: E731 - read lazily, per row asked
    matrix = store_matrix(store, model, judge)
    return Sources(runs, matrix, store_questions(store), published, every, answers, store.pair_verdicts)
