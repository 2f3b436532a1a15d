"""The wire format of the Flower engine: what travels between ServerApp and ClientApps.

Only arrays and config values cross the wire: the LoRA adapter, an aggregator's client state
(e.g. SCAFFOLD's control variates) and their changes as ``ArrayRecord``s of numpy arrays, and the
cell's :class:`RunSpec` as JSON in a ``ConfigRecord``. Kept apart from the server and client halves
because both halves (and the launchers, which put the spec in the app's run config) encode and
decode with these same functions, so a change to the format is made in one place.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedbench.harness.interfaces import Encoded, Params
from fedbench.harness.spec import RunSpec


def to_record(params: Params) -> ArrayRecord:
    """Tensors as numpy arrays, keys kept; bfloat16 (which numpy lacks) travels as float32."""
    return ArrayRecord({k: _array(t) for k, t in params.items()})


def _array(t: torch.Tensor) -> Any:
    from flwr.app import Array

    t = t.detach().to("cpu")
    return Array(t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy())


def from_record(record: ArrayRecord, like: Params | None = None) -> Params:
    """Tensors back from a record, in the dtype of ``like``'s tensor of the same name when given."""
    out = {}
    for k, array in record.items():
        t = torch.from_numpy(array.numpy().copy())
        out[k] = t.to(like[k].dtype) if like is not None and k in like else t
    return out


def spec_json(spec: RunSpec) -> str:
    """The spec as it travels in a ``ConfigRecord`` (and in a Flower app's run config): canonical JSON."""
    return json.dumps(spec.to_dict(), sort_keys=True)


def encoded_to_records(encoded: Encoded) -> tuple[ArrayRecord, ConfigRecord]:
    """An update as its codec encoded it: the encoded arrays as they are (bfloat16 ones as their int16 bits, numpy
    having no bfloat16, so they keep their two bytes), and the metadata that decodes them as JSON."""
    from flwr.app import Array

    arrays, dtypes = {}, {}
    for k, t in encoded.arrays.items():
        t = t.detach().to("cpu")
        dtypes[k] = str(t.dtype).removeprefix("torch.")
        arrays[k] = Array((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy())
    meta = {"shapes": encoded.shapes, "dtypes": encoded.dtypes, "settings": encoded.settings, "wire": dtypes}
    return ArrayRecord(arrays), ConfigRecord({"codec": encoded.codec, "meta": json.dumps(meta)})


def encoded_from_records(arrays: ArrayRecord, config: ConfigRecord) -> Encoded:
    """The :class:`Encoded` :func:`encoded_to_records` sent, bit for bit."""
    meta = json.loads(str(config["meta"]))
    tensors = {}
    for k, array in arrays.items():
        t = torch.from_numpy(array.numpy().copy())
        tensors[k] = t.view(torch.bfloat16) if meta["wire"][k] == "bfloat16" else t
    shapes = {k: tuple(v) for k, v in meta["shapes"].items()}
    return Encoded(str(config["codec"]), tensors, shapes, meta["dtypes"], meta["settings"])
