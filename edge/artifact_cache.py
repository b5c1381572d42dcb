"""One copy per process of each shard and student program, and one interpreter of each per thread.

A device holds one shard and one student; a simulator process hosting thousands of devices would
otherwise hold thousands of copies of the same few artefacts (100 kB each) and build an interpreter
per device (0.2 MB each). Interpreters are not thread-safe, so each thread gets its own; a device
sets its weights before every use, so any device may use the one its thread holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent

T = TypeVar("T")


class ArtifactCache:
    """Interned artefact bytes by content hash, and per-thread interpreters built from them."""

    def __init__(self) -> None:
        self._bytes: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

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

    def _interpreter(self, kind: str, digest: str, build: Callable[[], T]) -> T:
        held: dict[str, Any] | None = getattr(self._local, kind, None)
        if held is None:
            held = {}
            setattr(self._local, kind, held)
        if digest not in held:
            held[digest] = build()
        return held[digest]
