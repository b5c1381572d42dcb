"""Malformed updates as data: named cases, each with the `RejectionReason` a `RoundInbox` must give it.

Every case starts from one valid update (`valid_blob`, accepted by `make_inbox()`), breaks one thing,
and says where it arrives (topic device and round), what was accepted before it this round, and the
reason code plus a substring of the detail it must be refused with. Mosquitto keeps its malformed
packets the same way (bytes in, expected reply out). The table is reused as the fuzzer's seeds
(simulator.payload_fuzz) and by tests/cloud/test_malformed_updates.py; `offer_case` runs one case.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from safetensors.numpy import save as st_save

from cloud.declared_settings import DeclaredSettings
from cloud.rejections import RejectionReason
from cloud.round_inbox import MAX_EXAMPLES, RoundInbox
from cloud.strategy import AcceptedUpdate, DpMode
from edge.plan import TrainingSettings
from edge.update_quantization import quantize_update
from edge.wire import (
    CHECKSUM_KEY,
    FLOAT32_DELTA,
    KIND_KEY,
    METADATA_KEYS,
    PROTOCOL_KEY,
    UINT8_AFFINE_DELTA,
    UpdateMeta,
    WeightsMeta,
    encode_update,
    encode_weights,
    training_digest,
    wire_metadata,
)

FLEET = "f1"
ROUND = 5
BASE_VERSION = 4
CLIP = 1.0
PLAN_MAX_EXAMPLES = 100_000  # the example-count cap each device's plan declares (edge.plan.DevicePlan.max_examples)
DEVICES = frozenset({"d0", "d1", "d2", "d3"})
TEMPLATE = {"dense_0/kernel": (6, 4), "dense_0/bias": (4,)}
R = RejectionReason
# An update's metadata keys by the names cases use: the envelope's and UpdateMeta's fields (edge.wire).
KEYS = {"protocol": PROTOCOL_KEY, "kind": KIND_KEY, "checksum": CHECKSUM_KEY, **METADATA_KEYS[UpdateMeta]}


def valid_tensors(seed: int = 0, norm: float = 0.5) -> dict[str, np.ndarray]:
    """A float32 delta of the template's shapes with L2 norm `norm`."""
    rng = np.random.default_rng(seed)
    raw = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in TEMPLATE.items()}
    total = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in raw.values()))
    return {k: (v * (norm / total)).astype(np.float32) for k, v in raw.items()}


def valid_meta(device: str = "d0", **changes) -> UpdateMeta:
    """The metadata of `device`'s honest update for ROUND on BASE_VERSION (no DP), with `changes`."""
    meta = UpdateMeta(fleet=FLEET, device=device, round=ROUND, base_version=BASE_VERSION, num_examples=40,
                      clip=CLIP, noise_multiplier=0.0, dp_mode="none")
    return dataclasses.replace(meta, **changes)


def valid_blob(device: str = "d0", seed: int = 0) -> bytes:
    """An update that `make_inbox()` accepts from `device`."""
    return encode_update(valid_tensors(seed), valid_meta(device))


def make_inbox(dp_mode: DpMode = DpMode.NONE, noise_multiplier: float = 0.0,
               declared: dict[str, DeclaredSettings] | None = None, clip: float | None = CLIP,
               **kwargs) -> RoundInbox:
    """ROUND's inbox on BASE_VERSION for DEVICES (clip None: unbounded plain FedAvg); every device must declare
    `dp_mode`, the clip and its own noise (`noise_multiplier` in local mode), and claim at most
    PLAN_MAX_EXAMPLES examples, as a plan's declaration (DeclaredSettings.from_plan) says."""
    if declared is None:
        own_noise = noise_multiplier if dp_mode is DpMode.LOCAL else 0.0
        encoding = kwargs.get("encodings", (FLOAT32_DELTA,))[0]
        declared = {d: DeclaredSettings(dp_mode.value, clip, own_noise, encoding, max_examples=PLAN_MAX_EXAMPLES)
                    for d in DEVICES}
    return RoundInbox(round_=ROUND, base_version=BASE_VERSION, fleet=FLEET, devices=DEVICES,
                      template=dict(TEMPLATE), dp_mode=dp_mode, clip=clip, noise_multiplier=noise_multiplier,
                      declared=declared, **kwargs)


