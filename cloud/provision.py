"""Device identity on the broker (DESIGN.md §4, Identity): a fleet's CA, certificates, mosquitto config and ACL.

`provision(identities, out, ...)` writes, under `out`:

    ca/ca.crt, ca/ca.key                 the fleet's certificate authority (the key stays here, never on a device)
    aggregator/client.crt, client.key    CN = `<fleet>-aggregator` (the aggregator's MQTT client id, and its
                                         broker username); aggregator/fleet-signing.key, the fleet's Ed25519 key
    devices/<device>/client.crt, client.key, ca.crt, fleet-signing.pub
                                         CN = the device id (its broker username); with password auth also
                                         devices/<device>/password
    broker/server.crt, server.key        the broker's certificate, SAN = --host, 127.0.0.1 and localhost
    broker/mosquitto.conf, broker/acl    mosquitto 2.0: one TLS listener requiring client certificates from the
                                         fleet CA, the certificate's CN as username (and as client id), the ACL;
                                         with password auth the listener takes TLS without client certificates
                                         and broker/passwords (mosquitto's PBKDF2-SHA512 `$7$` format) instead
    fleet-signing.pub                    the fleet's public signing key (what devices pin)

Keys are ECDSA P-256 (fast to make, small on a meter), written PKCS#8 PEM with mode 0600. Every logical
topic T travels as chunks on T/<index> (edge/chunking.py), so every ACL rule ends in `/#`, which in MQTT
also matches T itself (the devices' last will is published on the bare status topic). The ACL names every
user explicitly (no `pattern` lines, which would apply to the aggregator as well).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_signing_keypair

DEFAULT_DAYS = 365
DEFAULT_TLS_PORT = 8883
DEFAULT_HOST = "127.0.0.1"
MAX_PACKET_SIZE = 1 << 20  # = simulator.broker.DEFAULT_MAX_PACKET_SIZE (cloud does not import the simulator)
PASSWORD_ITERATIONS = 101  # mosquitto_passwd 2.0's default; the passwords are 192 random bits, stretching adds nothing
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"  # the fleet file's rule for ids: safe in topics, ACL lines, CNs
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates are valid from a little before now, for devices' clocks

CA_DIR, AGGREGATOR_DIR, DEVICES_DIR, BROKER_DIR = "ca", "aggregator", "devices", "broker"
CERT_FILE, KEY_FILE, CA_FILE, PASSWORD_FILE = "client.crt", "client.key", "ca.crt", "password"


class ProvisionError(ValueError):
    """A fleet that cannot be provisioned as asked; the message names the problem and the fix."""


@dataclass(frozen=True)
class FleetIdentities:
    """Who gets an identity: the topic fleet name (dmskd/<fleet>/...) and the device ids."""

    fleet: str
    devices: tuple[str, ...]

    def __post_init__(self) -> None:
        check_name(self.fleet, "fleet name")
        if not self.devices:
            raise ProvisionError("the fleet has no devices; describe some in the fleet file")
        seen: set[str] = set()
        for device in self.devices:
            check_name(device, "device id")
            if device in seen:
                raise ProvisionError(f"device id {device!r} appears twice; ids must be unique")
            seen.add(device)
        if self.aggregator in seen:
            raise ProvisionError(f"device id {self.aggregator!r} is the aggregator's broker identity; "
                                 f"rename the device")

    @property
    def aggregator(self) -> str:
        """The aggregator's certificate CN, broker username and MQTT client id."""
        return aggregator_identity(self.fleet)


def aggregator_identity(fleet: str) -> str:
    """`<fleet>-aggregator`: the name the aggregator connects as (cloud/serve.py uses it as client id)."""
    return f"{fleet}-aggregator"


def check_name(name: str, what: str) -> str:
    """Return name if it is safe in a topic, an ACL line and a certificate CN; else ProvisionError."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ProvisionError(f"{what} {name!r} must be letters, digits, '-', '_' or '.', starting with a letter or "
                             f"digit (it names MQTT topics and broker users)")
    return name


def sanitise_fleet_name(name: str) -> str:
    """A fleet file's free-text name as a topic fleet name: 'smart-meter pilot' -> 'smart-meter-pilot'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name.strip()).strip("-._")
    return cleaned or "fleet"


