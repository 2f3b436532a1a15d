"""One exception type for every problem a user can fix, so the CLI can print it without a traceback.

Subclasses mark the few problems a caller handles by kind rather than printing them (``Refusal``: a layout's
or a method's, ``CellBusy``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FedbenchError(Exception):
    """A problem the user can fix: says what is wrong and what to do about it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


class Refusal(FedbenchError):
    """A combination of settings that cannot train (a paired objective on single responses, a KL-estimating loss
    at batch 1): a cell to skip, not a broken input.

    Matrix expansion (:func:`fedbench.harness.study.expand_cells`) skips such a cell with a note when
    the user asked for 'all' (or 'every'), a list of methods or layouts, or a sweep, and fails when the user named
    exactly one method and one layout (or when no cell of the study can train).
    """


class LayoutRefusal(Refusal):
    """A layout cannot hold a method's data form (``Layout.check``)."""


class MethodRefusal(Refusal):
    """A method cannot train with the run's settings (``Method.check_batch``: its loss needs a batch above 1)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix for typos, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> FedbenchError:
    """The error every lookup by name raises, so all of them read the same."""
    available = sorted(choices)
    return FedbenchError(
        f"unknown {kind} '{name}'.{did_you_mean(name, available)}",
        f"choose one of: {', '.join(available) or '(none installed)'}",
    )


class CellBusy(FedbenchError):
    """Another process holds a cell's lock (it is training it): the cell is skipped, never trained twice at once."""
