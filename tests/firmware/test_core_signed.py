"""The C core opens edge/signed_artifact.py's envelopes: a genuine one verifies; unsigned, truncated, forged,
moved, tampered, replayed and conflicting ones are refused with the Python side's reasons."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge.signed_artifact import MAGIC, SignatureRejected, generate_signing_key, open_envelope, public_pem, sign

from .core_driver import run

TOPIC = "dmskd/demo/model/3"


@pytest.fixture(scope="module")
def fleet_key():
    return generate_signing_key()


@pytest.fixture(params=["host-backend", "monocypher"])
def verifier(request: pytest.FixtureRequest) -> Path:
    """The driver with the host's Ed25519 backend (libsodium) and with Monocypher's (the MCU's)."""
    return request.getfixturevalue("core_cli" if request.param == "host-backend" else "monocypher_cli")


def verify(cli: Path, tmp: Path, key, *items: tuple[str, bytes]) -> list[dict]:
    """Open (topic, envelope) pairs in order through one C replay guard; one event per envelope."""
    (tmp / "fleet.pub").write_bytes(public_pem(key.public_key()))
    args: list[str | Path] = ["verify", "--key", tmp / "fleet.pub"]
    for i, (topic, envelope) in enumerate(items):
        (tmp / f"e{i}.bin").write_bytes(envelope)
        args += ["--topic", topic, "--stream", "model", tmp / f"e{i}.bin"]
    result = run(cli, *args)
    assert result.ok, result.out
    assert result.out["backend"] in ("libsodium", "monocypher"), "the core was built without an Ed25519 backend"
    return result.out["events"]


def test_a_genuine_envelope_verifies_and_yields_its_payload(verifier: Path, tmp_path: Path, fleet_key) -> None:
    payload = b"weights" * 300
    (event,) = verify(verifier, tmp_path, fleet_key, (TOPIC, sign(fleet_key, TOPIC, 7, payload)))
    assert event["counter"] == 7 and event["new"] is True and event["topic"] == TOPIC
    assert event["payload_sha256"] == hashlib.sha256(payload).hexdigest()


def _forged(key) -> bytes:
    return sign(generate_signing_key(), TOPIC, 9, b"stranger's model")


def _flipped(key) -> bytes:
    env = bytearray(sign(key, TOPIC, 9, b"model bytes"))
    env[-70] ^= 1  # a payload byte: the signature no longer covers it
    return bytes(env)


def _bad_signature_byte(key) -> bytes:
    env = bytearray(sign(key, TOPIC, 9, b"model bytes"))
    env[-1] ^= 0x40
    return bytes(env)


CASES = {
    "unsigned": (lambda key: b"plain payload", "unsigned message"),
    "truncated": (lambda key: MAGIC + b"\0\0\0\x10" + b"x" * 10, "truncated signed message"),
    "header-beyond": (lambda key: MAGIC + b"\0\0\x40\x00" + b"x" * 200, "declares a header of 16384 bytes"),
    "forged-by-a-stranger": (_forged, "forged or corrupted"),
    "payload-tampered": (_flipped, "forged or corrupted"),
    "signature-tampered": (_bad_signature_byte, "forged or corrupted"),
    "moved-topic": (lambda key: sign(key, "dmskd/demo/model/2", 9, b"m"), "(moved topic)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_envelopes_are_refused_like_python_refuses_them(verifier: Path, tmp_path: Path, fleet_key,
                                                            name: str) -> None:
    build, detail = CASES[name]
    envelope = build(fleet_key)
    with pytest.raises(SignatureRejected) as python:
        open_envelope(fleet_key.public_key(), TOPIC, envelope)
    assert detail in str(python.value)
    (event,) = verify(verifier, tmp_path, fleet_key, (TOPIC, envelope))
    assert event.get("rejected") == "signature_rejected", event
    assert detail in event["detail"]


def test_replay_guard_refuses_older_and_conflicting_counters(verifier: Path, tmp_path: Path, fleet_key) -> None:
    v5 = sign(fleet_key, TOPIC, 5, b"model five")
    events = verify(verifier, tmp_path, fleet_key, (TOPIC, v5), (TOPIC, v5), (TOPIC, sign(fleet_key, TOPIC, 4, b"old")),
                    (TOPIC, sign(fleet_key, TOPIC, 5, b"other five")), (TOPIC, sign(fleet_key, TOPIC, 6, b"six")))
    assert events[0]["new"] is True and events[1]["new"] is False  # a re-delivery of the held message
    assert "replayed model: counter 4 is older than the 5 already held" in events[2]["detail"]
    assert "a different message with the held counter 5" in events[3]["detail"]
    assert events[4]["counter"] == 6 and events[4]["new"] is True


def test_a_private_key_file_is_not_accepted_as_the_pinned_key(verifier: Path, tmp_path: Path, fleet_key) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = fleet_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    (tmp_path / "wrong.pem").write_bytes(pem)
    result = run(verifier, "verify", "--key", tmp_path / "wrong.pem")
    assert not result.ok and "not a PEM public key" in result.out["message"]
