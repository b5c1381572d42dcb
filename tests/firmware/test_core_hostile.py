"""Hostile input never trips AddressSanitizer or UBSan in the core: fuzzed and random update blobs, mutated
chunks and envelopes, broken plans, all through a sanitized build that aborts on the first finding."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from edge.chunking import split_message
from edge.plan import DevicePlan
from edge.signed_artifact import generate_signing_key, public_pem, sign
from simulator import malformed_updates as mu
from simulator.payload_fuzz import RandomChooser, generate


def survives(cli: Path, *args: str | Path) -> int:
    """Run the sanitized driver; its exit code, which must be a verdict (0 accepted, 2 refused), never a crash."""
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}  # the driver exits early on refusals; the core has no heap
    done = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode in (0, 2), (args, done.returncode, done.stderr[-3000:])
    return done.returncode


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """A random edit: bit flips, a cut, inserted or overwritten bytes."""
    b = bytearray(data)
    choice = int(rng.integers(0, 4))
    if choice == 0 and b:
        for i in rng.integers(0, len(b), int(rng.integers(1, 8))):
            b[int(i)] ^= 1 << int(rng.integers(0, 8))
    elif choice == 1:
        b = b[:int(rng.integers(0, len(b) + 1))]
    elif choice == 2:
        at = int(rng.integers(0, len(b) + 1))
        b[at:at] = rng.bytes(int(rng.integers(1, 40)))
    elif b:
        at = int(rng.integers(0, len(b)))
        b[at:at + 8] = rng.bytes(8)
    return bytes(b)


def test_fuzzed_update_blobs_are_only_ever_accepted_or_refused(sanitized_cli: Path, tmp_path: Path) -> None:
    chooser = RandomChooser(np.random.default_rng(7))
    rng = np.random.default_rng(8)
    template = [a for name, shape in mu.TEMPLATE.items() for a in ("--tensor", f"{name}:{','.join(map(str, shape))}")]
    verdicts = set()
    for i in range(300):
        blob = generate(chooser).blob if i % 4 else rng.bytes(int(rng.integers(0, 400)))
        (tmp_path / "b.st").write_bytes(blob)
        kind = {1: "weights", 2: "step"}.get(i % 7, "update")
        verdicts.add(survives(sanitized_cli, "decode", kind, tmp_path / "b.st", *template, "--accept",
                              "float32-delta,sq8-delta", "--values-out", tmp_path / "v.f32"))
    assert verdicts == {0, 2}


def test_mutated_chunks_are_only_ever_joined_or_refused(sanitized_cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    chunks = split_message(rng.bytes(3000), "m", 512)
    paths = []
    for i in range(200):
        path = tmp_path / f"c{i}.chunk"
        path.write_bytes(mutate(chunks[i % len(chunks)], rng) if i % 4 else chunks[i % len(chunks)])
        paths.append(path)
    survives(sanitized_cli, "join", "--slots", "2", "--capacity", "4096", "--limit", "512", "--pending", "1",
             "--out-dir", tmp_path, *paths)


def test_mutated_envelopes_and_plans_are_only_ever_accepted_or_refused(sanitized_cli: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    key = generate_signing_key()
    (tmp_path / "k.pub").write_bytes(public_pem(key.public_key()))
    envelope = sign(key, "t", 3, b"payload" * 20)
    paths = []
    for i in range(100):
        (tmp_path / f"e{i}").write_bytes(mutate(envelope, rng))
        paths.append(tmp_path / f"e{i}")
    survives(sanitized_cli, "verify", "--key", tmp_path / "k.pub", "--topic", "t", *paths)
    plan = DevicePlan(fleet="f", device="d", shard_id="s", shard_hash="h", student_hash="h", rounds=3).to_json()
    for _ in range(100):
        (tmp_path / "p.json").write_bytes(mutate(plan, rng))
        survives(sanitized_cli, "plan", tmp_path / "p.json")
