"""Student updates and weights as safetensors blobs with compact string metadata (DESIGN.md §4).

Protocol 2 (docs/wire-protocol.md is the byte-exact reference): a canonical safetensors file (tensors in
name order, the JSON header sorted and compact, padded with spaces to 8 bytes) whose metadata uses
one-letter keys (METADATA_KEYS): the envelope (v protocol, k kind u|w, h checksum) and the fields of
UpdateMeta or WeightsMeta. An update declares its training settings as a digest (training_digest of
edge.plan.TrainingSettings.declaration), and its idempotent id is derived (device, round, base version),
not sent. Decoding validates everything a hostile or broken device could send: framing, metadata,
dtypes, shapes, finiteness, and the checksum over the tensors. A rejection carries a detail
(its message) and a reason code (PayloadRejected.reason) that the aggregator counts and logs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import KW_ONLY, MISSING, asdict, dataclass, fields
from typing import TypeVar

import numpy as np
from safetensors.numpy import load as st_load

PROTOCOL_VERSION = "2"
FLOAT32_DELTA = "float32-delta"
FLOAT32_WEIGHTS = "float32-weights"
# FedCompress baseline (simulator/baselines): uint8 codes per tensor plus a float32 "<name>.qparams"
# tensor [scale, offset]; the DMSKD aggregator does not accept it (decode_update's default encodings).
UINT8_AFFINE_DELTA = "uint8-affine-delta"
# The main path's quantised updates (edge.stochastic_quantization): packed b-bit codes + per-tensor qparams.
SQ_ENCODINGS = {8: "sq8-delta", 4: "sq4-delta", 2: "sq2-delta"}
_ENCODING_DTYPES = {e: (np.dtype(np.float32), np.dtype(np.uint8)) for e in (UINT8_AFFINE_DELTA, *SQ_ENCODINGS.values())}


# Reason codes a decoder's rejection carries: values of cloud.rejections.RejectionReason (edge/ imports no cloud).
MALFORMED_PAYLOAD = "malformed_payload"
WRONG_ENCODING = "wrong_encoding"
WRONG_SHAPE = "wrong_shape"


class PayloadRejected(ValueError):
    """A payload that must not enter a round; str(exc) is the detail, `reason` its code (default malformed)."""

    def __init__(self, detail: str, reason: str = MALFORMED_PAYLOAD) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class UpdateMeta:
    """Who sent an update, for which round and global version, and how it was privatised."""

    fleet: str
    device: str
    round: int
    base_version: int
    num_examples: int
    clip: float
    noise_multiplier: float
    dp_mode: str
    _: KW_ONLY  # protocol 1 had update_id here: a positional 9th argument must fail, not become the encoding
    encoding: str = FLOAT32_DELTA
    training: str = ""  # training_digest of the plan's TrainingSettings.declaration (16 hex characters)

    @property
    def update_id(self) -> str:
        """The idempotent id of this update (derived, not sent): device, round and base version."""
        return update_id(self.device, self.round, self.base_version)


@dataclass(frozen=True)
class WeightsMeta:
    """Which global student version a weights blob is, and the round it opens."""

    fleet: str
    version: int
    round: int
    encoding: str = FLOAT32_WEIGHTS


@dataclass(frozen=True)
class ModelStepMeta:
    """A quantised step of the global student from `base_version` to `version`, and the round it opens."""

    fleet: str
    version: int
    round: int
    base_version: int
    encoding: str = SQ_ENCODINGS[8]


MetaT = TypeVar("MetaT", UpdateMeta, WeightsMeta, ModelStepMeta)

# Metadata keys on the wire: the envelope's, then each metadata class's field -> key (docs/wire-protocol.md).
PROTOCOL_KEY, KIND_KEY, CHECKSUM_KEY = "v", "k", "h"
KINDS = {"update": "u", "weights": "w", "step": "s"}
METADATA_KEYS: dict[type, dict[str, str]] = {
    UpdateMeta: {"fleet": "f", "device": "d", "round": "r", "base_version": "b", "num_examples": "n", "clip": "c",
                 "noise_multiplier": "z", "dp_mode": "m", "encoding": "e", "training": "t"},
    WeightsMeta: {"fleet": "f", "version": "g", "round": "r", "encoding": "e"},
    ModelStepMeta: {"fleet": "f", "version": "g", "round": "r", "base_version": "b", "encoding": "e"},
}
CHECKSUM_BYTES = 16  # the tensor checksum: the first 16 bytes of a sha256, 32 hex characters
TRAINING_DIGEST_CHARS = 16  # the training declaration's digest: 64 bits of sha256, as hex


def training_digest(declaration: str) -> str:
    """The digest an update declares its training settings by: sha256 of the canonical JSON, first 8 bytes, hex.

    The declaration is the device's statement, not a proof (any device can copy its plan's); 64 bits tell
    apart any two settings by accident with probability 1 - 2^-64, for 16 bytes instead of ~113 of JSON."""
    return hashlib.sha256(declaration.encode("utf-8")).hexdigest()[:TRAINING_DIGEST_CHARS]


def update_id(device: str, round_: int, base_version: int) -> str:
    """The idempotent id of a device's update for a round and global version (the aggregator dedupes on it)."""
    return f"{device}:{round_}:{base_version}"


