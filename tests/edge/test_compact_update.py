"""Protocol 3, the compact container of quantised updates: the same tensors and metadata as protocol 2 in a
fraction of the framing, and every field a hostile device could bend refused with a reason."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest

from edge import stochastic_quantization as sq
from edge.chunking import split_message
from edge.compact_update import CHECKSUM_BYTES, MAGIC, decode_compact_update, encode_compact_update, is_compact
from edge.local_training import LocalResult, update_payload
from edge.plan import DevicePlan, TrainingSettings
from edge.wire import SQ_ENCODINGS, PayloadRejected, UpdateMeta, decode_update, encode_update, training_digest
from simulator.traffic import mqtt_publish_bytes

# ItalyPowerDemand's student: 24 inputs, 64 hidden, 2 classes (1,730 parameters)
SMALL = {"dense_0/bias": (64,), "dense_0/kernel": (24, 64), "dense_1/bias": (2,), "dense_1/kernel": (64, 2)}
ALL_SQ = tuple(SQ_ENCODINGS.values())


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.01).astype(np.float32) for k, s in SMALL.items()}


def _meta(bits: int = 8, **changes) -> UpdateMeta:
    fields = {"fleet": "demo", "device": "dev000", "round": 29, "base_version": 29, "num_examples": 100,
              "clip": 1.0, "noise_multiplier": 0.7, "dp_mode": "local"} | changes
    return UpdateMeta(**fields, encoding=SQ_ENCODINGS[bits], training="0123456789abcdef")


def _wire(bits: int = 8) -> dict[str, np.ndarray]:
    return sq.quantize(_delta(), bits, np.random.default_rng(1))


def _reseal(body: bytes) -> bytes:
    """A compact blob around an edited body, with a valid checksum: what a hostile device would send."""
    return MAGIC + hashlib.sha256(body).digest()[:CHECKSUM_BYTES] + body


def _body(blob: bytes) -> bytes:
    return blob[len(MAGIC) + CHECKSUM_BYTES:]


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_compact_carries_what_protocol_2_carries(bits: int) -> None:
    wire, meta = _wire(bits), _meta(bits)
    compact, classic = encode_compact_update(wire, meta), encode_update(wire, meta)
    assert is_compact(compact) and not is_compact(classic)
    (t3, m3), (t2, m2) = decode_update(compact, ALL_SQ), decode_update(classic, ALL_SQ)
    assert m3 == m2 == meta
    for name in wire:
        assert t3[name].dtype == t2[name].dtype and np.array_equal(t3[name], t2[name])
    d3, d2 = sq.dequantize(t3, bits, SMALL), sq.dequantize(t2, bits, SMALL)
    assert all(np.array_equal(d3[k], d2[k]) for k in SMALL)
    assert len(compact) < len(classic) - 250


def test_an_8_bit_update_of_a_small_student_is_within_1_1x_of_its_limit_on_the_wire() -> None:
    """Parameters x 8 bits, with the container, the chunk header and the MQTT PUBLISH counted."""
    blob = encode_compact_update(_wire(8), _meta(8))
    topic = "dmskd/demo/round/29/update/dev000"
    on_wire = sum(mqtt_publish_bytes(f"{topic}/{i}", len(c)) for i, c in enumerate(split_message(blob, "0" * 16)))
    params = sum(math.prod(s) for s in SMALL.values())
    assert params == 1730
    assert on_wire <= 1.1 * params, on_wire / params


def test_update_payload_sends_quantised_updates_compact_and_float32_as_safetensors() -> None:
    training = TrainingSettings()
    result = LocalResult(_delta(), 50, [])
    for bits, compact in ((8, True), (2, True), (32, False)):
        plan = DevicePlan("demo", "dev000", "p1", "0" * 16, "1" * 16, 3, training=training, update_bits=bits)
        blob = update_payload(result, plan, 1, 1, np.random.default_rng(0))
        assert is_compact(blob) is compact
        _, meta = decode_update(blob, (*ALL_SQ, "float32-delta"))
        assert (meta.device, meta.round, meta.num_examples) == ("dev000", 1, 50)
        assert meta.training == training_digest(training.declaration())


def test_refuses_to_encode_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="quantised updates"):
        encode_compact_update(_wire(), UpdateMeta("demo", "d", 0, 0, 1, 1.0, 0.0, "none", training="0" * 16))
    with pytest.raises(ValueError, match="training digest"):
        encode_compact_update(_wire(), UpdateMeta("demo", "d", 0, 0, 1, 1.0, 0.0, "none", encoding="sq8-delta"))
    with pytest.raises(ValueError, match="unsigned 63-bit"):
        encode_compact_update(_wire(), _meta(round=-1))


def _edit(at: int, value: bytes):
    """Replace the body's bytes at `at` (negative: from the end) and reseal."""
    def make(body: bytes) -> bytes:
        i = at if at >= 0 else len(body) + at
        return _reseal(body[:i] + value + body[i + len(value):])
    return make


