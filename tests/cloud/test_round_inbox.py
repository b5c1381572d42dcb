"""Round admission: a table of malformed updates, each with the rejection reason it must produce.

Every case starts from one valid update and breaks one thing. The table is data (name, how the
update is built and where it arrives, the reason substring), so new cases are one line each and
the same table can seed a fuzzer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from cloud.declared_settings import DeclaredSettings
from cloud.round_inbox import RoundInbox
from cloud.strategy import DpMode
from edge.noise_source import SecureNoise
from edge.plan import TrainingSettings
from edge.privacy import DiscreteGaussianMechanism, clip_update, local_release_norm_bound
from edge.wire import UpdateMeta, encode_update

FLEET = "f1"
ROUND = 5
BASE_VERSION = 4
CLIP = 1.0
DEVICES = frozenset({"d0", "d1", "d2", "d3"})
TEMPLATE = {"dense_0/kernel": (6, 4), "dense_0/bias": (4,)}


def valid_tensors(seed: int = 0, norm: float = 0.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in TEMPLATE.items()}
    total = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in raw.values()))
    return {k: (v * (norm / total)).astype(np.float32) for k, v in raw.items()}


def valid_meta(device: str = "d0", **changes) -> UpdateMeta:
    meta = UpdateMeta(fleet=FLEET, device=device, round=ROUND, base_version=BASE_VERSION, num_examples=40,
                      clip=CLIP, noise_multiplier=0.0, dp_mode="none", update_id=f"{device}-r{ROUND}-a")
    return dataclasses.replace(meta, **changes)


def valid_blob(device: str = "d0", seed: int = 0) -> bytes:
    return encode_update(valid_tensors(seed), valid_meta(device))


def make_inbox(dp_mode: DpMode = DpMode.NONE, noise_multiplier: float = 0.0, **kwargs) -> RoundInbox:
    return RoundInbox(round_=ROUND, base_version=BASE_VERSION, fleet=FLEET, devices=DEVICES,
                      template=dict(TEMPLATE), dp_mode=dp_mode, clip=CLIP, noise_multiplier=noise_multiplier, **kwargs)


def with_tensors(**changes: np.ndarray | None) -> bytes:
    tensors = valid_tensors()
    for name, value in changes.items():
        name = name.replace("__", "/")
        if value is None:
            tensors.pop(name)
        else:
            tensors[name] = value
    return encode_update(tensors, valid_meta())


def with_meta(**changes) -> bytes:
    return encode_update(valid_tensors(), valid_meta(**changes))


def _nan_kernel() -> np.ndarray:
    kernel = valid_tensors()["dense_0/kernel"].copy()
    kernel[2, 1] = np.nan
    return kernel


@dataclass(frozen=True)
class Case:
    """One malformed update: what arrives on which topic, and the reason it must be refused for."""

    name: str
    build: Callable[[], bytes]
    reason: str
    topic_device: str = "d0"
    topic_round: int = ROUND
    before: tuple[tuple[str, Callable[[], bytes]], ...] = field(default=())  # accepted earlier this round


CASES = [
    Case("truncated-payload", lambda: valid_blob()[:60], "truncated"),
    Case("truncated-tensor-data", lambda: valid_blob()[:-10], "not valid safetensors"),
    Case("not-safetensors", lambda: b"\x10" + b"\0" * 7 + b"GET / HTTP/1.1\r\n", "not valid safetensors"),
    Case("wrong-shape", lambda: with_tensors(dense_0__bias=np.zeros(5, np.float32)),
         "tensor dense_0/bias has shape (5,), expected (4,)"),
    Case("nan", lambda: with_tensors(dense_0__kernel=_nan_kernel()), "NaN or infinity"),
    Case("infinity", lambda: with_tensors(dense_0__bias=np.array([0, np.inf, 0, 0], np.float32)),
         "NaN or infinity"),
    Case("unknown-device", lambda: valid_blob("intruder"), "unknown device 'intruder'", topic_device="intruder"),
    Case("device-mismatch-topic-vs-metadata", lambda: valid_blob("d1"), "metadata names device 'd1'"),
    Case("stale-round-on-topic", valid_blob, "stale or early update for round 4", topic_round=ROUND - 1),
    Case("early-round-on-topic", valid_blob, "stale or early update for round 6", topic_round=ROUND + 1),
    Case("stale-round-in-metadata", lambda: with_meta(round=ROUND - 1), "built for round 4"),
    Case("wrong-base-version", lambda: with_meta(base_version=BASE_VERSION - 1), "on version 3"),
    Case("wrong-fleet", lambda: with_meta(fleet="other"), "fleet 'other'"),
    Case("norm-above-clip", lambda: encode_update(valid_tensors(norm=3.0), valid_meta()),
         "exceeds the clip norm"),
    Case("zero-example-count", lambda: with_meta(num_examples=0), "example count 0 outside"),
    Case("negative-example-count", lambda: with_meta(num_examples=-3), "example count -3 outside"),
    Case("absurd-example-count", lambda: with_meta(num_examples=10**9), "example count 1000000000 outside"),
    Case("second-different-update-replay", lambda: with_meta(update_id="d0-r5-b"), "second, different update",
         before=(("d0", valid_blob),)),
    Case("extra-tensor", lambda: with_tensors(extra=np.zeros(3, np.float32)), "unexpected ['extra']"),
    Case("missing-tensor", lambda: with_tensors(dense_0__bias=None), "missing ['dense_0/bias']"),
    Case("tampered-bytes", lambda: valid_blob()[:-1] + bytes([valid_blob()[-1] ^ 0x01]), "checksum mismatch"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_update_is_rejected_with_its_reason(case: Case) -> None:
    inbox = make_inbox()
    for device, build in case.before:
        assert inbox.offer(device, ROUND, build()) is not None
    accepted_before = dict(inbox.accepted)

    assert inbox.offer(case.topic_device, case.topic_round, case.build()) is None

    assert len(inbox.rejected) == 1, inbox.rejected
    device, reason = inbox.rejected[0]
    assert device == case.topic_device
    assert case.reason in reason, reason
    assert inbox.accepted == accepted_before  # the round is not corrupted


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def test_valid_base_update_is_accepted_so_each_case_breaks_exactly_one_thing() -> None:
    inbox = make_inbox()
    update = inbox.offer("d0", ROUND, valid_blob())
    assert update is not None and update.device == "d0" and update.num_examples == 40
    assert inbox.rejected == []


def test_same_update_offered_twice_is_counted_once_and_not_rejected() -> None:
    inbox = make_inbox()
    blob = valid_blob("d2")
    first = inbox.offer("d2", ROUND, blob)
    again = inbox.offer("d2", ROUND, blob)
    assert first is not None and again is None
    assert list(inbox.accepted) == ["d2"]
    assert inbox.accepted["d2"] is first
    assert inbox.rejected == []


def test_valid_updates_among_malformed_ones_are_all_accepted() -> None:
    inbox = make_inbox()
    seeds = {"d1": 1, "d2": 2, "d3": 3}
    valid = {d: valid_blob(d, seed=seed) for d, seed in seeds.items()}
    stream = [("d1", ROUND, valid["d1"])]
    for case in CASES:
        if not case.before:
            stream.append((case.topic_device, case.topic_round, case.build()))
        if case.name == "nan":
            stream.append(("d2", ROUND, valid["d2"]))
    stream.append(("d3", ROUND, valid["d3"]))
    stream.append(("d2", ROUND, valid["d2"]))  # a resend, dropped silently

    for topic_device, topic_round, blob in stream:
        inbox.offer(topic_device, topic_round, blob)

    assert sorted(inbox.accepted) == ["d1", "d2", "d3"]
    assert len(inbox.rejected) == sum(1 for c in CASES if not c.before)
    for device, seed in seeds.items():
        want = valid_tensors(seed=seed)
        for name in TEMPLATE:
            assert inbox.accepted[device].delta[name].tobytes() == want[name].tobytes()


def test_local_dp_mode_admits_noised_updates_whose_norm_exceeds_the_clip() -> None:
    inbox = make_inbox(DpMode.LOCAL, noise_multiplier=1.0)
    noised = valid_tensors(norm=4.0)
    meta = valid_meta(dp_mode="local", noise_multiplier=1.0)
    assert inbox.offer("d0", ROUND, encode_update(noised, meta)) is not None


def test_update_clipped_on_device_passes_the_norm_check() -> None:
    clipped, _ = clip_update(valid_tensors(norm=9.0), CLIP)
    assert make_inbox(DpMode.CENTRAL).offer("d0", ROUND, encode_update(clipped, valid_meta())) is not None


def test_rejection_found_before_decoding_is_recorded() -> None:
    inbox = make_inbox()
    inbox.reject("d3", "chunk failed its sha256 check")
    assert inbox.rejected == [("d3", "chunk failed its sha256 check")]


# --- the declaration an update carries must be its plan's (cloud.declared_settings) ---

PLANNED = DeclaredSettings("local", CLIP, 1.5, training=TrainingSettings().declaration())
LYING = [
    ("dp_mode", {"dp_mode": "none"}, "declares DP mode 'none', its plan says 'local'"),
    ("clip", {"clip": 4.0}, "declares clip 4.0, its plan says 1.0"),
    ("noise", {"noise_multiplier": 0.1}, "declares noise multiplier 0.1, its plan says 1.5"),
    ("encoding", {"encoding": "uint8-affine-delta"}, "encoding"),
    ("training", {"training": TrainingSettings(lr=0.5).declaration()}, "declares training settings"),
    ("no training", {"training": ""}, "declares training settings none"),
]


@pytest.mark.parametrize(("field_name", "changes", "reason"), LYING, ids=[c[0] for c in LYING])
def test_an_update_whose_declaration_differs_from_its_plan_is_rejected_naming_the_field(field_name, changes,
                                                                                       reason) -> None:
    inbox = make_inbox(DpMode.LOCAL, 1.5, declared={"d0": PLANNED},
                       encodings=("float32-delta", "uint8-affine-delta"))
    honest = dataclasses.replace(valid_meta(dp_mode="local", noise_multiplier=1.5), training=PLANNED.training)
    assert make_inbox(DpMode.LOCAL, 1.5, declared={"d0": PLANNED}).offer(
        "d0", ROUND, encode_update(valid_tensors(), honest)) is not None
    lying = dataclasses.replace(honest, **changes)
    tensors = valid_tensors()
    if field_name == "encoding":  # a well-formed uint8 update, so that only the declaration is wrong
        tensors = {k: np.zeros(v.shape, np.uint8) for k, v in tensors.items()}
        tensors.update({f"{k}.qparams": np.array([1e-3, 0.0], np.float32) for k in TEMPLATE})
    assert inbox.offer("d0", ROUND, encode_update(tensors, lying)) is None
    assert reason in inbox.rejected[-1][1]


def test_local_mode_admits_an_honest_release_and_rejects_a_norm_beyond_what_clip_and_noise_allow() -> None:
    dimension = sum(int(np.prod(s)) for s in TEMPLATE.values())
    z = 1.5
    mechanism = DiscreteGaussianMechanism(CLIP, z, dimension)
    bound = local_release_norm_bound(CLIP, z, dimension)
    meta = valid_meta(dp_mode="local", noise_multiplier=z)
    honest = [mechanism.privatise(valid_tensors(seed=s, norm=CLIP), SecureNoise()) for s in range(20)]
    inbox = make_inbox(DpMode.LOCAL, z)
    for i, release in enumerate(honest):
        inbox.offer("d0", ROUND, encode_update(release, dataclasses.replace(meta, update_id=f"u{i}")))
        assert "d0" in inbox.accepted, inbox.rejected
        inbox.accepted.clear()
        inbox._accepted_digests.clear()
    boosted = valid_tensors(norm=1.01 * bound)
    inbox.offer("d1", ROUND, encode_update(boosted, dataclasses.replace(meta, device="d1")))
    assert "d1" not in inbox.accepted and "most that clip 1.0 plus noise z = 1.5 allows" in inbox.rejected[-1][1]


def test_a_second_update_under_a_known_id_is_rejected_with_a_record_not_dropped_as_a_duplicate() -> None:
    inbox = make_inbox()
    first = encode_update(valid_tensors(seed=1), valid_meta())
    forged = encode_update(valid_tensors(seed=2), valid_meta())  # same device, round and predictable update id
    assert inbox.offer("d0", ROUND, first) is not None
    assert inbox.offer("d0", ROUND, forged) is None
    assert inbox.rejected == [("d0", "second, different update from d0 in round 5 (replay); the first one counts")]
    assert inbox.accepted["d0"].delta["dense_0/bias"].tobytes() == valid_tensors(seed=1)["dense_0/bias"].tobytes()