def content_hash(data: bytes) -> str:
    """The short sha256 that names shards and student programs on the wire."""
    return hashlib.sha256(data).hexdigest()[:16]


# hex characters of an accepted update's sha256 that the aggregator acks in the device's next cohort notice
ACK_DIGEST_CHARS = 32


def ack_digest(blob: bytes) -> str:
    """How the aggregator names an accepted update in its acknowledgement (the device matches its outbox on it)."""
    return hashlib.sha256(blob).hexdigest()[:ACK_DIGEST_CHARS]


def tensor_checksum(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over every tensor's little-endian C-order bytes, in name order (the data section of the canonical
    blob), its first CHECKSUM_BYTES as hex. Names, dtypes and shapes are checked against the student instead."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")  # not ascontiguousarray: it turns 0-d into (1,)
        h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()[:2 * CHECKSUM_BYTES]


def encode_update(tensors: dict[str, np.ndarray], meta: UpdateMeta) -> bytes:
    """Serialise a device's delta and its metadata."""
    return _encode(tensors, "update", meta)


def encode_weights(tensors: dict[str, np.ndarray], meta: WeightsMeta) -> bytes:
    """Serialise the global student's weights."""
    return _encode(tensors, "weights", meta)


def encode_model_step(tensors: dict[str, np.ndarray], meta: ModelStepMeta) -> bytes:
    """Serialise a quantised step of the global student (edge.model_step)."""
    return _encode(tensors, "step", meta)


def decode_update(blob: bytes,
                  encodings: tuple[str, ...] = (FLOAT32_DELTA,)) -> tuple[dict[str, np.ndarray], UpdateMeta]:
    """Parse and check an update; raise PayloadRejected with the reason if anything is off.

    encodings: the update encodings this receiver understands (the aggregator: float32 deltas only).
    A protocol-3 compact update (edge.compact_update) is read as such; anything else as protocol 2."""
    from edge import compact_update  # it builds on this module's types: imported here, not at the top

    if compact_update.is_compact(blob):
        tensors, meta = compact_update.decode_compact_update(blob)
    else:
        tensors, raw = _decode(blob, "update")
        meta = _meta_from(UpdateMeta, raw)
    if meta.encoding not in encodings:
        raise PayloadRejected(f"update encoding {meta.encoding!r} not accepted here; expected one of {list(encodings)}",
                              WRONG_ENCODING)
    return tensors, meta


def decode_weights(blob: bytes) -> tuple[dict[str, np.ndarray], WeightsMeta]:
    """Parse and check a weights blob."""
    tensors, raw = _decode(blob, "weights")
    return tensors, _meta_from(WeightsMeta, raw)


def decode_model_step(blob: bytes) -> tuple[dict[str, np.ndarray], ModelStepMeta]:
    """Parse and check a model step blob (its codes are checked against the held model by edge.model_step)."""
    tensors, raw = _decode(blob, "step")
    meta = _meta_from(ModelStepMeta, raw)
    if meta.encoding not in SQ_ENCODINGS.values():
        raise PayloadRejected(f"model step encoding {meta.encoding!r}; expected one of {list(SQ_ENCODINGS.values())}",
                              WRONG_ENCODING)
    return tensors, meta


def check_against_template(tensors: dict[str, np.ndarray], template: dict[str, tuple[int, ...]]) -> None:
    """Reject tensors whose names or shapes differ from the global student's."""
    missing = sorted(set(template) - set(tensors))
    extra = sorted(set(tensors) - set(template))
    if missing or extra:
        raise PayloadRejected(f"tensor names differ from the student: missing {missing}, unexpected {extra}",
                              WRONG_SHAPE)
    for name, shape in template.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise PayloadRejected(f"tensor {name} has shape {tuple(tensors[name].shape)}, expected {tuple(shape)}",
                                  WRONG_SHAPE)


