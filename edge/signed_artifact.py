"""Ed25519-signed, versioned envelopes for everything the aggregator publishes (DESIGN.md §4, Identity).

The aggregator signs each plan, shard, student program, global model, cohort and round result with
the fleet's signing key; a device pins the fleet's public key (from provisioning) and opens an
envelope only if its signature verifies, it was signed for the topic it arrived on, and its counter
is not older than what the device already holds on that topic (`ReplayGuard`). The counter is bound
into the signature, so replaying an old retained model or plan does not pass.

    envelope = MAGIC | u32 header length | header JSON {topic, counter, sha256} | payload | signature(64)
    signature = Ed25519(MAGIC | u32 | header | payload)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"DMSKD-SIGNED-1\n"
SIGNATURE_BYTES = 64
MAX_HEADER_BYTES = 4096
PRIVATE_KEY_FILE = "fleet-signing.key"
PUBLIC_KEY_FILE = "fleet-signing.pub"


class SignatureRejected(ValueError):
    """An envelope that must not be acted on; the message says why."""


@dataclass(frozen=True)
class Opened:
    """A verified envelope: the topic it was signed for, its counter and its payload."""

    topic: str
    counter: int
    payload: bytes


def sign(key: Ed25519PrivateKey, topic: str, counter: int, payload: bytes) -> bytes:
    """The envelope of `payload` for logical `topic` at version `counter`."""
    if counter < 0:
        raise ValueError(f"a signing counter is >= 0, got {counter}")
    header = json.dumps({"topic": topic, "counter": int(counter), "sha256": hashlib.sha256(payload).hexdigest()},
                        sort_keys=True).encode()
    signed = MAGIC + struct.pack(">I", len(header)) + header + payload
    return signed + key.sign(signed)


def open_envelope(public_key: Ed25519PublicKey, topic: str, envelope: bytes) -> Opened:
    """Verify an envelope received on `topic`; SignatureRejected names what is wrong."""
    if not envelope.startswith(MAGIC):
        raise SignatureRejected(f"unsigned message on {topic}: the fleet's artefacts are signed (no {MAGIC!r} header)")
    start = len(MAGIC) + 4
    if len(envelope) < start + SIGNATURE_BYTES:
        raise SignatureRejected(f"truncated signed message on {topic} ({len(envelope)} bytes)")
    (header_len,) = struct.unpack(">I", envelope[len(MAGIC):start])
    if header_len > MAX_HEADER_BYTES or start + header_len + SIGNATURE_BYTES > len(envelope):
        raise SignatureRejected(f"signed message on {topic} declares a header of {header_len} bytes it does not hold")
    signed, signature = envelope[:-SIGNATURE_BYTES], envelope[-SIGNATURE_BYTES:]
    try:
        public_key.verify(signature, signed)
    except InvalidSignature:
        raise SignatureRejected(f"forged or corrupted message on {topic}: its signature does not verify "
                                f"against the pinned fleet key") from None
    header = json.loads(envelope[start:start + header_len])
    payload = signed[start + header_len:]
    if header.get("topic") != topic:
        raise SignatureRejected(f"message signed for {header.get('topic')!r} arrived on {topic!r} (moved topic)")
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise SignatureRejected(f"signed message on {topic}: payload does not match its signed digest")
    return Opened(topic, int(header["counter"]), payload)


@dataclass
class ReplayGuard:
    """The highest counter (and its payload digest) accepted per stream; refuses older or conflicting ones."""

    held: dict[str, tuple[int, str]] = field(default_factory=dict)

    def admit(self, stream: str, opened: Opened) -> bool:
        """True for a newer message, False for a re-delivery of the one held; SignatureRejected if older."""
        digest = hashlib.sha256(opened.payload).hexdigest()
        current = self.held.get(stream)
        if current is not None:
            counter, held_digest = current
            if opened.counter < counter:
                raise SignatureRejected(f"replayed {stream}: counter {opened.counter} is older than the "
                                        f"{counter} already held")
            if opened.counter == counter:
                if digest != held_digest:
                    raise SignatureRejected(f"{stream}: a different message with the held counter {counter}")
                return False
        self.held[stream] = (opened.counter, digest)
        return True


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh fleet signing key from the operating system's entropy."""
    return Ed25519PrivateKey.generate()


def write_signing_keypair(private_path: Path, public_path: Path) -> Ed25519PrivateKey:
    """Generate a fleet key; write it (PKCS8 PEM, mode 0600) and its public key (PEM); return it."""
    key = generate_signing_key()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as SubjectPublicKeyInfo PEM (what devices pin)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The fleet's private signing key; FileNotFoundError or ValueError names the file and the fix."""
    fix = (f"pass the {PRIVATE_KEY_FILE} that `python -m cloud provision` (DIR/aggregator/{PRIVATE_KEY_FILE}) or "
           f"`python -m simulator prepare` (DIR/{PRIVATE_KEY_FILE}) wrote")
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # never echo the library's text: it may quote the key
        held = " (it holds a public key)" if b"PUBLIC KEY-----" in data else ""
        raise ValueError(f"signing key {path} is not an unencrypted PEM private key{held}; {fix}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"signing key {path} is not an Ed25519 private key; {fix}")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The pinned fleet public key; FileNotFoundError or ValueError names the file and the fix."""
    fix = f"pass the {PUBLIC_KEY_FILE} that `python -m cloud provision` or `python -m simulator prepare` wrote"
    data = _read(path, "fleet public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # never echo the library's text: it may quote a private key
        held = " (it holds a private key: keep that off the device)" if b"PRIVATE KEY-----" in data else ""
        raise ValueError(f"fleet public key {path} is not a PEM public key{held}; {fix}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"fleet public key {path} is not an Ed25519 public key; {fix}")
    return key


def _read(path: Path, what: str) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory; pass the key file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {p} not found; `python -m cloud provision` or "
                                f"`python -m simulator prepare` writes one") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {p} ({exc.strerror}); check its permissions") from None
