"""Chunking: bounded chunks, bit-exact reassembly in any order, every corruption named."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edge.chunking import (
    FRAMING_VERSION,
    HEADER,
    MAGIC,
    ChunkAssembler,
    ChunkError,
    message_key,
    parse_chunk,
    split_message,
)

LIMIT = 1024


def _payload(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes()


def _body_capacity(message_id: str, limit: int) -> int:
    """Payload bytes one chunk carries at this limit (for payload lengths of 3 digits, as the header
    includes the total length)."""
    _, body = parse_chunk(split_message(b"\0" * 999, message_id, limit)[0])
    return len(body)


def _reassemble(chunks: list[bytes]) -> list[bytes]:
    assembler = ChunkAssembler()
    return [out for out in (assembler.add(c) for c in chunks) if out is not None]


@pytest.mark.parametrize("size", [0, 1, LIMIT, 3 * LIMIT + 7], ids=["empty", "one-byte", "limit", "3limit+7"])
def test_split_then_shuffled_reassembly_is_bit_exact(size: int) -> None:
    payload = _payload(size, seed=size)
    chunks = split_message(payload, "msg-1", LIMIT)
    assert all(len(c) <= LIMIT for c in chunks)
    order = np.random.default_rng(7).permutation(len(chunks))
    assert _reassemble([chunks[i] for i in order]) == [payload]


def test_payload_exactly_filling_one_chunk_stays_one_chunk_at_the_limit() -> None:
    capacity = _body_capacity("m", LIMIT)
    assert 100 <= capacity < 999
    exact = _payload(capacity, seed=1)
    one = split_message(exact, "m", LIMIT)
    assert len(one) == 1 and len(one[0]) <= LIMIT
    two = split_message(exact + b"x", "m", LIMIT)
    assert len(two) == 2 and all(len(c) <= LIMIT for c in two)
    assert _reassemble(one) == [exact]
    assert _reassemble(two[::-1]) == [exact + b"x"]


def test_every_chunk_fits_the_limit_even_with_many_chunks_and_wide_indices() -> None:
    payload = _payload(2000 * 600, seed=3)  # > 1000 chunks at the minimum limit: 4-digit indices
    chunks = split_message(payload, "wide", 512)
    assert len(chunks) > 1000
    assert max(len(c) for c in chunks) <= 512
    assert _reassemble(chunks[::-1]) == [payload]


def test_two_interleaved_shuffled_messages_both_reassemble_bit_exact() -> None:
    a, b = _payload(5 * LIMIT + 3, seed=11), _payload(2 * LIMIT + 900, seed=12)
    chunks = split_message(a, "a", LIMIT) + split_message(b, "b", LIMIT)
    order = np.random.default_rng(5).permutation(len(chunks))
    out = _reassemble([chunks[i] for i in order])
    assert sorted(out) == sorted([a, b])
    assert len(out) == 2


def test_message_is_returned_only_when_its_last_chunk_arrives() -> None:
    chunks = split_message(_payload(3 * LIMIT, seed=2), "m", LIMIT)
    assembler = ChunkAssembler()
    assert [assembler.add(c) for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert assembler.add(chunks[-1]) is not None


def test_corrupted_body_fails_the_sha256_check() -> None:
    chunks = split_message(_payload(3 * LIMIT, seed=4), "m", LIMIT)
    bad = bytearray(chunks[1])
    bad[-1] ^= 0xFF
    chunks[1] = bytes(bad)
    with pytest.raises(ChunkError, match="sha256"):
        _reassemble(chunks)


def test_bad_magic_is_rejected() -> None:
    chunk = split_message(b"hello", "m", LIMIT)[0]
    with pytest.raises(ChunkError, match="bad magic"):
        parse_chunk(b"XXXXXXXX" + chunk[len(MAGIC):])


@pytest.mark.parametrize("cut", [len(MAGIC) + 1, HEADER.size - 1], ids=["after-version", "inside-hash"])
def test_truncated_header_is_rejected(cut: int) -> None:
    chunk = split_message(b"hello", "m", LIMIT)[0]
    with pytest.raises(ChunkError, match="truncated"):
        ChunkAssembler().add(chunk[:cut])


def _forge(message_id: str, index: int, count: int, total: int, sha: str, body: bytes,
           version: int = FRAMING_VERSION) -> bytes:
    return HEADER.pack(MAGIC, version, message_key(message_id), index, count, total, bytes.fromhex(sha)) + body


def test_chunk_header_is_the_documented_37_byte_struct() -> None:
    """docs/wire-protocol.md: magic, version, id, index, count, length big-endian, sha256[:16] of the message."""
    payload = _payload(2500, seed=3)
    first = split_message(payload, "abc", LIMIT)[0]
    assert HEADER.size == 37
    assert first[:5] == b"DMCK\x02"
    assert first[5:13] == hashlib.sha256(b"abc").digest()[:8]
    assert first[13:21] == (0).to_bytes(2, "big") + (3).to_bytes(2, "big") + (2500).to_bytes(4, "big")
    assert first[21:37] == hashlib.sha256(payload).digest()[:16]
    assert first[37:] == payload[:LIMIT - 37]


def test_chunk_disagreeing_with_earlier_chunks_on_count_is_rejected() -> None:
    chunks = split_message(_payload(3 * LIMIT, seed=6), "m", LIMIT)
    header, body = parse_chunk(chunks[1])
    liar = _forge("m", header.index, header.count + 1, header.total_length, header.sha256, body)
    assembler = ChunkAssembler()
    assert assembler.add(chunks[0]) is None
    with pytest.raises(ChunkError, match="disagrees"):
        assembler.add(liar)


def test_chunk_index_outside_its_count_is_rejected() -> None:
    with pytest.raises(ChunkError, match="outside"):
        parse_chunk(_forge("m", 3, 3, 10, "0" * 32, b"x"))


def test_zero_count_is_rejected() -> None:
    with pytest.raises(ChunkError, match="outside"):
        parse_chunk(_forge("m", 0, 0, 10, "0" * 32, b"x"))


def test_chunk_of_another_framing_version_is_rejected_naming_it() -> None:
    with pytest.raises(ChunkError, match="framing version 1, this build speaks 2"):
        parse_chunk(_forge("m", 0, 1, 1, "0" * 32, b"x", version=1))


def test_protocol_1_json_chunk_is_rejected() -> None:
    header = b'{"id":"m","i":0,"n":1,"len":1,"sha256":"00"}'
    with pytest.raises(ChunkError, match="protocol 1's JSON framing"):
        parse_chunk(b"DMSKDCH1" + len(header).to_bytes(4, "big") + header + b"x")


def test_message_larger_than_the_assembler_allows_is_rejected() -> None:
    chunks = split_message(_payload(3 * LIMIT, seed=8), "m", LIMIT)
    with pytest.raises(ChunkError, match="exceeds"):
        ChunkAssembler(max_message_bytes=LIMIT).add(chunks[0])


def test_limit_below_512_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 512"):
        split_message(b"x", "m", 100)


# --- bounded reassembly memory (issue 10): count the bytes stored, evict the oldest partial messages ---

KIB = 1024


def first_chunk_of(size: int, message_id: str, chunk_limit: int = 64 * KIB) -> bytes:
    """The first chunk of a `size`-byte message that will never complete."""
    return split_message(_payload(size, 0), message_id, chunk_limit)[0]


def test_a_flood_of_partial_messages_on_many_streams_stays_within_the_total_limit() -> None:
    evicted: list[tuple[str, str]] = []
    assembler = ChunkAssembler(max_total_bytes=1024 * KIB, on_evict=lambda s, r: evicted.append((s, r)))
    for i in range(500):  # 500 streams x 64 KiB stored: 31 MiB without a bound
        assert assembler.add(first_chunk_of(1024 * KIB, f"m{i}"), stream=f"round/0/update/x{i}") is None
        assert assembler.stored_bytes <= 1024 * KIB
    assert assembler.evictions["reassembly memory over its total limit"] == len(evicted) > 400
    assert "evicted: reassembly memory over its total limit" in evicted[0][1]
    honest = _payload(200 * KIB, 7)
    out = [assembler.add(c, stream="model/3") for c in split_message(honest, "h", 64 * KIB)]
    assert out[-1] == honest and all(o is None for o in out[:-1])


def test_one_stream_over_its_limits_evicts_its_own_partial_messages_not_anothers() -> None:
    assembler = ChunkAssembler(max_stream_bytes=256 * KIB, max_stream_pending=2)
    assembler.add(first_chunk_of(512 * KIB, "victim"), stream="update/a")
    for i in range(20):
        assembler.add(first_chunk_of(512 * KIB, f"flood{i}"), stream="update/b")
    assert assembler.pending_streams() == {"update/a": 1, "update/b": 2}
    assert assembler.evictions["too many partial messages on one stream"] >= 18


def test_chunks_that_carry_more_bytes_than_their_message_declares_are_refused() -> None:
    body = b"x" * 4096
    forged = _forge("liar", 0, 2, 10, "0" * 32, body)
    assembler = ChunkAssembler()
    with pytest.raises(ChunkError, match="carry more bytes than the 10 it declares"):
        assembler.add(forged, stream="update/a")
    assert assembler.stored_bytes == 0


def test_the_same_message_id_on_two_streams_does_not_mix(tmp_path) -> None:
    a, b = _payload(3000, 1), _payload(3000, 2)
    ca, cb = split_message(a, "same", LIMIT), split_message(b, "same", LIMIT)
    assembler = ChunkAssembler()
    outs = [assembler.add(x, stream="s1") for x in ca[:-1]] + [assembler.add(y, stream="s2") for y in cb[:-1]]
    assert all(o is None for o in outs)
    assert assembler.add(ca[-1], stream="s1") == a and assembler.add(cb[-1], stream="s2") == b
