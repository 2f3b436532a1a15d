"""``fedbench new-plugin``: a ready-to-install plugin package for any of the seven kinds.

Templates are strings here rather than files so they ship with the code that fills them and
cannot go missing from an installation. Each generated package is complete on its own: a
pyproject registering the module in the ``fedbench`` entry-point group, one module with a
working (if simple) plugin and its hook, a passing test written against ``fedbench.api``
only, and a README saying how to install and use it.
"""

from __future__ import annotations

import keyword
from pathlib import Path
from string import Template

from fedbench.harness.errors import FedbenchError, unknown_name
from fedbench.harness.hookspecs import API_VERSION, KIND_HOOKS

RUN_FLAGS = {
    "method": "--method ",
    "layout": "--layout ",
    "aggregator": "--agg ",
    "benchmark": "--benchmarks ",
    "judge": "--judge ",
    "codec": "--codec ",
    "attack": "--set attack=",
}
"""The ``fedbench run`` option that selects a plugin of each kind, up to its name (the README's usage line)."""

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "fedbench-${name}"
version = "0.1.0"
description = "A fedbench ${kind} plugin: ${name}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["fedbench>=0.1"]

# fedbench finds plugins through this entry-point group: one entry per plugin module.
[project.entry-points.fedbench]
${name} = "fedbench_${name}"

[tool.setuptools]
packages = ["fedbench_${name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
""")

README = Template("""\
# fedbench-${name}

A fedbench ${kind} plugin, scaffolded by `fedbench new-plugin ${kind} ${name}`.
The plugin lives in `fedbench_${name}/__init__.py`; its test in `tests/test_${name}.py`.

```bash
pip install -e .               # registers `${name}` in the `fedbench` entry-point group
fedbench plugins               # lists it, with source fedbench-${name} 0.1.0
python -m pytest               # its tests (they use fedbench.api only)
fedbench run ${flag}${name} ...
```

The module declares `FEDBENCH_API = ${api}`, the plugin API it is written against; `fedbench plugins`
warns when the installed fedbench provides another version. See fedbench's docs/plugins.md.
""")

HEADER = '''\
"""${name}: a fedbench ${kind} plugin (scaffolded by `fedbench new-plugin`); replace the example rule with yours."""

from __future__ import annotations

'''

API_LINE = '''
FEDBENCH_API = ${api}
"""The fedbench plugin API this module is written against; `fedbench plugins` warns when it differs."""

'''

MODULES = {
    "attack": """\
import torch

from fedbench.api import Attack, Params, hookimpl
"""
    + API_LINE
    + '''
class ${cls}(Attack):
    """A malicious client sends its update halved: x + (x_i - x) / 2."""

    name = "${name}"

    def poison_update(self, global_params: Params, params: Params, generator: torch.Generator) -> Params:
        return {k: x + (params[k] - x) / 2 for k, x in global_params.items()}


@hookimpl
def fedbench_attacks() -> list[type[Attack]]:
    return [${cls}]
''',
    "codec": """\
import torch

from fedbench.api import Codec, Encoded, Params, hookimpl, original_dtype, tensor_metadata
"""
    + API_LINE
    + '''
class ${cls}(Codec):
    """float16 on the wire: half the bytes of a float32 update."""

    name = "${name}"

    def encode(self, params: Params, client_id: str) -> Encoded:
        shapes, dtypes = tensor_metadata(params)
        return Encoded(self.name, {k: t.to(torch.float16) for k, t in params.items()}, shapes, dtypes)

    def decode(self, encoded: Encoded) -> Params:
        self.check(encoded)
        return {k: encoded.arrays[k].to(original_dtype(encoded, k)) for k in encoded.shapes}


@hookimpl
def fedbench_codecs() -> list[type[Codec]]:
    return [${cls}]
''',
    "aggregator": """\
from collections.abc import Sequence

from fedbench.api import Aggregator, ClientUpdate, Params, example_weights, hookimpl, weighted_mean
"""
    + API_LINE
    + '''
class ${cls}(Aggregator):
    """Example-weighted mean of the client adapters (FedAvg)."""

    name = "${name}"

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        return weighted_mean([u.params for u in updates], example_weights(updates))


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [${cls}]
''',
    "layout": """\
import random
from collections.abc import Sequence

from fedbench.api import Example, Layout, hookimpl
"""
    + API_LINE
    + '''
class ${cls}(Layout):
    """IID: examples shuffled (seeded) and dealt to the source clients in turn."""

    name = "${name}"
    accepts = frozenset({"paired", "unpaired"})

    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        clients = list(dict.fromkeys(ex.client_id for ex in examples))
        shuffled = list(examples)
        random.Random(seed).shuffle(shuffled)
        out: dict[str, list[Example]] = {cid: [] for cid in clients}
        for i, ex in enumerate(shuffled):
            out[clients[i % len(clients)]].append(ex)
        return out


@hookimpl
def fedbench_layouts() -> list[type[Layout]]:
    return [${cls}]
''',
    "benchmark": """\
from fedbench.api import Benchmark, FedbenchError, Question, hookimpl
"""
    + API_LINE
    + '''
QUESTIONS = (
    Question("1", "What is the capital of France?", "knowledge", reference="Paris"),
    Question("2", "How many legs does a spider have?", "knowledge", reference="8"),
    Question("3", "Write a haiku about autumn.", "writing"),
)


class ${cls}(Benchmark):
    """Three sample questions rated 1-10 by a model judge."""

    name = "${name}"
    scale = 10.0
    default_judge = "llm"

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        if source is not None:
            raise FedbenchError(
                f"benchmark '${name}' cannot read {source!r} yet", "leave its source unset to use the built-in questions"
            )
        return list(QUESTIONS[:limit])


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [${cls}]
''',
    "judge": """\
from collections.abc import Sequence

from fedbench.api import Judge, Judgment, Question, hookimpl
"""
    + API_LINE
    + '''
class ${cls}(Judge):
    """1 if the answer is not empty, else 0."""

    name = "${name}"

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        return [Judgment(q.id, 1.0 if a.strip() else 0.0, f"{len(a.strip())} characters") for q, a in zip(questions, answers)]


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [${cls}]
''',
    "method": """\
from collections.abc import Sequence
from typing import Any

from fedbench.api import (
    Example, LocalTrainingArgs, Method, PreferencePair, completion_for, hookimpl, prompt_for, trainer_settings,
)
"""
    + API_LINE
    + '''
class ${cls}(Method):
    """DPO with TRL's IPO loss on prompt/chosen/rejected pairs."""

    name = "${name}"
    data_form = "paired"

    def __init__(self, beta: float = 0.1) -> None:
        self.beta = beta

    def records(self, examples: Sequence[Example], template: str) -> list[dict[str, Any]]:
        rows = []
        for ex in examples:
            if not isinstance(ex, PreferencePair):
                raise TypeError(f"${name} trains on preference pairs, got {type(ex).__name__}")
            rows.append({
                "prompt": prompt_for(template, ex.prompt),
                "chosen": completion_for(template, ex.chosen),
                "rejected": completion_for(template, ex.rejected),
            })
        return rows

    def build_trainer(self, model: Any, tokenizer: Any, dataset: Any, args: LocalTrainingArgs, callbacks: Sequence[Any]) -> Any:
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**trainer_settings(args), beta=self.beta, loss_type=["ipo"])
        return DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [${cls}]
