"""Fuzzing the wire decoder and `RoundInbox` (issue 10): mutated seeds, and the properties every payload must meet.

A payload is a seed (an honest update, or any case of simulator.malformed_updates) mutated one to three
times (bit flips, truncation, splices of two seeds, inserted, deleted or overwritten bytes, header length
edits, edits of the header's JSON, of its metadata, and of the tensors under a recomputed checksum, which
reach the checks behind the checksum), or random bytes; it arrives on its seed's topic, or now and then on
a stranger's. Every choice comes from a `Chooser`: a seeded numpy Generator in the benchmark
(scripts/fuzz_round_inbox.py), Hypothesis' data in the tests (which then shrinks what it finds), so both
run the same mutations.

`check` offers one payload to a fresh inbox (after its seed's earlier updates) and classifies it:
accepted (and valid by an oracle that re-derives validity from the bytes, not from the inbox's code),
an idempotent resend, rejected (exactly one sanitised record, with its reason), or a violation: a crash
(anything but PayloadRejected escaping `decode_update`, or anything at all escaping `RoundInbox.offer`)
or an invalid update accepted.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from cloud.rejections import MARKER_CHARS, MAX_DETAIL_CHARS, MAX_DEVICE_CHARS, RejectionReason
from cloud.round_inbox import MAX_EXAMPLES, RoundInbox
from cloud.strategy import AcceptedUpdate, DpMode
from edge.noise_source import InsecureSeededNoise
from edge.privacy import DiscreteGaussianMechanism
from edge.update_quantization import quantize_update
from edge.wire import (
    CHECKSUM_KEY,
    FLOAT32_DELTA,
    KINDS,
    METADATA_KEYS,
    PROTOCOL_KEY,
    PROTOCOL_VERSION,
    UINT8_AFFINE_DELTA,
    PayloadRejected,
    UpdateMeta,
    decode_update,
    encode_update,
    tensor_checksum,
)
from simulator import malformed_updates as mu


class Chooser(Protocol):
    """Where a fuzzer's choices come from."""

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        ...

    def raw(self, size: int) -> bytes:
        """`size` arbitrary bytes."""
        ...


@dataclass
class RandomChooser:
    """Choices from a seeded numpy Generator (reproducible for a seed)."""

    rng: np.random.Generator

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high, endpoint=True))

    def raw(self, size: int) -> bytes:
        return self.rng.bytes(size)


def pick(chooser: Chooser, options: tuple | list):
    return options[chooser.integer(0, len(options) - 1)]


@dataclass(frozen=True)
class Seed:
    """A starting payload, where it arrives, what its round accepted before it, and the inbox it is offered to."""

    name: str
    blob: bytes
    topic_device: str = "d0"
    topic_round: int = mu.ROUND
    before: tuple[tuple[str, bytes], ...] = ()
    inbox: Callable[[], RoundInbox] = mu.make_inbox


@functools.cache
def seeds() -> tuple[Seed, ...]:
    """Honest updates for every inbox profile, then every malformed case, each built once."""
    local_meta = mu.valid_meta(dp_mode="local", noise_multiplier=1.0)
    dimension = sum(math.prod(s) for s in mu.TEMPLATE.values())
    noised = DiscreteGaussianMechanism(mu.CLIP, 1.0, dimension).privatise(mu.valid_tensors(norm=mu.CLIP),
                                                                          InsecureSeededNoise(np.random.default_rng(0)))
    honest = [
        *(Seed(f"valid-{d}", mu.valid_blob(d, seed=i), topic_device=d) for i, d in enumerate(sorted(mu.DEVICES))),
        Seed("valid-local", encode_update(noised, local_meta), inbox=mu.local_inbox),
        Seed("valid-uint8", mu.uint8_update(), inbox=mu.uint8_inbox),
        Seed("valid-uint8-unbounded", encode_update(quantize_update(mu.valid_tensors(norm=50.0)),
                                                    mu.valid_meta(encoding=UINT8_AFFINE_DELTA, clip=mu.CLIP)),
             inbox=mu.unbounded_uint8_inbox),
        Seed("valid-after-d1", mu.valid_blob("d0"), before=(("d1", mu.valid_blob("d1", seed=1)),)),
    ]
    cases = [Seed(c.name, c.build(), c.topic_device, c.topic_round, tuple((d, b()) for d, b in c.before), c.inbox)
             for c in mu.CASES]
    assert len(honest) == HONEST_SEEDS
    return (*honest, *cases)


