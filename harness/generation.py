"""Generation backends: answer prompts with the base model or a trained adapter.

``hf`` runs transformers in this process (batched, left-padded, prompts sorted by length so a
batch wastes little padding); ``vllm`` serves the base model once and every adapter of the
matrix through multi-LoRA requests. Both format prompts with the same templates training used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from fedbench.harness.errors import FedbenchError
from fedbench.harness.models import load_base, resolve_model, serving
from fedbench.harness.templates import NAMED_TEMPLATES, check_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that shapes an answer besides the prompt; saved beside the answers."""

    max_new_tokens: int = 128
    batch_size: int = 16
    seed: int = 0
    template: str = "chat"


class Generator(ABC):
    """A model that answers prompts, optionally through a saved LoRA adapter."""

    name: str
    tokenizer: PreTrainedTokenizerBase | None = None
    """The model's tokenizer, for callers that build ``raw`` prompts themselves (a judge's chat
    template); None for a backend without one."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        temperatures: Sequence[float],
        adapter: Path | None = None,
        raw: bool = False,
        on_batch: Callable[[int], None] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Answers in prompt order. ``raw`` prompts are sent as they are, without the template.

        ``max_new_tokens``: this call's answer length (default: the settings'), e.g. a benchmark's own.
        """

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """log p(continuation | raw prompt) for every prompt x continuation (judges use it for expected scores)."""
        raise FedbenchError(f"backend '{self.name}' gives no token probabilities", "use --backend hf for this judge option")


class HFGenerator(Generator):
    """transformers in-process: the same loaded base model that training used."""

    name = "hf"

    tokenizer: PreTrainedTokenizerBase  # always present here (None only for backends without one)

    def __init__(self, model: str, settings: GenerationSettings, dtype: str = "float32") -> None:
        check_template(settings.template)
        self.model, self.tokenizer = load_base(model, dtype)
        self.settings = settings
        self.device = next(self.model.parameters()).device

    def format(self, prompt: str) -> str:
        if self.settings.template == "chat":
            if not self.tokenizer.chat_template:
                raise FedbenchError("the model's tokenizer has no chat template", "set template = 'alpaca' or 'vicuna_v1.1'")
            messages = [{"role": "user", "content": prompt}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            assert isinstance(text, str)  # tokenize=False gives the rendered text
            return text
        return NAMED_TEMPLATES[self.settings.template].format(prompt=prompt)

    def _encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        self.tokenizer.padding_side = "left"
        # chat templates already hold the special tokens they need
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=self.settings.template != "chat")
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        temperatures: Sequence[float],
        adapter: Path | None = None,
        raw: bool = False,
        on_batch: Callable[[int], None] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        texts = [p if raw else self.format(p) for p in prompts]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        # one batch never mixes temperatures; within a temperature, similar lengths go together
        order = sorted(range(len(texts)), key=lambda i: (temperatures[i], lengths[i]))
        answers: list[str] = [""] * len(texts)
        with serving(self.model, adapter) as model:
            model.eval()
            start = 0
            while start < len(order):
                temp = temperatures[order[start]]
                batch = [i for i in order[start : start + self.settings.batch_size] if temperatures[i] == temp]
                start += len(batch)
                enc = self._encode([texts[i] for i in batch])
                torch.manual_seed(self.settings.seed)
                sampling = {"do_sample": True, "temperature": temp, "top_p": 1.0} if temp > 0 else {"do_sample": False}
                # PeftModel forwards generate() to its causal-LM subclass; the stub types the lookup as Tensor | Module
                out = model.generate(  # type: ignore[operator]
                    **enc,
                    max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **sampling,
                )
                new = out[:, enc["input_ids"].shape[1] :]
                for i, row in zip(batch, new):
                    answers[i] = cast(str, self.tokenizer.decode(row, skip_special_tokens=True)).strip()  # one row: one str
                if on_batch:
                    on_batch(len(batch))
        return answers

    @torch.no_grad()
    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        # The prompt runs once; its KV cache is repeated for the (short) continuations, so ten
        # candidate ratings cost about one forward pass of the judge prompt, not ten.
        self.tokenizer.padding_side = "right"
        cont = self.tokenizer(list(continuations), return_tensors="pt", padding=True, add_special_tokens=False)
        cont_ids, cont_mask = cont["input_ids"].to(self.device), cont["attention_mask"].to(self.device)
        out: list[list[float]] = []
        with serving(self.model, None) as model:
            model.eval()
            for prompt in prompts:
                prompt_ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)
                first = model(input_ids=prompt_ids, use_cache=True, logits_to_keep=1)  # only the last position is read
                cache = first.past_key_values
                cache.batch_repeat_interleave(len(continuations))
                mask = torch.cat(
                    [torch.ones(len(continuations), prompt_ids.shape[1], dtype=cont_mask.dtype, device=self.device), cont_mask],
                    dim=1,
                )
                rest = model(input_ids=cont_ids, attention_mask=mask, cache=cache, use_cache=False)
                logits = torch.cat([first.logits[:, -1:].expand(len(continuations), -1, -1), rest.logits[:, :-1]], dim=1).float()
                token_lp = torch.log_softmax(logits, dim=-1).gather(-1, cont_ids[:, :, None]).squeeze(-1)
                out.append((token_lp * cont_mask).sum(dim=1).tolist())
        return out


class VLLMGenerator(Generator):
    """vLLM: one engine, the base model plus every adapter through multi-LoRA requests."""

    name = "vllm"
    tokenizer: PreTrainedTokenizerBase  # vLLM's engine always has one

    def __init__(self, model: str, settings: GenerationSettings, max_lora_rank: int = 64, max_loras: int = 4) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise FedbenchError(
                "the vllm backend needs the 'vllm' package", "pip install 'fedbench[vllm]' (needs a GPU)"
            ) from err
        check_template(settings.template)
        self.settings = settings
        self.llm = LLM(
            model=resolve_model(model), enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras, seed=settings.seed
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._lora_ids: dict[Path, int] = {}

    def generate(
        self,
        prompts: Sequence[str],
        temperatures: Sequence[float],
        adapter: Path | None = None,
        raw: bool = False,
        on_batch: Callable[[int], None] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        if raw or self.settings.template != "chat":
            texts = list(prompts) if raw else [NAMED_TEMPLATES[self.settings.template].format(prompt=p) for p in prompts]
        else:
            texts = [
                cast(  # tokenize=False gives the rendered text
                    str,
                    self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                    ),
                )
                for p in prompts
            ]
        params = [
            SamplingParams(
                temperature=t, top_p=1.0, max_tokens=max_new_tokens or self.settings.max_new_tokens, seed=self.settings.seed
            )
            for t in temperatures
        ]
        request = None
        if adapter is not None:
            lora_id = self._lora_ids.setdefault(Path(adapter), len(self._lora_ids) + 1)
            request = LoRARequest(f"adapter-{lora_id}", lora_id, str(adapter))
        outputs = self.llm.generate(texts, params, lora_request=request, use_tqdm=False)
        if on_batch:
            on_batch(len(texts))
        return [o.outputs[0].text.strip() for o in outputs]


def make_generator(backend: str, model: str, settings: GenerationSettings, dtype: str = "float32") -> Generator:
    """The backend by name; ``auto`` picks vllm when it imports and a GPU is present."""
    if backend == "auto":
        import importlib.util

        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"
    if backend == "hf":
        return HFGenerator(model, settings, dtype)
    if backend == "vllm":
        return VLLMGenerator(model, settings)
    from fedbench.harness.errors import unknown_name

    raise unknown_name("backend", backend, BACKENDS)
