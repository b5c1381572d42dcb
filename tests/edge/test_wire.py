"""Wire format: updates and weights survive chunked transport bit-exactly; bad payloads are named.

Malformed payloads are one table (CASES): a name, how the payload is built, the decoder it is offered
to, and the rejection reason it must produce; each case breaks one thing of a payload that
test_hand_built_blob_is_accepted_so_rejections_below_are_meaningful shows is otherwise accepted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from edge.chunking import ChunkAssembler, split_message
from edge.wire import (
    METADATA_KEYS,
    PayloadRejected,
    UpdateMeta,
    WeightsMeta,
    decode_update,
    decode_weights,
    encode_update,
    encode_weights,
    tensor_checksum,
    wire_metadata,
)

META = UpdateMeta(fleet="f1", device="dev-3", round=4, base_version=3, num_examples=57, clip=1.5,
                  noise_multiplier=0.8, dp_mode="local")
KEYS = {"protocol": "v", "kind": "k", "checksum": "h", **METADATA_KEYS[UpdateMeta]}


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    special = np.array([-0.0, 0.0, 1e-45, -1e-45, np.finfo(np.float32).tiny / 2, np.finfo(np.float32).max,
                        np.finfo(np.float32).min, np.finfo(np.float32).eps], dtype=np.float32)
    return {
        "dense/kernel": rng.standard_normal((40, 33)).astype(np.float32),
        "dense/bias": special,
        "head/kernel": rng.standard_normal((33, 10)).astype(np.float32) * np.float32(1e-39),  # denormals
        "scalar": np.array(3.25, dtype=np.float32),
    }


def _through_chunks(blob: bytes, seed: int) -> bytes:
    chunks = split_message(blob, "wire-test", limit=1024)
    assert len(chunks) > 3
    assembler = ChunkAssembler()
    out = [assembler.add(chunks[i]) for i in np.random.default_rng(seed).permutation(len(chunks))]
    whole = [o for o in out if o is not None]
    assert len(whole) == 1
    return whole[0]


def _assert_bit_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == np.float32
        assert got[name].shape == want[name].shape
        assert got[name].tobytes() == want[name].tobytes(), name


def test_update_round_trip_through_chunks_is_bit_exact() -> None:
    tensors = _tensors()
    assert np.signbit(tensors["dense/bias"][0])  # -0.0 really is in there
    got, meta = decode_update(_through_chunks(encode_update(tensors, META), seed=1))
    _assert_bit_equal(got, tensors)
    assert meta == META


def test_weights_round_trip_through_chunks_is_bit_exact() -> None:
    tensors = _tensors(seed=2)
    wmeta = WeightsMeta(fleet="f1", version=7, round=8)
    got, meta = decode_weights(_through_chunks(encode_weights(tensors, wmeta), seed=3))
    _assert_bit_equal(got, tensors)
    assert meta == wmeta


def _raw_blob(tensors: dict[str, np.ndarray], **metadata_changes: str | None) -> bytes:
    """A blob built by hand, so tests can send what encode_update never would."""
    metadata = wire_metadata(META, tensors)
    for name, value in metadata_changes.items():
        key = KEYS[name]
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    return st_save(tensors, metadata=metadata)


def test_hand_built_blob_is_accepted_so_rejections_below_are_meaningful() -> None:
    tensors = {"w": np.ones((3, 2), np.float32)}
    got, meta = decode_update(_raw_blob(tensors))
    _assert_bit_equal(got, tensors)
    assert meta == META


def _update_blob(tensors: dict[str, np.ndarray] | None = None) -> bytes:
    return encode_update(_tensors() if tensors is None else tensors, META)


def _weights_blob() -> bytes:
    return encode_weights({"w": np.ones(2, np.float32)}, WeightsMeta("f1", 1, 1))


def _tampered_blob() -> bytes:
    blob = bytearray(_update_blob({"w": np.linspace(1, 2, 16, dtype=np.float32)}))
    blob[-4] ^= 0x01  # lowest mantissa bit of the last value: still finite, still float32
    return bytes(blob)


def _two_floats() -> dict[str, np.ndarray]:
    return {"w": np.ones(2, np.float32)}


def _without_field(field: str) -> Callable[[], bytes]:
    return lambda: _raw_blob(_two_floats(), **{field: None})


@dataclass(frozen=True)
class Case:
    """One malformed payload: how it is built, the decoder it is offered to, and the reason it must be refused for."""

    name: str
    build: Callable[[], Any]  # bytes, except where a case sends something that is not bytes at all
    reason: str
    decoder: Callable[[bytes], object] = decode_update


CASES = [
    Case("cut-inside-header", lambda: _update_blob()[:40], "truncated"),
    Case("cut-inside-length-prefix", lambda: _update_blob()[:5], "truncated"),
    Case("cut-inside-tensor-data", lambda: _update_blob()[:-16], "not valid safetensors"),
    Case("garbage-after-length", lambda: (8).to_bytes(8, "little") + b"{garbage", "not valid safetensors"),
    Case("not-bytes", lambda: "not bytes", "truncated"),
    Case("nan", lambda: _update_blob({"w": np.array([1.0, np.nan, 2.0], np.float32)}), "NaN or infinity"),
    Case("inf", lambda: _update_blob({"w": np.array([1.0, np.inf, 2.0], np.float32)}), "NaN or infinity"),
    Case("-inf", lambda: _update_blob({"w": np.array([1.0, -np.inf, 2.0], np.float32)}), "NaN or infinity"),
    Case("float64-tensor", lambda: _raw_blob({"w": np.ones(4, np.float64)}), "dtype float64, expected float32"),
    Case("tampered-tensor-bytes", _tampered_blob, "checksum mismatch"),
    Case("other-protocol-version", lambda: _raw_blob(_two_floats(), protocol="3"), "protocol version '3'"),
    Case("protocol-1-payload", lambda: st_save(_two_floats(), metadata={"protocol": "1", "kind": "update"}),
         "protocol version '1', this build speaks '2'"),
    Case("weights-offered-as-update", _weights_blob, "kind 'weights' where 'update'"),
    Case("update-offered-as-weights", lambda: _update_blob(_two_floats()), "kind 'update' where 'weights'",
         decoder=decode_weights),
    *(Case(f"missing-{field}", _without_field(field), f"metadata field '{field}' (key '{KEYS[field]}') missing")
      for field in ("device", "round", "base_version", "num_examples")),
    Case("unreadable-round", lambda: _raw_blob(_two_floats(), round="four"), "metadata field 'round' (key 'r') "
         "unreadable"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_payload_is_rejected_with_its_reason(case: Case) -> None:
    with pytest.raises(PayloadRejected) as rejected:
        case.decoder(case.build())
    assert case.reason in str(rejected.value), str(rejected.value)


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_metadata_is_plain_strings_in_the_safetensors_header() -> None:
    blob = encode_update({"w": np.ones(2, np.float32)}, META)
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert header["__metadata__"]["d"] == "dev-3"
    assert header["__metadata__"]["k"] == "u"
    assert header["__metadata__"]["v"] == "2"
    assert all(isinstance(v, str) for v in header["__metadata__"].values())


def test_update_id_is_derived_not_sent() -> None:
    blob = encode_update({"w": np.ones(2, np.float32)}, META)
    assert b"dev-3:4:3" not in blob
    assert decode_update(blob)[1].update_id == "dev-3:4:3"


def test_checksum_is_truncated_sha256_of_the_data_section() -> None:
    """What a C encoder computes: sha256 over the bytes after the header, first 16 bytes as hex."""
    import hashlib

    blob = encode_update(_tensors(), META)
    data = blob[8 + int.from_bytes(blob[:8], "little"):]
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert header["__metadata__"]["h"] == hashlib.sha256(data).hexdigest()[:32] == tensor_checksum(_tensors())


def test_zero_dim_tensor_keeps_its_shape() -> None:
    got, _ = decode_update(encode_update({"t": np.float32(0.5), "w": np.ones(2, np.float32)}, META))
    assert got["t"].shape == ()


def test_one_content_encodes_to_one_byte_string_whatever_the_order_it_was_built_in() -> None:
    """A model re-encoded after an aggregator restart must equal its first encoding: devices refuse a different
    message under a counter (version) they already hold."""
    from safetensors.numpy import load

    from edge.wire import WeightsMeta, canonical_safetensors, encode_weights

    weights = {"dense_0/kernel": np.arange(12, dtype=np.float32).reshape(4, 3), "dense_0/bias": np.ones(3, np.float32)}
    reordered = dict(reversed(list(weights.items())))
    blobs = {encode_weights(w, WeightsMeta("f", 2, 2)) for w in (weights, reordered) for _ in range(5)}
    assert len(blobs) == 1
    plain = canonical_safetensors({"b": np.zeros((2, 0), np.float32), "a": np.arange(3, dtype=np.uint8)}, {"k": "v"})
    loaded = load(plain)
    assert loaded["a"].tolist() == [0, 1, 2] and loaded["b"].shape == (2, 0)
    assert int.from_bytes(plain[:8], "little") % 8 == 0
