"""Codecs in a run: bytes up are counted as encoded, and a codec's per-client memory resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedbench.harness.checkpoint import CODEC_STATE_DIR
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.registry import load_registry
from tests.test_resume import _crash_after_round, _spec


def test_bytes_up_are_counted_after_encoding(tiny_model: Path, pairs_file: Path, tmp_path: Path) -> None:
    registry = load_registry(entry_points=False)
    up = {}
    for codec in ("none", "fp16", "int8"):
        spec = _spec(tiny_model, pairs_file, aggregator="fedavg", rounds=1, codec=codec)
        up[codec] = run_federation(build_cell(spec, registry), tmp_path / codec).history[0].bytes_up
    assert up["fp16"] * 2 == up["none"]
    assert up["int8"] * 4 == pytest.approx(up["none"], rel=0.05) and up["int8"] > up["none"] // 4, "a float32 scale per tensor"


def test_topk_error_feedback_is_kept_per_client_and_resumes_bit_for_bit(
    tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, aggregator="fedavg", codec="topk", codec_params=(("fraction", 0.2),))
    straight = run_federation(build_cell(spec, registry), tmp_path / "a")
    residuals = list((straight.run_dir / CODEC_STATE_DIR).glob("*/*.safetensors"))
    assert residuals, "each client's unsent remainder is stored"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_federation(build_cell(spec, registry), tmp_path / "b", on_event=_crash_after_round(1))
    resumed = run_federation(build_cell(spec, registry), tmp_path / "b")
    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "the residuals of round 1 are read back, not restarted at zero"
    assert [h.bytes_up for h in straight.history] == [h.bytes_up for h in resumed.history]


def test_an_unknown_codec_or_setting_is_refused_by_name(tiny_model: Path, pairs_file: Path) -> None:
    registry = load_registry(entry_points=False)
    with pytest.raises(FedbenchError, match="int8"):
        build_cell(_spec(tiny_model, pairs_file, codec="int9"), registry)
    with pytest.raises(FedbenchError, match="fraction is 2.0"):
        build_cell(_spec(tiny_model, pairs_file, codec="topk", codec_params=(("fraction", 2.0),)), registry)


def test_the_default_codec_sends_the_adapter_as_it_is_and_flower_refuses_a_stateful_one(
    tiny_model: Path, pairs_file: Path
) -> None:
    from fedbench.harness.engines import refuse_on_flower

    registry = load_registry(entry_points=False)
    assert build_cell(_spec(tiny_model, pairs_file), registry).codec is None, "none: no encode/decode round trip at all"
    refuse_on_flower(build_cell(_spec(tiny_model, pairs_file, codec="int8"), registry))  # stateless: fine
    with pytest.raises(FedbenchError, match="keeps memory per client"):
        refuse_on_flower(build_cell(_spec(tiny_model, pairs_file, codec="topk"), registry))