def uint8_inbox() -> RoundInbox:
    """An inbox that takes 8-bit updates (the FedCompress baseline's encoding) besides float32 deltas."""
    return make_inbox(encodings=(UINT8_AFFINE_DELTA, FLOAT32_DELTA))


def unbounded_uint8_inbox() -> RoundInbox:
    """The FedCompress baseline's inbox without DP: 8-bit updates and no norm bound (only finiteness limits them)."""
    return make_inbox(clip=None, encodings=(UINT8_AFFINE_DELTA, FLOAT32_DELTA))


def training_inbox() -> RoundInbox:
    """An inbox whose plans declare the default training settings (edge.plan.TrainingSettings)."""
    declared = {d: DeclaredSettings("none", CLIP, 0.0, training=TrainingSettings().declaration(),
                                    max_examples=PLAN_MAX_EXAMPLES) for d in DEVICES}
    return make_inbox(declared=declared)


def local_inbox() -> RoundInbox:
    """A `local`-mode inbox: devices add noise z = 1 themselves, norms are bounded by what clip plus noise allows."""
    return make_inbox(DpMode.LOCAL, noise_multiplier=1.0)


def with_tensors(**changes: np.ndarray | None) -> bytes:
    """The valid update with tensors replaced (name with "__" for "/"), or removed where the value is None."""
    tensors = valid_tensors()
    for name, value in changes.items():
        name = name.replace("__", "/")
        if value is None:
            tensors.pop(name)
        else:
            tensors[name] = value
    return encode_update(tensors, valid_meta())


def with_meta(**changes) -> bytes:
    """The valid update's tensors under metadata with `changes`."""
    return encode_update(valid_tensors(), valid_meta(**changes))


def raw_blob(tensors: dict[str, np.ndarray] | None = None, **metadata_changes: str | None) -> bytes:
    """A blob built by hand (no dtype conversion), so a case can send what encode_update never would;
    a metadata value None removes the field. Fields are named as UpdateMeta's (KEYS maps them to wire keys; any
    other name is a raw key)."""
    tensors = valid_tensors() if tensors is None else tensors
    metadata = wire_metadata(valid_meta(), tensors)
    for name, value in metadata_changes.items():
        key = KEYS.get(name, name)
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    return st_save(tensors, metadata=metadata)


def header_of(blob: bytes) -> dict:
    """The safetensors JSON header of a well-formed blob."""
    return json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])


def with_header(blob: bytes, header: bytes) -> bytes:
    """`blob`'s tensor data behind another header (its length prefix made to match)."""
    data = blob[8 + int.from_bytes(blob[:8], "little"):]
    return len(header).to_bytes(8, "little") + header + data


def with_header_edit(edit: Callable[[dict], object]) -> bytes:
    """The valid update with its JSON header edited in place by `edit`."""
    blob = valid_blob()
    header = header_of(blob)
    edit(header)
    return with_header(blob, json.dumps(header).encode())


def with_length_prefix(value: int) -> bytes:
    """The valid update with its 8-byte header length replaced."""
    return value.to_bytes(8, "little") + valid_blob()[8:]


def tampered() -> bytes:
    """The valid update with the lowest bit of its last byte flipped (still a finite float32)."""
    blob = valid_blob()
    return blob[:-1] + bytes([blob[-1] ^ 0x01])


def nan_kernel() -> np.ndarray:
    kernel = valid_tensors()["dense_0/kernel"].copy()
    kernel[2, 1] = np.nan
    return kernel


def uint8_update(**meta_changes) -> bytes:
    """The valid delta as an honest 8-bit update (codes plus qparams), declaring that encoding."""
    return encode_update(quantize_update(valid_tensors()), valid_meta(encoding=UINT8_AFFINE_DELTA, **meta_changes))


def uint8_overflowing() -> bytes:
    """8-bit codes whose scale is finite but dequantises past float32's range (inf after decoding)."""
    wire = quantize_update(valid_tensors())
    wire["dense_0/kernel.qparams"] = np.array([3e38, 0.0], np.float32)
    wire["dense_0/kernel"] = np.full(TEMPLATE["dense_0/kernel"], 255, np.uint8)
    return encode_update(wire, valid_meta(encoding=UINT8_AFFINE_DELTA))


def without_field(name: str) -> Callable[[], bytes]:
    """A builder of the valid update without metadata field `name`."""
    return lambda: raw_blob(**{name: None})


