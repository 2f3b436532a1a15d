"""Prefix sharing: a batch's rows packed into one sequence in which each shared prefix is computed once.

The rows a preference trainer scores repeat themselves. Every row starts with the chat template's
system turn (24 of the 70 tokens of a demo KTO row), a DPO pair's chosen and rejected rows share
their whole prompt, and so do a KTO row and its KL row when the reference scores them together.
Right padding adds the rest: a padded batch of rows of 55-70 tokens computes 280 positions for
240 tokens. A decoder computes a shared prefix identically in every row that holds it, since a
causal position sees only what comes before it.

:func:`shared_prefixes_once` makes the backbone (the decoder stack under the language-model head)
take a batch as a prefix tree: each distinct prefix becomes one position of a single packed
sequence, with its depth as its position id and an attention mask that lets it see its
ancestors only. The hidden states are then gathered back into the batch's padded shape, so
what comes after (TRL's log-prob head, the losses) sees the same tensor; autograd adds the
gradient of a shared position over the rows that read it, as the padded batch would. The
values are the same up to floating-point rounding (the tests compare outputs and gradients
with the padded forward). This is the prefix sharing of Wang et al. (2024), "Accelerating
Direct Preference Optimization with Prefix Sharing", generalised from one prompt and its two
responses to any tree of rows.

A packed sequence of T positions pays T x T attention, where the padded batch pays rows x
length x length; the packing is used only when its estimated cost (linear layers per position
plus attention per pair of positions, weighed by the model's own sizes) is lower. It also steps
aside, calling the backbone as it was, for any call it cannot prove equivalent: one row,
padding that is not on the right, attention other than ``eager`` or ``sdpa``, a sliding window
shorter than the batch, embeddings, positions or a cache passed in, extra outputs requested, a backbone that
takes no ``position_ids``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

_PLAIN_KWARGS = frozenset({"input_ids", "attention_mask", "use_cache", "return_dict"})
LENGTH_MULTIPLE = 32
"""Packed sequences are filled up to a multiple of this many positions (filler that sees only itself). oneDNN builds
a matrix-product kernel for every new shape, about 1.5 ms each on a 2-core Xeon and some fourteen per pass; without
the rounding nearly every batch's packed length is new, with it a run soon meets only lengths it has built for."""
_MASKED_ATTENTION = ("eager", "sdpa")
"""Attention implementations that take an arbitrary additive [batch, 1, query, key] mask."""


