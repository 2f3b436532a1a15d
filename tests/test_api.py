"""The public plugin API: fedbench.api's names and helpers, the API-version warning, the docs' examples, the scaffold."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fedbench.api as api
from fedbench.harness import hookspecs, newplugin
from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
PROMISED = {
    "hookimpl",
    "API_VERSION",
    "Method",
    "Layout",
    "Aggregator",
    "ClientHook",
    "ClientUpdate",
    "Params",
    "LocalTrainingArgs",
    "Benchmark",
    "Question",
    "Judge",
    "Judgment",
    "PreferencePair",
    "LabeledExample",
    "Example",
    "example_weights",
    "weighted_mean",
    "mean_delta",
    "build_tiny_model",
    "fake_updates",
}


def test_every_promised_name_is_exported_and_resolves() -> None:
    assert PROMISED <= set(api.__all__)
    assert all(getattr(api, name) is not None for name in api.__all__)
    assert api.API_VERSION == hookspecs.API_VERSION == 2
    assert api.hookimpl is hookspecs.hookimpl


def test_importing_the_api_does_not_pull_in_transformers() -> None:
    code = "import sys, fedbench.api; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_fake_updates_are_seeded_and_shaped_like_the_global_adapter() -> None:
    global_params = api.fake_params(seed=0)
    updates = api.fake_updates(global_params, n=4, seed=1)
    assert [u.client_id for u in updates] == ["client0", "client1", "client2", "client3"]
    assert all(1 <= u.num_examples <= 10 and "loss" in u.metrics for u in updates)
    for u in updates:
        assert list(u.params) == list(global_params)
        assert all(u.params[k].shape == v.shape and u.params[k].dtype == v.dtype for k, v in global_params.items())
    again = api.fake_updates(global_params, n=4, seed=1)
    assert all(torch.equal(a.params[k], b.params[k]) for a, b in zip(updates, again) for k in global_params)
    delta = api.mean_delta(global_params, updates)
    assert max(float(t.abs().max()) for t in delta.values()) < 0.1  # noise of std 0.01 around the global adapter
    half = {k: v.half() for k, v in global_params.items()}
    assert all(t.dtype == torch.float16 for u in api.fake_updates(half, n=2) for t in u.params.values())


def test_fake_pairs_give_every_client_a_pair() -> None:
    pairs = api.fake_pairs(n=10, clients=4, seed=3)
    assert len(pairs) == 10 and len({p.id for p in pairs}) == 10
    assert {p.client_id for p in pairs} == {"user0", "user1", "user2", "user3"}
    with pytest.raises(ValueError):
        api.fake_pairs(n=2, clients=3)


# -- the API-version warning ---------------------------------------------------------------------

PLUGIN = '''
from fedbench.api import Aggregator, hookimpl

FEDBENCH_API = {version}

class Frozen(Aggregator):
    """Keeps the global adapter."""
    name = "{name}"
    def aggregate(self, global_params, updates):
        return global_params

@hookimpl
def fedbench_aggregators():
    return [Frozen]
'''


def _install(site: Path, module: str, version: str) -> None:
    """A distribution as importlib.metadata sees one: dist-info with an entry point, plus its module."""
    (site / f"{module}.py").write_text(PLUGIN.format(version=version, name=module))
    info = site / f"{module}-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(f"[fedbench]\n{module} = {module}\n")


@pytest.mark.parametrize(
    ("module", "version", "warning"),
    [
        ("fb_api_one", "1", "written for plugin API 1"),
        ("fb_api_str", "'2'", "written for plugin API '2'"),
        ("fb_api_two", "2", None),
    ],
)
def test_a_plugin_for_another_api_version_loads_with_a_warning(module, version, warning, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "300")
    _install(tmp_path, module, version)
    try:
        registry = load_registry()
        assert module in registry.names("aggregator")
        assert not registry.failures
        mine = [w for w in registry.warnings if module in w.target]
        assert len(mine) == (1 if warning else 0) and all(w.message.startswith(f"{warning}, ") for w in mine)
        result = CliRunner().invoke(app, ["plugins"])
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert (f"warning: {module}" in text) == bool(warning)
        if warning:
            assert warning in text and f"{module} 2.0" in text
    finally:
        sys.modules.pop(module, None)


# -- the docs' examples run -------------------------------------------------------------------------


def _docs_plugins() -> dict[str, list[type]]:
    """Execute every python block of docs/plugins.md that defines a hook; kind -> the classes it returns."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    found: dict[str, list[type]] = {}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        if "@hookimpl" not in block:
            continue
        module = types.ModuleType(f"fedbench_docs_example_{i}")
        exec(compile(block, f"docs/plugins.md block {i}", "exec"), module.__dict__)
        assert module.FEDBENCH_API == api.API_VERSION
        for kind, hook in hookspecs.KIND_HOOKS.items():
            if hook in module.__dict__:
                found.setdefault(kind, []).extend(module.__dict__[hook]())
    return found


