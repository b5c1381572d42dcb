"""What the devices of one process share: one copy of each shard and student program, one interpreter of
each per thread, and the broadcasts every device receives alike, verified and decoded once.

A device holds one shard and one student; a simulator process hosting thousands of devices would
otherwise hold thousands of copies of the same few artefacts (100 kB each) and build an interpreter
per device (0.2 MB each). Interpreters are not thread-safe, so each thread gets its own; a device
sets its weights before every use, so any device may use the one its thread holds.

The global model, its step and the artefacts reach every device as the same signed bytes. `opened`
verifies such an envelope once per process: an envelope is looked up by the pinned key, the topic and
the SHA-256 of all its bytes (signature included), so a hit is what verifying those bytes again would
give, and a forged or altered envelope is never a hit (a failure is not kept). `shared` keeps one
derived value (a dequantised step) per key. Both hold the last CACHED_BROADCASTS entries; a real device,
alone in its process, gains nothing and loses nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.shard_runtime import ShardRunner
from edge.signed_artifact import Opened, open_envelope
from edge.student_runtime import TrainableStudent

T = TypeVar("T")
CACHED_BROADCASTS = 64  # a round's model, step and result, and the artefacts of a few plans, with room to spare


class ArtifactCache:
    """Interned artefact bytes by content hash, and per-thread interpreters built from them."""

    def __init__(self) -> None:
        self._bytes: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._broadcasts: OrderedDict[Hashable, Any] = OrderedDict()

    def intern(self, digest: str, data: bytes) -> bytes:
        """The process's one copy of the artefact whose content hash is `digest` (`data` if it is the first)."""
        with self._lock:
            return self._bytes.setdefault(digest, data)

    def student(self, digest: str, program: bytes) -> TrainableStudent:
        """This thread's interpreter of the student program `program` (content hash `digest`)."""
        return self._interpreter("students", digest, lambda: TrainableStudent.from_bytes(program))

    def shard(self, digest: str, shard: bytes) -> ShardRunner:
        """This thread's interpreter of the shard `shard` (content hash `digest`)."""
        return self._interpreter("shards", digest, lambda: ShardRunner.from_bytes(shard))

    def opened(self, public_key: Ed25519PublicKey, topic: str, envelope: bytes) -> Opened:
        """open_envelope(public_key, topic, envelope), verified once per process for the same key, topic and bytes;
        SignatureRejected as open_envelope raises it."""
        key = ("opened", public_key.public_bytes_raw(), topic, hashlib.sha256(envelope).digest())
        return self.shared(key, lambda: open_envelope(public_key, topic, envelope))

    def shared(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value `build` gives for `key`, built once while it stays among the last CACHED_BROADCASTS (an
        exception from build is raised and nothing is kept). Callers must not modify it."""
        with self._lock:
            if key in self._broadcasts:
                self._broadcasts.move_to_end(key)
                return self._broadcasts[key]
        value = build()  # outside the lock: two threads may both build a value, the same one
        with self._lock:
            self._broadcasts[key] = value
            while len(self._broadcasts) > CACHED_BROADCASTS:
                self._broadcasts.popitem(last=False)
        return value

    def _interpreter(self, kind: str, digest: str, build: Callable[[], T]) -> T:
        held: dict[str, Any] | None = getattr(self._local, kind, None)
        if held is None:
            held = {}
            setattr(self._local, kind, held)
        if digest not in held:
            held[digest] = build()
        return held[digest]