def read_identities(source: Path, topic_fleet: str | None = None) -> tuple[FleetIdentities, str]:
    """The identities of a fleet file (.toml/.yaml) or a bundle directory, and where the fleet name came from.

    A bundle (`python -m simulator prepare --out D` writes D/bundle; D or D/bundle is accepted) carries its
    topic fleet name, which `topic_fleet` must then equal; a fleet file's `[fleet] name` is sanitised unless
    `topic_fleet` is given."""
    source = Path(source)
    if source.is_dir():
        from cloud.fleet_bundle import load_plans

        bundle_dir = source / "bundle" if (source / "bundle" / "bundle.json").exists() else source
        settings, plans = load_plans(bundle_dir)  # the identities need no programs or weights
        fleet = settings.fleet
        if topic_fleet is not None and topic_fleet != fleet:
            raise ProvisionError(f"--topic-fleet {topic_fleet!r} differs from the bundle's fleet {fleet!r} "
                                 f"({bundle_dir / 'bundle.json'}); its plans name that fleet, so drop --topic-fleet")
        return FleetIdentities(fleet, tuple(p.device for p in plans)), f"from the bundle {bundle_dir}"
    if not source.exists():
        raise FileNotFoundError(f"--fleet {source} not found; pass a fleet file (.toml, .yaml) or the bundle "
                                f"directory of `python -m simulator prepare --out DIR`")
    from cloud.fleet_file import load_fleet_file

    parsed = load_fleet_file(source)
    if topic_fleet is not None:
        return FleetIdentities(topic_fleet, tuple(d.device_id for d in parsed.devices)), "from --topic-fleet"
    fleet = sanitise_fleet_name(parsed.name)
    return (FleetIdentities(fleet, tuple(d.device_id for d in parsed.devices)),
            f"from the fleet file's name {parsed.name!r}; --topic-fleet to choose another")


# -- the ACL --------------------------------------------------------------------------------------------------


def device_rules(fleet: str, device: str) -> list[tuple[str, str]]:
    """(access, topic filter) of one device: write its own updates and status, read its own plan and cohort
    notice (whether it was sampled: secret from the other devices) and what all share."""
    root = f"dmskd/{fleet}"
    return [("write", f"{root}/round/+/update/{device}/#"),
            ("write", f"{root}/status/{device}/#"),
            ("read", f"{root}/plan/{device}/#"),
            ("read", f"{root}/fleet/#"),
            ("read", f"{root}/shard/#"),
            ("read", f"{root}/student/#"),
            ("read", f"{root}/model/#"),
            ("read", f"{root}/step/#"),
            ("read", f"{root}/round/+/result/#"),
            ("read", f"{root}/cohort/{device}/#")]


def aggregator_rules(fleet: str) -> list[tuple[str, str]]:
    """(access, topic filter) of the aggregator: write everything devices act on, read updates and status; and the
    aggregator-only subtree its sharded workers and gateways share (cloud/shard_protocol.py: the secret cohort)."""
    root = f"dmskd/{fleet}"
    writes = [f"{root}/{leaf}/#" for leaf in ("plan", "fleet", "shard", "student", "model", "step",
                                                 "round/+/result", "cohort")]
    return [("write", t) for t in writes] + [("read", f"{root}/round/+/update/+/#"), ("read", f"{root}/status/+/#"),
                                             ("readwrite", f"{root}/aggregators/#")]


def acl_text(identities: FleetIdentities) -> str:
    """The mosquitto acl_file: one `user` block per identity, nothing for anyone else."""
    lines = [f"# DMSKD fleet {identities.fleet}: written by `python -m cloud provision`; usernames are certificate",
             "# CNs (or password-file users). No rule here applies to anonymous clients, which are refused anyway.", ""]
    blocks = [(identities.aggregator, aggregator_rules(identities.fleet))]
    blocks += [(d, device_rules(identities.fleet, d)) for d in identities.devices]
    for user, rules in blocks:
        lines.append(f"user {user}")
        lines += [f"topic {access} {topic}" for access, topic in rules]
        lines.append("")
    return "\n".join(lines)


