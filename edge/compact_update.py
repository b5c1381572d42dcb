"""Protocol 3: the compact binary container of a quantised update (docs/wire-protocol.md, "Protocol 3").

A small student's update spends most of its safetensors blob on the container: the JSON header of an
8-bit update of 1,730 parameters is 344 B against 1,762 B of codes and qparams, so it cannot come within
1.1x of parameters x bits once chunk framing and MQTT are added. This container carries the same two
tensors (edge.stochastic_quantization's "codes" and "qparams") and the same UpdateMeta in fixed binary
fields: 54 bytes of framing for the demo fleet's names (fleet "demo", device "dev000"):

    magic "DMU3" | checksum: sha256(body)[:8] | body:
        encoding (u8: 8, 4 or 2 bits) | dp mode (u8: index in DP_CODES) | round, base version, examples
        (unsigned LEB128 varints) | clip, noise multiplier (float64 LE) | training digest (8 raw bytes) |
        fleet, device (u8 length 1-63 + UTF-8) | tensors T (u8) | qparams (T x 2 float32 LE) | codes (the rest)

Read as a safetensors blob, the magic is a header length of over 800 MB, so the two containers never
mistake one for the other. Only quantised updates use it; the C firmware writes and reads it byte for byte
(firmware_stubs/core/src/compact_update.c), and a receiver reads both containers.
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np

from edge.stochastic_quantization import BITS_OF, CODES, QPARAMS
from edge.wire import SQ_ENCODINGS, TRAINING_DIGEST_CHARS, PayloadRejected, UpdateMeta

MAGIC = b"DMU3"
CHECKSUM_BYTES = 8  # the chunk layer's 16-byte sha256 guards transit too; this binds the body to itself at rest
DP_CODES = ("none", "local", "central")
MAX_VARINT_BYTES = 9  # 63 bits: rounds, versions and example counts are far below
NAME_BYTES = 63  # fleet and device ids: what the C firmware's dmskd_update_meta holds (DMSKD_MAX_TEXT - 1)


def is_compact(blob: bytes) -> bool:
    """Whether a payload is a protocol-3 compact update (else it is read as safetensors)."""
    return isinstance(blob, (bytes, bytearray, memoryview)) and bytes(blob[:len(MAGIC)]) == MAGIC


def encode_compact_update(wire: dict[str, np.ndarray], meta: UpdateMeta) -> bytes:
    """The compact blob of a quantised update's wire tensors (edge.stochastic_quantization.quantize) and meta."""
    if meta.encoding not in BITS_OF:
        raise ValueError(f"the compact container carries quantised updates ({sorted(BITS_OF)}), not {meta.encoding}")
    if meta.dp_mode not in DP_CODES or len(meta.training) != TRAINING_DIGEST_CHARS:
        raise ValueError(f"dp mode {meta.dp_mode!r} or training digest {meta.training!r} not encodable")
    qparams = np.asarray(wire[QPARAMS], dtype=np.float32)
    codes = np.asarray(wire[CODES], dtype=np.uint8).ravel()
    body = b"".join([
        bytes([BITS_OF[meta.encoding], DP_CODES.index(meta.dp_mode)]),
        _varint(meta.round), _varint(meta.base_version), _varint(meta.num_examples),
        struct.pack("<dd", meta.clip, meta.noise_multiplier), bytes.fromhex(meta.training),
        _name(meta.fleet), _name(meta.device), bytes([len(qparams)]),
        qparams.astype("<f4").tobytes(), codes.tobytes()])
    return MAGIC + hashlib.sha256(body).digest()[:CHECKSUM_BYTES] + body


def decode_compact_update(blob: bytes) -> tuple[dict[str, np.ndarray], UpdateMeta]:
    """Parse and check a compact update; PayloadRejected names what is wrong (the codes are checked against the
    student's template later, by edge.stochastic_quantization.dequantize, as for protocol 2)."""
    data = bytes(blob)
    head = len(MAGIC) + CHECKSUM_BYTES
    if len(data) < head + 2 or not is_compact(data):
        raise PayloadRejected("payload truncated: shorter than a compact update's header")
    body = data[head:]
    if hashlib.sha256(body).digest()[:CHECKSUM_BYTES] != data[len(MAGIC):head]:
        raise PayloadRejected("checksum mismatch: the compact update was altered or corrupted in transit")
    reader = _Reader(body)
    bits, dp = reader.byte("encoding"), reader.byte("dp mode")
    if bits not in SQ_ENCODINGS:
        raise PayloadRejected(f"compact update of {bits} bits; expected one of {sorted(SQ_ENCODINGS)}")
    if dp >= len(DP_CODES):
        raise PayloadRejected(f"compact update names dp mode {dp}; expected 0..{len(DP_CODES) - 1}")
    round_, base, examples = reader.varint("round"), reader.varint("base version"), reader.varint("examples")
    clip, noise = struct.unpack("<dd", reader.take(16, "clip and noise multiplier"))
    if not (math.isfinite(clip) and math.isfinite(noise)):
        raise PayloadRejected("the clip or the noise multiplier is not finite")
    training = reader.take(TRAINING_DIGEST_CHARS // 2, "training digest").hex()
    fleet, device = reader.name("fleet"), reader.name("device")
    count = reader.byte("tensor count")
    qparams = np.frombuffer(reader.take(8 * count, f"qparams of {count} tensors"), "<f4").reshape(count, 2)
    codes = np.frombuffer(reader.rest(), np.uint8)
    if not np.all(np.isfinite(qparams)):
        raise PayloadRejected(f"tensor {QPARAMS} contains NaN or infinity")
    meta = UpdateMeta(fleet, device, round_, base, examples, clip, noise, DP_CODES[dp],
                      encoding=SQ_ENCODINGS[bits], training=training)
    return {CODES: codes.copy(), QPARAMS: qparams.astype(np.float32)}, meta


def _varint(value: int) -> bytes:
    if value < 0 or value.bit_length() > 7 * MAX_VARINT_BYTES:
        raise ValueError(f"{value} is outside the compact container's unsigned 63-bit range")
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")
    if not 0 < len(raw) <= NAME_BYTES:
        raise ValueError(f"name {text!r} must take 1..{NAME_BYTES} bytes of UTF-8")
    return bytes([len(raw)]) + raw


class _Reader:
    """Reads the body's fields in order; every shortfall or bad field is a PayloadRejected naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.at + n > len(self.data):
            raise PayloadRejected(f"payload truncated: the compact update ends inside its {what}")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            b = self.byte(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if i > 0 and b == 0:
                    raise PayloadRejected(f"the {what} varint is not minimal (a trailing zero byte)")
                return value
        raise PayloadRejected(f"the {what} varint runs past {MAX_VARINT_BYTES} bytes")

    def name(self, what: str) -> str:
        size = self.byte(f"{what} length")
        if size > NAME_BYTES:
            raise PayloadRejected(f"the {what} name takes {size} bytes, more than {NAME_BYTES}")
        raw = self.take(size, what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadRejected(f"the {what} name is not UTF-8") from exc
        if not text:
            raise PayloadRejected(f"the {what} name is empty")
        return text

    def rest(self) -> bytes:
        out = self.data[self.at:]
        self.at = len(self.data)
        return out
