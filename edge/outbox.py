"""A device's on-disk outbox: the updates it sent and has not seen acknowledged, in one file that is never deleted.

One file per device, `<outbox>/<device>/pending.outbox`: the magic `DMSKDOB1`, then one record per update,
each its round and length as 8-byte big-endian integers and the update's bytes. Sending appends a record;
an acknowledgement empties the file (truncating it in place) or, with other updates still pending, replaces
it with their records. A file per round, created and unlinked every round, cost the device host more than
the training: ext4 searches its inode bitmap past every recently deleted inode for each new file (a
simulator hosting 5,000 devices spent a tenth of its CPU there). A torn last record (a crash mid-append) is
dropped with a warning; the records before it survive. No fsync: a process crash loses nothing, a power cut
may lose the last update, which the device then trains again if its round is still open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("dmskd.edge")

MAGIC = b"DMSKDOB1"
FILE_NAME = "pending.outbox"
LEGACY_GLOB = "round-*.safetensors"  # the outbox before protocol 3: a file per round, migrated on load
_FIELD = 8


def outbox_record(round_: int, update: bytes) -> bytes:
    """One pending update as the outbox file stores it."""
    return round_.to_bytes(_FIELD, "big") + len(update).to_bytes(_FIELD, "big") + update


def parse_outbox(data: bytes) -> tuple[dict[int, bytes], str | None]:
    """The pending updates of an outbox file's bytes, and why any part of it was unreadable (None: all read)."""
    if not data:
        return {}, None
    if not data.startswith(MAGIC):
        return {}, f"it does not start with {MAGIC!r} (not a DMSKD outbox)"
    pending: dict[int, bytes] = {}
    at = len(MAGIC)
    while at < len(data):
        if len(data) - at < 2 * _FIELD:
            return pending, f"its last record is torn ({len(data) - at} bytes of a header)"
        round_ = int.from_bytes(data[at:at + _FIELD], "big")
        length = int.from_bytes(data[at + _FIELD:at + 2 * _FIELD], "big")
        start = at + 2 * _FIELD
        if len(data) - start < length:
            return pending, f"its round {round_} record is torn ({len(data) - start} of {length} bytes)"
        pending[round_] = data[start:start + length]
        at = start + length
    return pending, None


class UpdateOutbox:
    """The pending updates of one device in its directory (created on the first update)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self._made = False

    def load(self) -> dict[int, bytes]:
        """What a previous run left unacknowledged (a per-round file of an older version is taken in, then removed)."""
        pending: dict[int, bytes] = {}
        if self.path.exists():
            pending, problem = parse_outbox(self.path.read_bytes())
            if problem is not None:
                log.warning("outbox %s: %s; kept the %d update(s) before it", self.path, problem, len(pending))
        legacy = sorted(self.directory.glob(LEGACY_GLOB)) if self.directory.is_dir() else []
        for path in legacy:
            try:
                pending.setdefault(int(path.stem.split("-")[1]), path.read_bytes())
            except (IndexError, ValueError):
                log.warning("ignoring %s in the outbox (not round-<N>.safetensors)", path)
        if legacy:
            self.replace(pending)
            for path in legacy:
                path.unlink(missing_ok=True)
        return pending

    def append(self, round_: int, update: bytes) -> None:
        """Store one more pending update (the file is created, with its magic, the first time)."""
        if not self._made:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._made = True
        with open(self.path, "ab") as out:
            out.write((MAGIC if out.tell() == 0 else b"") + outbox_record(round_, update))

    def replace(self, pending: dict[int, bytes]) -> None:
        """Keep exactly `pending`: an empty outbox is truncated in place; the rare rest is rewritten atomically."""
        if not pending:
            if self.path.exists():
                os.truncate(self.path, 0)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._made = True
        spare = self.path.with_suffix(".tmp")
        spare.write_bytes(MAGIC + b"".join(outbox_record(r, u) for r, u in sorted(pending.items())))
        os.replace(spare, self.path)