def test_the_docs_have_a_working_example_of_every_kind(tmp_path: Path) -> None:
    plugins = _docs_plugins()
    assert set(plugins) == set(hookspecs.KIND_HOOKS)
    [method] = plugins["method"]
    rows = method().records(api.fake_pairs(n=3, clients=1), "chat")
    assert len(rows) == 3 and {"prompt", "chosen", "rejected"} <= set(rows[0])

    [layout] = plugins["layout"]
    pairs = api.fake_pairs(n=13, clients=4)
    clients = layout().partition(pairs, seed=0)
    assert sorted(ex.id for exs in clients.values() for ex in exs) == sorted(p.id for p in pairs) and all(clients.values())

    [aggregator] = plugins["aggregator"]
    global_params = api.fake_params()
    for n in (1, 2, 5):
        new = aggregator().aggregate(global_params, api.fake_updates(global_params, n=n, seed=n))
        assert all(new[k].shape == v.shape and bool(torch.isfinite(new[k]).all()) for k, v in global_params.items())

    [benchmark] = plugins["benchmark"]
    assert len(benchmark().questions(limit=1)) == 1 and benchmark().questions()

    [judge] = plugins["judge"]
    questions = [api.Question("1", "?", reference="Paris"), api.Question("2", "?")]
    assert [j.score for j in judge().judge(questions, ["It is paris.", "x"])] == [1.0, None]

    [codec] = plugins["codec"]
    encoded = codec().encode(global_params, "c0")
    decoded = codec().decode(encoded)
    assert all(decoded[k].shape == v.shape and decoded[k].dtype == v.dtype for k, v in global_params.items())
    assert encoded.nbytes < sum(t.numel() * t.element_size() for t in global_params.values())

    [attack] = plugins["attack"]
    sent = attack().poison_update(global_params, api.fake_params(seed=1), torch.Generator().manual_seed(0))
    assert all(torch.equal(sent[k], v) for k, v in global_params.items())


# -- fedbench new-plugin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aggregatr", "x"], "unknown plugin kind 'aggregatr'. Did you mean 'aggregator'?"),
        (["judge", "9lives"], "plugin name '9lives' is not a valid Python identifier"),
        (["judge", "my-judge"], "plugin name 'my-judge' is not a valid Python identifier"),
        (["layout", "class"], "plugin name 'class' is a Python keyword"),
        (["aggregator", "fedavg"], "aggregator 'fedavg' already exists (built-in)"),
    ],
)
def test_new_plugin_refuses_bad_input(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["new-plugin", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "fix:" in result.output
    assert not list(tmp_path.iterdir())


def test_new_plugin_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "fedbench-mine").mkdir()
    result = CliRunner().invoke(app, ["new-plugin", "judge", "mine", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert not list((tmp_path / "fedbench-mine").iterdir())
    with pytest.raises(FedbenchError, match="already exists"):
        newplugin.new_plugin("judge", "mine", tmp_path)


def test_every_kind_scaffolds_a_package_whose_tests_pass(tmp_path: Path) -> None:
    """One pytest run over all five generated packages, imported through PYTHONPATH (installing is tested elsewhere)."""
    roots = []
    for kind in hookspecs.KIND_HOOKS:
        result = CliRunner().invoke(app, ["new-plugin", kind, f"my_{kind}", "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
        root = tmp_path / f"fedbench-my_{kind}"
        assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
            "pyproject.toml",
            "README.md",
            f"fedbench_my_{kind}/__init__.py",
            f"tests/test_my_{kind}.py",
        }
        pyproject = (root / "pyproject.toml").read_text()
        assert f'[project.entry-points.fedbench]\nmy_{kind} = "fedbench_my_{kind}"' in pyproject
        assert f"FEDBENCH_API = {api.API_VERSION}" in (root / f"fedbench_my_{kind}" / "__init__.py").read_text()
        roots.append(root)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(map(str, roots))}
    tests = [str(r / "tests") for r in roots]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *tests],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    expected = 2 * len(hookspecs.KIND_HOOKS) + 1  # two per kind, three for a method
    assert re.search(rf"\b{expected} passed\b", run.stdout), run.stdout[-1000:]


def test_class_names() -> None:
    assert newplugin.class_name("my_median") == "MyMedian"
    assert newplugin.class_name("median2") == "Median2"
    assert newplugin.render("judge", "x")["fedbench_x/__init__.py"].count("class X(Judge)") == 1


# -- the built-ins use the public API only ---------------------------------------------------------


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module an import statement of ``path`` (a module of ``package``) names, relative ones resolved.

    Only statements count, wherever they are (a function's lazy import included); comments and
    docstrings that mention a module do not. ``from a import b`` names ``a`` and ``a.b``, since b may be a module.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _is_harness(module: str) -> bool:
    return module == "fedbench.harness" or module.startswith("fedbench.harness.")


def test_built_in_plugins_import_only_the_public_api() -> None:
    """The built-ins are written as a third-party plugin must be: against fedbench.api, never fedbench.harness.*."""
    modules = sorted((ROOT / "plugins").rglob("*.py"))
    assert ROOT / "plugins" / "aggregators" / "_adaptive.py" in modules and len(modules) > 15
    offenders = {}
    for path in modules:
        package = ".".join(("fedbench", *path.relative_to(ROOT).parent.parts))
        names = sorted(m for m in _imported_modules(path, package) if _is_harness(m))
        if names:
            offenders[str(path.relative_to(ROOT))] = names
    assert not offenders


@pytest.mark.parametrize(
    ("code", "imports_harness"),
    [
        ("import fedbench.harness.data", True),
        ("from fedbench.harness.data import Example", True),
        ("from fedbench import harness", True),
        ("from ...harness import data", True),
        ("def f():\n    from fedbench.harness import data\n", True),
        ("from fedbench.api import Example\nfrom . import _adaptive\n", False),
        ('"""Never import fedbench.harness.data."""\n# from fedbench.harness import data\nimport torch\n', False),
    ],
)
def test_the_import_check_sees_harness_imports_in_every_form(code: str, imports_harness: bool, tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(code)
    assert any(map(_is_harness, _imported_modules(tmp_path / "m.py", "fedbench.plugins.aggregators"))) == imports_harness


def test_every_name_in_all_resolves() -> None:
    assert len(set(api.__all__)) == len(api.__all__), "a name listed twice"
    assert [name for name in api.__all__ if not hasattr(api, name)] == []
    star = subprocess.run([sys.executable, "-c", "from fedbench.api import *"], capture_output=True, text=True)
    assert star.returncode == 0, star.stderr