# -- certificates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(common_name: str, fleet: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"DMSKD fleet {fleet}"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca(fleet: str, days: int = DEFAULT_DAYS, now: dt.datetime | None = None) -> Issued:
    """A self-signed CA for one fleet (may sign end-entity certificates only: path length 0)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"DMSKD {fleet} CA", fleet)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def _issue(ca: Issued, common_name: str, fleet: str, usage: x509.ObjectIdentifier, days: int,
           now: dt.datetime | None, san: list[x509.GeneralName] | None = None) -> Issued:
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateBuilder().subject_name(_name(common_name, fleet)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_client(ca: Issued, common_name: str, fleet: str, days: int = DEFAULT_DAYS,
                 now: dt.datetime | None = None) -> Issued:
    """A TLS client certificate whose CN is the broker username (a device id or the aggregator's name)."""
    return _issue(ca, check_name(common_name, "certificate name"), fleet, ExtendedKeyUsageOID.CLIENT_AUTH, days, now)


def server_names(host: str) -> list[x509.GeneralName]:
    """The broker certificate's SAN: `host` (as an IP or a DNS name), 127.0.0.1 and localhost."""
    names: list[x509.GeneralName] = []
    for entry in (host, "127.0.0.1", "localhost"):
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(entry))
        except ValueError:
            general = x509.DNSName(entry)
        if general not in names:
            names.append(general)
    return names


def issue_server(ca: Issued, host: str, fleet: str, days: int = DEFAULT_DAYS, now: dt.datetime | None = None) -> Issued:
    """The broker's TLS server certificate, valid for `host`, 127.0.0.1 and localhost."""
    return _issue(ca, host, fleet, ExtendedKeyUsageOID.SERVER_AUTH, days, now, server_names(host))


# -- passwords (the fallback for brokers that take no client certificates) ------------------------------------


