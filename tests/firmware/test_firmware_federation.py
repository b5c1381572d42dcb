"""A federation over mosquitto in which one device is the host-built firmware (TFLite-Micro) and two are
Python devices (edge.agent.DeviceAgent, as the simulator runs them), for 3 rounds: the firmware's updates
are accepted, the global student improves on held-out digits, and a forged model published by a stranger
is refused by the firmware. Prints the firmware-vs-Python figures: seconds and bytes per round.

The firmware is built in the meter-plus configuration the size report finds fitting (tflm_build.METER_PLUS_*:
2 reassembly slots, 4 KiB chunks, 256 samples, 5% arena headroom) and the fleet runs with a 4 KiB chunk limit.

Needs TFLite-Micro (TFLM_DIR): the firmware is built with the device configuration of its shard and the
fleet's student (export.firmware_config), in a cached build dir (firmware_stubs/build/pytest-federation)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cloud.fleet_bundle import save_bundle
from cloud.serve import serve
from edge.agent import DeviceAgent
from edge.model_step import quantised_step
from edge.mqtt_session import MqttSession
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_signing_key, sign, write_signing_keypair
from edge.student_runtime import TrainableStudent
from edge.topics import FleetTopics
from edge.wire import ModelStepMeta, content_hash, encode_model_step
from export.firmware_samples import write_samples

from .conftest import SOURCE, run_cmake
from .firmware_device import FirmwareDevice, FleetSide, write_fleet_key
from .round_figures import RoundSniffer, figures_table
from .tflm_build import METER_PLUS_LIMITS, source_trees
from .tiny_fleet import ROUNDS, tiny_fleet

FLEET = "fw-federation"
CHUNK_LIMIT = METER_PLUS_LIMITS["DMSKD_MAX_CHUNK_BYTES"]  # the meter's network buffer: the fleet's chunk limit
METER_SAMPLES = METER_PLUS_LIMITS["DMSKD_MAX_LOGITS"] // 10  # the samples a meter-plus build labels (10 classes)
BUILD = SOURCE / "build" / "pytest-federation"


def _firmware_config(out: Path, shard_id: str, shard: bytes, weights: dict[str, np.ndarray], batch: int) -> Path:
    """The device configuration of the firmware's class: its shard and the fleet student's train step."""
    from export.c_array import c_identifier
    from export.firmware_config import FleetSettings, ShardFiles, write_device_config
    from export.op_support import model_ops
    from export.student_train_step import DenseStack, student_step
    from export.targets.mcu import arena_with_headroom
    from export.tflm_arena import measure_arena_bytes, minimum_arena_bytes

    kernels = [weights[f"dense_{i}/kernel"] for i in range(len(weights) // 2)]
    stack = DenseStack(kernels[0].shape[0], tuple(k.shape[1] for k in kernels[:-1]), kernels[-1].shape[1])
    measured = minimum_arena_bytes(shard, recorded_total=measure_arena_bytes(shard))
    files = ShardFiles(shard_id, c_identifier(f"shard_{shard_id}"), shard, tuple(sorted(model_ops(shard))),
                       measured, arena_with_headroom(measured, 0.05))
    write_device_config(out, "fw-meter", files, student_step(stack, batch, 0.05),
                        FleetSettings(FLEET, None, CHUNK_LIMIT))
    return out


def _build_firmware(config_dir: Path) -> Path:
    """dmskd-firmware built with TFLite-Micro and the device configuration (cached: only changes recompile)."""
    trees = source_trees()
    if isinstance(trees, str):
        pytest.skip(trees)
    run_cmake(["-S", str(SOURCE), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
               f"-DDMSKD_DEVICE_CONFIG={config_dir}", *(f"-D{var}={path}" for var, path in trees.items()),
               "-DDMSKD_DEVICE_LIMITS=" + ";".join(f"{k}={v}" for k, v in METER_PLUS_LIMITS.items())],
              "configuring the federation firmware")
    run_cmake(["--build", str(BUILD), "--target", "dmskd-firmware", "--parallel", "2"], "building dmskd-firmware")
    return BUILD / "device" / "dmskd-firmware"


def _forge_step(broker, weights: dict[str, np.ndarray], version: int) -> None:
    """A stranger (not the fleet key) publishes a model step in the fleet's name."""
    wire, _ = quantised_step(weights, {k: v + 1 for k, v in weights.items()}, 8, np.random.default_rng(0))
    topic = FleetTopics(FLEET).model_step
    session = MqttSession("fw-federation-stranger", broker.host, broker.port, CHUNK_LIMIT)  # chunks a meter takes
    session.connect()
    blob = encode_model_step(wire, ModelStepMeta(FLEET, version, version, version - 1))
    session.publish(topic, sign(generate_signing_key(), topic, version, blob))
    session.close()


@dataclasses.dataclass(frozen=True)
class TrainingFirmware:
    """The fleet's artefacts and the firmware built for its first device (TFLite-Micro, its shard)."""

    config: object
    art: object
    binary: Path
    shard_hash: str


