"""Plugin discovery on pluggy: built-ins from registry.toml and third-party packages from entry points.

Both kinds of plugin module are registered with the same plugin manager and answer the same
hooks. A module that fails to import, or a hook that raises, is recorded as a failure and
reported by ``fedbench plugins``; every other plugin keeps working. A module that declares a
``FEDBENCH_API`` other than :data:`hookspecs.API_VERSION` still loads (it may well work) but is
recorded as a warning, so a user who sees it misbehave knows where to look.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, overload

import pluggy

from fedbench.harness import hookspecs
from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.interfaces import Aggregator, Attack, Benchmark, Codec, Judge, Layout, Method, describe
from fedbench.harness.spec import read_toml

ENTRY_POINT_GROUP = "fedbench"
BUILTIN = "built-in"
BASES: dict[str, type] = {
    "method": Method,
    "layout": Layout,
    "aggregator": Aggregator,
    "benchmark": Benchmark,
    "judge": Judge,
    "codec": Codec,
    "attack": Attack,
}
"""Plugin kind -> the base class (``fedbench.api``) its plugins subclass. Checked when a plugin registers, so a
plugin that is not one fails to load with a reason (in ``fedbench plugins``) instead of failing mid-run, and
:meth:`Registry.create` returns that type (as lm-eval's ``Registry(Generic[T], base_cls=...)`` does)."""


def registry_path() -> Path:
    """registry.toml, shipped as package data of ``fedbench.plugins``.

    A wheel holds it as ``fedbench/plugins/registry.toml``; the source tree keeps it at the top
    (the user's layout) with ``plugins/registry.toml`` linking to it, so an editable install
    finds it at the same place a regular one does.
    """
    import fedbench.plugins

    return Path(fedbench.plugins.__file__).resolve().parent / "registry.toml"


@cache
def registry_toml() -> dict[str, Any]:
    """The built-in plugin table and run profiles; a missing file is a broken installation, not a user error."""
    path = registry_path()
    if not path.is_file():
        raise FedbenchError(
            f"fedbench's plugin registry {path} is missing: this installation of fedbench is incomplete",
            "reinstall fedbench (pip install --force-reinstall fedbench); when building it yourself, "
            "keep registry.toml as package data of fedbench.plugins",
        )
    return read_toml(path)


@dataclass(frozen=True)
class PluginRecord:
    kind: str
    name: str
    plugin: type
    source: str
    description: str


@dataclass(frozen=True)
class LoadFailure:
    source: str
    target: str
    error: str


@dataclass(frozen=True)
class LoadWarning:
    """A plugin that loaded but may not work, e.g. one written for another plugin API version."""

    source: str
    target: str
    message: str


def api_mismatch(module: object) -> str | None:
    """Why a plugin module's declared ``FEDBENCH_API`` does not match this fedbench's, or None (undeclared counts as current)."""
    declared = getattr(module, "FEDBENCH_API", None)
    if declared is None or (type(declared) is int and declared == hookspecs.API_VERSION):
        return None
    return (
        f"written for plugin API {declared!r}, this fedbench provides API {hookspecs.API_VERSION}; "
        "it loaded but may misbehave (upgrade the plugin or fedbench)"
    )


class Registry:
    """Every plugin by kind and name, plus what failed to load and what loaded with a warning."""

    def __init__(
        self,
        records: list[PluginRecord],
        failures: list[LoadFailure],
        warnings: list[LoadWarning] | None = None,
    ) -> None:
        self.records = records
        self.failures = failures
        self.warnings = warnings or []
        self._by_kind: dict[str, dict[str, PluginRecord]] = {kind: {} for kind in hookspecs.KIND_HOOKS}
        for record in records:
            self._by_kind[record.kind][record.name] = record

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def find(self, kind: str, name: str) -> PluginRecord | None:
        """The record of a plugin, or None (no error: for callers asking whether a name is taken)."""
        return self._by_kind.get(kind, {}).get(name)

    def get(self, kind: str, name: str) -> type:
        """The plugin class, or an error listing the available names and the closest one."""
        try:
            return self._by_kind[kind][name].plugin
        except KeyError:
            failed = [f for f in self.failures if name in f.target]
            err = unknown_name(kind, name, self._by_kind[kind])
            if failed:
                err = FedbenchError(
                    f"{kind} '{name}' failed to load: {failed[0].error}", "run `fedbench plugins` to see load failures"
                )
            raise err from None

    def parameters(self, kind: str, name: str) -> list[str]:
        """The keyword parameters a plugin's constructor takes."""
        import inspect

        return [p for p in inspect.signature(self.get(kind, name)).parameters if p not in ("self", "args", "kwargs")]

    @overload
    def create(self, kind: Literal["method"], name: str, params: Mapping[str, Any] | None = None) -> Method: ...
    @overload
    def create(self, kind: Literal["layout"], name: str, params: Mapping[str, Any] | None = None) -> Layout: ...
    @overload
    def create(self, kind: Literal["aggregator"], name: str, params: Mapping[str, Any] | None = None) -> Aggregator: ...
    @overload
    def create(self, kind: Literal["benchmark"], name: str, params: Mapping[str, Any] | None = None) -> Benchmark: ...
    @overload
    def create(self, kind: Literal["judge"], name: str, params: Mapping[str, Any] | None = None) -> Judge: ...
    @overload
    def create(self, kind: Literal["codec"], name: str, params: Mapping[str, Any] | None = None) -> Codec: ...
    @overload
    def create(self, kind: Literal["attack"], name: str, params: Mapping[str, Any] | None = None) -> Attack: ...

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """An instance of the kind's base class (:data:`BASES`), configured by keyword, with unknown hyper-parameters named."""
        plugin = self.get(kind, name)
        try:
            return plugin(**dict(params or {}))
        except TypeError as err:
            accepted = self.parameters(kind, name)
            raise FedbenchError(
                f"{kind} '{name}' does not accept parameters {sorted(params or {})}: {err}",
                f"its parameters are: {', '.join(accepted) or '(none)'}",
            ) from err


def _builtin_modules() -> list[tuple[str, str]]:
    table = registry_toml().get("plugins", {})
    return [(f"{kind}:{name}", module) for kind, names in table.items() for name, module in names.items()]


def load_registry(entry_points: bool = True) -> Registry:
    """Import every plugin module, register it with pluggy and collect what each hook yields."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    failures: list[LoadFailure] = []
    warnings: list[LoadWarning] = []
    sources: dict[int, str] = {}

    for target, module_name in dict.fromkeys(_builtin_modules()):
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # a broken plugin must not take the others down
            failures.append(LoadFailure(BUILTIN, f"{target} ({module_name})", f"{type(err).__name__}: {err}"))
            continue
        if manager.is_registered(module):
            continue
        manager.register(module, name=module_name)
        sources[id(module)] = BUILTIN
        if mismatch := api_mismatch(module):
            warnings.append(LoadWarning(BUILTIN, f"{target} ({module_name})", mismatch))

    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
            try:
                obj = ep.load()
                manager.register(obj, name=f"{ENTRY_POINT_GROUP}:{ep.name}")
            except Exception as err:
                failures.append(LoadFailure(dist, f"{ep.name} ({ep.value})", f"{type(err).__name__}: {err}"))
                continue
            sources[id(obj)] = dist
            if mismatch := api_mismatch(obj):
                warnings.append(LoadWarning(dist, f"{ep.name} ({ep.value})", mismatch))

    records: list[PluginRecord] = []
    taken: dict[tuple[str, str], str] = {}
    for kind, hook_name in hookspecs.KIND_HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            source = sources.get(id(impl.plugin), impl.plugin_name)
            try:
                plugins = list(impl.function() or [])
            except Exception as err:
                failures.append(LoadFailure(source, f"{hook_name} ({impl.plugin_name})", f"{type(err).__name__}: {err}"))
                continue
            for plugin in plugins:
                name = getattr(plugin, "name", None)
                if not isinstance(name, str) or not name:
                    failures.append(LoadFailure(source, repr(plugin), f"{kind} plugin has no 'name'"))
                elif not (isinstance(plugin, type) and issubclass(plugin, BASES[kind])):
                    base = BASES[kind].__name__
                    failures.append(
                        LoadFailure(source, f"{kind}:{name}", f"{kind} plugin is not a subclass of fedbench.api.{base}")
                    )
                elif (kind, name) in taken:
                    failures.append(LoadFailure(source, f"{kind}:{name}", f"name already provided by {taken[kind, name]}"))
                else:
                    taken[kind, name] = source
                    records.append(PluginRecord(kind, name, plugin, source, describe(plugin)))
    return Registry(records, failures, warnings)


@cache
def default_registry() -> Registry:
    """The process-wide registry; loaded on first use."""
    return load_registry()
