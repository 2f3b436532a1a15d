"""Plugin discovery: built-ins through the hooks, third-party distributions through entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.registry import BUILTIN, load_registry


def test_builtins_are_found_by_kind() -> None:
    registry = load_registry(entry_points=False)
    assert {"dpo", "kto"} <= set(registry.names("method"))
    assert {"original", "redistributed"} <= set(registry.names("layout"))
    assert "fedavg" in registry.names("aggregator")
    assert all(r.source == BUILTIN for r in registry.records)
    assert not registry.failures


def test_unknown_name_suggests_the_closest() -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(FedbenchError) as err:
        registry.get("aggregator", "fedavgg")
    assert "Did you mean 'fedavg'" in str(err.value)
    assert "fedavg" in (err.value.fix or "")


def _install_fake_distribution(site: Path, dist: str, module: str, body: str) -> None:
    """A real distribution as importlib.metadata sees one: dist-info with an entry point, plus its module."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[fedbench]\n{module} = {module}\n")


GOOD_PLUGIN = '''
from fedbench.harness.hookspecs import hookimpl
from fedbench.harness.interfaces import Aggregator

class KeepGlobal(Aggregator):
    """Ignores clients: a do-nothing aggregator for tests."""
    name = "keepglobal"
    def aggregate(self, global_params, updates):
        return global_params

@hookimpl
def fedbench_aggregators():
    return [KeepGlobal]
'''


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_third_party_plugin_appears_with_its_distribution(site: Path) -> None:
    _install_fake_distribution(site, "fedbench-keepglobal", "fb_keepglobal", GOOD_PLUGIN)
    registry = load_registry()
    record = next(r for r in registry.records if r.name == "keepglobal")
    assert record.kind == "aggregator"
    assert record.source == "fedbench-keepglobal 1.2.3"
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "keepglobal" in result.output and "fedbench-keepglobal 1.2.3" in result.output
    sys.modules.pop("fb_keepglobal", None)


def test_plugin_that_raises_on_import_is_reported_and_others_work(site: Path) -> None:
    _install_fake_distribution(site, "fedbench-broken", "fb_broken", "raise RuntimeError('boom at import')\n")
    registry = load_registry()
    assert any("boom at import" in f.error and f.source == "fedbench-broken 1.2.3" for f in registry.failures)
    assert "fedavg" in registry.names("aggregator")
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0 and "boom at import" in result.output


def test_name_clash_keeps_the_builtin(site: Path) -> None:
    _install_fake_distribution(site, "fedbench-clash", "fb_clash", GOOD_PLUGIN.replace('"keepglobal"', '"fedavg"'))
    registry = load_registry()
    assert registry.get("aggregator", "fedavg").__module__ == "fedbench.plugins.aggregators.fedavg"
    assert any("already provided" in f.error for f in registry.failures)
    sys.modules.pop("fb_clash", None)


def test_a_plugin_that_is_not_its_kinds_base_class_fails_to_load(site: Path) -> None:
    body = GOOD_PLUGIN.replace("class KeepGlobal(Aggregator):", "class KeepGlobal:").replace('"keepglobal"', '"duck"')
    _install_fake_distribution(site, "fedbench-duck", "fb_duck", body)
    registry = load_registry()
    assert "duck" not in registry.names("aggregator")
    assert any(f.target == "aggregator:duck" and "fedbench.api.Aggregator" in f.error for f in registry.failures)
    sys.modules.pop("fb_duck", None)


def test_a_benchmark_states_what_it_needs_from_the_model_and_api_2_flags_still_say_it() -> None:
    from fedbench.harness.interfaces import Benchmark, Question, Request

    class Given(Benchmark):  # written for API 2
        name = "given"
        answers_given = True

        def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
            return []

    class Bridged(Given):
        name = "bridged"
        evaluator = "lm_eval"

    registry = load_registry(entry_points=False)
    assert registry.create("benchmark", "vicuna").request is Request.GENERATE
    assert registry.create("benchmark", "preference").request is Request.LIKELIHOOD
    assert registry.get("benchmark", "lm_eval").request is Request.EXTERNAL
    assert (Given.request, Bridged.request) == (Request.LIKELIHOOD, Request.EXTERNAL)