HONEST_SEEDS = 8  # the first seeds() are accepted as they are


class Payload(NamedTuple):
    """One generated payload: its seed, the bytes, the topic it arrives on, and how it was made."""

    seed: Seed
    blob: bytes
    topic_device: str
    topic_round: int
    mutations: tuple[str, ...]


# --- mutations: each takes the bytes and a chooser, returns new bytes ---

INTERESTING_STRINGS = ("", "0", "-1", "1", "4", "5", "6", "40", "100000", "100001", "10000000", "1e3", "nan", "inf",
                       "-inf", "1e999", "0x10", " 5", "5\n", "9" * 5000, "d0", "d1", "intruder", "f1", "other", "none",
                       "local", "central", FLOAT32_DELTA, UINT8_AFFINE_DELTA, "update", "weights", "u", "w", "2",
                       mu.LONG_NAME, "\u0000", "\ud800x")
INTERESTING_JSON: tuple[object, ...] = (None, 0, -1, 5, 2**64, 1.5, True, [], {}, [0, 16], "F32", "F64", "U8", "I32",
                                        "BF16", "BOOL", "F16", [6, 4], [4], [], [0], [-1], [2**40])


def flip_bits(blob: bytes, c: Chooser) -> bytes:
    if not blob:
        return blob
    out = bytearray(blob)
    for _ in range(c.integer(1, 8)):
        bit = c.integer(0, len(out) * 8 - 1)
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def truncate(blob: bytes, c: Chooser) -> bytes:
    return blob[:c.integer(0, len(blob))]


def splice(blob: bytes, c: Chooser) -> bytes:
    other = pick(c, seeds()).blob
    return blob[:c.integer(0, len(blob))] + other[c.integer(0, len(other)):]


def insert_bytes(blob: bytes, c: Chooser) -> bytes:
    at = c.integer(0, len(blob))
    return blob[:at] + c.raw(c.integer(1, 32)) + blob[at:]


def delete_bytes(blob: bytes, c: Chooser) -> bytes:
    at = c.integer(0, len(blob))
    return blob[:at] + blob[at + c.integer(1, 32):]


def overwrite_bytes(blob: bytes, c: Chooser) -> bytes:
    if not blob:
        return blob
    out = bytearray(blob)
    value = pick(c, (0x00, 0xFF, 0x7F, 0x80, 0x01, ord("{"), ord('"'), c.integer(0, 255)))
    for _ in range(c.integer(1, 4)):
        out[c.integer(0, len(out) - 1)] = value
    return bytes(out)


def header_length(blob: bytes, c: Chooser) -> bytes:
    true = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else 0
    value = pick(c, (0, 1, 7, 8, true - 1, true + 1, true + c.integer(-64, 64), len(blob) - 8, len(blob) - 7,
                     2**31, 2**32, 2**63, 2**64 - 1))
    return (value % 2**64).to_bytes(8, "little") + blob[8:]


def _header(blob: bytes) -> tuple[dict, bytes] | None:
    """The parsed JSON header and the data behind it, or None if it does not parse."""
    try:
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    return (header, blob[8 + n:]) if isinstance(header, dict) else None


