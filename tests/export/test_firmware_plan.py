"""Which firmware configurations a plan asks for (export.firmware_plan) and the fleet settings they carry."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from export.errors import InputError
from export.firmware_config import FleetSettings
from export.firmware_export import read_fleet_key
from export.firmware_plan import FirmwareTarget, firmware_targets


def _plan(tmp_path, devices):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"teacher_dir": "t", "shards": {}, "devices": devices}))
    return path


def test_one_configuration_per_mcu_class_and_one_per_shard_of_a_split_class(tmp_path):
    devices = [{"device_id": "m1", "shard_id": "P1", "target": "mcu", "class": "meter"},
               {"device_id": "m2", "shard_id": "P1", "target": "mcu", "class": "meter"},
               {"device_id": "g1", "shard_id": "P4", "target": "linux", "class": "gateway"},
               {"device_id": "p1", "shard_id": "P2", "target": "mcu", "class": "meter-plus"},
               {"device_id": "p2", "shard_id": "P3", "target": "mcu", "class": "meter-plus"},
               {"device_id": "meter-bench", "shard_id": "P1", "target": "mcu", "class": None}]
    assert firmware_targets(_plan(tmp_path, devices)) == [
        FirmwareTarget("meter", "meter", "P1", 2), FirmwareTarget("meter-plus-P2", "meter-plus", "P2", 1),
        FirmwareTarget("meter-plus-P3", "meter-plus", "P3", 1), FirmwareTarget("meter-bench", "meter-bench", "P1", 1)]


def test_a_plan_without_mcu_devices_needs_no_firmware(tmp_path):
    assert firmware_targets(_plan(tmp_path, [{"device_id": "g", "shard_id": "P1", "target": "linux"}])) == []


def test_fleet_key_is_the_32_raw_bytes_of_the_pem_and_a_private_key_is_refused(tmp_path):
    private = Ed25519PrivateKey.from_private_bytes(bytes(32))
    pub = tmp_path / "fleet-signing.pub"
    pub.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert read_fleet_key(pub) == raw and read_fleet_key(None) is None
    secret = tmp_path / "fleet-signing.key"
    secret.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    with pytest.raises(InputError, match="--fleet-key: .*holds a private key"):
        read_fleet_key(secret)
    with pytest.raises(InputError, match="--fleet-key"):
        read_fleet_key(tmp_path / "absent.pub")


def test_fleet_settings_check_key_length_and_chunk_limit():
    with pytest.raises(ValueError, match="32 raw Ed25519 bytes"):
        FleetSettings("f", b"short", 4096)
    with pytest.raises(ValueError, match="--chunk-limit"):
        FleetSettings("f", None, 100)