@pytest.fixture(scope="module")
def training_firmware(tflm_dir) -> TrainingFirmware:
    config, art = tiny_fleet()
    config = dataclasses.replace(config, chunk_limit=CHUNK_LIMIT)
    device = art.assignments[0]
    config_dir = _firmware_config(BUILD / "device-config", device.shard_id, art.shards[device.shard_id],
                                  art.start_weights, config.training.batch_size)  # beside the build it feeds
    return TrainingFirmware(config, art, _build_firmware(config_dir), content_hash(art.shards[device.shard_id]))


@pytest.mark.timeout(1800)  # the first session compiles TFLite-Micro (about 6 minutes on 2 cores); later ones do not
def test_firmware_device_joins_a_federation_its_updates_count_and_it_refuses_a_forged_model(
        broker, training_firmware, tmp_path):
    from simulator.federation import fleet_bundle

    config, art, binary = training_firmware.config, training_firmware.art, training_firmware.binary
    bundle = fleet_bundle(config, art, 0.0, fleet=FLEET)
    save_bundle(tmp_path / "bundle", bundle)
    key = write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    test_x, test_y = art.split.test.x, art.split.test.y
    np.savez(tmp_path / "test.npz", x=test_x, y=test_y)
    fw_plan, *py_plans = bundle.plans
    samples = write_samples(_npz(tmp_path / "fw.npz", _meter_data(art)), tmp_path / "fw.samples")

    sniffer = RoundSniffer(broker, FLEET)
    firmware = FirmwareDevice(binary, fw_plan.device, FLEET, broker, samples, tmp_path / PUBLIC_KEY_FILE,
                              tmp_path / "outbox")
    agents = [DeviceAgent(plan.device, FLEET, MqttSession(f"{FLEET}-{plan.device}", broker.host, broker.port,
                                                          CHUNK_LIMIT),
                          data.x, data.y, key.public_key(), outbox_dir=tmp_path / "outbox").start()
              for plan, data in zip(py_plans, art.split.devices[1:])]
    history: list[dict] = []
    server = threading.Thread(target=lambda: history.extend(
        serve(tmp_path / "bundle", f"{broker.host}:{broker.port}", tmp_path / "ckpt", tmp_path / "test.npz")))
    started = time.monotonic()
    try:
        firmware.wait_for(r"connected to .*training through TFLite-Micro")  # subscribed before the aggregator starts
        server.start()
        firmware.wait_for(r"global model v\d+ \(round 0, .*\) held", timeout=60)
        _forge_step(broker, art.start_weights, 1)
        firmware.wait_for(rf"refused: forged or corrupted message on dmskd/{FLEET}/step:", timeout=30)
        server.join(timeout=240)
        assert not server.is_alive(), "the aggregator did not finish its rounds in 240 s"
        code, out = firmware.finish(timeout=60)
    finally:
        firmware.stop()
        for agent in agents:
            agent.stop()
        sniffer.close()
    wall = time.monotonic() - started

    assert code == 0, firmware.log()[-3000:]
    assert len(history) == ROUNDS
    for record in history:
        assert fw_plan.device in record["accepted"], (record, firmware.log()[-3000:])
    assert f"{fw_plan.device}: rounds done [0, 1, 2]" in out, out
    peak = re.search(r"reassembly peak (\d+) of 2 slots, 0 evictions \(0 for age\)", out)
    assert peak is not None and 1 <= int(peak.group(1)) <= 2, out  # 2 slots held every message it was sent
    assert "dropped" not in firmware.log(), firmware.log()[-3000:]  # every chunk fit its 4 KiB buffer
    for r in range(ROUNDS - 1):
        firmware.wait_for(rf"round {r} update acknowledged", timeout=1)
    student = TrainableStudent.from_bytes(art.student_program)
    student.set_weights(art.start_weights)
    start_accuracy = student.accuracy(test_x.reshape(len(test_x), -1), test_y)
    assert history[-1]["accuracy"] > start_accuracy + 0.1, (start_accuracy, [h["accuracy"] for h in history])

    accuracies = " -> ".join(f"{h['accuracy']:.3f}" for h in history)
    print(f"\nfederation: {ROUNDS} rounds in {wall:.1f} s; accuracy {start_accuracy:.3f} -> {accuracies}")
    print(figures_table(sniffer, fw_plan.device, out, {a.device_id: a for a in agents}, ROUNDS))


def _npz(path: Path, data) -> Path:
    np.savez(path, x=data.x, y=data.y)
    return path


def _one_meter(training_firmware, fleet: str, device: str, tmp_path: Path):
    """A fleet key (and its public file), a 3-round 8-bit plan on the first shard, and the meter's samples file."""
    from edge.plan import DevicePlan

    key = generate_signing_key()
    key_path = write_fleet_key(key, tmp_path / "fleet-signing.pub")
    plan = DevicePlan(fleet, device, training_firmware.art.assignments[0].shard_id, training_firmware.shard_hash,
                      "0" * 16, 3, training=training_firmware.config.training, update_bits=8, model_bits=8)
    samples = write_samples(_npz(tmp_path / "d.npz", _meter_data(training_firmware.art)), tmp_path / "d.samples")
    return key, key_path, plan, samples