def _set_metadata(key: str, value: object) -> Callable[[dict], None]:
    return lambda header: header["__metadata__"].__setitem__(key, value)


LONG_NAME = "evil\n" + "x" * 8_000 + "\x1b[2J\u202e"


@dataclass(frozen=True)
class MalformedCase:
    """One malformed update: what arrives on which topic, and the reason and detail it must be refused with."""

    name: str
    build: Callable[[], bytes]
    reason: RejectionReason
    detail: str  # a substring of the rejection's (sanitised) detail
    topic_device: str = "d0"
    topic_round: int = ROUND
    before: tuple[tuple[str, Callable[[], bytes]], ...] = field(default=())  # accepted earlier this round
    inbox: Callable[[], RoundInbox] = make_inbox


CASES: tuple[MalformedCase, ...] = (
    # framing and safetensors: whatever decode_update refuses is malformed_payload
    MalformedCase("empty-payload", lambda: b"", R.MALFORMED_PAYLOAD, "truncated"),
    MalformedCase("cut-inside-length-prefix", lambda: valid_blob()[:5], R.MALFORMED_PAYLOAD, "truncated"),
    MalformedCase("cut-inside-header", lambda: valid_blob()[:60], R.MALFORMED_PAYLOAD, "truncated"),
    MalformedCase("cut-inside-tensor-data", lambda: valid_blob()[:-10], R.MALFORMED_PAYLOAD, "not valid safetensors"),
    MalformedCase("header-length-beyond-payload", lambda: with_length_prefix(2**40), R.MALFORMED_PAYLOAD,
                  "header claims 1099511627776 bytes"),
    MalformedCase("header-length-zero", lambda: with_length_prefix(0), R.MALFORMED_PAYLOAD, "not valid safetensors"),
    MalformedCase("header-length-short-by-one", lambda: with_length_prefix(len(header_of(valid_blob())) - 1),
                  R.MALFORMED_PAYLOAD, "not valid safetensors"),
    MalformedCase("header-not-json", lambda: b"\x10" + b"\0" * 7 + b"GET / HTTP/1.1\r\n", R.MALFORMED_PAYLOAD,
                  "not valid safetensors"),
    MalformedCase("header-not-utf8", lambda: with_header(valid_blob(), b"{\xff\xfe}"), R.MALFORMED_PAYLOAD,
                  "not valid safetensors"),
    MalformedCase("tensor-offsets-overlap", lambda: with_header_edit(
        lambda h: h["dense_0/kernel"].__setitem__("data_offsets", [0, 96])), R.MALFORMED_PAYLOAD,
        "not valid safetensors"),
    MalformedCase("metadata-value-not-a-string", lambda: with_header_edit(_set_metadata("r", 5)),
                  R.MALFORMED_PAYLOAD, "not valid safetensors"),
    MalformedCase("no-metadata", lambda: st_save(valid_tensors()), R.MALFORMED_PAYLOAD, "protocol version None"),
    MalformedCase("other-protocol-version", lambda: raw_blob(protocol="3"), R.MALFORMED_PAYLOAD,
                  "protocol version '3'"),
    MalformedCase("protocol-1-payload", lambda: st_save(valid_tensors(), metadata={"protocol": "1", "kind": "update"}),
                  R.MALFORMED_PAYLOAD, "protocol version '1', this build speaks '2'"),
    MalformedCase("weights-offered-as-update", lambda: encode_weights(valid_tensors(), WeightsMeta(FLEET, 4, 5)),
                  R.MALFORMED_PAYLOAD, "kind 'weights' where 'update'"),
    MalformedCase("float64-tensor", lambda: raw_blob({k: v.astype(np.float64) for k, v in valid_tensors().items()}),
                  R.MALFORMED_PAYLOAD, "dtype float64, expected float32"),
    MalformedCase("int32-tensor", lambda: raw_blob({k: np.ones(s, np.int32) for k, s in TEMPLATE.items()}),
                  R.MALFORMED_PAYLOAD, "dtype int32, expected float32"),
    MalformedCase("nan", lambda: with_tensors(dense_0__kernel=nan_kernel()), R.MALFORMED_PAYLOAD, "NaN or infinity"),
    MalformedCase("inf", lambda: with_tensors(dense_0__bias=np.array([0, np.inf, 0, 0], np.float32)),
                  R.MALFORMED_PAYLOAD, "NaN or infinity"),
    MalformedCase("-inf", lambda: with_tensors(dense_0__bias=np.array([0, 0, -np.inf, 0], np.float32)),
                  R.MALFORMED_PAYLOAD, "NaN or infinity"),
    MalformedCase("checksum-mismatch", tampered, R.MALFORMED_PAYLOAD, "checksum mismatch"),
    MalformedCase("checksum-missing", lambda: raw_blob(checksum=None), R.MALFORMED_PAYLOAD, "checksum mismatch"),
    *(MalformedCase(f"missing-{name}", without_field(name), R.MALFORMED_PAYLOAD,
                    f"metadata field '{name}' (key '{KEYS[name]}') missing")
      for name in ("fleet", "device", "round", "base_version", "num_examples", "clip", "noise_multiplier", "dp_mode")),
    MalformedCase("unreadable-round", lambda: raw_blob(round="five"), R.MALFORMED_PAYLOAD,
                  "metadata field 'round' (key 'r') unreadable"),
    MalformedCase("unreadable-example-count", lambda: raw_blob(num_examples="1e3"), R.MALFORMED_PAYLOAD,
                  "metadata field 'num_examples' (key 'n') unreadable"),
    MalformedCase("huge-integer-round", lambda: raw_blob(round="9" * 5000), R.MALFORMED_PAYLOAD,
                  "metadata field 'round' (key 'r') unreadable"),
    MalformedCase("uint8-codes-without-qparams", lambda: encode_update(
        {k: np.zeros(s, np.uint8) for k, s in TEMPLATE.items()}, valid_meta(encoding=UINT8_AFFINE_DELTA)),
        R.MALFORMED_PAYLOAD, "qparams", inbox=uint8_inbox),
    MalformedCase("uint8-dequantises-to-infinity", uint8_overflowing, R.MALFORMED_PAYLOAD, "float32",
                  inbox=uint8_inbox),
    MalformedCase("uint8-dequantises-to-infinity-unbounded", uint8_overflowing, R.MALFORMED_PAYLOAD, "float32",
                  inbox=unbounded_uint8_inbox),
    # where it arrives and what it says about itself
    MalformedCase("unknown-device", lambda: valid_blob("intruder"), R.NOT_IN_COHORT, "unknown device 'intruder'",
                  topic_device="intruder"),
    MalformedCase("unknown-device-8000-chars-with-newline", lambda: b"", R.NOT_IN_COHORT,
                  "unknown device 'evil\\\\nxxx", topic_device=LONG_NAME),
    MalformedCase("stale-round-on-topic", valid_blob, R.WRONG_ROUND, "stale or early update for round 4",
                  topic_round=ROUND - 1),
    MalformedCase("early-round-on-topic", valid_blob, R.WRONG_ROUND, "stale or early update for round 6",
                  topic_round=ROUND + 1),
    MalformedCase("stale-round-in-metadata", lambda: with_meta(round=ROUND - 1), R.WRONG_ROUND, "built for round 4"),
    MalformedCase("wrong-base-version", lambda: with_meta(base_version=BASE_VERSION - 1), R.WRONG_VERSION,
                  "on version 3"),
    MalformedCase("metadata-names-another-device", lambda: valid_blob("d1"), R.WRONG_DEVICE,
                  "metadata names device 'd1'"),
    MalformedCase("wrong-fleet", lambda: with_meta(fleet="other"), R.WRONG_FLEET, "fleet 'other'"),
    MalformedCase("encoding-not-accepted", lambda: uint8_update(), R.WRONG_ENCODING,
                  "encoding 'uint8-affine-delta' not accepted"),
    MalformedCase("unknown-encoding", lambda: with_meta(encoding="float16-delta"), R.WRONG_ENCODING,
                  "encoding 'float16-delta' not accepted"),
    MalformedCase("declares-other-dp-mode", lambda: with_meta(dp_mode="local"), R.DECLARATION_MISMATCH,
                  "declares DP mode 'local', its plan says 'none'"),
    MalformedCase("declares-wider-clip", lambda: with_meta(clip=4.0), R.DECLARATION_MISMATCH,
                  "declares clip 4.0, its plan says 1.0"),
    MalformedCase("declares-nan-clip", lambda: raw_blob(clip="nan"), R.DECLARATION_MISMATCH, "declares clip nan"),
    MalformedCase("declares-noise", lambda: with_meta(noise_multiplier=0.5), R.DECLARATION_MISMATCH,
                  "declares noise multiplier 0.5"),
    MalformedCase("declares-other-training", lambda: with_meta(training=training_digest(
        TrainingSettings(lr=0.5).declaration())), R.DECLARATION_MISMATCH,
        f"its plan says '{training_digest(TrainingSettings().declaration())}'", inbox=training_inbox),
    MalformedCase("declares-no-training", valid_blob, R.DECLARATION_MISMATCH,
                  "declares training settings digest 'none'", inbox=training_inbox),
    MalformedCase("declares-float32-where-plan-says-uint8", valid_blob, R.DECLARATION_MISMATCH,
                  "declares encoding 'float32-delta'", inbox=uint8_inbox),
    # tensors and weight
    MalformedCase("wrong-shape", lambda: with_tensors(dense_0__bias=np.zeros(5, np.float32)), R.WRONG_SHAPE,
                  "tensor dense_0/bias has shape (5,), expected (4,)"),
    MalformedCase("transposed-kernel", lambda: with_tensors(dense_0__kernel=np.zeros((4, 6), np.float32)),
                  R.WRONG_SHAPE, "has shape (4, 6), expected (6, 4)"),
    MalformedCase("scalar-for-vector", lambda: with_tensors(dense_0__bias=np.array(0.1, np.float32)), R.WRONG_SHAPE,
                  "has shape (), expected (4,)"),
    MalformedCase("missing-tensor", lambda: with_tensors(dense_0__bias=None), R.WRONG_SHAPE,
                  "missing ['dense_0/bias']"),
    MalformedCase("extra-tensor", lambda: with_tensors(extra=np.zeros(3, np.float32)), R.WRONG_SHAPE,
                  "unexpected ['extra']"),
    MalformedCase("no-tensors", lambda: encode_update({}, valid_meta()), R.WRONG_SHAPE, "missing"),
    MalformedCase("example-count-zero", lambda: with_meta(num_examples=0), R.EXAMPLE_COUNT, "example count 0"),
    MalformedCase("example-count-negative", lambda: with_meta(num_examples=-3), R.EXAMPLE_COUNT, "example count -3"),
    MalformedCase("example-count-over-the-plan-cap", lambda: with_meta(num_examples=PLAN_MAX_EXAMPLES + 1),
                  R.EXAMPLE_COUNT, f"example count {PLAN_MAX_EXAMPLES + 1} outside 1..{PLAN_MAX_EXAMPLES} (its plan's"),
    MalformedCase("example-count-ten-million", lambda: with_meta(num_examples=10_000_000), R.EXAMPLE_COUNT,
                  "example count 10000000 outside"),
    MalformedCase("example-count-above-the-aggregator-cap-without-a-plan", lambda: with_meta(
        num_examples=MAX_EXAMPLES + 1), R.EXAMPLE_COUNT, f"outside 1..{MAX_EXAMPLES} (the aggregator's cap)",
        inbox=lambda: make_inbox(declared={})),
    MalformedCase("example-count-a-billion", lambda: with_meta(num_examples=10**9), R.EXAMPLE_COUNT,
                  "example count 1000000000"),
    MalformedCase("norm-over-clip", lambda: encode_update(valid_tensors(norm=3.0), valid_meta()), R.NORM_BOUND,
                  "exceeds the clip norm"),
    MalformedCase("norm-just-over-clip", lambda: encode_update(valid_tensors(norm=1.01), valid_meta()), R.NORM_BOUND,
                  "exceeds the clip norm"),
    MalformedCase("second-different-update-replay", lambda: with_meta(num_examples=41), R.REPLAY,
                  "second, different update from d0", before=(("d0", valid_blob),)),
    MalformedCase("second-update-same-id-other-values", lambda: valid_blob(seed=7), R.REPLAY,
                  "second, different update from d0", before=(("d0", valid_blob),)),
)


def offer_case(case: MalformedCase) -> tuple[RoundInbox, AcceptedUpdate | None]:
    """A fresh inbox for `case`, its earlier updates accepted, then the case offered; returns (inbox, result)."""
    inbox = case.inbox()
    for device, build in case.before:
        if inbox.offer(device, ROUND, build()) is None:
            raise AssertionError(f"case {case.name}: its earlier update from {device} was not accepted")
    return inbox, inbox.offer(case.topic_device, case.topic_round, case.build())
