"""Round admission beyond the table of malformed updates (simulator.malformed_updates, run by
test_malformed_updates.py): resends, valid updates among malformed ones, local-mode norms, declarations,
and rejections recorded as reason codes with sanitised, bounded records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cloud.declared_settings import DeclaredSettings
from cloud.rejections import Rejection, RejectionReason
from cloud.strategy import DpMode
from edge.noise_source import SecureNoise
from edge.plan import TrainingSettings
from edge.privacy import DiscreteGaussianMechanism, clip_update, local_release_norm_bound
from edge.wire import encode_update, training_digest
from simulator.malformed_updates import (
    CASES,
    CLIP,
    ROUND,
    TEMPLATE,
    make_inbox,
    valid_blob,
    valid_meta,
    valid_tensors,
)


def test_same_update_offered_twice_is_counted_once_and_not_rejected() -> None:
    inbox = make_inbox()
    blob = valid_blob("d2")
    first = inbox.offer("d2", ROUND, blob)
    again = inbox.offer("d2", ROUND, blob)
    assert first is not None and again is None
    assert list(inbox.accepted) == ["d2"]
    assert inbox.accepted["d2"] == first.num_examples
    assert inbox.rejected.total == 0


def test_valid_updates_among_malformed_ones_are_all_accepted() -> None:
    inbox = make_inbox()
    seeds = {"d1": 1, "d2": 2, "d3": 3}
    valid = {d: valid_blob(d, seed=seed) for d, seed in seeds.items()}
    stream = [("d1", ROUND, valid["d1"])]
    malformed = [c for c in CASES if not c.before and c.inbox is make_inbox]
    for case in malformed:
        stream.append((case.topic_device, case.topic_round, case.build()))
        if case.name == "nan":
            stream.append(("d2", ROUND, valid["d2"]))
    stream.append(("d3", ROUND, valid["d3"]))
    stream.append(("d2", ROUND, valid["d2"]))  # a resend, dropped silently

    summed: list = []
    inbox.sink = summed.append  # what the round's running sum receives
    for topic_device, topic_round, blob in stream:
        inbox.offer(topic_device, topic_round, blob)

    assert sorted(inbox.accepted) == ["d1", "d2", "d3"]
    assert len(inbox.rejected) == len(malformed)
    assert inbox.rejected.counts == {r: sum(c.reason is r for c in malformed) for r in {c.reason for c in malformed}}
    assert sorted(u.device for u in summed) == ["d1", "d2", "d3"]  # each once, the resend not again
    for update in summed:
        want = valid_tensors(seed=seeds[update.device])
        for name in TEMPLATE:
            assert update.delta[name].tobytes() == want[name].tobytes()


def test_local_dp_mode_admits_noised_updates_whose_norm_exceeds_the_clip() -> None:
    inbox = make_inbox(DpMode.LOCAL, noise_multiplier=1.0)
    noised = valid_tensors(norm=4.0)
    meta = valid_meta(dp_mode="local", noise_multiplier=1.0)
    assert inbox.offer("d0", ROUND, encode_update(noised, meta)) is not None


def test_update_clipped_on_device_passes_the_norm_check() -> None:
    clipped, _ = clip_update(valid_tensors(norm=9.0), CLIP)
    meta = valid_meta(dp_mode="central")
    assert make_inbox(DpMode.CENTRAL).offer("d0", ROUND, encode_update(clipped, meta)) is not None


def test_rejection_found_before_decoding_is_recorded_with_its_reason() -> None:
    inbox = make_inbox()
    record = inbox.reject("d3", RejectionReason.CHUNK_REJECTED, "chunk failed its sha256 check")
    assert record == Rejection("d3", RejectionReason.CHUNK_REJECTED, "chunk failed its sha256 check")
    assert inbox.rejected.sample == [record] and inbox.rejected.counts == {RejectionReason.CHUNK_REJECTED: 1}


# --- the declaration an update carries must be its plan's (cloud.declared_settings) ---

PLANNED = DeclaredSettings("local", CLIP, 1.5, training=TrainingSettings().declaration())
LYING = [
    ("dp_mode", {"dp_mode": "none"}, "declares DP mode 'none', its plan says 'local'"),
    ("clip", {"clip": 4.0}, "declares clip 4.0, its plan says 1.0"),
    ("noise", {"noise_multiplier": 0.1}, "declares noise multiplier 0.1, its plan says 1.5"),
    ("encoding", {"encoding": "uint8-affine-delta"}, "encoding"),
    ("training", {"training": training_digest(TrainingSettings(lr=0.5).declaration())},
     f"its plan says '{training_digest(TrainingSettings().declaration())}'"),
    ("no training", {"training": ""}, "declares training settings digest 'none'"),
]


@pytest.mark.parametrize(("field_name", "changes", "reason"), LYING, ids=[c[0] for c in LYING])
def test_an_update_whose_declaration_differs_from_its_plan_is_rejected_naming_the_field(field_name, changes,
                                                                                       reason) -> None:
    inbox = make_inbox(DpMode.LOCAL, 1.5, declared={"d0": PLANNED},
                       encodings=("float32-delta", "uint8-affine-delta"))
    honest = dataclasses.replace(valid_meta(dp_mode="local", noise_multiplier=1.5),
                                 training=training_digest(PLANNED.training or ""))
    assert make_inbox(DpMode.LOCAL, 1.5, declared={"d0": PLANNED}).offer(
        "d0", ROUND, encode_update(valid_tensors(), honest)) is not None
    lying = dataclasses.replace(honest, **changes)
    tensors = valid_tensors()
    if field_name == "encoding":  # a well-formed uint8 update, so that only the declaration is wrong
        tensors = {k: np.zeros(v.shape, np.uint8) for k, v in tensors.items()}
        tensors.update({f"{k}.qparams": np.array([1e-3, 0.0], np.float32) for k in TEMPLATE})
    assert inbox.offer("d0", ROUND, encode_update(tensors, lying)) is None
    assert inbox.rejected.last is not None and reason in inbox.rejected.last.detail
    assert inbox.rejected.counts == {RejectionReason.DECLARATION_MISMATCH: 1}


def test_local_mode_admits_an_honest_release_and_rejects_a_norm_beyond_what_clip_and_noise_allow() -> None:
    dimension = sum(int(np.prod(s)) for s in TEMPLATE.values())
    z = 1.5
    mechanism = DiscreteGaussianMechanism(CLIP, z, dimension)
    bound = local_release_norm_bound(CLIP, z, dimension)
    meta = valid_meta(dp_mode="local", noise_multiplier=z)
    honest = [mechanism.privatise(valid_tensors(seed=s, norm=CLIP), SecureNoise()) for s in range(20)]
    inbox = make_inbox(DpMode.LOCAL, z)
    for release in honest:
        inbox.offer("d0", ROUND, encode_update(release, meta))
        assert "d0" in inbox.accepted, inbox.rejected
        inbox.accepted.clear()
        inbox._accepted_digests.clear()
    boosted = valid_tensors(norm=1.01 * bound)
    inbox.offer("d1", ROUND, encode_update(boosted, dataclasses.replace(meta, device="d1")))
    assert "d1" not in inbox.accepted and inbox.rejected.last is not None
    assert inbox.rejected.last.reason is RejectionReason.NORM_BOUND
    assert "most that clip 1.0 plus noise z = 1.5 allows" in inbox.rejected.last.detail


def test_a_second_update_under_a_known_id_is_rejected_with_a_record_not_dropped_as_a_duplicate() -> None:
    inbox = make_inbox()
    summed: list = []
    inbox.sink = summed.append
    first = encode_update(valid_tensors(seed=1), valid_meta())
    forged = encode_update(valid_tensors(seed=2), valid_meta())  # same device, round and predictable update id
    assert inbox.offer("d0", ROUND, first) is not None
    assert inbox.offer("d0", ROUND, forged) is None
    assert inbox.rejected.sample == [Rejection("d0", RejectionReason.REPLAY,
                                               "second, different update from d0 in round 5 (replay); the first "
                                               "one counts")]
    assert [u.delta["dense_0/bias"].tobytes() for u in summed] == [valid_tensors(seed=1)["dense_0/bias"].tobytes()]


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_a_quantised_update_at_the_clip_norm_is_admitted_despite_its_rounding(bits):
    from edge.stochastic_quantization import encoding_for_bits, quantize
    from simulator import malformed_updates as mu

    encoding = encoding_for_bits(bits)
    inbox = mu.make_inbox(DpMode.CENTRAL, encodings=(encoding,))
    for seed in range(20):  # at norm C, rounding may push an honest update past C: the slack admits it
        wire = quantize(mu.valid_tensors(seed, norm=mu.CLIP), bits, np.random.default_rng(seed))
        device = sorted(mu.DEVICES)[seed % len(mu.DEVICES)]
        inbox = inbox if device not in inbox.accepted else mu.make_inbox(DpMode.CENTRAL, encodings=(encoding,))
        blob = encode_update(wire, mu.valid_meta(device, dp_mode="central", encoding=encoding))
        assert inbox.offer(device, mu.ROUND, blob) is not None, inbox.rejected.last


def test_a_quantised_update_with_an_inflated_scale_is_refused():
    from edge.stochastic_quantization import QPARAMS, encoding_for_bits, quantize
    from simulator import malformed_updates as mu

    encoding = encoding_for_bits(8)
    wire = quantize(mu.valid_tensors(0, norm=0.01), 8, np.random.default_rng(0))
    wire[QPARAMS][:, 0] *= 1000  # a stranger buys rounding slack with a huge scale
    inbox = mu.make_inbox(encodings=(encoding,))
    assert inbox.offer("d0", mu.ROUND, encode_update(wire, mu.valid_meta(encoding=encoding))) is None
    assert inbox.rejected.last.reason.value == "norm_bound"
