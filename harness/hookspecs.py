"""The hooks a fedbench plugin implements: one per plugin kind.

Every hook takes no arguments and returns the plugin classes the implementing module
provides. Built-in plugins (listed in registry.toml) and third-party packages (found
through the ``fedbench`` entry-point group) answer the same hooks, so a built-in is
never privileged over a plugin someone else writes.

A plugin module needs one function (docs/plugins.md has one complete example per kind)::

    from fedbench.api import hookimpl

    @hookimpl
    def fedbench_aggregators():
        return [MyAggregator]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fedbench.harness.interfaces import Aggregator, Attack, Benchmark, Codec, Judge, Layout, Method

PROJECT = "fedbench"
API_VERSION = 2
"""Version of the plugin API (``fedbench.api``); a plugin may declare ``FEDBENCH_API = 2`` at module level.

Bumped only by a change that breaks plugins written against the previous version; a plugin
declaring another version still loads, and ``fedbench plugins`` warns about it.

History: 2 renamed ``Benchmark.aggregate`` to ``Benchmark.score`` (the old name clashed with
federated aggregation, ``Aggregator.aggregate``); a version-1 benchmark that overrides
``aggregate`` must rename its override, or its own scoring is silently replaced by the default mean.
"""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fedbench_methods() -> Sequence[type[Method]]:
    """Preference-optimisation methods (e.g. DPO, KTO): how one client trains locally.

    Each class subclasses :class:`fedbench.harness.interfaces.Method`, sets ``name`` and
    ``data_form`` and builds a (TRL) trainer for one client's examples.
    """


@hookspec
def fedbench_layouts() -> Sequence[type[Layout]]:
    """Data layouts: how examples are spread over clients before training.

    Each class subclasses :class:`fedbench.harness.interfaces.Layout` and declares which
    data forms ("paired", "unpaired") it can hold.
    """


@hookspec
def fedbench_aggregators() -> Sequence[type[Aggregator]]:
    """Federated aggregation strategies: a server half and an optional client half.

    Each class subclasses :class:`fedbench.harness.interfaces.Aggregator`; its constructor
    takes the strategy's hyper-parameters as keyword arguments with the paper's defaults.
    """


@hookspec
def fedbench_benchmarks() -> Sequence[type[Benchmark]]:
    """Evaluation benchmarks: a question set, generation settings and a score scale."""


@hookspec
def fedbench_judges() -> Sequence[type[Judge]]:
    """Judges that turn (question, answer) pairs into scores, keeping the raw reply."""


@hookspec
def fedbench_codecs() -> Sequence[type[Codec]]:
    """Codecs for client updates on the wire (casts, quantization, sparsification): ``--codec NAME``.

    Each class subclasses :class:`fedbench.harness.interfaces.Codec` and implements ``encode`` / ``decode``.
    """


@hookspec
def fedbench_attacks() -> Sequence[type[Attack]]:
    """Attacks that malicious clients run (label flipping, update poisoning): ``--set attack=NAME``.

    Each class subclasses :class:`fedbench.harness.interfaces.Attack` and overrides ``poison_examples``,
    ``poison_update`` or both.
    """


KIND_HOOKS: dict[str, str] = {
    "method": "fedbench_methods",
    "layout": "fedbench_layouts",
    "aggregator": "fedbench_aggregators",
    "benchmark": "fedbench_benchmarks",
    "judge": "fedbench_judges",
    "codec": "fedbench_codecs",
    "attack": "fedbench_attacks",
}
"""Plugin kind -> the hook that yields plugins of that kind."""
