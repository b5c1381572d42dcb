"""The per-process cache of broadcasts: a hit is exactly what verifying the same bytes again gives, never more."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.artifact_cache import CACHED_BROADCASTS, ArtifactCache
from edge.signed_artifact import SignatureRejected, sign

TOPIC = "dmskd/demo/step/3"


def test_a_broadcast_is_verified_once_and_the_same_bytes_give_the_same_payload() -> None:
    key, cache = Ed25519PrivateKey.generate(), ArtifactCache()
    envelope = sign(key, TOPIC, 3, b"the step")
    first = cache.opened(key.public_key(), TOPIC, envelope)
    assert cache.opened(key.public_key(), TOPIC, envelope) is first  # the second device: no second verification
    assert first.payload == b"the step" and first.counter == 3


def test_a_forged_envelope_is_refused_after_the_genuine_one_was_cached() -> None:
    key, stranger, cache = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), ArtifactCache()
    genuine = sign(key, TOPIC, 3, b"the step")
    cache.opened(key.public_key(), TOPIC, genuine)
    altered = genuine[:-70] + bytes([genuine[-70] ^ 1]) + genuine[-69:]  # one payload bit flipped, same signature
    for forged in (sign(stranger, TOPIC, 3, b"the step"), altered):
        with pytest.raises(SignatureRejected):
            cache.opened(key.public_key(), TOPIC, forged)
    with pytest.raises(SignatureRejected, match="moved topic"):
        cache.opened(key.public_key(), "dmskd/demo/step/4", genuine)


def test_a_hit_under_one_fleet_key_is_no_hit_under_another() -> None:
    key, other, cache = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), ArtifactCache()
    envelope = sign(key, TOPIC, 3, b"the step")
    cache.opened(key.public_key(), TOPIC, envelope)
    with pytest.raises(SignatureRejected, match="does not verify"):
        cache.opened(other.public_key(), TOPIC, envelope)


def test_a_failed_build_is_not_kept_and_the_cache_holds_only_the_latest_entries() -> None:
    cache, builds = ArtifactCache(), []

    def failing() -> int:
        builds.append("fail")
        raise ValueError("bad step")

    for _ in range(2):
        with pytest.raises(ValueError):
            cache.shared("k", failing)
    assert builds == ["fail", "fail"]
    for i in range(CACHED_BROADCASTS + 1):
        cache.shared(i, lambda i=i: i * 10)
    rebuilt = []
    assert cache.shared(0, lambda: rebuilt.append(0) or -1) == -1  # the oldest entry was dropped
    assert cache.shared(CACHED_BROADCASTS, lambda: rebuilt.append(1) or -1) == CACHED_BROADCASTS * 10
    assert rebuilt == [0]
