"""Prompt templates shared by training and generation, so a model is asked in the format it learned.

``chat`` hands conversational messages to the tokenizer's own chat template; the named
templates are for base or older instruction models without one (the study's Alpaca base).
"""

from __future__ import annotations

from typing import Any

from fedbench.harness.errors import unknown_name

NAMED_TEMPLATES: dict[str, str] = {
    "alpaca": (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\n{prompt}\n\n### Response:\n"
    ),
    "vicuna_v1.1": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER: {prompt} ASSISTANT:"
    ),
}
TEMPLATES = ("chat", *NAMED_TEMPLATES)


def check_template(template: str) -> None:
    """Fail early, with the known names, on a template nobody defined."""
    if template not in TEMPLATES:
        raise unknown_name("prompt template", template, TEMPLATES)


def prompt_for(template: str, prompt: str) -> Any:
    """The prompt as a trainer row wants it: messages for ``chat``, a formatted string otherwise."""
    check_template(template)
    if template == "chat":
        return [{"role": "user", "content": prompt}]
    return NAMED_TEMPLATES[template].format(prompt=prompt)


def completion_for(template: str, text: str) -> Any:
    """A response in the same shape as :func:`prompt_for`'s prompt."""
    check_template(template)
    if template == "chat":
        return [{"role": "assistant", "content": text}]
    return text
