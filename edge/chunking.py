"""Split large MQTT payloads into bounded chunks and reassemble them with a hash check.

A logical message published on topic T travels as chunks on T/<index>. Each chunk is
self-describing: a fixed magic, a JSON header (message id, index, count, total length,
sha256 of the whole payload) and a slice of the payload. No pickle, nothing executable.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass, field

MAGIC = b"DMSKDCH1"
DEFAULT_CHUNK_LIMIT = 128 * 1024  # AWS IoT Core's MQTT message cap
_HEADER_LEN = struct.Struct(">I")
_MAX_HEADER = 1024


class ChunkError(ValueError):
    """A chunk that cannot be part of any valid message (bad framing, hash, or count)."""


@dataclass(frozen=True)
class ChunkHeader:
    """Where a chunk sits in its message and how to check the whole."""

    message_id: str
    index: int
    count: int
    total_length: int
    sha256: str


def split_message(payload: bytes, message_id: str, limit: int = DEFAULT_CHUNK_LIMIT) -> list[bytes]:
    """Cut payload into chunks whose encoded size (header included) is at most limit bytes."""
    if limit < 512:
        raise ValueError(f"chunk limit {limit} is too small; use at least 512 bytes")
    if not 0 < len(message_id) <= 64:
        raise ValueError(f"message id must be 1..64 characters, got {len(message_id)}")
    digest = hashlib.sha256(payload).hexdigest()
    probe = _encode_header(ChunkHeader(message_id, 0, 1, len(payload), digest))
    body = limit - len(MAGIC) - _HEADER_LEN.size - len(probe) - 16  # room for wider numbers
    count = max(1, -(-len(payload) // body))
    chunks = []
    for i in range(count):
        header = _encode_header(ChunkHeader(message_id, i, count, len(payload), digest))
        chunks.append(MAGIC + _HEADER_LEN.pack(len(header)) + header + payload[i * body:(i + 1) * body])
    return chunks


def parse_chunk(chunk: bytes) -> tuple[ChunkHeader, bytes]:
    """Read a chunk's header and body, or raise ChunkError naming what is wrong."""
    if not chunk.startswith(MAGIC):
        raise ChunkError("not a DMSKD chunk (bad magic); publish with edge.chunking.split_message")
    start = len(MAGIC) + _HEADER_LEN.size
    if len(chunk) < start:
        raise ChunkError("chunk truncated inside its header length")
    (hlen,) = _HEADER_LEN.unpack(chunk[len(MAGIC):start])
    if hlen > _MAX_HEADER or len(chunk) < start + hlen:
        raise ChunkError(f"chunk header length {hlen} is invalid or truncated")
    try:
        raw = json.loads(chunk[start:start + hlen].decode("utf-8"))
        header = ChunkHeader(str(raw["id"]), int(raw["i"]), int(raw["n"]), int(raw["len"]), str(raw["sha256"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ChunkError(f"chunk header unreadable: {exc}") from exc
    if not (0 <= header.index < header.count) or header.total_length < 0:
        raise ChunkError(f"chunk index {header.index} outside 0..{header.count - 1}")
    return header, chunk[start + hlen:]


@dataclass
class _Pending:
    header: ChunkHeader
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


class ChunkAssembler:
    """Collects chunks of many interleaved messages; returns each message once it is whole."""

    def __init__(self, max_message_bytes: int = 64 * 1024 * 1024, max_pending: int = 256, ttl_s: float = 600.0):
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self._pending: dict[str, _Pending] = {}

    def add(self, chunk: bytes) -> bytes | None:
        """Feed one chunk; return the full payload when its last chunk arrives, else None."""
        header, body = parse_chunk(chunk)
        if header.total_length > self.max_message_bytes:
            raise ChunkError(f"message of {header.total_length} bytes exceeds the {self.max_message_bytes} byte limit")
        self._expire()
        pending = self._pending.get(header.message_id)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].started)
                del self._pending[oldest]
            pending = self._pending[header.message_id] = _Pending(header)
        elif (pending.header.count, pending.header.sha256) != (header.count, header.sha256):
            del self._pending[header.message_id]
            raise ChunkError(f"chunk of message {header.message_id} disagrees with earlier chunks (count or hash)")
        pending.parts[header.index] = body
        if len(pending.parts) < header.count:
            return None
        del self._pending[header.message_id]
        payload = b"".join(pending.parts[i] for i in range(header.count))
        if len(payload) != header.total_length or hashlib.sha256(payload).hexdigest() != header.sha256:
            raise ChunkError(f"message {header.message_id} failed its sha256 check after reassembly")
        return payload

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._pending.items() if now - p.started > self.ttl_s]:
            del self._pending[key]


def _encode_header(h: ChunkHeader) -> bytes:
    return json.dumps({"id": h.message_id, "i": h.index, "n": h.count, "len": h.total_length, "sha256": h.sha256},
                      separators=(",", ":")).encode("utf-8")
