"""A worker's partial sum as bytes: it round-trips exactly, and a malformed one is refused with its reason."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cloud.partial_sum import PartialSum, device_rounding_noise
from cloud.partial_sum_wire import MalformedPartial, WorkerPartial, decode_partial, encode_partial
from cloud.rejections import RejectionLog, RejectionReason
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig

TEMPLATE = {"dense/kernel": (6, 4), "dense/bias": (4,)}
SEED = np.random.SeedSequence(3)
CENTRAL = FedAvgConfig(DpMode.CENTRAL, clip=0.5, noise_multiplier=0.8)
NONE = FedAvgConfig(DpMode.NONE)


def worker_partial(config: FedAvgConfig, devices: int = 3) -> WorkerPartial:
    rng = np.random.default_rng(0)
    partial = PartialSum.empty(TEMPLATE, config)
    digests = {}
    for i in range(devices):
        device = f"m{i}"
        partial.add(AcceptedUpdate(device, {n: rng.normal(0, 0.1, s).astype(np.float32) for n, s in TEMPLATE.items()},
                                   int(rng.integers(1, 40))), device_rounding_noise(SEED, 0, device))
        digests[device] = hashlib.sha256(device.encode()).hexdigest()
    rejected = RejectionLog()
    rejected.record("intruder", RejectionReason.NOT_IN_COHORT, "not in its cohort")
    return WorkerPartial("w1", 0, partial, digests, rejected)


@pytest.mark.parametrize("config", [CENTRAL, NONE], ids=["central-grid", "none"])
def test_partial_sum_round_trips_bit_for_bit(config: FedAvgConfig) -> None:
    sent = worker_partial(config)
    got = decode_partial(encode_partial(sent), 0, config, TEMPLATE)
    assert (got.worker, got.round_, got.digests) == (sent.worker, sent.round_, sent.digests)
    assert (got.partial.count, got.partial.weight, got.partial.devices) == (3, sent.partial.weight, {"m0", "m1", "m2"})
    for name, arr in sent.partial.total.items():
        assert got.partial.total[name].dtype == arr.dtype and got.partial.total[name].tobytes() == arr.tobytes()
    assert got.rejected.count(RejectionReason.NOT_IN_COHORT) == 1
    assert encode_partial(got) == encode_partial(sent)  # one layout for one content


def test_encoding_is_the_same_bytes_whatever_order_devices_were_added_in() -> None:
    a, b = worker_partial(NONE), worker_partial(NONE)
    b.digests = dict(reversed(list(b.digests.items())))
    assert encode_partial(a) == encode_partial(b)


def tampered(blob: bytes, old: bytes, new: bytes) -> bytes:
    assert old in blob and len(old) == len(new)
    return blob.replace(old, new, 1)


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda b: b[:20], "truncated"),
    (lambda b: b"\x00" * 8 + b[8:], "not valid safetensors"),
    (lambda b: tampered(b, b'"round":"0"', b'"round":"7"'), "round 7"),
    (lambda b: tampered(b, b'"count":"3"', b'"count":"4"'), "counts 4 updates"),
    (lambda b: tampered(b, b"dmskd-partial-sum/1", b"dmskd-partial-sum/9"), "format"),
    (lambda b: tampered(b, b'\\"clip\\": 0.5', b'\\"clip\\": 9.5'), "summed under"),
], ids=["truncated", "garbage-header", "wrong-round", "count-mismatch", "format", "other-settings"])
def test_malformed_partial_is_refused_with_its_reason(mutate, reason: str) -> None:
    blob = encode_partial(worker_partial(CENTRAL))
    with pytest.raises(MalformedPartial, match=reason):
        decode_partial(mutate(blob), 0, CENTRAL, TEMPLATE)


def test_partial_of_another_model_is_refused() -> None:
    blob = encode_partial(worker_partial(CENTRAL))
    with pytest.raises(MalformedPartial, match="holds tensors"):
        decode_partial(blob, 0, CENTRAL, {"other": (24,), "dense/bias": (4,)})
    with pytest.raises(MalformedPartial, match=r"int64\[6, 5\]"):
        decode_partial(blob, 0, CENTRAL, {"dense/kernel": (6, 5), "dense/bias": (4,)})


def test_float_totals_with_nan_are_refused() -> None:
    sent = worker_partial(NONE)
    sent.partial.total["dense/bias"][0] = np.nan
    with pytest.raises(MalformedPartial, match="NaN"):
        decode_partial(encode_partial(sent), 0, NONE, TEMPLATE)
