"""Device identity on the broker (issue 9, item 4): `python -m cloud provision` and a real mosquitto started with
the configuration it writes. Every claim about the ACL is checked by delivery (mosquitto 2.0 grants a SUBACK for a
filter the ACL denies and PUBACKs a denied publish; it just never routes the message): a forbidden message is sent
first, then a permitted marker from the same side; once the marker has arrived, the forbidden one would have too."""

from __future__ import annotations

import socket
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.__main__ import main
from cloud.fleet_bundle import FleetBundle, RoundSettings, save_bundle
from cloud.fleet_file import load_fleet
from cloud.provision import (
    FleetIdentities,
    Provisioned,
    ProvisionError,
    acl_text,
    mosquitto_password_hash,
    provision,
    read_identities,
)
from edge.broker_credentials import BrokerCredentials, TlsFiles
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, load_signing_key
from edge.topics import FleetTopics
from simulator.broker import BrokerError, ConfiguredMosquitto, EmbeddedBroker, free_port, mosquitto_binary

from ..cli_helpers import call, one_error_line

REPO = Path(__file__).resolve().parents[2]
FLEET = "acl"
A, B = "meter-a", "meter-b"
AGGREGATOR = f"{FLEET}-aggregator"
TOPICS = FleetTopics(FLEET)
TIMEOUT = 5.0
NO_MOSQUITTO = "mosquitto is not installed (apt-get install mosquitto); these tests need the real broker"


# -- fixtures: one provisioned fleet per auth mode, its broker, and a second fleet with its own CA ---------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    return provision(FleetIdentities(FLEET, (A, B)), tmp_path_factory.mktemp("fleet"), port=free_port())


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    """Same fleet name, same device ids, another CA: what an attacker could mint for himself."""
    return provision(FleetIdentities(FLEET, (A, B)), tmp_path_factory.mktemp("stranger"), port=free_port())


@pytest.fixture(scope="module")
def password_fleet(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    return provision(FleetIdentities(FLEET, (A, B)), tmp_path_factory.mktemp("pw"), port=free_port(),
                     password_auth=True)


def _start(provisioned: Provisioned) -> ConfiguredMosquitto:
    if mosquitto_binary() is None:
        pytest.skip(NO_MOSQUITTO)
    return ConfiguredMosquitto(provisioned.broker_config).start()


@pytest.fixture(scope="module")
def tls_broker(fleet: Provisioned) -> Iterator[ConfiguredMosquitto]:
    broker = _start(fleet)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def password_broker(password_fleet: Provisioned) -> Iterator[ConfiguredMosquitto]:
    broker = _start(password_fleet)
    try:
        yield broker
    finally:
        broker.stop()


def identity(provisioned: Provisioned, name: str) -> BrokerCredentials:
    """Mutual TLS as `name` (a device id or the aggregator)."""
    return BrokerCredentials.from_identity_dir(provisioned.identity_dir(name))


def login(provisioned: Provisioned, name: str) -> BrokerCredentials:
    """Password login as `name`, over TLS that checks the broker's certificate."""
    return BrokerCredentials.from_identity_dir(provisioned.identity_dir(name), username=name)


class Inbox:
    """Whole messages a session received, by logical topic, with a wait."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._cond:
            self.messages.append((topic, payload))
            self._cond.notify_all()

    def wait_for(self, topic: str) -> list[tuple[str, bytes]]:
        """Everything received once `topic` has arrived (AssertionError if it never does)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: any(t == topic for t, _ in self.messages), TIMEOUT)
            got = list(self.messages)
        assert ok, f"{topic} never arrived; got {[t for t, _ in got]}"
        return got


