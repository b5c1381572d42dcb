"""The host-built firmware device (dmskd-firmware) against a real broker, without TFLite-Micro.

Exercised here, in every build: connecting with a Last Will, the signed plan, the signed full model, the
quantised model step rebuilt on the device, cohort notices, refusal of unsigned, forged and moved
artefacts (each named in the device's log), the on-disk outbox (resent on start, resent after a SIGKILL
and restart, kept until acknowledged, erased on the acknowledgement), and the end on the signed final
model. Training is not exercised here (it needs TFLite-Micro: test_firmware_federation.py); a sampled
round in a build without it is logged as untrainable, which is checked when the build has no TFLM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.model_step import quantised_step
from edge.plan import DevicePlan
from edge.signed_artifact import generate_signing_key, sign
from edge.wire import ModelStepMeta, UpdateMeta, decode_update, encode_model_step, encode_update
from export.firmware_samples import samples_bytes

from .firmware_device import FirmwareDevice, FleetSide, outbox_record, write_fleet_key

DEVICE = "meter-7"


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense_0/kernel": rng.normal(0, 0.1, (64, 10)).astype(np.float32),
            "dense_0/bias": rng.normal(0, 0.1, 10).astype(np.float32)}


def _plan(fleet: str, rounds: int = 3) -> DevicePlan:
    return DevicePlan(fleet, DEVICE, "s0", "0123456789abcdef", "fedcba9876543210", rounds, update_bits=8, model_bits=8)


class _Setup:
    def __init__(self, broker, firmware_build, tmp_path: Path) -> None:
        self.broker, self.tmp = broker, tmp_path
        self.binary = firmware_build.binary("dmskd-firmware")
        self.fleet = f"fw-{uuid.uuid4().hex[:8]}"
        self.key = generate_signing_key()
        self.key_path = write_fleet_key(self.key, tmp_path / "fleet-signing.pub")
        rng = np.random.default_rng(3)
        self.data = tmp_path / "samples.bin"
        self.data.write_bytes(samples_bytes(rng.random((20, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 20)))
        self.outbox = tmp_path / "outbox"
        self.fleet_side = FleetSide(broker, self.fleet, DEVICE, self.key)
        self.devices: list[FirmwareDevice] = []

    def start(self, *extra: str) -> FirmwareDevice:
        device = FirmwareDevice(self.binary, DEVICE, self.fleet, self.broker, self.data, self.key_path, self.outbox,
                                list(extra))
        self.devices.append(device)
        device.wait_for(r"connected to .* as ")
        return device

    def close(self) -> None:
        for device in self.devices:
            device.stop()
        self.fleet_side.close()


@pytest.fixture
def setup(broker, firmware_build, tmp_path) -> Iterator[_Setup]:
    s = _Setup(broker, firmware_build, tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_firmware_holds_the_signed_plan_and_model_and_refuses_what_the_fleet_key_did_not_sign(setup):
    fleet, side = setup.fleet, setup.fleet_side
    side.publish_plan(_plan(fleet))
    side.publish_model(_weights(0), version=1, round_=0)
    device = setup.start("--resend-interval", "1")
    device.wait_for(r"plan accepted: shard s0 \(0123456789abcdef\), 3 rounds, dp none, clip 1, update bits 8")
    device.wait_for(r"global model v1 \(round 0, 650 parameters\) held \(full model\)")

    stranger = generate_signing_key()
    forged, _ = quantised_step(_weights(0), _weights(1), 8, np.random.default_rng(1))
    side.publish_signed(side.topics.model_step, encode_model_step(forged, ModelStepMeta(fleet, 2, 1, 1)), 2,
                        key=stranger)
    device.wait_for(rf"refused: forged or corrupted message on dmskd/{fleet}/step: its signature does not verify")
    # the full model's topic is read only while the steps cannot serve (plan model_bits 8): the idle resync
    # (--resend-interval 1) asks for it, and the stranger's retained full model is refused then
    side.publish_model(_weights(1), version=2, round_=1, key=stranger)
    device.wait_for(rf"refused: forged or corrupted message on dmskd/{fleet}/model/2: its signature does not verify")
    side.session.publish(side.topics.model(3), b"not an envelope", retain=True)
    device.wait_for(rf"refused: unsigned message on dmskd/{fleet}/model/3")
    moved = side.topics.plan("meter-8")  # a plan signed for another device's topic, published on this one's
    side.session.publish(side.topics.plan(DEVICE), sign(setup.key, moved, 3, _plan(fleet).to_json()), retain=True)
    device.wait_for(rf"refused: .*{moved}.* arrived on .*dmskd/{fleet}/plan/{DEVICE}")
    assert "global model v2" not in device.log() and "global model v3" not in device.log()

    wire, rebuilt = quantised_step(_weights(0), _weights(5), 8, np.random.default_rng(0))
    side.publish_signed(side.topics.model_step, encode_model_step(wire, ModelStepMeta(fleet, 2, 1, 1)), 2)
    device.wait_for(r"global model v2 \(round 1, 650 parameters\) rebuilt from its step")
    side.publish_cohort(1, selected=False)
    device.wait_for(r"round 1: not sampled")

    final, _ = quantised_step(rebuilt, _weights(6), 8, np.random.default_rng(2))  # round 3 >= the plan's 3
    side.publish_signed(side.topics.model_step, encode_model_step(final, ModelStepMeta(fleet, 3, 3, 2)), 3)
    code, out = device.finish()
    assert code == 0, device.log()
    assert "final model v3 (round 3) received" in device.log(), device.log()
    assert f"{DEVICE}: rounds done []" in out


def test_a_sampled_round_without_tflite_micro_is_logged_as_untrainable(setup):
    side = setup.fleet_side
    side.publish_plan(_plan(setup.fleet))
    side.publish_model(_weights(0), version=1, round_=0)
    side.publish_cohort(0, selected=True)
    device = setup.start()
    if "training through TFLite-Micro" in device.log():
        pytest.skip("this build trains (TFLM_DIR and a device configuration): test_firmware_federation.py covers it")
    device.wait_for(r"sampled for round 0 but not training: this firmware was built without TFLite-Micro and "
                    r"cannot train; configure with -DTFLM_DIR=")


def _update(fleet: str) -> bytes:
    delta = {k: v * 0.01 for k, v in _weights(9).items()}
    return encode_update(delta, UpdateMeta(fleet, DEVICE, 1, 1, 20, 1.0, 0.0, "none"))


def test_outbox_survives_a_kill_and_is_resent_until_acknowledged(setup):
    fleet, side = setup.fleet, setup.fleet_side
    blob = _update(fleet)
    (setup.outbox / DEVICE).mkdir(parents=True)
    record = setup.outbox / DEVICE / "outbox"
    record.write_bytes(outbox_record(1, blob))
    side.publish_plan(_plan(fleet))
    side.publish_model(_weights(0), version=1, round_=1)

    first = setup.start("--resend-interval", "30")
    assert side.wait_updates(1)[0] == blob, "the outbox's update is not what was stored"
    assert decode_update(blob)[1].update_id == f"{DEVICE}:1:1"
    first.kill()  # no acknowledgement yet: the record must survive the power cut
    assert record.read_bytes() == outbox_record(1, blob)

    second = setup.start("--resend-interval", "0.5")
    second.wait_for(r"outbox holds the round 1 update")
    assert all(b == blob for b in side.wait_updates(3)), "resends differ from the stored update"
    side.publish_cohort(2, selected=False, acked=(1, blob))
    second.wait_for(r"round 1 update acknowledged")
    assert not record.exists(), "the acknowledged update stayed in the outbox"
    settled = len(side.updates)
    second.wait_for(r"round 2: not sampled")
    time.sleep(1.5)
    assert len(side.updates) <= settled + 1, "resends went on after the acknowledgement"


def test_an_update_the_round_closed_without_is_dropped(setup):
    fleet, side = setup.fleet, setup.fleet_side
    blob = _update(fleet)
    (setup.outbox / DEVICE).mkdir(parents=True)
    record = setup.outbox / DEVICE / "outbox"
    record.write_bytes(outbox_record(1, blob))
    side.publish_plan(_plan(fleet))
    side.publish_model(_weights(0), version=1, round_=1)
    device = setup.start()
    side.wait_updates(1)
    side.publish_cohort(2, selected=False, acked=(1, None))
    device.wait_for(r"round 1 update dropped from the outbox: the round closed without it")
    assert not record.exists()
