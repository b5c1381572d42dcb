"""dmskd-firmware on a provisioned broker (`python -m cloud provision`: TLS from the fleet's CA, the ACL):
with its device certificate it connects and acts on its signed plan; without TLS, or with a password
it does not hold, the broker refuses it and the firmware says which flags to pass."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from cloud.provision import FleetIdentities, Provisioned, provision
from edge.broker_credentials import BrokerCredentials
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, load_signing_key, sign
from edge.topics import FleetTopics
from export.firmware_samples import samples_bytes
from simulator.broker import ConfiguredMosquitto, free_port, mosquitto_binary

from .firmware_device import FirmwareDevice

FLEET, DEVICE = "fw-tls", "meter-a"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Provisioned:
    return provision(FleetIdentities(FLEET, (DEVICE,)), tmp_path_factory.mktemp("fw-tls"), port=free_port())


@pytest.fixture(scope="module")
def tls_broker(fleet: Provisioned) -> Iterator[ConfiguredMosquitto]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); these tests need the real broker")
    broker = ConfiguredMosquitto(fleet.broker_config).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory) -> Iterator[tuple[Provisioned, ConfiguredMosquitto]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); these tests need the real broker")
    provisioned = provision(FleetIdentities(FLEET, (DEVICE,)), tmp_path_factory.mktemp("fw-pw"), port=free_port(),
                            password_auth=True)
    broker = ConfiguredMosquitto(provisioned.broker_config).start()
    try:
        yield provisioned, broker
    finally:
        broker.stop()


def _device(binary, fleet: Provisioned, broker, tmp_path, *tls: str) -> FirmwareDevice:
    data = tmp_path / "d.samples"
    data.write_bytes(samples_bytes(np.zeros((4, 64), np.float32), None))
    return FirmwareDevice(binary, DEVICE, FLEET, broker, data, fleet.out / PUBLIC_KEY_FILE, tmp_path / "outbox",
                          list(tls))


def test_firmware_connects_with_its_certificate_and_acts_on_its_signed_plan(firmware_build, fleet, tls_broker,
                                                                            tmp_path):
    creds = BrokerCredentials.from_identity_dir(fleet.identity_dir(fleet.identities.aggregator))
    aggregator = MqttSession(fleet.identities.aggregator, tls_broker.host, tls_broker.port, tls=creds.tls)
    aggregator.connect()
    key = load_signing_key(fleet.identity_dir(fleet.identities.aggregator) / PRIVATE_KEY_FILE)
    topic = FleetTopics(FLEET).plan(DEVICE)
    plan = DevicePlan(FLEET, DEVICE, "s0", "0" * 16, "0" * 16, 2)
    aggregator.publish(topic, sign(key, topic, 1, plan.to_json()), retain=True)
    aggregator.close()
    ids = fleet.identity_dir(DEVICE)
    device = _device(firmware_build.binary("dmskd-firmware"), fleet, tls_broker, tmp_path, "--tls-ca",
                     str(ids / "ca.crt"), "--tls-cert", str(ids / "client.crt"), "--tls-key", str(ids / "client.key"))
    try:
        device.wait_for(r"connected to .* as ")
        device.wait_for(r"plan accepted: shard s0 .*, 2 rounds")
    finally:
        device.stop()


def test_firmware_without_tls_on_a_provisioned_broker_fails_naming_the_tls_flags(firmware_build, fleet, tls_broker,
                                                                                 tmp_path):
    device = _device(firmware_build.binary("dmskd-firmware"), fleet, tls_broker, tmp_path)
    code, _ = device.finish(timeout=30)
    assert code == 1
    assert "A provisioned broker needs --tls-ca (and --tls-cert, --tls-key)" in device.log()


def test_firmware_with_the_ca_but_no_certificate_is_refused_naming_its_certificate(firmware_build, fleet, tls_broker,
                                                                                   tmp_path):
    device = _device(firmware_build.binary("dmskd-firmware"), fleet, tls_broker, tmp_path, "--tls-ca",
                     str(fleet.identity_dir(DEVICE) / "ca.crt"))
    code, _ = device.finish(timeout=30)
    assert code == 1
    assert "were --tls-cert/--tls-key issued by the fleet CA it trusts" in device.log()


def test_firmware_logs_in_with_its_password_over_tls_and_a_wrong_one_is_refused(firmware_build, password_broker,
                                                                               tmp_path):
    provisioned, broker = password_broker
    ids = provisioned.identity_dir(DEVICE)
    binary = firmware_build.binary("dmskd-firmware")
    device = _device(binary, provisioned, broker, tmp_path, "--tls-ca", str(ids / "ca.crt"), "--username", DEVICE,
                     "--password-file", str(ids / "password"))
    try:
        device.wait_for(r"connected to .* as ")
    finally:
        device.stop()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    device = _device(binary, provisioned, broker, tmp_path, "--tls-ca", str(ids / "ca.crt"), "--username", DEVICE,
                     "--password-file", str(wrong))
    code, _ = device.finish(timeout=30)
    assert code == 1
    assert "the broker refused the login: check --username and --password-file" in device.log()