def _meter_data(art):
    """The firmware device's samples: its split's first METER_SAMPLES (what a meter-plus build labels)."""
    data = art.split.devices[0]
    held = slice(0, METER_SAMPLES)
    return dataclasses.replace(data, x=data.x[held], y=data.y[held],
                               labelled=None if data.labelled is None else data.labelled[held])



def test_trained_update_survives_a_kill_is_resent_identically_and_decodes_within_its_clip(
        broker, training_firmware, tmp_path):
    """The firmware trains a round (driven from Python as the fleet), is killed after writing its update,
    and on restart resends the same bytes without retraining, until the next notice acknowledges them."""
    from edge.stochastic_quantization import BITS_OF, rounding_bound
    from edge.update_quantization import decoded_delta
    from edge.wire import SQ_ENCODINGS, decode_update, training_digest

    config, art = training_firmware.config, training_firmware.art
    fleet, device = "fw-outbox-trained", "meter-t"
    key, key_path, plan, samples = _one_meter(training_firmware, fleet, device, tmp_path)
    side = FleetSide(broker, fleet, device, key, CHUNK_LIMIT)
    record = tmp_path / "outbox" / device / "outbox"
    devices = []
    try:
        side.publish_plan(plan)
        side.publish_model(art.start_weights, version=0, round_=0)
        side.publish_cohort(0, selected=True)
        devices.append(FirmwareDevice(training_firmware.binary, device, fleet, broker, samples, key_path,
                                      tmp_path / "outbox", ["--resend-interval", "60"]))
        blob = side.wait_updates(1, timeout=120)[0]
        devices[0].wait_for(r"round 0 update published")
        devices[0].kill()
        assert record.read_bytes()[16:] == blob, "the outbox does not hold the update that was published"
        devices.append(FirmwareDevice(training_firmware.binary, device, fleet, broker, samples, key_path,
                                      tmp_path / "outbox"))
        devices[1].wait_for(r"outbox holds the round 0 update")
        assert side.wait_updates(2, timeout=30)[1] == blob, "the restarted device sent other bytes"
        side.publish_cohort(1, selected=False, acked=(0, blob))
        devices[1].wait_for(r"round 0 update acknowledged")
        assert not record.exists()
        assert "round 0 update published" not in devices[1].log(), "the restarted device trained the round again"
    finally:
        for d in devices:
            d.stop()
        side.close()
    tensors, meta = decode_update(blob, encodings=tuple(SQ_ENCODINGS.values()))
    template = {k: v.shape for k, v in art.start_weights.items()}
    delta = decoded_delta(tensors, meta.encoding, template)
    norm = float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in delta.values())))
    assert (meta.device, meta.round, meta.base_version, meta.encoding) == (device, 0, 0, "sq8-delta")
    assert meta.num_examples == len(_meter_data(art).x) and meta.clip == config.training.clip
    assert meta.training == training_digest(config.training.declaration())
    assert 0 < norm <= config.training.clip + rounding_bound(tensors, template) + 1e-6
    assert BITS_OF[meta.encoding] == 8


def test_a_chunk_larger_than_the_meters_buffer_is_dropped_naming_the_fleet_chunk_limit(
        broker, training_firmware, tmp_path):
    """An aggregator left at the 128 KiB default sends the model in one 19 KB chunk: the meter-plus build (4 KiB
    chunks, as an MCU's network buffer) drops it saying which limit to set, and takes the same model in 4 KiB
    chunks."""

    art = training_firmware.art
    fleet, device = "fw-oversized", "meter-o"
    key, key_path, plan, samples = _one_meter(training_firmware, fleet, device, tmp_path)
    firmware = FirmwareDevice(training_firmware.binary, device, fleet, broker, samples, key_path, tmp_path / "outbox")
    try:
        firmware.wait_for(r"connected to ")
        default_side = FleetSide(broker, fleet, device, key)  # the aggregator's default chunk limit
        default_side.publish_plan(plan)
        default_side.publish_model(art.start_weights, version=0, round_=0)
        default_side.close()
        firmware.wait_for(rf"dropped a \d+-byte chunk on dmskd/{fleet}/model/0/0: this build receives chunks of at "
                          r"most DMSKD_MAX_CHUNK_BYTES=4096 bytes; run the fleet with a chunk limit", timeout=30)
        assert "global model v0" not in firmware.log()
        meter_side = FleetSide(broker, fleet, device, key, CHUNK_LIMIT)
        try:
            meter_side.publish_model(art.start_weights, version=0, round_=0)
            firmware.wait_for(r"global model v0 \(round 0, 4810 parameters\) held", timeout=30)
        finally:
            meter_side.close()
    finally:
        firmware.stop()