# body offsets: 0 bits, 1 dp, 2 round (1 byte), 3 base (1), 4 examples (1), 5..21 clip+noise, 21..29 digest,
# 29 fleet length "demo" (30..34), 34 device length "dev000" (35..41), 41 tensor count, 42.. qparams, codes
MALFORMED = {
    "truncated": (lambda body: (MAGIC + b"\0" * CHECKSUM_BYTES + body)[:13], "truncated"),
    "altered-in-transit": (lambda body: MAGIC + hashlib.sha256(body).digest()[:CHECKSUM_BYTES] + body[:-1] + b"\x01",
                           "checksum mismatch"),
    "seven-bits": (_edit(0, b"\x07"), "compact update of 7 bits"),
    "unknown-dp-mode": (_edit(1, b"\x09"), "dp mode 9"),
    "non-minimal-varint": (lambda body: _reseal(body[:2] + b"\x9d\x00" + body[3:]), "not minimal"),
    "endless-varint": (lambda body: _reseal(body[:2] + b"\xff" * 12 + body[3:]), "runs past 9 bytes"),
    "nan-clip": (_edit(5, struct.pack("<d", float("nan"))), "clip or the noise multiplier is not finite"),
    "fleet-name-too-long": (_edit(29, b"\x40"), "takes 64 bytes, more than 63"),
    "nan-qparams": (_edit(42, struct.pack("<f", float("nan"))), "NaN or infinity"),
    "empty-fleet": (lambda body: _reseal(body[:29] + b"\x00" + body[34:]), "fleet name is empty"),
    "device-not-utf8": (_edit(35, b"\xff\xfe"), "not UTF-8"),
    "device-runs-off-the-end": (lambda body: _reseal(body[:34] + b"\x06dev"), "ends inside its device"),
    "too-many-tensors": (_edit(41, b"\xff"), "ends inside its qparams of 255 tensors"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_rejects_a_malformed_compact_update_naming_the_field(case: str) -> None:
    make, expected = MALFORMED[case]
    good = encode_compact_update(_wire(8), _meta(8))
    assert decode_compact_update(good)[1] == _meta(8)  # the offsets above describe this blob
    with pytest.raises(PayloadRejected, match=expected) as rejected:
        decode_update(make(_body(good)), ALL_SQ)
    assert rejected.value.reason == "malformed_payload"


def test_codes_of_another_student_pass_the_container_and_fail_the_template() -> None:
    """The container does not know the student: dequantize against the aggregator's template refuses it."""
    wire = sq.quantize({"w": np.zeros(10, np.float32)}, 8, np.random.default_rng(0))
    tensors, _ = decode_update(encode_compact_update(wire, _meta(8)), ALL_SQ)
    with pytest.raises(PayloadRejected, match="need 1730 bytes of codes") as rejected:
        sq.dequantize(tensors, 8, SMALL)
    assert rejected.value.reason == "wrong_shape"


def test_a_compact_update_is_still_checked_against_the_encodings_the_receiver_takes() -> None:
    with pytest.raises(PayloadRejected, match="not accepted here") as rejected:
        decode_update(encode_compact_update(_wire(4), _meta(4)), ("sq8-delta",))
    assert rejected.value.reason == "wrong_encoding"
