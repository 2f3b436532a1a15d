"""fedbench's public plugin API (version :data:`API_VERSION`): everything a plugin package needs, in one place.

Plugin authors import from here, never from ``fedbench.harness.*``: the harness modules may be
reorganised between releases, while the names below keep their meaning for a given
``API_VERSION``. A change that breaks a plugin written against this module bumps the version;
a plugin states what it was written for with ``FEDBENCH_API = 2`` at module level, and
``fedbench plugins`` warns when that differs from the running fedbench's version.

The test helpers at the end (:func:`fake_params`, :func:`fake_updates`, :func:`fake_pairs`,
:func:`build_tiny_model`) let a plugin's own test suite run offline on a CPU in seconds.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from fedbench.harness.aggregation import (
    example_weights,
    export_state,
    filled_like,
    flat_deltas,
    gradients,
    import_state,
    mean_delta,
    placed_like,
    scaled_sum,
    stacked,
    weighted_mean,
)
from fedbench.harness.codec import original_dtype, tensor_metadata
from fedbench.harness.data import Example, LabeledExample, PreferencePair, pair_of, unpair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.generation import GenerationSettings, Generator, make_generator
from fedbench.harness.holdout import read_heldout, trained_reward
from fedbench.harness.hookspecs import API_VERSION, hookimpl
from fedbench.harness.interfaces import (
    Aggregator,
    Attack,
    Benchmark,
    ClientHook,
    ClientStates,
    ClientUpdate,
    Codec,
    Encoded,
    Evaluator,
    ExternalRequest,
    ExternalScore,
    Judge,
    Judgment,
    Layout,
    LocalTrainingArgs,
    Method,
    ModelUnderTest,
    Params,
    Question,
    Request,
)
from fedbench.harness.likelihood import REWARDS, SequenceLogp, judge_pairs
from fedbench.harness.models import DEFAULT_MODEL
from fedbench.harness.questions import limited, read_advbench_csv, read_fastchat, read_hub, sample_path
from fedbench.harness.templates import completion_for, prompt_for
from fedbench.harness.testing import build_tiny_model

# None of the modules above imports transformers, trl or datasets at import time (they do so
# inside the functions that need them), so ``import fedbench.api`` stays light; a helper whose
# module does import them (``trainer_settings``) is wrapped below and imported on first call.
__all__ = [
    "API_VERSION",
    "hookimpl",
    # base classes and their data types
    "Method",
    "LocalTrainingArgs",
    "PreferencePair",
    "LabeledExample",
    "Example",
    "Layout",
    "Aggregator",
    "ClientHook",
    "ClientStates",
    "ClientUpdate",
    "Params",
    "Benchmark",
    "Request",
    "Question",
    "Evaluator",
    "ExternalRequest",
    "ExternalScore",
    "ModelUnderTest",
    "SequenceLogp",
    "Judge",
    "Judgment",
    "Codec",
    "Encoded",
    "Attack",
    "FedbenchError",
    # helpers for methods
    "prompt_for",
    "completion_for",
    "trainer_settings",
    "unpair",
    # helpers for layouts: the pair an example came from
    "pair_of",
    # helpers for aggregators: weighted means, server state shaped like the adapter (and its
    # checkpointing), a client hook's gradients
    "example_weights",
    "weighted_mean",
    "mean_delta",
    "stacked",
    "flat_deltas",
    "scaled_sum",
    "filled_like",
    "export_state",
    "import_state",
    "gradients",
    "placed_like",
    # helpers for benchmarks: question-set readers, the shipped samples, held-out preference pairs
    "limited",
    "read_fastchat",
    "read_advbench_csv",
    "read_hub",
    "sample_path",
    "read_heldout",
    "trained_reward",
    "judge_pairs",
    "REWARDS",
    # helpers for codecs: the shapes and dtypes an encoding restores
    "tensor_metadata",
    "original_dtype",
    # helpers for judges: a model that answers prompts
    "Generator",
    "GenerationSettings",
    "make_generator",
    "DEFAULT_MODEL",
    # helpers for testing plugins
    "build_tiny_model",
    "fake_params",
    "fake_updates",
    "fake_pairs",
]


def trainer_settings(args: LocalTrainingArgs) -> dict[str, Any]:
    """TRL config fields every method shares (steps, batch, constant lr, seeds, no saving).

    Use as ``XConfig(**trainer_settings(args), ...)``.

    Imported lazily so that ``import fedbench.api`` does not pull in transformers for plugins that never train.
    """
    from fedbench.harness.training import trainer_settings as settings

    return settings(args)


def fake_params(seed: int = 0, layers: int = 2, rank: int = 4, dim: int = 8) -> Params:
    """A small global adapter shaped like LoRA on ``q_proj`` (A: rank x dim, B: dim x rank per layer)."""
    gen = torch.Generator().manual_seed(seed)
    params: Params = {}
    for i in range(layers):
        prefix = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        params[f"{prefix}.lora_A.weight"] = torch.randn(rank, dim, generator=gen)
        params[f"{prefix}.lora_B.weight"] = torch.randn(dim, rank, generator=gen)
    return params


def fake_updates(global_params: Params, n: int = 3, seed: int = 0, scale: float = 0.01) -> list[ClientUpdate]:
    """``n`` client updates around ``global_params``: Gaussian noise of std ``scale``, 1-10 examples each, a loss metric.

    Tensors keep the global adapter's dtype and device, as real updates do after validation.
    """
    gen = torch.Generator().manual_seed(seed)
    updates = []
    for i in range(n):
        params = {
            k: (v.detach().float().cpu() + scale * torch.randn(v.shape, generator=gen)).to(device=v.device, dtype=v.dtype)
            for k, v in global_params.items()
        }
        count = int(torch.randint(1, 11, (1,), generator=gen))
        loss = float(torch.rand(1, generator=gen))
        updates.append(ClientUpdate(f"client{i}", params, count, metrics={"loss": loss}))
    return updates


def fake_pairs(n: int = 24, clients: int = 4, seed: int = 0) -> list[PreferencePair]:
    """``n`` preference pairs over ``clients`` clients (``user0`` ..).

    Each client holds at least one; client c about 1/(c+1) as many as user0.
    """
    if n < clients:
        raise ValueError(f"need at least one pair per client: n={n} < clients={clients}")
    rng = random.Random(seed)
    owners = list(range(clients)) + rng.choices(range(clients), weights=[1 / (c + 1) for c in range(clients)], k=n - clients)
    return [
        PreferencePair(f"p{i}", f"user{c}", f"What is {i} plus 1?", f"{i} plus 1 is {i + 1}.", "I don't know.")
        for i, c in enumerate(owners)
    ]
