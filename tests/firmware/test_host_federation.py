"""The firmware device (a build without training: the session build has no device configuration) follows
a real aggregator (cloud.serve) over mosquitto beside two Python devices: it reads the aggregator's plan,
manifest, cohort notices and model steps, refuses a stranger's step, and ends on the signed final model.
Its rounds close without it (quorum 2 of 3), as they would for a meter that cannot train."""

from __future__ import annotations

import threading

import numpy as np

from cloud.fleet_bundle import save_bundle
from cloud.serve import serve
from edge.agent import DeviceAgent
from edge.model_step import quantised_step
from edge.mqtt_session import MqttSession
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_signing_key, sign, write_signing_keypair
from edge.topics import FleetTopics
from edge.wire import ModelStepMeta, encode_model_step
from export.firmware_samples import write_samples
from simulator.federation import fleet_bundle

from .firmware_device import FirmwareDevice
from .tiny_fleet import ROUNDS, tiny_fleet

FLEET = "fw-follows"


def _forge_step(broker, weights: dict[str, np.ndarray], version: int) -> None:
    """A stranger publishes a step in the fleet's name (not signed by the fleet key)."""
    wire, _ = quantised_step(weights, {k: v + 1 for k, v in weights.items()}, 8, np.random.default_rng(0))
    topic = FleetTopics(FLEET).model_step
    blob = encode_model_step(wire, ModelStepMeta(FLEET, version, version, version - 1))
    session = MqttSession("fw-follows-stranger", broker.host, broker.port)
    session.connect()
    session.publish(topic, sign(generate_signing_key(), topic, version, blob))
    session.close()


def test_untrained_firmware_follows_a_real_aggregator_to_the_final_model(broker, firmware_build, tmp_path):
    config, art = tiny_fleet()
    bundle = fleet_bundle(config, art, 0.0, fleet=FLEET)
    save_bundle(tmp_path / "bundle", bundle)
    key = write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    fw_plan, *py_plans = bundle.plans
    np.savez(tmp_path / "fw.npz", x=art.split.devices[0].x, y=art.split.devices[0].y)
    firmware = FirmwareDevice(firmware_build.binary("dmskd-firmware"), fw_plan.device, FLEET, broker,
                              write_samples(tmp_path / "fw.npz", tmp_path / "fw.samples"), tmp_path / PUBLIC_KEY_FILE,
                              tmp_path / "outbox")
    agents = [DeviceAgent(p.device, FLEET, MqttSession(f"{FLEET}-{p.device}", broker.host, broker.port), d.x, d.y,
                          key.public_key(), outbox_dir=tmp_path / "outbox").start()
              for p, d in zip(py_plans, art.split.devices[1:])]
    history: list[dict] = []
    server = threading.Thread(target=lambda: history.extend(
        serve(tmp_path / "bundle", f"{broker.host}:{broker.port}", tmp_path / "ckpt", quorum=0.6)))
    try:
        firmware.wait_for(r"connected to ")  # subscribed before the aggregator publishes: it hears every round
        server.start()
        firmware.wait_for(r"plan accepted: shard " + fw_plan.shard_id, timeout=60)
        firmware.wait_for(r"global model v\d+ \(round 0, 4810 parameters\) held", timeout=30)
        _forge_step(broker, art.start_weights, 1)
        firmware.wait_for(rf"refused: forged or corrupted message on dmskd/{FLEET}/step:", timeout=30)
        server.join(timeout=180)
        assert not server.is_alive(), "the aggregator did not finish in 180 s"
        code, out = firmware.finish(timeout=60)
    finally:
        firmware.stop()
        for agent in agents:
            agent.stop()
    assert code == 0, firmware.log()[-3000:]
    assert [sorted(h["accepted"]) for h in history] == [sorted(p.device for p in py_plans)] * ROUNDS
    log = firmware.log()
    for r in range(ROUNDS):
        assert f"round {r}: sampled" in log, log[-3000:]
    for r in range(1, ROUNDS):  # by its step, or by the full model when it arrived first
        assert f"(round {r}, 4810 parameters) rebuilt from its step" in log or \
            f"(round {r}, 4810 parameters) held (full model)" in log, log[-3000:]
    assert f"(round {ROUNDS}) received: the run is over" in log, log[-3000:]
    assert f"{fw_plan.device}: rounds done []" in out