@dataclass(frozen=True)
class PrefixTree:
    """A padded batch as a prefix tree: its distinct prefixes as one sequence, and where each row's tokens went."""

    tokens: torch.Tensor
    """[T] token of each tree position, parents before children."""
    depth: torch.Tensor
    """[T] position id of each tree position (its distance from the root)."""
    index: torch.Tensor
    """[rows, length] tree position of each batch position (0 for padding)."""
    lengths: list[int]
    """Each row's unpadded length."""

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    def attention_mask(self, dtype: torch.dtype, size: int | None = None) -> torch.Tensor:
        """[1, 1, size, size] additive mask: a position sees itself and its ancestors, nothing else.

        Positions past the tree's own (up to ``size``) are filler that sees only itself.
        """
        size = self.size if size is None else size
        allowed = torch.eye(size, dtype=torch.bool, device=self.tokens.device)
        for row, length in enumerate(self.lengths):
            path = self.index[row, :length]
            allowed[path.unsqueeze(1), path.unsqueeze(0)] |= torch.ones(
                length, length, dtype=torch.bool, device=path.device
            ).tril()
        mask = torch.zeros(size, size, dtype=dtype, device=self.tokens.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]

    def packed_inputs(self, dtype: torch.dtype, multiple: int = 1) -> dict[str, torch.Tensor]:
        """The backbone's inputs for the packed sequence, its length filled up to a multiple of ``multiple``."""
        size = -(-self.size // multiple) * multiple
        filler = size - self.size
        return {
            "input_ids": torch.nn.functional.pad(self.tokens, (0, filler), value=int(self.tokens[0]))[None],
            "attention_mask": self.attention_mask(dtype, size),
            "position_ids": torch.nn.functional.pad(self.depth, (0, filler))[None],
        }


def prefix_tree(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> PrefixTree | None:
    """The batch's prefix tree, or None when its padding is not all on the right (left padding, holes)."""
    rows, width = input_ids.shape
    if attention_mask is None:
        lengths = [width] * rows
    else:
        lengths = attention_mask.sum(dim=1).tolist()
        right_padded = torch.arange(width, device=attention_mask.device) < attention_mask.sum(dim=1, keepdim=True)
        if not torch.equal(attention_mask.bool(), right_padded):
            return None
    children: list[dict[int, int]] = [{}]
    tokens: list[int] = []
    depth: list[int] = []
    index = torch.zeros(rows, width, dtype=torch.long)
    for row, (ids, length) in enumerate(zip(input_ids.tolist(), lengths)):
        node = 0  # the root: above the first token
        for position, token in enumerate(ids[:length]):
            child = children[node].get(token)
            if child is None:
                child = len(tokens) + 1
                children[node][token] = child
                children.append({})
                tokens.append(token)
                depth.append(position)
            index[row, position] = child - 1
            node = child
    device = input_ids.device
    return PrefixTree(
        tokens=torch.tensor(tokens, dtype=input_ids.dtype, device=device),
        depth=torch.tensor(depth, dtype=torch.long, device=device),
        index=index.to(device),
        lengths=lengths,
    )


def packing_pays(tree: PrefixTree, rows: int, width: int, pair_cost: float) -> bool:
    """Whether one tree of T positions costs less than the padded batch: linear work per position, attention per pair.

    ``pair_cost`` is one attention pair's work relative to one position's linear layers.
    """
    packed = tree.size + pair_cost * tree.size**2
    padded = rows * width + pair_cost * rows * width**2
    return packed < padded


def attention_pair_cost(backbone: Any) -> float:
    """One query-key pair's attention work (scores and weighted sum) relative to one position's linear layers.

    From the model's sizes: a position's linear layers cost about twice the decoder layer's weights
    in multiply-adds; a pair costs twice the query width (score, then weighted value).
    """
    config: Any = backbone.config
    layers = getattr(backbone, "layers", None)
    if not layers:
        return 1.0  # unknown layout: attention as dear as a whole position, so packing pays only for big savings
    per_position = sum(p.numel() for p in layers[0].parameters())
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * heads * head_dim / per_position


def backbone_of(model: Any) -> torch.nn.Module | None:
    """The decoder stack under a (PEFT-wrapped) causal LM's head, or None for a model without a ``base_model_prefix``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, getattr(base, "base_model_prefix", ""), None)
    return inner if isinstance(inner, torch.nn.Module) and inner is not base else None


@contextmanager
def shared_prefixes_once(model: Any) -> Iterator[None]:
    """Inside, ``model``'s backbone computes each prefix its batch's rows share once (see the module docstring)."""
    backbone: Any = backbone_of(model)  # a transformers model: config and embeddings are looked up by name
    if backbone is None or "forward" in vars(backbone):  # unknown layout, or someone else's wrapper: leave it
        yield
        return
    plain = backbone.forward
    if "position_ids" not in inspect.signature(plain).parameters:  # the packed positions could not be passed
        yield
        return
    pair_cost = attention_pair_cost(backbone)

    def forward(*args: Any, **kwargs: Any) -> Any:
        given = {k for k, v in kwargs.items() if v is not None and v is not False}
        input_ids = kwargs.get("input_ids")
        if args or input_ids is None or given - _PLAIN_KWARGS or input_ids.ndim != 2 or input_ids.shape[0] < 2:
            return plain(*args, **kwargs)
        config: Any = backbone.config
        window = getattr(config, "sliding_window", None)
        if config._attn_implementation not in _MASKED_ATTENTION or (window is not None and window < input_ids.shape[1]):
            return plain(*args, **kwargs)
        tree = prefix_tree(input_ids, kwargs.get("attention_mask"))
        rows, width = input_ids.shape
        if tree is None or tree.size == 0 or not packing_pays(tree, rows, width, pair_cost):
            return plain(*args, **kwargs)
        dtype = backbone.get_input_embeddings().weight.dtype
        out = plain(**tree.packed_inputs(dtype, LENGTH_MULTIPLE), use_cache=False)
        return type(out)(last_hidden_state=out.last_hidden_state[0][tree.index])

    backbone.forward = forward  # an instance attribute, deleted on exit
    try:
        yield
    finally:
        del backbone.forward