@contextmanager
def session(broker: ConfiguredMosquitto, creds: BrokerCredentials, name: str,
            subscriptions: dict[str, Inbox] | None = None,
            will: tuple[str, bytes] | None = None) -> Iterator[MqttSession]:
    """A connected MqttSession (chunked topics, as devices and the aggregator speak) presenting `creds`, returned
    once the broker has acknowledged its subscriptions (so a test's publishes cannot race them)."""
    s = MqttSession(f"{name}-{uuid.uuid4().hex[:6]}", broker.host, broker.port, will=will, tls=creds.tls,
                    username=creds.username, password=creds.password)
    subs = subscriptions or {}
    acked = threading.Semaphore(0)
    s._client.on_subscribe = lambda *args: acked.release()  # the session subscribes on CONNACK
    for topic_filter, inbox in subs.items():
        s.subscribe(topic_filter, inbox)
    s.connect(timeout=TIMEOUT)
    for topic_filter in subs:
        assert acked.acquire(timeout=TIMEOUT), f"no SUBACK for {topic_filter}"
    try:
        yield s
    finally:
        s.close()


def refusal(broker: ConfiguredMosquitto, creds: BrokerCredentials) -> str:
    """The ConnectionError message of a session the broker turns away."""
    s = MqttSession(f"probe-{uuid.uuid4().hex[:6]}", broker.host, broker.port, tls=creds.tls,
                    username=creds.username, password=creds.password)
    with pytest.raises(ConnectionError) as exc:
        s.connect(timeout=TIMEOUT)
    return str(exc.value)


@contextmanager
def raw_client(broker: ConfiguredMosquitto, creds: BrokerCredentials, client_id: str,
               will: tuple[str, bytes] | None = None) -> Iterator[mqtt.Client]:
    """A bare paho client over mutual TLS (any topic, no chunking), connected and looping."""
    assert creds.tls is not None
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(creds.tls.ca), certfile=str(creds.tls.cert), keyfile=str(creds.tls.key))
    if will is not None:
        client.will_set(will[0], will[1], qos=1)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(TIMEOUT), f"{client_id} was not accepted"
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def subscribe(client: mqtt.Client, topic_filter: str) -> None:
    """Subscribe a raw client and wait for the SUBACK (which mosquitto 2.0 grants even where the ACL denies)."""
    acked = threading.Event()
    client.on_subscribe = lambda *args: acked.set()
    client.subscribe(topic_filter, qos=1)
    assert acked.wait(TIMEOUT), f"no SUBACK for {topic_filter}"


def unique(leaf: str) -> str:
    return f"{leaf}-{uuid.uuid4().hex[:8]}"


# -- what provision writes ----------------------------------------------------------------------------------


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_provision_writes_the_ca_every_identity_the_signing_key_and_the_broker_files(fleet: Provisioned) -> None:
    out = fleet.out
    for device in (A, B):
        assert sorted(p.name for p in (out / "devices" / device).iterdir()) == [
            "ca.crt", "client.crt", "client.key", PUBLIC_KEY_FILE]
        assert (out / "devices" / device / PUBLIC_KEY_FILE).read_bytes() == (out / PUBLIC_KEY_FILE).read_bytes()
    assert {p.name for p in (out / "aggregator").iterdir()} == {"ca.crt", "client.crt", "client.key",
                                                                 "fleet-signing.key"}
    assert {p.name for p in (out / "broker").iterdir()} == {"server.crt", "server.key", "mosquitto.conf", "acl", "data"}
    conf = fleet.broker_config.read_text()
    for line in ("per_listener_settings false", f"listener {fleet.port} 127.0.0.1", "require_certificate true",
                 "use_identity_as_username true", "use_username_as_clientid true", "allow_anonymous false",
                 "persistence true", "max_packet_size 1048576"):
        assert line in conf.splitlines(), line
    for key in ("cafile", "certfile", "keyfile", "acl_file", "persistence_location"):
        (value,) = [ln.split(" ", 1)[1] for ln in conf.splitlines() if ln.startswith(key + " ")]
        assert Path(value).is_absolute() and Path(value).exists(), (key, value)


