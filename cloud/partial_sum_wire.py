"""A worker's partial sum of one round as bytes: how a sharded aggregator's workers (and gateways) hand theirs on.

A `WorkerPartial` is what one aggregator worker or gateway admitted in one round: its
`cloud.partial_sum.PartialSum` (totals, weight, count, devices), the sha256 of each device's accepted update
(the round result acknowledges them) and its rejection log. It travels as a safetensors file: the totals as
tensors (`total/<name>`, int64 on the central grid, else float64) and everything else as string metadata, in
the canonical layout of `edge.wire.canonical_safetensors` extended to the two dtypes. `decode_partial` checks
the bytes against what the receiving reducer expects (round, aggregation settings, tensor names and shapes,
counts consistent with the device list) and raises `MalformedPartial` naming what is wrong: a partial is input
from another process like any update, and a bad one must not enter a round.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
from safetensors.numpy import load as st_load

from cloud.aggregation_settings import DpMode, FedAvgConfig
from cloud.partial_sum import PartialSum
from cloud.rejections import RejectionLog

FORMAT = "dmskd-partial-sum/1"
TOTAL_PREFIX = "total/"
_DTYPES = {np.dtype(np.int64): "I64", np.dtype(np.float64): "F64"}
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a header of a million device names and digests fits well within


class MalformedPartial(ValueError):
    """A partial sum that must not be merged; the message says what is wrong with it."""


@dataclass
class WorkerPartial:
    """One worker's (or gateway's) admitted sum of round `round_`: see the module docstring."""

    worker: str
    round_: int
    partial: PartialSum = field(repr=False)
    digests: dict[str, str] = field(default_factory=dict)  # device -> sha256 hex of its accepted update
    rejected: RejectionLog = field(default_factory=RejectionLog)


def encode_partial(item: WorkerPartial) -> bytes:
    """The safetensors bytes of `item` (one byte layout for one content)."""
    p = item.partial
    if set(item.digests) != p.devices:
        raise ValueError("every device of the partial sum needs the digest of its accepted update, and no other")
    config = asdict(p.config)
    config["dp_mode"] = p.config.dp_mode.value
    metadata = {"format": FORMAT, "worker": item.worker, "round": str(item.round_), "config": json.dumps(config),
                "dimension": str(p.dimension), "weight": str(p.weight), "count": str(p.count),
                "digests": json.dumps(dict(sorted(item.digests.items()))),
                "rejected": json.dumps(item.rejected.to_json())}
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset, buffers = 0, []
    for name in sorted(p.total):
        arr = np.asarray(p.total[name], order="C")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[TOTAL_PREFIX + name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                                       "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        buffers.append(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(buffers)


def decode_partial(blob: bytes, round_: int, config: FedAvgConfig,
                   template: dict[str, tuple[int, ...]]) -> WorkerPartial:
    """The WorkerPartial in `blob`, checked against the round, settings and model it must belong to."""
    meta, tensors = _read(blob)
    if meta.get("format") != FORMAT:
        raise MalformedPartial(f"format {meta.get('format')!r}, this build reads {FORMAT!r}")
    worker = meta.get("worker", "")
    if not worker:
        raise MalformedPartial("no worker named")
    got_round = _int(meta, "round")
    if got_round != round_:
        raise MalformedPartial(f"partial sum of round {got_round} from {worker!r}; round {round_} is being reduced")
    got_config = _config(meta.get("config", ""))
    if got_config != config:
        raise MalformedPartial(f"partial sum from {worker!r} was summed under {got_config}, this round uses {config}")
    on_grid = config.dp_mode is DpMode.CENTRAL and not config.float_noise
    dtype = np.dtype(np.int64 if on_grid else np.float64)
    expected = {TOTAL_PREFIX + name: shape for name, shape in template.items()}
    if set(tensors) != set(expected):
        raise MalformedPartial(f"partial sum from {worker!r} holds tensors {sorted(tensors)[:5]}, the model has "
                               f"{sorted(expected)[:5]}")
    total = {}
    for name, arr in tensors.items():
        if tuple(arr.shape) != tuple(expected[name]) or arr.dtype != dtype:
            raise MalformedPartial(f"tensor {name} from {worker!r} is {arr.dtype}{list(arr.shape)}, expected "
                                   f"{dtype}{list(expected[name])}")
        if not on_grid and not np.all(np.isfinite(arr)):
            raise MalformedPartial(f"tensor {name} from {worker!r} contains NaN or infinity")
        total[name[len(TOTAL_PREFIX):]] = arr
    digests = _digests(meta.get("digests", ""), worker)
    dimension, weight, count = _int(meta, "dimension"), _int(meta, "weight"), _int(meta, "count")
    if dimension != sum(int(np.prod(s)) for s in template.values()):
        raise MalformedPartial(f"dimension {dimension} from {worker!r} is not the model's")
    if count != len(digests) or weight < 0 or (config.dp_mode is not DpMode.NONE and weight != count) or (
            config.dp_mode is DpMode.NONE and weight < count):
        raise MalformedPartial(f"partial sum from {worker!r} counts {count} updates of weight {weight} for "
                               f"{len(digests)} devices")
    try:
        rejected = RejectionLog.from_json(json.loads(meta.get("rejected", "")))
    except ValueError as exc:
        raise MalformedPartial(f"rejection log from {worker!r}: {exc}") from exc
    partial = PartialSum(config, dimension, dict(sorted(total.items())), weight, count, set(digests))
    return WorkerPartial(worker, got_round, partial, digests, rejected)


def _read(blob: bytes) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < 8:
        raise MalformedPartial("truncated: shorter than a safetensors header")
    header_len = int.from_bytes(blob[:8], "little")
    if header_len > min(len(blob) - 8, MAX_HEADER_BYTES):
        raise MalformedPartial(f"truncated: header claims {header_len} bytes, {len(blob) - 8} present")
    try:
        tensors = st_load(bytes(blob))
        meta = json.loads(blob[8:8 + header_len]).get("__metadata__") or {}
    except Exception as exc:  # safetensors and json raise several types for corrupt input
        raise MalformedPartial(f"not valid safetensors: {exc}") from exc
    if not isinstance(meta, dict):
        raise MalformedPartial("metadata is not an object")
    return meta, tensors


def _int(meta: dict[str, str], key: str) -> int:
    try:
        value = int(meta[key])
    except (KeyError, TypeError, ValueError):
        raise MalformedPartial(f"metadata {key!r} missing or not an integer") from None
    if value < 0:
        raise MalformedPartial(f"metadata {key!r} is negative ({value})")
    return value


def _config(text: str) -> FedAvgConfig:
    try:
        raw = json.loads(text)
        return FedAvgConfig(DpMode(raw.pop("dp_mode")), **raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MalformedPartial(f"aggregation settings missing or garbled ({exc})") from None


def _digests(text: str, worker: str) -> dict[str, str]:
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64
                                            for k, v in raw.items()):
        raise MalformedPartial(f"digests from {worker!r} must map each device to the sha256 hex of its update")
    return raw
