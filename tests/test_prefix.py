"""Prefix sharing computes each shared prefix once and gives the padded batch's outputs and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedbench.harness.models import LoraSettings, attach_lora, load_base
from fedbench.harness.prefix import backbone_of, packing_pays, prefix_tree, shared_prefixes_once


def _right_padded(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def test_prefix_tree_holds_each_shared_prefix_once() -> None:
    # a system turn (5, 6), two prompts, each with two responses: a DPO pair's chosen and rejected rows
    rows = [[5, 6, 1, 2, 9], [5, 6, 1, 2, 8, 8], [5, 6, 3, 9], [5, 6, 3, 7, 7, 7]]
    ids, mask = _right_padded(rows)
    tree = prefix_tree(ids, mask)
    assert tree is not None
    assert tree.size == 2 + (2 + 1 + 2) + (1 + 1 + 3)  # root path, then each branch once
    assert tree.lengths == [5, 6, 4, 6]
    for row, tokens in enumerate(rows):
        path = tree.index[row, : len(tokens)]
        assert tree.tokens[path].tolist() == tokens
        assert tree.depth[path].tolist() == list(range(len(tokens)))
    assert tree.index[0, :4].tolist() == tree.index[1, :4].tolist()  # one pair's prompt: the same positions


def test_attention_mask_lets_a_position_see_its_ancestors_only() -> None:
    ids, mask = _right_padded([[5, 6, 1], [5, 7]])
    tree = prefix_tree(ids, mask)
    assert tree is not None  # positions: 5, 6, 1, 7
    allowed = (tree.attention_mask(torch.float32)[0, 0] == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1]]


def test_left_padding_or_holes_are_not_packed() -> None:
    ids = torch.tensor([[0, 5, 6], [5, 6, 7]])
    assert prefix_tree(ids, torch.tensor([[0, 1, 1], [1, 1, 1]])) is None
    assert prefix_tree(ids, torch.tensor([[1, 0, 1], [1, 1, 1]])) is None


def test_packing_pays_only_when_sharing_outweighs_the_wider_attention() -> None:
    ids, mask = _right_padded([[5] * 40 + [i] for i in range(8)])
    tree = prefix_tree(ids, mask)
    assert tree is not None and tree.size == 48
    assert packing_pays(tree, 8, 41, pair_cost=0.001)
    distinct = prefix_tree(*_right_padded([[i] * 40 for i in range(8)]))
    assert distinct is not None and distinct.size == 320
    assert not packing_pays(distinct, 8, 40, pair_cost=0.001)  # nothing shared: only the attention grows


def _batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    system = torch.randint(3, vocab, (12,), generator=generator).tolist()
    rows = []
    for _ in range(3):
        prompt = torch.randint(3, vocab, (5,), generator=generator).tolist()
        for length in (4, 9):
            rows.append(system + prompt + torch.randint(3, vocab, (length,), generator=generator).tolist())
    return _right_padded(rows)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_forward_and_gradients_match_the_padded_batch(tiny_model: Path, attention: str) -> None:
    model, _ = load_base(str(tiny_model), "float32")
    model.set_attn_implementation(attention)
    peft = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0, targets=("q_proj", "v_proj")))
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1, generator=torch.Generator().manual_seed(1))
    ids, mask = _batch(model.config.vocab_size)
    real = mask.bool()
    results = []
    for shared in (False, True):
        peft.zero_grad()
        calls = []
        backbone = backbone_of(peft)
        assert backbone is not None
        hook = backbone.get_input_embeddings().register_forward_pre_hook(
            lambda module, args, calls=calls: calls.append(args[0].shape)
        )
        with shared_prefixes_once(peft) if shared else torch.enable_grad():
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        hook.remove()
        (hidden[real].pow(2).mean()).backward()
        grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.grad is not None}
        results.append((hidden[real].detach(), grads, calls))
    (plain, plain_grads, plain_calls), (packed, packed_grads, packed_calls) = results
    assert plain_calls == [ids.shape] and packed_calls[0][0] == 1 and packed_calls[0][1] < real.sum()
    assert torch.allclose(plain, packed, atol=1e-5, rtol=1e-4)
    assert plain_grads.keys() == packed_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, packed_grads[name], atol=1e-6, rtol=1e-3), name
    assert "forward" not in vars(backbone_of(peft))  # the backbone is as it was


def test_calls_it_cannot_prove_equivalent_go_to_the_plain_forward(tiny_model: Path) -> None:
    model, _ = load_base(str(tiny_model), "float32")
    model.set_attn_implementation("eager")
    backbone = backbone_of(model)
    assert backbone is not None
    ids, mask = _batch(model.config.vocab_size)
    left = torch.flip(mask, dims=[1])
    seen = []
    hook = backbone.get_input_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    with shared_prefixes_once(model), torch.no_grad():
        backbone(input_ids=ids[:1], attention_mask=mask[:1])  # one row
        backbone(input_ids=ids, attention_mask=left)  # left padding
        backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True)  # extra outputs
        backbone(input_ids=ids, attention_mask=torch.zeros_like(mask))  # nothing but padding
        backbone(input_ids=ids, attention_mask=mask)  # packed
    hook.remove()
    assert seen[:4] == [ids[:1].shape, ids.shape, ids.shape, ids.shape]
    assert seen[4][0] == 1


@pytest.mark.parametrize(("method", "checkpointing"), [("kto", False), ("dpo", False), ("dpo", True)])
def test_a_client_trains_to_the_same_adapter_with_and_without_prefix_sharing(
    method: str, checkpointing: bool, tiny_model: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In float32 the packed batches train the adapter the padded batches train (bfloat16 rounds differently, as
    two batch shapes do: ``benchmarks/precision_noise.py`` measures both against float32)."""
    import contextlib

    from fedbench.harness import prefix, training
    from fedbench.harness.federation import build_cell, partition
    from fedbench.harness.interfaces import LocalTrainingArgs
    from fedbench.harness.models import fresh_adapter, read_adapter
    from fedbench.harness.registry import load_registry
    from fedbench.harness.spec import RunSpec

    spec = RunSpec(
        model=str(tiny_model), data=str(pairs_file), method=method, layout="original", max_length=64, lora_r=4, holdout=0
    )
    cell = build_cell(spec, load_registry(entry_points=False))
    examples = partition(cell, for_rounds=False)["user0"]
    dataset = training.to_dataset(cell.method.records(examples, spec.template))
    args = LocalTrainingArgs(str(tmp_path), 3, 4, 1, 1e-2, 64, 0, bf16=False, gradient_checkpointing=checkpointing)
    adapters, losses, packed = [], [], []
    pays = prefix.packing_pays
    monkeypatch.setattr(prefix, "packing_pays", lambda *a: packed.append(pays(*a)) or packed[-1])
    for shared in (True, False):
        if not shared:
            monkeypatch.setattr(training, "shared_prefixes_once", lambda model: contextlib.nullcontext())
        model, tokenizer = load_base(spec.model, "float32")
        peft = attach_lora(model, spec.lora)
        fresh_adapter(peft, 0)
        losses.append(training.train_client(cell.method, peft, tokenizer, dataset, args).loss)
        adapters.append(read_adapter(peft))
    assert any(packed), "the batches were packed"
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    moved = [name for name, value in adapters[1].items() if value.abs().max() > 0 and "lora_B" in name]
    assert moved, "the steps moved the adapter"
    for name, value in adapters[1].items():
        assert torch.allclose(adapters[0][name], value, atol=1e-5, rtol=1e-3), name


def test_a_backbone_that_takes_no_positions_is_left_alone() -> None:
    import types

    class Backbone(torch.nn.Module):
        config = types.SimpleNamespace(_attn_implementation="eager")

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            return input_ids

    class CausalLM(torch.nn.Module):
        base_model_prefix = "model"

        def __init__(self) -> None:
            super().__init__()
            self.model = Backbone()

    lm = CausalLM()
    with shared_prefixes_once(lm):
        assert "forward" not in vars(lm.model), "packed positions could not be passed: the backbone stays as it was"
