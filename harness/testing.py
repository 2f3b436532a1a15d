"""Helpers for testing fedbench and its plugins offline: a tiny Llama-family model built from nothing.

The model has random weights and a byte-level BPE tokenizer trained on a few sentences, with a
ChatML chat template, so every code path that needs "a real model" (TRL trainers, PEFT, chat
formatting, generation) runs in seconds on a CPU without touching the network.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = (
    "The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is the capital.",
    "I'm sorry, but I cannot help with that request. Here is a safer alternative you could try instead.",
    "def add(a, b): return a + b  # Python code, numbers 0 1 2 3 4 5 6 7 8 9 and punctuation ,.;:!?",
    "Cook the pasta in salted water for ten minutes, then drain it and add the sauce and cheese.",
)


def build_tiny_model(target: Path, corpus: Iterable[str] = _CORPUS, vocab_size: int = 400, seed: int = 0) -> Path:
    """Write a tiny random Llama model and tokenizer to ``target`` (a directory ``--model`` accepts)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = Path(target)
    if (target / "config.json").is_file():
        return target
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        list(corpus),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
