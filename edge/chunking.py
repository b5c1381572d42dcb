"""Split large MQTT payloads into bounded chunks and reassemble them with a hash check.

A logical message published on topic T travels as chunks on T/<index>. Each chunk is a fixed
37-byte binary header followed by a slice of the payload (docs/wire-protocol.md, "Chunk"):

    offset size field
    0      4    magic b"DMCK"
    4      1    framing version (2: edge.wire.PROTOCOL_VERSION)
    5      8    message id (the first 8 bytes of sha256 of the sender's id string)
    13     2    index, big-endian, 0 <= index < count
    15     2    count, big-endian, >= 1
    17     4    total length of the whole message, big-endian
    21     16   the first 16 bytes of sha256 of the whole message

The hash is 128 bits: it detects corruption and chunks of two messages mixed under one id; it is not
authentication (signed artifacts carry Ed25519 signatures, updates the broker's ACL and the inbox's checks).
At 128 bits an accidental match is 2^-128 and a second message colliding with a given one costs 2^128
hash evaluations (2^64 to make any two collide), for 8 bytes more than 64 bits would cost. No pickle,
nothing executable.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAGIC = b"DMCK"
FRAMING_VERSION = 2
PROTOCOL_1_MAGIC = b"DMSKDCH1"  # what protocol 1 chunks began with: named in their rejection
DEFAULT_CHUNK_LIMIT = 128 * 1024  # AWS IoT Core's MQTT message cap
MIN_FLEET_CHUNK_LIMIT = 1024  # the smallest fleet chunk limit: below it the framing dominates (firmware, bundles)
HEADER = struct.Struct(">4sB8sHHI16s")  # magic, version, message id, index, count, total length, sha256[:16]
HASH_BYTES = 16
MAX_CHUNKS = 0xFFFF


class ChunkError(ValueError):
    """A chunk that cannot be part of any valid message (bad framing, hash, or count)."""


@dataclass(frozen=True)
class ChunkHeader:
    """Where a chunk sits in its message and how to check the whole (message id and hash as hex)."""

    message_id: str
    index: int
    count: int
    total_length: int
    sha256: str


def message_key(message_id: str) -> bytes:
    """The 8 bytes a message id travels as: the first 8 bytes of sha256 of its UTF-8 text."""
    return hashlib.sha256(message_id.encode("utf-8")).digest()[:8]


def split_message(payload: bytes, message_id: str, limit: int = DEFAULT_CHUNK_LIMIT) -> list[bytes]:
    """Cut payload into chunks whose encoded size (header included) is at most limit bytes."""
    if limit < 512:
        raise ValueError(f"chunk limit {limit} is too small; use at least 512 bytes")
    if not 0 < len(message_id) <= 64:
        raise ValueError(f"message id must be 1..64 characters, got {len(message_id)}")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError(f"message of {len(payload)} bytes exceeds the 4 GiB a chunk header can state")
    digest = hashlib.sha256(payload).digest()[:HASH_BYTES]
    key = message_key(message_id)
    body = limit - HEADER.size
    count = max(1, -(-len(payload) // body))
    if count > MAX_CHUNKS:
        raise ValueError(f"message of {len(payload)} bytes needs {count} chunks, more than {MAX_CHUNKS}; "
                         f"raise the chunk limit")
    return [HEADER.pack(MAGIC, FRAMING_VERSION, key, i, count, len(payload), digest)
            + payload[i * body:(i + 1) * body] for i in range(count)]


def parse_chunk(chunk: bytes) -> tuple[ChunkHeader, bytes]:
    """Read a chunk's header and body, or raise ChunkError naming what is wrong."""
    if chunk.startswith(PROTOCOL_1_MAGIC):
        raise ChunkError(f"chunk in protocol 1's JSON framing (magic {PROTOCOL_1_MAGIC.decode()}); this build speaks "
                         f"framing version {FRAMING_VERSION}: upgrade the sender")
    if not chunk.startswith(MAGIC):
        raise ChunkError("not a DMSKD chunk (bad magic); publish with edge.chunking.split_message")
    if len(chunk) < HEADER.size:
        raise ChunkError(f"chunk truncated inside its {HEADER.size}-byte header ({len(chunk)} bytes)")
    _, version, key, index, count, total, digest = HEADER.unpack_from(chunk)
    if version != FRAMING_VERSION:
        raise ChunkError(f"chunk framing version {version}, this build speaks {FRAMING_VERSION}; "
                         f"upgrade the sender or this runtime")
    if not index < count:
        raise ChunkError(f"chunk index {index} outside 0..{count - 1}")
    return ChunkHeader(key.hex(), index, count, total, digest.hex()), chunk[HEADER.size:]


@dataclass
class _Pending:
    header: ChunkHeader
    parts: dict[int, bytes] = field(default_factory=dict)
    stored: int = 0  # bytes held, counted as stored, not as declared
    started: float = field(default_factory=time.monotonic)


EvictionHandler = Callable[[str, str], None]