def _allowed_dtypes(encoding: str | None) -> tuple[np.dtype, ...]:
    return _ENCODING_DTYPES.get(encoding or "", (np.dtype(np.float32),))


def _wire_array(value: object, allowed: tuple[np.dtype, ...]) -> np.ndarray:
    """The tensor in its dtype when the encoding carries that dtype, else as float32 (C order)."""
    arr = np.asarray(value)
    return np.asarray(arr, dtype=arr.dtype if arr.dtype in allowed else np.float32, order="C")


def wire_metadata(meta: UpdateMeta | WeightsMeta | ModelStepMeta, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """The safetensors metadata of a blob: the envelope (protocol, kind, checksum of `arrays`) and meta's fields."""
    keys = METADATA_KEYS[type(meta)]
    metadata = {keys[k]: str(v) for k, v in asdict(meta).items()}
    kind = {UpdateMeta: "update", WeightsMeta: "weights", ModelStepMeta: "step"}[type(meta)]
    metadata.update({PROTOCOL_KEY: PROTOCOL_VERSION, KIND_KEY: KINDS[kind], CHECKSUM_KEY: tensor_checksum(arrays)})
    return metadata


def _encode(tensors: dict[str, np.ndarray], kind: str, meta: UpdateMeta | WeightsMeta | ModelStepMeta) -> bytes:
    allowed = _allowed_dtypes(meta.encoding)
    arrays = {k: _wire_array(v, allowed) for k, v in tensors.items()}
    return canonical_safetensors(arrays, wire_metadata(meta, arrays))


_SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}


def canonical_safetensors(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors file of `arrays` with one byte layout for one content: tensors in name order, the
    header as sorted, compact JSON padded with spaces to 8 bytes. (The library's writer orders the metadata
    differently from run to run, so a model re-encoded after a restart would not equal its first encoding,
    and a device's replay guard refuses a different message under a counter it holds.)"""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset, buffers = 0, []
    for name in sorted(arrays):
        arr = np.asarray(arrays[name], order="C")  # not ascontiguousarray: it turns 0-d into (1,)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        buffers.append(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(buffers)


def _decode(blob: bytes, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < 8:
        raise PayloadRejected("payload truncated: shorter than a safetensors header")
    header_len = int.from_bytes(blob[:8], "little")
    if header_len > len(blob) - 8:
        raise PayloadRejected(f"payload truncated: header claims {header_len} bytes, {len(blob) - 8} present")
    data = bytes(blob)
    try:
        tensors = st_load(data)
        raw = _read_metadata(data, header_len)
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise PayloadRejected(f"payload is not valid safetensors: {exc}") from exc
    version = raw.get(PROTOCOL_KEY, raw.get("protocol"))  # protocol 1 named it "protocol"
    if version != PROTOCOL_VERSION:
        raise PayloadRejected(f"protocol version {version!r}, this build speaks {PROTOCOL_VERSION!r}; "
                              f"upgrade the sender (docs/wire-protocol.md)")
    if raw.get(KIND_KEY) != KINDS[kind]:
        named = {v: k for k, v in KINDS.items()}.get(raw.get(KIND_KEY, ""), raw.get(KIND_KEY))
        raise PayloadRejected(f"payload kind {named!r} where {kind!r} was expected")
    allowed = _allowed_dtypes(raw.get("e"))
    for name, arr in tensors.items():
        if arr.dtype not in allowed:
            raise PayloadRejected(f"tensor {name} has dtype {arr.dtype}, expected {' or '.join(map(str, allowed))}")
        if not np.all(np.isfinite(arr)):
            raise PayloadRejected(f"tensor {name} contains NaN or infinity")
    if tensor_checksum(tensors) != raw.get(CHECKSUM_KEY):
        raise PayloadRejected("checksum mismatch: tensors were altered or corrupted in transit")
    return tensors, raw


def _read_metadata(blob: bytes, header_len: int) -> dict[str, str]:
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    return dict(header.get("__metadata__", {}))


def _meta_from(cls: type[MetaT], raw: dict[str, str]) -> MetaT:
    values = {}
    keys = METADATA_KEYS[cls]
    for f in fields(cls):
        key = keys[f.name]
        if key not in raw:
            if f.default is not MISSING:
                continue
            raise PayloadRejected(f"metadata field {f.name!r} (key {key!r}) missing")
        try:
            values[f.name] = {"int": int, "float": float}.get(str(f.type), str)(raw[key])
        except ValueError as exc:
            raise PayloadRejected(f"metadata field {f.name!r} (key {key!r}) unreadable: {raw[key]!r}") from exc
    return cls(**values)
