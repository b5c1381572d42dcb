"""Wire format: updates and weights survive chunked transport bit-exactly; bad payloads are named."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from edge.chunking import ChunkAssembler, split_message
from edge.wire import (
    PROTOCOL_VERSION,
    PayloadRejected,
    UpdateMeta,
    WeightsMeta,
    decode_update,
    decode_weights,
    encode_update,
    encode_weights,
    tensor_checksum,
)

META = UpdateMeta(fleet="f1", device="dev-3", round=4, base_version=3, num_examples=57, clip=1.5,
                  noise_multiplier=0.8, dp_mode="local", update_id="dev-3-r4-abc")


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
    metadata = {k: str(v) for k, v in dataclasses.asdict(META).items()}
    metadata.update(protocol=PROTOCOL_VERSION, kind="update", checksum=tensor_checksum(tensors))
    for key, value in metadata_changes.items():
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


def test_decode_rejects_blob_cut_inside_its_header() -> None:
    blob = encode_update(_tensors(), META)
    with pytest.raises(PayloadRejected, match="truncated"):
        decode_update(blob[:40])
    with pytest.raises(PayloadRejected, match="truncated"):
        decode_update(blob[:5])


def test_decode_rejects_blob_cut_inside_its_tensor_data() -> None:
    blob = encode_update(_tensors(), META)
    with pytest.raises(PayloadRejected, match="not valid safetensors"):
        decode_update(blob[:-16])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_decode_rejects_non_finite_values(bad: float) -> None:
    tensors = {"w": np.array([1.0, bad, 2.0], np.float32)}
    with pytest.raises(PayloadRejected, match="NaN or infinity"):
        decode_update(encode_update(tensors, META))


def test_decode_rejects_float64_tensors() -> None:
    with pytest.raises(PayloadRejected, match="dtype float64, expected float32"):
        decode_update(_raw_blob({"w": np.ones(4, np.float64)}))


def test_decode_rejects_tampered_tensor_bytes_by_checksum() -> None:
    blob = bytearray(encode_update({"w": np.linspace(1, 2, 16, dtype=np.float32)}, META))
    blob[-4] ^= 0x01  # lowest mantissa bit of the last value: still finite, still float32
    with pytest.raises(PayloadRejected, match="checksum mismatch"):
        decode_update(bytes(blob))


def test_decode_rejects_other_protocol_version() -> None:
    with pytest.raises(PayloadRejected, match="protocol version '2'"):
        decode_update(_raw_blob({"w": np.ones(2, np.float32)}, protocol="2"))


def test_decode_rejects_weights_where_an_update_was_expected_and_vice_versa() -> None:
    weights = encode_weights({"w": np.ones(2, np.float32)}, WeightsMeta("f1", 1, 1))
    with pytest.raises(PayloadRejected, match="kind 'weights' where 'update'"):
        decode_update(weights)
    with pytest.raises(PayloadRejected, match="kind 'update' where 'weights'"):
        decode_weights(encode_update({"w": np.ones(2, np.float32)}, META))


@pytest.mark.parametrize("field", ["device", "round", "num_examples", "update_id"])
def test_decode_rejects_missing_metadata_field_by_name(field: str) -> None:
    with pytest.raises(PayloadRejected, match=f"metadata field '{field}' missing"):
        decode_update(_raw_blob({"w": np.ones(2, np.float32)}, **{field: None}))


def test_decode_rejects_unreadable_metadata_number_by_name() -> None:
    with pytest.raises(PayloadRejected, match="metadata field 'round' unreadable"):
        decode_update(_raw_blob({"w": np.ones(2, np.float32)}, round="four"))


def test_decode_rejects_garbage_and_non_bytes() -> None:
    with pytest.raises(PayloadRejected, match="not valid safetensors"):
        decode_update((8).to_bytes(8, "little") + b"{garbage")
    with pytest.raises(PayloadRejected, match="truncated"):
        decode_update("not bytes")  # type: ignore[arg-type]


def test_metadata_is_plain_strings_in_the_safetensors_header() -> None:
    blob = encode_update({"w": np.ones(2, np.float32)}, META)
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    assert header["__metadata__"]["device"] == "dev-3"
    assert header["__metadata__"]["kind"] == "update"
    assert all(isinstance(v, str) for v in header["__metadata__"].values())


def test_zero_dim_tensor_keeps_its_shape_and_checksum_tells_it_from_shape_one() -> None:
    got, _ = decode_update(encode_update({"t": np.float32(0.5), "w": np.ones(2, np.float32)}, META))
    assert got["t"].shape == ()
    assert tensor_checksum({"t": np.array(0.5, np.float32)}) != tensor_checksum({"t": np.array([0.5], np.float32)})