''',
}

TESTS = {
    "attack": """\
import torch

from fedbench.api import fake_params
from fedbench_${name} import ${cls}, fedbench_attacks


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_attacks()


def test_poisoned_update_keeps_names_shapes_and_dtypes() -> None:
    x, trained = fake_params(seed=0), fake_params(seed=1)
    sent = ${cls}().poison_update(x, trained, torch.Generator().manual_seed(0))
    assert list(sent) == list(x)
    assert all(sent[k].shape == v.shape and sent[k].dtype == v.dtype for k, v in x.items())
""",
    "codec": """\
import torch

from fedbench.api import fake_params
from fedbench_${name} import ${cls}, fedbench_codecs


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_codecs()


def test_round_trip_keeps_names_shapes_and_dtypes_and_saves_bytes() -> None:
    params = fake_params(seed=0)
    encoded = ${cls}().encode(params, "client-0")
    decoded = ${cls}().decode(encoded)
    assert list(decoded) == list(params)
    assert all(decoded[k].shape == v.shape and decoded[k].dtype == v.dtype for k, v in params.items())
    assert all(torch.allclose(decoded[k], v, rtol=1e-2, atol=1e-3) for k, v in params.items())
    assert encoded.nbytes < sum(t.numel() * t.element_size() for t in params.values())
""",
    "aggregator": """\
from fedbench.api import fake_params, fake_updates
from fedbench_${name} import ${cls}, fedbench_aggregators


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_aggregators()


def test_aggregate_keeps_names_and_shapes() -> None:
    global_params = fake_params(seed=0)
    new = ${cls}().aggregate(global_params, fake_updates(global_params, n=3, seed=1))
    assert list(new) == list(global_params)
    assert all(new[k].shape == v.shape and new[k].dtype == v.dtype for k, v in global_params.items())
""",
    "layout": """\
from fedbench.api import fake_pairs
from fedbench_${name} import ${cls}, fedbench_layouts


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_layouts()


def test_every_example_once_every_client_kept_and_seeded() -> None:
    pairs = fake_pairs(n=20, clients=4, seed=0)
    clients = ${cls}().partition(pairs, seed=1)
    assert sorted(ex.id for exs in clients.values() for ex in exs) == sorted(p.id for p in pairs)
    assert all(clients.values())
    assert clients == ${cls}().partition(pairs, seed=1)
""",
    "benchmark": """\
from fedbench.api import Judgment
from fedbench_${name} import ${cls}, fedbench_benchmarks


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_benchmarks()


def test_questions_and_score() -> None:
    assert len(${cls}().questions(limit=2)) == 2
    assert all(q.id and q.prompt for q in ${cls}().questions())
    assert ${cls}().score([Judgment("1", 8.0, ""), Judgment("2", None, "unparsed")]) == 8.0
""",
    "judge": """\
from fedbench.api import Question
from fedbench_${name} import ${cls}, fedbench_judges


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_judges()


def test_one_judgment_per_answer() -> None:
    questions = [Question("1", "Say hi."), Question("2", "Say nothing.")]
    judgments = ${cls}().judge(questions, ["hi", "  "])
    assert [(j.question_id, j.score) for j in judgments] == [("1", 1.0), ("2", 0.0)]
""",
    "method": """\
from pathlib import Path

from fedbench.api import LocalTrainingArgs, build_tiny_model, fake_pairs
from fedbench_${name} import ${cls}, fedbench_methods


def test_registered_through_the_hook() -> None:
    assert ${cls} in fedbench_methods()


def test_records_use_the_prompt_template() -> None:
    [row] = ${cls}().records(fake_pairs(n=1, clients=1), "chat")
    assert row["prompt"] == [{"role": "user", "content": "What is 0 plus 1?"}]
    assert row["chosen"][0]["role"] == "assistant"


def test_trains_a_step_on_a_tiny_model(tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path / "model")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    method = ${cls}()
    data = datasets.Dataset.from_list(method.records(fake_pairs(n=4, clients=1), "chat"))
    args = LocalTrainingArgs(output_dir=str(tmp_path / "out"), steps=1, batch_size=2, grad_accum=1,
                             learning_rate=1e-3, max_length=64, seed=0)
    trainer = method.build_trainer(model, tokenizer, data, args, [])
    trainer.train()
    assert trainer.state.global_step == 1
""",
}


def check(kind: str, name: str) -> None:
    """Refuse an unknown kind (with a did-you-mean) or a name that cannot be a module name.

    A plugin name doubles as a module name (``fedbench_NAME``) and an entry-point name, so it must be an identifier.
    """
    if kind not in KIND_HOOKS:
        raise unknown_name("plugin kind", kind, KIND_HOOKS)
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        what = "a Python keyword" if keyword.iskeyword(name) else "not a valid Python identifier"
        raise FedbenchError(
            f"plugin name '{name}' is {what}; it names the module fedbench_{name}",
            "use ASCII letters, digits and underscores, not starting with a digit (e.g. my_median)",
        )


def class_name(name: str) -> str:
    """``my_median`` -> ``MyMedian``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Plugin"


def render(kind: str, name: str) -> dict[str, str]:
    """Relative path -> text of every file of the package, without touching the disk."""
    check(kind, name)
    values = {"name": name, "kind": kind, "cls": class_name(name), "api": str(API_VERSION), "flag": RUN_FLAGS[kind]}
    test_header = (
        f'"""Tests of the {name} {kind} plugin, written against fedbench.api only."""\n\nfrom __future__ import annotations\n\n'
    )
    return {
        "pyproject.toml": PYPROJECT.substitute(values),
        "README.md": README.substitute(values),
        f"fedbench_{name}/__init__.py": Template(HEADER + MODULES[kind]).substitute(values),
        f"tests/test_{name}.py": test_header + Template(TESTS[kind]).substitute(values),
    }


def new_plugin(kind: str, name: str, out: Path) -> Path:
    """Write the package ``out/fedbench-NAME/``; refuses to touch an existing directory."""
    files = render(kind, name)
    root = Path(out) / f"fedbench-{name}"
    if root.exists():
        raise FedbenchError(f"{root} already exists", "pick another NAME or --out, or remove that directory first")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
