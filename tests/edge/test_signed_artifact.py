"""Signed envelopes: what a device opens, and every way a stranger's message must fail to open."""

from __future__ import annotations

import pytest

from edge.signed_artifact import (
    ReplayGuard,
    SignatureRejected,
    generate_signing_key,
    load_public_key,
    load_signing_key,
    open_envelope,
    sign,
    write_signing_keypair,
)

KEY = generate_signing_key()
TOPIC = "dmskd/f/model/3"


def test_a_signed_message_opens_with_its_topic_counter_and_payload() -> None:
    opened = open_envelope(KEY.public_key(), TOPIC, sign(KEY, TOPIC, 3, b"weights"))
    assert (opened.topic, opened.counter, opened.payload) == (TOPIC, 3, b"weights")


@pytest.mark.parametrize(("name", "envelope", "reason"), [
    ("unsigned", b"\x08\x00\x00\x00\x00\x00\x00\x00{}", "unsigned message"),
    ("other key", sign(generate_signing_key(), TOPIC, 3, b"weights"), "signature does not verify"),
    ("payload altered", sign(KEY, TOPIC, 3, b"weights")[:-70] + b"X" + sign(KEY, TOPIC, 3, b"weights")[-69:],
     "signature does not verify"),
    ("moved topic", sign(KEY, "dmskd/f/model/2", 3, b"weights"), "arrived on"),
    ("truncated", sign(KEY, TOPIC, 3, b"weights")[:30], "truncated"),
    ("huge header", b"DMSKD-SIGNED-1\n\xff\xff\xff\xff" + bytes(80), "declares a header"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_a_message_the_fleet_key_did_not_sign_for_this_topic_is_refused(name, envelope, reason) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        open_envelope(KEY.public_key(), TOPIC, envelope)


def test_the_replay_guard_refuses_older_counters_and_conflicting_messages_and_admits_redelivery() -> None:
    guard = ReplayGuard()
    new = open_envelope(KEY.public_key(), TOPIC, sign(KEY, TOPIC, 3, b"v3"))
    assert guard.admit("model", new) is True
    assert guard.admit("model", new) is False  # a retained re-delivery of what is held
    with pytest.raises(SignatureRejected, match="older than the 3 already held"):
        guard.admit("model", open_envelope(KEY.public_key(), "dmskd/f/model/2", sign(KEY, "dmskd/f/model/2", 2, b"v2")))
    with pytest.raises(SignatureRejected, match="different message with the held counter 3"):
        guard.admit("model", open_envelope(KEY.public_key(), TOPIC, sign(KEY, TOPIC, 3, b"other")))
    assert guard.admit("model", open_envelope(KEY.public_key(), TOPIC, sign(KEY, TOPIC, 4, b"v4"))) is True


def test_key_files_round_trip_and_the_private_key_is_readable_by_its_owner_only(tmp_path) -> None:
    private, public = tmp_path / "a" / "fleet-signing.key", tmp_path / "fleet-signing.pub"
    key = write_signing_keypair(private, public)
    assert private.stat().st_mode & 0o077 == 0
    envelope = sign(load_signing_key(private), TOPIC, 1, b"x")
    assert open_envelope(load_public_key(public), TOPIC, envelope).payload == b"x"
    assert open_envelope(key.public_key(), TOPIC, envelope).counter == 1
    with pytest.raises(FileNotFoundError, match="python -m cloud provision"):
        load_public_key(tmp_path / "missing.pub")
