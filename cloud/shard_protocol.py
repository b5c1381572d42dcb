"""The aggregator-only topics and messages of a sharded aggregator: coordinator, workers and gateways.

A sharded deployment runs one coordinator (cloud/reducer.py: the aggregator service that opens and closes
rounds and publishes everything devices read) and K workers (cloud/aggregator_worker.py) that admit the
devices' updates, each into its own partial sum. They talk under `dmskd/<fleet>/aggregators/`, a subtree the
broker's ACL must open to aggregator identities only (it carries the secret cohort):

- `round` (coordinator -> workers, retained JSON): `{"round", "epoch", "version", "cohort", "state": "open"}` when
  a round opens; `{"round", "epoch", "state": "closed", "granted": {worker: [devices]}}` when it closes;
  `{"state": "done"}`. A round reopens with the next epoch when a worker holding grants was lost at the close.
- `claim/<worker>` (worker -> coordinator): `{"round", "device", "digest", "examples"}` for each update the
  worker admitted; the worker holds it unsummed until the answer.
- `grant/<worker>` (coordinator -> worker): `{"round", "device", "granted"}`. The first claim of a device in a
  round wins; a resend that a shared subscription handed to another worker is denied, so no update counts twice.
  The coordinator counts grants towards the quorum.
- `partial/<round>/<worker>` (worker -> coordinator): the worker's sum of its granted updates
  (cloud/partial_sum_wire.py), sent when the round closes.
- `worker/<worker>` (retained `online`/`offline`, the worker's Last Will): a worker gone offline has its
  grants withdrawn; its devices resend until acknowledged, and another worker admits them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

OPEN, CLOSED, DONE = "open", "closed", "done"


@dataclass(frozen=True)
class ShardTopics:
    """Topic builder of one fleet's aggregator-only subtree (chunked messages add /<index> below these)."""

    fleet: str

    @property
    def root(self) -> str:
        return f"dmskd/{self.fleet}/aggregators"

    @property
    def round_notice(self) -> str:
        return f"{self.root}/round"

    def claim(self, worker: str) -> str:
        return f"{self.root}/claim/{worker}"

    @property
    def all_claims(self) -> str:
        return f"{self.root}/claim/+"

    def grant(self, worker: str) -> str:
        return f"{self.root}/grant/{worker}"

    def partial(self, round_: int, worker: str) -> str:
        return f"{self.root}/partial/{round_}/{worker}"

    @property
    def all_partials(self) -> str:
        return f"{self.root}/partial/+/+"

    def worker_status(self, worker: str) -> str:
        return f"{self.root}/worker/{worker}"

    @property
    def all_worker_status(self) -> str:
        return f"{self.root}/worker/+"

    def shared_updates(self, all_updates: str) -> str:
        """The shared subscription that hands each update to one worker of the fleet's group."""
        return f"$share/{self.fleet}-aggregators/{all_updates}"


@dataclass(frozen=True)
class Claim:
    """A worker admitted `device`'s update of `round_` (sha256 `digest`, `examples` examples) and asks to sum it."""

    round_: int
    device: str
    digest: str
    examples: int

    def to_json(self) -> bytes:
        return json.dumps({"round": self.round_, "device": self.device, "digest": self.digest,
                           "examples": self.examples}).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Claim:
        """Parse a claim; ValueError names what is malformed."""
        raw = _object(payload, "claim")
        try:
            claim = cls(int(raw["round"]), str(raw["device"]), str(raw["digest"]), int(raw["examples"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"claim lacks or garbles {exc}") from None
        if len(claim.digest) != 64 or claim.examples < 1:
            raise ValueError("a claim carries the sha256 hex of the update and a positive example count")
        return claim


def grant_message(round_: int, device: str, granted: bool) -> bytes:
    """The coordinator's answer to a claim."""
    return json.dumps({"round": round_, "device": device, "granted": granted}).encode()


def open_notice(round_: int, version: int, cohort: tuple[str, ...], epoch: int = 0) -> bytes:
    """Round `round_` is open on global version `version` for `cohort` (epoch > 0: reopened, a worker was lost)."""
    return json.dumps({"state": OPEN, "round": round_, "epoch": epoch, "version": version,
                       "cohort": list(cohort)}).encode()


def closed_notice(round_: int, granted: dict[str, list[str]], epoch: int = 0) -> bytes:
    """Round `round_` (its `epoch`) is closed: each worker sends the sum of exactly the devices granted to it."""
    return json.dumps({"state": CLOSED, "round": round_, "epoch": epoch,
                       "granted": {w: sorted(d) for w, d in sorted(granted.items())}}).encode()


def done_notice() -> bytes:
    """The schedule is over: workers may stop."""
    return json.dumps({"state": DONE}).encode()


def parse_json(payload: bytes, what: str) -> dict:
    """A JSON object from an aggregator-only topic; ValueError names what is malformed."""
    return _object(payload, what)


def _object(payload: bytes, what: str) -> dict:
    try:
        raw = json.loads(payload)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} is not a JSON object")
    return raw
