"""The results wing: what a researcher reads after training and evaluation.

Its rooms, from the data up:

- :mod:`~fedbench.harness.results.model`: the read model, the study's table (the matrix) from the store's
  score rows, with seed pooling, the paired comparisons per aggregator and pooled over aggregators, the
  unequal-budget notes, the baselines' gap closed, per-client scores and answer lengths;
- :mod:`~fedbench.harness.results.runs`: what the run directories themselves say (resources, training);
- :mod:`~fedbench.harness.results.published`: a published table, and your entries set beside it;
- :mod:`~fedbench.harness.results.views`: the leaderboard's views by name (table, compare, clients,
  baselines, reference, resources) and the formats each one renders to;
- ``render_*.py``: one renderer module per format (rich, Markdown, CSV, JSON, HTML, PNG), sharing the
  words and numbers of :mod:`~fedbench.harness.results.text`;
- :mod:`~fedbench.harness.results.report` (with :mod:`~fedbench.harness.results.gather` and
  :mod:`~fedbench.harness.results.svg`): ``fedbench report``'s one-file HTML page, whose script and style
  are package data in ``static/``.

The study's variants, orders and a subject's label live below all of them, in
:mod:`fedbench.harness.study_table`.
"""

from __future__ import annotations

from pathlib import Path


def static_text(name: str) -> str:
    """A file of ``static/`` (package data: the pages' script and style sheets), as text."""
    return (Path(__file__).resolve().parent / "static" / name).read_text(encoding="utf-8")
