"""The C chunker and reassembler against edge/chunking.py: identical chunks, reassembly both ways (also of
whole update blobs), the same refusals, and bounded memory under a flood of partial messages."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from edge.chunking import HEADER, MAGIC, ChunkAssembler, ChunkError, split_message
from edge.wire import decode_update, encode_update

from .core_driver import CliResult, decode, encode, run
from .test_core_blob import SHAPES, delta, meta


def c_chunks(cli: Path, tmp: Path, payload: bytes, message_id: str, limit: int) -> list[bytes]:
    out = tmp / f"chunks-{message_id}"
    out.mkdir(exist_ok=True)
    (tmp / "payload.bin").write_bytes(payload)
    result = run(cli, "chunk", tmp / "payload.bin", "--id", message_id, "--limit", str(limit), "--out-dir", out)
    assert result.ok, result.out
    return [(out / f"{i}.chunk").read_bytes() for i in range(result.out["count"])]


def c_join(cli: Path, tmp: Path, chunks: list[tuple[str, bytes]], slots: int = 4, capacity: int = 1 << 20,
           limit: int = 512, pending: int = 4) -> tuple[CliResult, list[bytes]]:
    """Feed (stream, chunk) pairs in order to one C assembler; its result and the messages it completed."""
    args: list[str | Path] = ["join", "--slots", str(slots), "--capacity", str(capacity), "--limit", str(limit),
                              "--pending", str(pending), "--out-dir", tmp]
    stream = None
    for i, (name, chunk) in enumerate(chunks):
        if name != stream:
            args += ["--stream", name]
            stream = name
        path = tmp / f"in{i}.chunk"
        path.write_bytes(chunk)
        args.append(path)
    result = run(cli, *args)
    assert result.ok, result.out
    messages = [Path(e["message"]).read_bytes() for e in result.out["events"] if isinstance(e, dict) and "message" in e]
    return result, messages


@pytest.mark.parametrize("size,limit", [(0, 512), (1, 512), (475, 512), (476, 512), (5000, 512), (70_000, 1024),
                                        (300_000, 131_072)])
def test_c_chunks_are_byte_identical_to_python(core_cli: Path, tmp_path: Path, size: int, limit: int) -> None:
    payload = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert c_chunks(core_cli, tmp_path, payload, "a1b2c3d4e5f60718", limit) == split_message(
        payload, "a1b2c3d4e5f60718", limit)


def test_c_joins_shuffled_interleaved_python_chunks_of_two_streams(core_cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.bytes(9000), rng.bytes(4000)
    feed = [("s/a", c) for c in split_message(a, "m1", 600)] + [("s/b", c) for c in split_message(b, "m1", 512)]
    order = rng.permutation(len(feed))
    result, messages = c_join(core_cli, tmp_path, [feed[i] for i in order])
    assert sorted(messages) == sorted([a, b])
    events = result.out["events"]
    assert events.count("pending") == len(feed) - 2 and result.out["evictions"] == 0


def test_python_joins_c_chunks(core_cli: Path, tmp_path: Path) -> None:
    payload = np.random.default_rng(2).bytes(20_000)
    chunks = c_chunks(core_cli, tmp_path, payload, "c0ffee", 700)
    assembler = ChunkAssembler()
    got = [assembler.add(c, "t") for c in reversed(chunks)]
    assert got[:-1] == [None] * (len(chunks) - 1) and got[-1] == payload


@pytest.mark.parametrize("encoding", ["float32-delta", "sq4-delta"])
def test_chunked_update_blobs_both_ways(core_cli: Path, tmp_path: Path, encoding: str) -> None:
    from .core_driver import rounding_words

    d, m = delta(12), meta(encoding)
    params = sum(int(np.prod(s, dtype=np.int64)) for s in SHAPES.values())
    c_blob = encode(core_cli, tmp_path, d, m, entropy=rounding_words(12, params))
    assembler = ChunkAssembler()
    joined = [assembler.add(c, "u") for c in c_chunks(core_cli, tmp_path, c_blob, "up1", 512)][-1]
    assert joined is not None
    _, got = decode_update(joined, encodings=(encoding,))
    assert got == m
    py_blob = encode_update(d, meta("float32-delta"))
    _, messages = c_join(core_cli, tmp_path, [("u", c) for c in split_message(py_blob, "up2", 512)])
    assert messages == [py_blob]
    result, values = decode(core_cli, tmp_path, "update", messages[0], template=SHAPES)
    assert result.ok and values is not None and values["odd"].tobytes() == d["odd"].tobytes()


def _refusal(core_cli: Path, tmp_path: Path, chunks: list[bytes], capacity: int = 1 << 20) -> dict:
    result, _ = c_join(core_cli, tmp_path, [("t", c) for c in chunks], capacity=capacity)
    refused = [e for e in result.out["events"] if isinstance(e, dict) and "rejected" in e]
    assert refused and all(e["rejected"] == "chunk_rejected" for e in refused), result.out
    return refused[0]


def _python_refusal(chunks: list[bytes], max_message_bytes: int = 16 << 20) -> str:
    assembler = ChunkAssembler(max_message_bytes=max_message_bytes)
    with pytest.raises(ChunkError) as refused:
        for c in chunks:
            assembler.add(c, "t")
    return str(refused.value)


def _two_message_mix() -> list[bytes]:
    first = split_message(b"x" * 2000, "same", 512)
    other = split_message(b"y" * 3000, "same", 512)
    return [first[0], other[1]]


def _corrupted() -> list[bytes]:
    chunks = split_message(bytes(range(256)) * 8, "m", 512)
    chunks[1] = chunks[1][:-1] + bytes([chunks[1][-1] ^ 1])
    return chunks


def _too_long() -> list[bytes]:
    header = HEADER.pack(MAGIC, 2, b"\0" * 8, 0, 2, 10, hashlib.sha256(b"").digest()[:16])
    return [header + b"a" * 11]


def _framing(version: int) -> list[bytes]:
    c = bytearray(split_message(b"abc", "m", 512)[0])
    c[4] = version
    return [bytes(c)]


def _index(index: int, count: int) -> list[bytes]:
    c = bytearray(split_message(b"abc", "m", 512)[0])
    struct.pack_into(">HH", c, 13, index, count)
    return [bytes(c)]


REFUSALS = {
    "bad-magic": (lambda: [b"XXXX" + split_message(b"abc", "m", 512)[0][4:]], "bad magic"),
    "truncated-header": (lambda: [split_message(b"abc", "m", 512)[0][:20]], "truncated"),
    "other-framing-version": (lambda: _framing(1), "framing version 1, this build speaks 2"),
    "protocol-1-json-chunk": (lambda: [b'DMSKDCH1{"index": 0}'], "protocol 1's JSON framing"),
    "index-outside-count": (lambda: _index(3, 2), "outside"),
    "zero-count": (lambda: _index(0, 0), "outside"),
    "disagreeing-chunks": (_two_message_mix, "disagrees"),
    "corrupted-body": (_corrupted, "sha256"),
    "more-bytes-than-declared": (_too_long, "carry more bytes than the 10 it declares"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_c_assembler_refuses_what_python_refuses(core_cli: Path, tmp_path: Path, name: str) -> None:
    build, detail = REFUSALS[name]
    chunks = build()
    assert detail in _python_refusal(chunks)
    assert detail in _refusal(core_cli, tmp_path, chunks)["detail"]


def test_message_above_the_capacity_is_refused(core_cli: Path, tmp_path: Path) -> None:
    chunks = split_message(b"z" * 5000, "big", 512)
    assert "exceeds" in _python_refusal(chunks, max_message_bytes=4096)
    assert "exceeds the 4096 byte limit" in _refusal(core_cli, tmp_path, chunks, capacity=4096)["detail"]


def test_a_flood_of_partial_messages_stays_in_fixed_memory_and_evicts(core_cli: Path, tmp_path: Path) -> None:
    feed = []
    for i in range(60):  # first chunks only: none ever completes
        feed.append((f"stream{i % 7}", split_message(np.random.default_rng(i).bytes(3000), f"m{i}", 512)[0]))
    whole = np.random.default_rng(99).bytes(1500)
    feed += [("late", c) for c in split_message(whole, "ok", 512)]
    result, messages = c_join(core_cli, tmp_path, feed, slots=3, capacity=4096, pending=2)
    assert messages == [whole]  # a complete message still gets through the flood
    assert result.out["evictions"] == 60 - 3 + 1  # every partial message beyond the 3 slots evicted an older one
    assert result.out["memory"] < 3 * 4096 + 64  # the memory is fixed by slots x capacity, whatever arrives


def test_a_one_chunk_message_takes_no_slot_so_two_slots_keep_two_partial_messages(core_cli: Path,
                                                                                  tmp_path: Path) -> None:
    """A meter's 2 slots hold the model and the step; the cohort notices and plans between their chunks
    (one chunk each) pass without evicting either."""
    rng = np.random.default_rng(7)
    model, step, notice, tampered = rng.bytes(3000), rng.bytes(1200), rng.bytes(300), bytearray(rng.bytes(300))
    cm, cs = split_message(model, "model", 512), split_message(step, "step", 512)
    one = split_message(notice, "notice", 512)
    bad = split_message(bytes(tampered), "bad", 512)[0][:-1] + b"\x00"  # its body no longer matches its hash
    feed = [("model", cm[0]), ("step", cs[0]), ("cohort", one[0]), ("cohort", bad), *[("model", c) for c in cm[1:]],
            *[("step", c) for c in cs[1:]]]
    result, messages = c_join(core_cli, tmp_path, feed, slots=2, capacity=4096, pending=2)
    assert messages == [notice, model, step]
    assert (result.out["evictions"], result.out["peak"]) == (0, 2)
    assert any(isinstance(e, dict) and "sha256" in e.get("detail", "") for e in result.out["events"]), result.out


def test_the_same_message_id_on_two_streams_does_not_mix(core_cli: Path, tmp_path: Path) -> None:
    a, b = b"A" * 1000, b"B" * 1000
    ca, cb = split_message(a, "shared", 512), split_message(b, "shared", 512)
    _, messages = c_join(core_cli, tmp_path, [("one", ca[0]), ("two", cb[0]), ("one", ca[1]), ("two", cb[1]),
                                               ("one", ca[2]), ("two", cb[2])])
    assert messages == [a, b]


def test_partial_messages_expire_after_their_time_to_live(core_cli: Path, tmp_path: Path) -> None:
    late = split_message(np.random.default_rng(5).bytes(1500), "late", 512)
    quick = split_message(np.random.default_rng(6).bytes(1500), "quick", 512)
    for i, c in enumerate([*late, *quick]):
        (tmp_path / f"x{i}.chunk").write_bytes(c)
    n = len(late)

    def feed(*items: str | Path) -> dict:
        result = run(core_cli, "join", "--slots", "4", "--capacity", "4096", "--limit", "512", "--pending", "4",
                     "--ttl-ms", "600000", "--out-dir", tmp_path, *items)
        assert result.ok, result.out
        return result.out

    # "late" starts at t=0 and its last chunk comes at t=600,001 ms: it was dropped, its rest waits again
    out = feed("--at", "0", tmp_path / "x0.chunk", "--at", "600001",
               *[tmp_path / f"x{i}.chunk" for i in range(1, n)])
    assert out["expirations"] == 1 and not any(isinstance(e, dict) and "message" in e for e in out["events"])
    # "quick" completes within its time to live, while "late" is pending beside it
    quick_chunks = [tmp_path / f"x{i}.chunk" for i in range(n, 2 * n)]
    out = feed("--at", "0", tmp_path / "x0.chunk", "--at", "599999", *quick_chunks)
    assert out["expirations"] == 0 and sum(isinstance(e, dict) and "message" in e for e in out["events"]) == 1