def _rebuild(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def edit_metadata(blob: bytes, c: Chooser) -> bytes:
    parsed = _header(blob)
    if parsed is None:
        return blob
    header, data = parsed
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        meta = header["__metadata__"] = {}
    keys = (*sorted(meta), "v", "k", "h", "e", "d", "r", "protocol", "extra")
    key = pick(c, keys)
    action = c.integer(0, 3)
    if action == 0:
        meta.pop(key, None)
    elif action == 1:
        meta[key] = pick(c, INTERESTING_STRINGS)
    elif action == 2:
        meta[key] = c.raw(c.integer(0, 12)).decode("latin-1")
    else:
        meta[key] = pick(c, INTERESTING_JSON)
    return _rebuild(header, data)


def edit_tensor_header(blob: bytes, c: Chooser) -> bytes:
    parsed = _header(blob)
    if parsed is None:
        return blob
    header, data = parsed
    names = [k for k in header if k != "__metadata__"] or ["new"]
    name = pick(c, [*names, "__extra__"])
    entry = header.get(name)
    if not isinstance(entry, dict) or c.integer(0, 5) == 0:
        header[name] = pick(c, INTERESTING_JSON) if c.integer(0, 1) else {"dtype": "F32", "shape": [2],
                                                                          "data_offsets": [0, 8]}
        return _rebuild(header, data)
    field_name = pick(c, ("dtype", "shape", "data_offsets", "extra"))
    entry[field_name] = pick(c, INTERESTING_JSON) if c.integer(0, 2) else [c.integer(-2, 130) for _ in
                                                                          range(c.integer(0, 3))]
    return _rebuild(header, data)


def edit_tensors(blob: bytes, c: Chooser) -> bytes:
    """Change the tensors themselves and re-sign them with a correct checksum, keeping the metadata."""
    parsed = _header(blob)
    try:
        tensors = st_load(blob)
    except Exception:  # safetensors raises several types for corrupt input
        return blob
    meta = parsed[0].get("__metadata__", {}) if parsed else {}
    if not tensors or not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return blob
    with np.errstate(all="ignore"):  # overflowing casts are the point
        _edit_one(tensors, pick(c, sorted(tensors)), c)
    return st_save(tensors, metadata=dict(meta, **{CHECKSUM_KEY: tensor_checksum(tensors)}))


def _edit_one(tensors: dict[str, np.ndarray], name: str, c: Chooser) -> None:
    t = tensors[name]
    op = c.integer(0, 7)
    if op == 0:
        t = (t.astype(np.float64) * pick(c, (0.0, -1.0, 1.001, 2.0, 10.0, 1e6, 1e30, 1e-30))).astype(t.dtype)
    elif op == 1 and t.size:
        t, value = t.copy(), pick(c, (np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 255.0, 0.0))
        t.reshape(-1)[c.integer(0, t.size - 1)] = value if t.dtype.kind == "f" else 255 * math.isfinite(value)
    elif op == 2:
        t = t.reshape(-1)
    elif op == 3:
        t = t.T.copy() if t.ndim > 1 else t[:-1] if t.ndim else t.reshape(1)
    elif op == 4:
        t = t.astype(pick(c, (np.float64, np.float16, np.uint8, np.int32, np.int8)))
    elif op == 5:
        del tensors[name]
    elif op == 6:
        tensors[pick(c, (name + ".qparams", "extra", name.upper()))] = np.ones(c.integer(0, 4), np.float32)
    else:
        t = np.ascontiguousarray(np.repeat(t, 2, axis=0)) if t.ndim else t
    if name in tensors:
        tensors[name] = np.ascontiguousarray(t)


def fix_checksum(blob: bytes, c: Chooser) -> bytes:
    """Recompute the checksum of whatever tensors the bytes now hold, so earlier edits reach the checks behind it."""
    parsed = _header(blob)
    meta = parsed[0].get("__metadata__") if parsed else None
    try:
        tensors = st_load(blob)
    except Exception:  # safetensors raises several types for corrupt input
        return blob
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return blob
    return st_save(tensors, metadata=dict(meta, **{CHECKSUM_KEY: tensor_checksum(tensors)}))


MUTATIONS: dict[str, Callable[[bytes, Chooser], bytes]] = {
    f.__name__: f for f in (flip_bits, truncate, splice, insert_bytes, delete_bytes, overwrite_bytes, header_length,
                            edit_metadata, edit_tensor_header, edit_tensors)
}
STRUCTURAL = ("edit_metadata", "edit_tensor_header", "edit_tensors")
STRANGE_DEVICES = (*sorted(mu.DEVICES), "intruder", "", mu.LONG_NAME, "d0\n", "D0", "d0/../d1")
STRANGE_ROUNDS = (mu.ROUND - 1, mu.ROUND + 1, -1, 0, 2**31)


def generate(c: Chooser) -> Payload:
    """One payload: random bytes (1 in 16); an honest seed given 1 or 2 structural edits (header, metadata,
    tensors: 7 in 16, which reach the checks behind framing); or any seed given 1 to 3 mutations of any
    kind. Its checksum is then made right 1 time in 3; it arrives on its seed's topic 7 times in 8, and a seed
    that had an update accepted before it is sometimes followed by that update again instead."""
    all_seeds = seeds()
    kind = c.integer(0, 15)
    if kind == 0:
        seed, blob, mutations = pick(c, all_seeds), c.raw(c.integer(0, 300)), ("random_bytes",)
    else:
        structural = kind < 8
        seed = pick(c, all_seeds[:HONEST_SEEDS] if structural else all_seeds)
        names = STRUCTURAL if structural else tuple(MUTATIONS)
        blob, done = seed.blob, []
        for _ in range(c.integer(1, 2 if structural else 3)):
            name = pick(c, names)
            blob = MUTATIONS[name](blob, c)
            done.append(name)
        if c.integer(0, 2) == 0:
            blob = fix_checksum(blob, c)
            done.append("fix_checksum")
        mutations = tuple(done)
    device, round_ = seed.topic_device, seed.topic_round
    if seed.before and c.integer(0, 7) == 0:  # the earlier update sent again: an idempotent resend
        (device, blob), mutations = pick(c, seed.before), ("resend",)
    elif c.integer(0, 7) == 0:
        device = pick(c, STRANGE_DEVICES) if c.integer(0, 1) else device
        round_ = pick(c, STRANGE_ROUNDS) if c.integer(0, 1) else round_
    return Payload(seed, blob, device, round_, mutations)


# --- the properties ---

class Outcome(NamedTuple):
    """What one payload did: verdict accepted | resend | rejected | crash | invalid, its reason, and a note."""

    verdict: str
    reason: RejectionReason | None = None
    note: str = ""

    @property
    def violation(self) -> bool:
        return self.verdict in ("crash", "invalid")


def check(payload: Payload) -> Outcome:
    """Offer `payload` (decoder alone, then the inbox) and classify what happened; see the module docstring."""
    seed = payload.seed
    inbox = seed.inbox()
    for device, blob in seed.before:
        if inbox.offer(device, mu.ROUND, blob) is None:
            return Outcome("crash", note=f"seed {seed.name}: its earlier update from {device} was refused")
    earlier = dict(inbox.accepted)
    rejected_before = inbox.rejected.total
    try:
        decode_update(payload.blob, inbox.encodings)
    except PayloadRejected:
        pass
    except Exception as exc:  # the property: nothing else ever escapes the decoder
        return Outcome("crash", note=f"decode_update raised {type(exc).__name__}: {exc}"[:300])
    try:
        result = inbox.offer(payload.topic_device, payload.topic_round, payload.blob)
    except Exception as exc:  # the inbox must turn everything into a record
        return Outcome("crash", note=f"RoundInbox.offer raised {type(exc).__name__}: {exc}"[:300])
    added = inbox.rejected.total - rejected_before
    if result is not None:
        problems = invalid_reasons(inbox, payload, result, earlier)
        return Outcome("invalid", note="; ".join(problems)) if problems else Outcome("accepted")
    if added == 1 and inbox.rejected.last is not None and dict(inbox.accepted) == earlier:
        record = inbox.rejected.last
        if not (_clean(record.device, MAX_DEVICE_CHARS) and _clean(record.detail, MAX_DETAIL_CHARS)):
            return Outcome("invalid", record.reason, f"unsanitised record {record!r:.200}")
        return Outcome("rejected", record.reason)
    resend = added == 0 and dict(inbox.accepted) == earlier and (payload.topic_device, payload.blob) in seed.before
    if resend:
        return Outcome("resend")
    return Outcome("invalid", note=f"offer returned None with {added} records and accepted {sorted(inbox.accepted)}")


def _clean(text: str, limit: int) -> bool:
    return len(text) <= limit + MARKER_CHARS and all(0x20 <= ord(ch) < 0x7F for ch in text)


def invalid_reasons(inbox: RoundInbox, payload: Payload, update: AcceptedUpdate,
                    earlier: dict[str, int]) -> list[str]:
    """What is wrong with an accepted update, judged from its bytes and the round (empty: it is valid)."""
    problems: list[str] = []
    device = payload.topic_device
    if device not in inbox.devices or payload.topic_round != inbox.round_:
        problems.append(f"accepted from {device!r:.80} on round {payload.topic_round}: not this round's cohort")
    if device in earlier:
        problems.append(f"a second update from {device!r:.80} was accepted")
    if update.device != device or inbox.accepted.get(device) != update.num_examples:
        problems.append("accepted under another device than its topic's")
    parsed = _header(payload.blob)
    meta = parsed[0].get("__metadata__") if parsed else None
    if not isinstance(meta, dict):
        return [*problems, "accepted without a readable metadata header"]
    declared = inbox.declared.get(device)
    keys = METADATA_KEYS[UpdateMeta]
    expect = {PROTOCOL_KEY: PROTOCOL_VERSION, "k": KINDS["update"], keys["fleet"]: inbox.fleet, keys["device"]: device}
    problems += [f"metadata {k} is {meta.get(k)!r:.80}" for k, v in expect.items() if meta.get(k) != v]
    try:
        numbers = (int(meta[keys["round"]]), int(meta[keys["base_version"]]), int(meta[keys["num_examples"]]))
        clip, noise = float(meta[keys["clip"]]), float(meta[keys["noise_multiplier"]])
    except (KeyError, ValueError) as exc:
        return [*problems, f"accepted with unreadable metadata: {exc!r:.80}"]
    if numbers[:2] != (inbox.round_, inbox.base_version):
        problems.append(f"built for round/version {numbers[:2]}")
    cap = min(MAX_EXAMPLES, declared.max_examples or MAX_EXAMPLES) if declared is not None else MAX_EXAMPLES
    if not 1 <= numbers[2] <= cap or update.num_examples != numbers[2]:
        problems.append(f"example count {numbers[2]} (weighted as {update.num_examples})")
    encoding = meta.get(keys["encoding"], FLOAT32_DELTA)
    if encoding not in inbox.encodings:
        problems.append(f"encoding {encoding!r:.40} not accepted")
    if declared is not None and (meta.get(keys["dp_mode"]) != declared.dp_mode or encoding != declared.encoding or (
            declared.clip is not None and clip != declared.clip) or noise != declared.noise_multiplier):
        problems.append("declaration differs from the plan")
    try:
        wire = st_load(payload.blob)
    except Exception as exc:  # safetensors raises several types for corrupt input
        return [*problems, f"accepted bytes that safetensors refuses: {exc}"]
    if tensor_checksum(wire) != meta.get(CHECKSUM_KEY):
        problems.append("checksum does not match the tensors")
    if set(update.delta) != set(inbox.template):
        problems.append(f"tensor names {sorted(update.delta)!r:.120}")
        return problems
    for name, shape in inbox.template.items():
        t = update.delta[name]
        if tuple(t.shape) != tuple(shape) or t.dtype != np.float32 or not np.all(np.isfinite(t)):
            problems.append(f"tensor {name}: shape {t.shape}, dtype {t.dtype}, finite {bool(np.all(np.isfinite(t)))}")
        elif encoding == FLOAT32_DELTA and (name not in wire or wire[name].tobytes() != t.tobytes()):
            problems.append(f"tensor {name} is not the bytes that were sent")
    norm = math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in update.delta.values()))
    if inbox.clip is not None and inbox.dp_mode is not DpMode.LOCAL and not norm <= inbox.clip * (1 + 1e-3):
        problems.append(f"norm {norm} above the clip {inbox.clip}")
    if not math.isfinite(norm):
        problems.append("infinite norm")
    return problems