def test_private_keys_are_owner_only_and_the_ca_key_never_reaches_a_device(fleet: Provisioned) -> None:
    out = fleet.out
    secrets = [out / "ca" / "ca.key", out / "broker" / "server.key", out / "aggregator" / "client.key",
               out / "aggregator" / "fleet-signing.key"] + [out / "devices" / d / "client.key" for d in (A, B)]
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca_key = (fleet.out / "ca" / "ca.key").read_bytes()
    signing_key = (fleet.out / "aggregator" / "fleet-signing.key").read_bytes()
    for path in (fleet.out / "devices").rglob("*"):
        if path.is_file():
            assert path.read_bytes() not in (ca_key, signing_key), path


def test_certificates_name_their_identity_and_chain_to_the_fleet_ca(fleet: Provisioned, stranger: Provisioned) -> None:
    ca = _cert(fleet.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client, server = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    for path, name, usage in ((fleet.identity_dir(A) / "client.crt", A, client),
                              (fleet.identity_dir(B) / "client.crt", B, client),
                              (fleet.identity_dir(AGGREGATOR) / "client.crt", AGGREGATOR, client),
                              (fleet.out / "broker" / "server.crt", "127.0.0.1", server)):
        cert = _cert(path)
        assert _cn(cert) == name
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(ca)
        with pytest.raises(InvalidSignature):  # the stranger's CA did not sign it (same subject, another key)
            cert.verify_directly_issued_by(_cert(stranger.ca_cert))


@pytest.mark.parametrize("host, expected", [
    ("10.1.2.3", ["IP:10.1.2.3", "IP:127.0.0.1", "DNS:localhost"]),
    ("broker.example.net", ["DNS:broker.example.net", "IP:127.0.0.1", "DNS:localhost"]),
    ("127.0.0.1", ["IP:127.0.0.1", "DNS:localhost"]),
])
def test_broker_certificate_covers_the_host_loopback_and_localhost(host: str, expected: list[str],
                                                                  tmp_path: Path) -> None:
    done = provision(FleetIdentities("f", ("d1",)), tmp_path, host=host)
    san = _cert(tmp_path / "broker" / "server.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    names = [f"IP:{n.value}" if isinstance(n, x509.IPAddress) else f"DNS:{n.value}" for n in san.value]
    assert names == expected
    assert f"listener {done.port} {host}" in done.broker_config.read_text()


def test_broker_listens_on_bind_while_its_certificate_names_the_host(tmp_path: Path) -> None:
    done = provision(FleetIdentities("f", ("d1",)), tmp_path, host="broker.example.net", bind="0.0.0.0", port=8884)
    assert "listener 8884 0.0.0.0" in done.broker_config.read_text().splitlines()
    assert _cn(_cert(tmp_path / "broker" / "server.crt")) == "broker.example.net"


def test_acl_names_every_identity_explicitly_and_has_no_pattern_lines() -> None:
    text = acl_text(FleetIdentities("f", ("d1", "d2")))
    assert "pattern" not in text and "%u" not in text
    blocks = {block.splitlines()[0]: block.splitlines()[1:] for block in text.split("\n\n") if block.startswith("user")}
    assert set(blocks) == {"user f-aggregator", "user d1", "user d2"}
    assert "topic write dmskd/f/round/+/update/d1/#" in blocks["user d1"]
    assert "topic read dmskd/f/cohort/d1/#" in blocks["user d1"]
    assert not any("cohort/d2" in rule or "cohort/#" in rule for rule in blocks["user d1"])
    assert not any("update/d2" in rule or "update/+" in rule for rule in blocks["user d1"])
    assert "topic read dmskd/f/round/+/update/+/#" in blocks["user f-aggregator"]
    assert not any(rule.startswith("topic write") and "update" in rule for rule in blocks["user f-aggregator"])


def test_password_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = "mosquitto_passwd"
    if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path = tmp_path / "passwords"
    subprocess.run([tool, "-c", "-b", str(path), "meter-a", "s3cret-Pass"], check=True, capture_output=True)
    user, theirs = path.read_text().strip().split(":", 1)
    _, seven, iterations, salt, _ = theirs.split("$")
    assert (user, seven) == ("meter-a", "7")
    from base64 import b64decode

    assert mosquitto_password_hash("s3cret-Pass", b64decode(salt), int(iterations)) == theirs


@pytest.mark.parametrize("devices, words", [
    (("d1", "acl-aggregator"), "is the aggregator's broker identity"),
    (("d1", "d1"), "appears twice"),
    (("d/1",), "must be letters, digits"),
    (("d 1",), "must be letters, digits"),
    (("#",), "must be letters, digits"),
    ((), "has no devices"),
])
def test_identities_unfit_for_topics_acl_lines_or_certificates_are_refused(devices: tuple[str, ...],
                                                                           words: str) -> None:
    with pytest.raises(ProvisionError, match=words):
        FleetIdentities(FLEET, devices)


def test_provision_refuses_to_overwrite_an_existing_fleet_ca(fleet: Provisioned) -> None:
    before = (fleet.out / "ca" / "ca.key").read_bytes()
    with pytest.raises(ProvisionError, match="already holds a fleet CA.*pass a new --out"):
        provision(FleetIdentities(FLEET, (A,)), fleet.out)
    assert (fleet.out / "ca" / "ca.key").read_bytes() == before


def test_fleet_file_devices_are_named_as_the_planner_names_them_and_the_fleet_name_is_sanitised() -> None:
    identities, origin = read_identities(REPO / "examples" / "fleet.toml")
    assert identities.devices == tuple(d.device_id for d in load_fleet(REPO / "examples" / "fleet.toml"))
    assert identities.fleet == "smart-meter-pilot" and "smart-meter pilot" in origin
    assert read_identities(REPO / "examples" / "fleet.yaml", "pilot")[0].fleet == "pilot"


def _bundle(directory: Path, fleet: str, devices: tuple[str, ...]) -> Path:
    plans = [DevicePlan(fleet, d, "s1", "h", "sh", 2) for d in devices]
    settings = RoundSettings(fleet, 2, "none", 1.0, 0.0, 1e-5, None, deadline_s=30.0)
    return save_bundle(directory, FleetBundle(settings, plans, b"student", {"w": np.zeros(2, np.float32)},
                                              {"s1": b"shard"}))


def test_a_bundle_gives_its_plans_devices_and_its_own_fleet_name(tmp_path: Path) -> None:
    _bundle(tmp_path / "bundle", "demo", ("dev000", "dev001"))
    for source in (tmp_path, tmp_path / "bundle"):
        identities, _ = read_identities(source)
        assert identities == FleetIdentities("demo", ("dev000", "dev001"))
    with pytest.raises(ProvisionError, match="differs from the bundle's fleet 'demo'"):
        read_identities(tmp_path, "other")


# -- the command line ---------------------------------------------------------------------------------------


def test_provision_command_writes_the_fleet_and_prints_how_to_start_each_part(tmp_path: Path, capsys) -> None:
    _bundle(tmp_path / "prep" / "bundle", "demo", ("dev000", "dev001"))
    code, out, err = call(main, ["provision", "--fleet", str(tmp_path / "prep"), "--out", str(tmp_path / "ids"),
                                 "--port", "18883"], capsys)
    assert code == 0, err
    assert "fleet 'demo'" in out and "2 devices" in out and "'demo-aggregator'" in out
    assert f"mosquitto -c {tmp_path / 'ids' / 'broker' / 'mosquitto.conf'}" in out
    assert "--tls-cert" in out and "never on a device" in out
    assert (tmp_path / "ids" / "devices" / "dev001" / "client.crt").exists()


@pytest.mark.parametrize("args, words, code", [
    (["--fleet", "{tmp}/none.toml"], "none.toml not found", 1),
    (["--fleet", "{tmp}/bad.toml"], "bad.toml:3: device 'x' field 'target'", 1),
    (["--fleet", "{fleet}", "--topic-fleet", "a/b"], "argument --topic-fleet: topic fleet name 'a/b' must be", 2),
    (["--fleet", "{fleet}", "--port", "70000"], "argument --port: must be a TCP port", 2),
    (["--fleet", "{fleet}", "--days", "0"], "argument --days: must be at least 1", 2),
], ids=["missing-fleet", "malformed-fleet", "bad-topic-fleet", "bad-port", "zero-days"])
def test_provision_command_errors_are_one_line_with_exit_1_or_2(args: list[str], words: str, code: int,
                                                                tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.toml").write_text('[[device]]\nid = "x"\ntarget = "gpu"\nsamples = 1\nflops_per_epoch = 1\n')
    argv = ["provision", "--out", str(tmp_path / "out")] + [
        a.replace("{tmp}", str(tmp_path)).replace("{fleet}", str(REPO / "examples" / "fleet.toml")) for a in args]
    got, _, err = call(main, argv, capsys)
    assert got == code, err
    one_error_line(err, words)


def test_provision_command_refuses_a_directory_with_a_ca_with_exit_1(fleet: Provisioned, capsys) -> None:
    code, _, err = call(main, ["provision", "--fleet", str(REPO / "examples" / "fleet.toml"), "--out",
                               str(fleet.out)], capsys)
    assert code == 1
    one_error_line(err, "already holds a fleet CA")


# -- the real broker: who gets in -----------------------------------------------------------------------------


def test_anonymous_client_without_tls_is_refused_naming_the_tls_flags(tls_broker: ConfiguredMosquitto) -> None:
    message = refusal(tls_broker, BrokerCredentials())
    assert "closed the connection" in message and "pass --tls-ca, --tls-cert and --tls-key" in message


def test_tls_client_without_a_certificate_is_refused(fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    message = refusal(tls_broker, BrokerCredentials(TlsFiles(fleet.ca_cert)))
    assert "closed the connection" in message and "pass --tls-cert and --tls-key" in message


def test_certificate_from_another_ca_is_refused_even_with_a_fleet_device_name(
        fleet: Provisioned, stranger: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    forged = stranger.identity_dir(A)
    message = refusal(tls_broker, BrokerCredentials(TlsFiles(fleet.ca_cert, forged / "client.crt",
                                                             forged / "client.key")))
    assert "closed the connection" in message and "were issued by the fleet CA" in message


def test_client_that_does_not_trust_the_broker_certificate_fails_naming_tls_ca(
        stranger: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    message = refusal(tls_broker, identity(stranger, A))
    assert "its TLS certificate does not verify" in message and "--tls-ca" in message


def test_connection_is_refused_at_once_rather_than_after_a_timeout(tls_broker: ConfiguredMosquitto) -> None:
    import time

    started = time.monotonic()
    refusal(tls_broker, BrokerCredentials())
    assert time.monotonic() - started < TIMEOUT / 2


# -- the real broker: what each identity may do ----------------------------------------------------------------


def test_aggregator_publishes_plans_models_steps_shards_and_reads_updates_and_status(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    version, shard, rnd = 1000 + int(uuid.uuid4().int % 1000), unique("shard"), 100
    device, aggregator_inbox = Inbox(), Inbox()
    subs = {TOPICS.plan(A): device, TOPICS.all_models: device, TOPICS.model_step: device,
            TOPICS.shard(shard): device, TOPICS.result(rnd): device}
    with session(tls_broker, identity(fleet, AGGREGATOR), "agg",
                 {TOPICS.all_updates: aggregator_inbox, f"{TOPICS.root}/status/+": aggregator_inbox}) as agg, \
            session(tls_broker, identity(fleet, A), "dev", subs) as dev:
        agg.publish(TOPICS.plan(A), b"plan for a")
        agg.publish(TOPICS.shard(shard), b"shard")
        agg.publish(TOPICS.result(rnd), b"result")
        agg.publish(TOPICS.model_step, b"step")
        agg.publish(TOPICS.model(version), b"model")
        got = dict(device.wait_for(TOPICS.model(version)))
        dev.publish(TOPICS.status(A), b"online")
        dev.publish(TOPICS.update(rnd, A), b"update of a")
        seen = dict(aggregator_inbox.wait_for(TOPICS.update(rnd, A)))
    assert got == {TOPICS.plan(A): b"plan for a", TOPICS.shard(shard): b"shard", TOPICS.result(rnd): b"result",
                   TOPICS.model_step: b"step", TOPICS.model(version): b"model"}
    assert seen == {TOPICS.status(A): b"online", TOPICS.update(rnd, A): b"update of a"}


def test_device_cannot_publish_on_another_devices_update_or_status_topic(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    inbox = Inbox()
    with session(tls_broker, identity(fleet, AGGREGATOR), "agg",
                 {TOPICS.all_updates: inbox, f"{TOPICS.root}/status/+": inbox}), \
            session(tls_broker, identity(fleet, A), "dev-a") as attacker:
        attacker.publish(TOPICS.update(7, B), b"forged update in b's name")
        attacker.publish(TOPICS.status(B), b"forged status")
        attacker.publish(TOPICS.update(7, A), b"marker")
        got = inbox.wait_for(TOPICS.update(7, A))
    assert got == [(TOPICS.update(7, A), b"marker")]


def test_device_cannot_publish_plans_models_steps_shards_students_results_or_cohorts(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    version, shard, student, rnd = 2000 + int(uuid.uuid4().int % 1000), unique("shard"), unique("student"), 200
    cohort = TOPICS.cohort(B)
    forged = [TOPICS.plan(B), TOPICS.model(version), TOPICS.model_step, TOPICS.shard(shard),
              TOPICS.student_program(student), TOPICS.result(rnd), cohort]
    victim = Inbox()
    subs = {TOPICS.plan(B): victim, TOPICS.all_models: victim, TOPICS.model_step: victim,
            TOPICS.shard(shard): victim, TOPICS.student_program(student): victim, TOPICS.result(rnd): victim,
            cohort: victim}
    with session(tls_broker, identity(fleet, B), "dev-b", subs), \
            session(tls_broker, identity(fleet, A), "dev-a") as attacker, \
            session(tls_broker, identity(fleet, AGGREGATOR), "agg") as agg:
        for topic in forged:
            attacker.publish(topic, b"forged", retain=True)
        agg.publish(TOPICS.model(version + 1), b"marker")
        got = victim.wait_for(TOPICS.model(version + 1))
    assert got == [(TOPICS.model(version + 1), b"marker")]


def test_device_reads_only_its_own_plan_and_no_update_even_subscribed_to_everything(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    """Device A subscribes to '#' with raw paho; it gets its own cohort notice and plan, never B's plan, B's cohort
    notice (whether B was sampled), B's status or any update (B's, or its own echoed back)."""
    received: list[str] = []
    arrived = threading.Event()
    marker = TOPICS.plan(A) + "/0"

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.topic)
        if msg.topic == marker:
            arrived.set()

    with raw_client(tls_broker, identity(fleet, A), "spy") as spy:
        spy.on_message = on_message
        subscribe(spy, "#")  # granted: mosquitto 2.0 filters at delivery, not at SUBACK
        with session(tls_broker, identity(fleet, AGGREGATOR), "agg") as agg, \
                session(tls_broker, identity(fleet, B), "dev-b") as other:
            agg.publish(TOPICS.plan(B), b"b's plan")
            agg.publish(TOPICS.cohort(B), b"b sampled")
            agg.publish(TOPICS.cohort(A), b"a sampled")
            other.publish(TOPICS.update(300, B), b"b's update")
            other.publish(TOPICS.status(B), b"b online")
            spy.publish(TOPICS.update(300, A) + "/0", b"a's own update", qos=1).wait_for_publish(TIMEOUT)
            agg.publish(TOPICS.plan(A), b"a's plan")
            assert arrived.wait(TIMEOUT), f"own plan never arrived; got {received}"
    assert received == [TOPICS.cohort(A) + "/0", marker]


def test_device_cannot_take_over_the_aggregators_session_with_its_client_id(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    """use_username_as_clientid: the broker replaces a client's id with its certificate's CN, so device A
    connecting as client id `acl-aggregator` does not kick the aggregator off."""
    assert tls_broker.log_path is not None
    start = len(tls_broker.log_path.read_text())
    inbox = Inbox()
    agg = MqttSession(AGGREGATOR, tls_broker.host, tls_broker.port, tls=identity(fleet, AGGREGATOR).tls)
    agg.subscribe(TOPICS.all_updates, inbox)
    agg.connect(timeout=TIMEOUT)
    try:
        impostor = MqttSession(AGGREGATOR, tls_broker.host, tls_broker.port, tls=identity(fleet, A).tls)
        impostor.connect(timeout=TIMEOUT)
        impostor.publish(TOPICS.update(400, A), b"aggregator still there?")
        got = inbox.wait_for(TOPICS.update(400, A))
        impostor.close()
    finally:
        agg.close()
    assert got == [(TOPICS.update(400, A), b"aggregator still there?")]
    log = tls_broker.log_path.read_text()[start:]
    assert f"as {A} (" in log and "already connected" not in log


def test_a_device_will_on_another_devices_status_is_not_delivered(
        fleet: Provisioned, tls_broker: ConfiguredMosquitto) -> None:
    """A last will is published on the bare status topic (no chunk index), so the listener is raw paho too."""
    received: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, bytes(msg.payload)))
        arrived.set()

    with raw_client(tls_broker, identity(fleet, AGGREGATOR), "agg") as agg:
        agg.on_message = on_message
        subscribe(agg, f"{TOPICS.root}/status/#")
        for device in (A, B):  # A's forged will first, then B's own as the marker
            with raw_client(tls_broker, identity(fleet, device), device,
                            will=(TOPICS.status(B), f"offline, will of {device}".encode())) as raw:
                raw.loop_stop()
                sock = raw.socket()
                assert sock is not None
                sock.shutdown(socket.SHUT_RDWR)  # an unclean drop: the broker publishes the will
                sock.close()
        assert arrived.wait(TIMEOUT), "no will arrived at all"
    assert received == [(TOPICS.status(B), b"offline, will of meter-b")]


# -- the password fallback ------------------------------------------------------------------------------------


def test_password_fallback_writes_owner_only_passwords_in_mosquittos_format(password_fleet: Provisioned) -> None:
    conf = password_fleet.broker_config.read_text().splitlines()
    assert "require_certificate false" in conf and "use_identity_as_username true" not in conf
    lines = (password_fleet.out / "broker" / "passwords").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [AGGREGATOR, A, B]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in lines)
    for device in (A, B):
        path = password_fleet.out / "devices" / device / "password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (password_fleet.out / "devices" / A / "password").read_text() != (
        password_fleet.out / "devices" / B / "password").read_text()


def test_right_password_connects_and_the_acl_holds(password_fleet: Provisioned,
                                                  password_broker: ConfiguredMosquitto) -> None:
    inbox = Inbox()
    with session(password_broker, login(password_fleet, AGGREGATOR), "agg", {TOPICS.all_updates: inbox}), \
            session(password_broker, login(password_fleet, A), "dev-a") as dev:
        dev.publish(TOPICS.update(1, B), b"forged")
        dev.publish(TOPICS.update(1, A), b"own")
        got = inbox.wait_for(TOPICS.update(1, A))
    assert got == [(TOPICS.update(1, A), b"own")]


def test_wrong_password_another_users_password_and_anonymous_are_refused(
        password_fleet: Provisioned, password_broker: ConfiguredMosquitto) -> None:
    ca = TlsFiles(password_fleet.ca_cert)
    b_password = login(password_fleet, B).password
    assert b_password is not None
    wrong = refusal(password_broker, BrokerCredentials(ca, A, "not-the-password"))
    assert "refused" in wrong and "not authorized" in wrong and "--password-file" in wrong
    assert "not authorized" in refusal(password_broker, BrokerCredentials(ca, A, b_password))
    assert "not authorized" in refusal(password_broker, BrokerCredentials(ca))
    assert "closed the connection" in refusal(password_broker, BrokerCredentials())


# -- the command-line clients against the broker ----------------------------------------------------------------


def test_edge_run_with_a_foreign_certificate_exits_1_naming_the_certificate(
        fleet: Provisioned, stranger: Provisioned, tls_broker: ConfiguredMosquitto, tmp_path: Path, capsys) -> None:
    from edge.__main__ import main as edge_main

    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    forged = stranger.identity_dir(A)
    code, _, err = call(edge_main, ["run", "--device", A, "--fleet", FLEET, "--data", str(tmp_path / "d.npz"),
                                    "--broker", f"{tls_broker.host}:{tls_broker.port}", "--tls-ca", str(fleet.ca_cert),
                                    "--tls-cert", str(forged / "client.crt"), "--tls-key", str(forged / "client.key"),
                                    "--fleet-key", str(fleet.identity_dir(A) / PUBLIC_KEY_FILE),
                                    "--outbox", str(tmp_path / "outbox")], capsys)
    assert code == 1
    one_error_line(err, "closed the connection", str(forged / "client.crt"), "issued by the fleet CA")


# -- the fleet federates over TLS -------------------------------------------------------------------------------


def test_fleet_federates_over_tls_with_a_certificate_per_device(tmp_path: Path) -> None:
    """Devices and aggregator each connect with their own certificate; artefacts are signed with the provisioned
    fleet key, which every device pins."""
    if mosquitto_binary() is None:
        pytest.skip(NO_MOSQUITTO)
    from edge.plan import TrainingSettings
    from simulator.artifacts import prepare_cloud
    from simulator.config import ExperimentConfig
    from simulator.federation import run_federation

    config = ExperimentConfig(devices=3, rounds=2, seed=3, teacher_epochs=1, training=TrainingSettings(local_epochs=1),
                              deadline_s=60.0, labelled_fraction=1.0)
    art = prepare_cloud(config)
    devices = tuple(a.device_id for a in art.assignments)
    done = provision(FleetIdentities("tlsfed", devices), tmp_path / "ids", port=free_port())
    with ConfiguredMosquitto(done.broker_config) as broker:
        out = run_federation(config, art, broker.host, broker.port, tmp_path / "run", 0.0, fleet="tlsfed",
                             credentials=lambda name: identity(done, name),
                             signing_key=load_signing_key(done.out / "aggregator" / PRIVATE_KEY_FILE))
        log = broker.log_path.read_text() if broker.log_path else ""
    assert [len(h["accepted"]) for h in out.history] == [len(devices)] * config.rounds
    assert all(h["rejected"]["total"] == 0 for h in out.history)
    assert all(not refused for refused in out.device_refusals.values())  # every signed artefact verified
    for name in (*devices, "tlsfed-aggregator"):  # each connected under its certificate's name
        assert f"u'{name}'" in log, name


# -- the embedded broker is for local demos only ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "broker.example.net", "::"])
def test_embedded_broker_refuses_to_bind_beyond_loopback_naming_provision(host: str) -> None:
    with pytest.raises(BrokerError, match="local demos only.*python -m cloud provision"):
        EmbeddedBroker(host=host)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent; picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_embedded_broker_listens_on_loopback_only() -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe from")
    with EmbeddedBroker() as broker:
        assert broker.host == "127.0.0.1"
        socket.create_connection((broker.host, broker.port), timeout=2).close()
        with pytest.raises(OSError):
            socket.create_connection((address, broker.port), timeout=2).close()


def test_configured_mosquitto_names_a_missing_configuration(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.skip(NO_MOSQUITTO)
    with pytest.raises(BrokerError, match="python -m cloud provision"):
        ConfiguredMosquitto(tmp_path / "mosquitto.conf")