class ChunkAssembler:
    """Collects chunks of many interleaved messages per stream (a logical topic); returns each message once whole.

    Memory is bounded by what is stored, not by what chunks declare: at most `max_stream_bytes` and
    `max_stream_pending` partial messages per stream, `max_total_bytes` over all of them; a chunk that
    would exceed a bound evicts the oldest partial messages (of its own stream first), each eviction
    counted by reason in `evictions` and reported to `on_evict(stream, reason)`. Totals are kept as
    running counts and messages in arrival order, so a chunk costs O(1) however many are pending."""

    def __init__(self, max_message_bytes: int = 16 * 1024 * 1024, max_stream_bytes: int = 16 * 1024 * 1024,
                 max_total_bytes: int = 32 * 1024 * 1024, max_stream_pending: int = 4, ttl_s: float = 600.0,
                 on_evict: EvictionHandler | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_stream_bytes = max_stream_bytes
        self.max_total_bytes = max_total_bytes
        self.max_stream_pending = max_stream_pending
        self.ttl_s = ttl_s
        self.on_evict = on_evict
        self.evictions: Counter[str] = Counter()
        self.stored_bytes = 0  # bytes held in partial messages, over every stream
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()  # oldest first
        self._streams: dict[str, OrderedDict[str, None]] = {}  # stream -> its message ids, oldest first
        self._stream_bytes: Counter[str] = Counter()

    def pending_streams(self) -> dict[str, int]:
        """How many partial messages each stream holds."""
        return {stream: len(ids) for stream, ids in self._streams.items()}

    def add(self, chunk: bytes, stream: str = "") -> bytes | None:
        """Feed one chunk of `stream`; return the full payload when its last chunk arrives, else None."""
        header, body = parse_chunk(chunk)
        if header.total_length > self.max_message_bytes:
            raise ChunkError(f"message of {header.total_length} bytes exceeds the {self.max_message_bytes} byte limit")
        self._expire()
        key = (stream, header.message_id)
        pending = self._pending.get(key)
        if pending is not None and (pending.header.count, pending.header.sha256) != (header.count, header.sha256):
            self._drop(key)
            raise ChunkError(f"chunk of message {header.message_id} disagrees with earlier chunks (count or hash)")
        previous = pending.parts.get(header.index, b"") if pending is not None else b""
        grows = len(body) - len(previous)
        if (pending.stored if pending is not None else 0) + grows > header.total_length:
            if pending is not None:
                self._drop(key)
            raise ChunkError(f"chunks of message {header.message_id} carry more bytes than the "
                             f"{header.total_length} it declares")
        self._make_room(stream, key, new_message=pending is None, incoming=grows)
        if pending is None:
            pending = self._pending[key] = _Pending(header)
            self._streams.setdefault(stream, OrderedDict())[header.message_id] = None
        pending.parts[header.index] = body
        pending.stored += grows
        self._stream_bytes[stream] += grows
        self.stored_bytes += grows
        if len(pending.parts) < header.count:
            return None
        self._drop(key)
        payload = b"".join(pending.parts[i] for i in range(header.count))
        if len(payload) != header.total_length or hashlib.sha256(payload).digest()[:HASH_BYTES].hex() != header.sha256:
            raise ChunkError(f"message {header.message_id} failed its sha256 check after reassembly")
        return payload

    def _make_room(self, stream: str, keep: tuple[str, str], new_message: bool, incoming: int) -> None:
        """Evict the oldest partial messages (this stream's first) until `incoming` more bytes fit every bound."""
        own = self._streams.get(stream, OrderedDict())

        def oldest_own() -> tuple[str, str] | None:
            return next(((stream, m) for m in own if (stream, m) != keep), None)

        while new_message and len(own) >= self.max_stream_pending and (victim := oldest_own()) is not None:
            self._evict(victim, "too many partial messages on one stream")
        while self._stream_bytes[stream] + incoming > self.max_stream_bytes and (victim := oldest_own()) is not None:
            self._evict(victim, "stream over its byte limit")
        while self.stored_bytes + incoming > self.max_total_bytes:
            victim = next((k for k in self._pending if k != keep), None)
            if victim is None:
                break
            self._evict(victim, "reassembly memory over its total limit")

    def _drop(self, key: tuple[str, str]) -> _Pending:
        pending = self._pending.pop(key)
        ids = self._streams[key[0]]
        del ids[key[1]]
        if not ids:
            del self._streams[key[0]]
        self._stream_bytes[key[0]] -= pending.stored
        if self._stream_bytes[key[0]] <= 0:
            del self._stream_bytes[key[0]]
        self.stored_bytes -= pending.stored
        return pending

    def _evict(self, key: tuple[str, str], reason: str) -> None:
        pending = self._drop(key)
        self.evictions[reason] += 1
        if self.on_evict is not None:
            self.on_evict(key[0], f"partial message {key[1]!r} ({pending.stored} bytes) evicted: {reason}")

    def _expire(self) -> None:
        now = time.monotonic()
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            if now - oldest.started <= self.ttl_s:
                return
            self._evict(key, "incomplete after its time to live")