@dataclass
class FuzzStats:
    """Counts over a fuzzing run, and the first few violations (payload, outcome) to show."""

    payloads: int = 0
    verdicts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    mutations: Counter = field(default_factory=Counter)
    violations: list[tuple[Payload, Outcome]] = field(default_factory=list)
    keep: int = 10

    def add(self, payload: Payload, outcome: Outcome) -> None:
        self.payloads += 1
        self.verdicts[outcome.verdict] += 1
        if outcome.reason is not None:
            self.reasons[outcome.reason.value] += 1
        self.mutations.update(payload.mutations)
        if outcome.violation and len(self.violations) < self.keep:
            self.violations.append((payload, outcome))

    def merge(self, other: FuzzStats) -> None:
        self.payloads += other.payloads
        self.verdicts.update(other.verdicts)
        self.reasons.update(other.reasons)
        self.mutations.update(other.mutations)
        self.violations.extend(other.violations[:max(0, self.keep - len(self.violations))])


def fuzz(count: int, seed: int | np.random.SeedSequence) -> FuzzStats:
    """`count` payloads from a numpy Generator seeded with `seed`, each checked."""
    chooser = RandomChooser(np.random.default_rng(seed))
    stats = FuzzStats()
    for _ in range(count):
        payload = generate(chooser)
        stats.add(payload, check(payload))
    return stats