def mosquitto_password_hash(password: str, salt: bytes | None = None, iterations: int = PASSWORD_ITERATIONS) -> str:
    """mosquitto 2.0's password-file hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${b64encode(salt).decode()}${b64encode(digest).decode()}"


def new_password() -> str:
    """A random broker password (192 bits from the OS's entropy, URL-safe text)."""
    return secrets.token_urlsafe(24)


# -- the broker configuration ---------------------------------------------------------------------------------


def mosquitto_conf_text(out: Path, bind: str, port: int, password_auth: bool) -> str:
    """mosquitto 2.0 configuration of a provisioned directory (absolute paths), listening on bind:port."""
    broker = (out / BROKER_DIR).resolve()
    lines = ["# DMSKD fleet broker, written by `python -m cloud provision`; run: mosquitto -c "
             f"{broker / 'mosquitto.conf'}",
             "# mosquitto started as root switches to the 'mosquitto' user, which must then be able to read",
             f"# {broker} (or add `user <owner of these files>`).",
             "per_listener_settings false",
             f"listener {port} {bind}",
             f"cafile {(out / CA_DIR / 'ca.crt').resolve()}",
             f"certfile {broker / 'server.crt'}",
             f"keyfile {broker / 'server.key'}",
             "tls_version tlsv1.2"]
    if password_auth:
        lines += ["# password fallback: TLS authenticates the broker; clients log in with username and password",
                  "require_certificate false",
                  f"password_file {broker / 'passwords'}"]
    else:
        lines += ["require_certificate true",
                  "use_identity_as_username true"]
    lines += ["# the username (certificate CN) becomes the client id, so no client can take over another's session",
              "use_username_as_clientid true",
              "allow_anonymous false",
              f"acl_file {broker / 'acl'}",
              "# retained messages (plans, shards, models, statuses) survive a restart; saved every 60 s, not only",
              "# at a clean shutdown (the aggregator republishes everything it signed when it reconnects anyway)",
              "persistence true",
              f"persistence_location {broker / 'data'}/",
              "autosave_interval 60",
              f"max_packet_size {MAX_PACKET_SIZE}",
              "log_dest stderr",
              "log_type error", "log_type warning", "log_type notice", "log_type information",
              "connection_messages true",
              "log_timestamp true"]
    return "\n".join(lines) + "\n"


# -- writing a provisioned directory --------------------------------------------------------------------------


@dataclass(frozen=True)
class Provisioned:
    """What provision wrote: the directory, the fleet, and the broker's configuration."""

    out: Path
    identities: FleetIdentities
    host: str
    port: int
    password_auth: bool
    bind: str

    @property
    def broker_config(self) -> Path:
        return self.out / BROKER_DIR / "mosquitto.conf"

    @property
    def ca_cert(self) -> Path:
        return self.out / CA_DIR / "ca.crt"

    def identity_dir(self, name: str) -> Path:
        """The directory of the aggregator (by its name) or a device."""
        if name == self.identities.aggregator:
            return self.out / AGGREGATOR_DIR
        if name not in self.identities.devices:
            raise KeyError(f"{name!r} is neither the aggregator nor a device of fleet {self.identities.fleet!r}")
        return self.out / DEVICES_DIR / name


def write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 (created so, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def provision(identities: FleetIdentities, out: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_TLS_PORT,
              days: int = DEFAULT_DAYS, password_auth: bool = False, bind: str | None = None) -> Provisioned:
    """Write the fleet's CA, every identity, the signing key and the broker's config under `out` (a new directory).

    `host` is the name devices dial (in the broker's certificate); the broker listens on `bind` (default: host),
    e.g. 0.0.0.0 behind a DNS name."""
    out = Path(out)
    bind = bind or host
    if days < 1:
        raise ProvisionError(f"certificates must be valid for at least 1 day, got {days}")
    if not 1 <= port <= 65535:
        raise ProvisionError(f"port {port} is out of range 1..65535")
    if (out / CA_DIR / "ca.key").exists():
        raise ProvisionError(f"{out} already holds a fleet CA ({out / CA_DIR / 'ca.key'}); provisioning again would "
                             f"replace every identity in it: pass a new --out, or delete {out} first")
    if out.exists() and not out.is_dir():
        raise ProvisionError(f"--out {out} is a file; pass a directory")
    now = _now()
    ca = new_ca(identities.fleet, days, now)
    write_private(out / CA_DIR / "ca.key", ca.key_pem())
    (out / CA_DIR / "ca.crt").write_bytes(ca.cert_pem())
    fleet = identities.fleet
    for name, directory in _identity_dirs(identities, out):
        issued = issue_client(ca, name, fleet, days, now)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CERT_FILE).write_bytes(issued.cert_pem())
        write_private(directory / KEY_FILE, issued.key_pem())
        (directory / CA_FILE).write_bytes(ca.cert_pem())
    write_signing_keypair(out / AGGREGATOR_DIR / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE)
    os.chmod(out / AGGREGATOR_DIR / PRIVATE_KEY_FILE, 0o600)
    for device in identities.devices:
        shutil.copyfile(out / PUBLIC_KEY_FILE, out / DEVICES_DIR / device / PUBLIC_KEY_FILE)
    broker = out / BROKER_DIR
    server = issue_server(ca, host, fleet, days, now)
    (broker / "data").mkdir(parents=True, exist_ok=True)
    (broker / "server.crt").write_bytes(server.cert_pem())
    write_private(broker / "server.key", server.key_pem())
    (broker / "acl").write_text(acl_text(identities), encoding="utf-8")
    if password_auth:
        entries = []
        for name, directory in _identity_dirs(identities, out):
            password = new_password()
            write_private(directory / PASSWORD_FILE, (password + "\n").encode())
            entries.append(f"{name}:{mosquitto_password_hash(password)}")
        write_private(broker / "passwords", ("\n".join(entries) + "\n").encode())
    (broker / "mosquitto.conf").write_text(mosquitto_conf_text(out, bind, port, password_auth), encoding="utf-8")
    (out / "fleet.json").write_text(json.dumps({"fleet": fleet, "aggregator": identities.aggregator,
                                                "devices": list(identities.devices), "host": host, "bind": bind,
                                                "port": port, "password_auth": password_auth, "days": days},
                                               indent=2) + "\n")
    return Provisioned(out, identities, host, port, password_auth, bind)


def _identity_dirs(identities: FleetIdentities, out: Path) -> Iterable[tuple[str, Path]]:
    yield identities.aggregator, out / AGGREGATOR_DIR
    for device in identities.devices:
        yield device, out / DEVICES_DIR / device
