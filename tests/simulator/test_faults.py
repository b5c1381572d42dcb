"""The fleet against the faults of a real pilot: a broker that restarts, a device that dies, a device not in the plan.

Each runs against a mosquitto of its own (started and killed by the test), so the session's broker is untouched."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cloud.fleet_bundle import save_bundle
from cloud.round_engine import RoundRecord
from cloud.serve import serve
from edge.mqtt_session import MqttSession
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_signing_keypair
from edge.topics import FleetTopics
from simulator.broker import MosquittoBroker, free_port, mosquitto_binary
from simulator.federation import fleet_bundle, run_federation

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto (apt-get install mosquitto)")


@pytest.mark.parametrize("when", ["between rounds", "while updates are in flight"])
def test_a_broker_restart_without_persistence_loses_no_accepted_update(when, tiny_config, tiny_cloud, tmp_path):
    """kill -9 of the broker mid-run, restarted empty (no persistence: every retained message gone)."""
    config = dataclasses.replace(tiny_config, rounds=4, deadline_s=60.0)
    fleet = "restart-" + when.split()[0]
    broker = MosquittoBroker(port=free_port()).start()
    restarted = threading.Event()

    def kill_and_restart() -> None:
        if restarted.is_set():
            return
        restarted.set()
        assert broker._proc is not None
        broker._proc.kill()  # SIGKILL: no clean shutdown, nothing saved
        broker.stop()
        time.sleep(0.5)
        broker.start()

    def after_round(record: RoundRecord) -> None:
        if when == "between rounds" and record.round == 1:
            kill_and_restart()

    watcher = MqttSession("restart-watcher", broker.host, broker.port)  # sees round 2's first update chunk
    if when != "between rounds":
        watcher._client.on_message = lambda *_: threading.Thread(target=kill_and_restart).start()
        watcher.connect()
        watcher._client.subscribe(FleetTopics(fleet).update(2, "+") + "/+", qos=1)
    try:
        started = time.monotonic()
        out = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet=fleet,
                             on_round_end=after_round)
        seconds = time.monotonic() - started
    finally:
        if when != "between rounds":
            watcher.close()
        broker.stop()
    assert restarted.is_set()
    assert [len(h["accepted"]) for h in out.history] == [config.devices] * config.rounds  # no update lost
    assert seconds < config.deadline_s, f"a round waited for its deadline ({seconds:.1f} s)"


def _edge_process(plan_device: str, fleet: str, data: Path, broker: MosquittoBroker,
                  tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--device", plan_device, "--fleet", fleet, "--data", str(data),
         "--broker", f"{broker.host}:{broker.port}", "--outbox", str(tmp_path / "outbox"),
         "--fleet-key", str(tmp_path / PUBLIC_KEY_FILE), "--insecure-seed", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_device_does_not_hold_rounds_to_the_deadline(tiny_config, tiny_cloud, tmp_path):
    """SIGKILL one of three device processes after round 0: its Last Will tells the aggregator at once."""
    config = dataclasses.replace(tiny_config, rounds=3, deadline_s=60.0)
    bundle = fleet_bundle(config, tiny_cloud, 0.0, fleet="killed")
    save_bundle(tmp_path / "bundle", bundle)
    write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    broker = MosquittoBroker(port=free_port()).start()
    procs = []
    for plan, data in zip(bundle.plans, tiny_cloud.split.devices):
        np.savez(tmp_path / f"{plan.device}.npz", x=data.x, y=data.y)
        procs.append(_edge_process(plan.device, "killed", tmp_path / f"{plan.device}.npz", broker, tmp_path))
    victim = procs[0]

    def kill_after_round_0(record: RoundRecord) -> None:
        if record.round == 0:
            victim.kill()

    try:
        history = serve(tmp_path / "bundle", f"{broker.host}:{broker.port}", tmp_path / "ckpt",
                        on_round_end=kill_after_round_0)
        for p in procs[1:]:
            p.communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
        broker.stop()
    assert [len(h["accepted"]) for h in history] == [3, 2, 2]
    others = max(h["seconds"] for h in history[1:])
    assert others < 10.0, f"rounds after the kill took {others:.1f} s: they waited for the dead device"
    assert all(h["closed_by"] == "every cohort device still online has answered" for h in history[1:])
    assert max(h["close_lag_s"] for h in history[1:]) < 2.0  # closed within 2 s of the last live answer


def test_devices_log_and_ignore_what_does_not_fit_and_finish_the_run(broker, tiny_config, tiny_cloud, tmp_path):
    """Garbage on every topic a device reads, and messages signed with the fleet key that still do not fit
    (another device's plan on this one's topic, unreadable cohort and result notices): nothing ends a run."""
    from edge.chunking import split_message
    from edge.plan import DevicePlan
    from edge.signed_artifact import generate_signing_key, sign

    fleet = "misfit"
    topics = FleetTopics(fleet)
    key = generate_signing_key()
    known = [a.device_id for a in tiny_cloud.assignments]
    other = DevicePlan(fleet, "someone-else", "none", "0" * 16, "0" * 16, 1, "none").to_json()
    rogue = MqttSession("misfit-rogue", broker.host, broker.port)
    fired = threading.Event()
    rng = np.random.default_rng(0)

    def attack(topic: str, envelope: bytes) -> None:
        if topic != topics.model(0) or fired.is_set():
            return
        fired.set()
        for target in (topics.model(1), topics.plan(known[0]), topics.cohort(known[1]), topics.result(0),
                       topics.manifest, topics.shard(tiny_cloud.assignments[0].shard_id)):
            for _ in range(20):
                rogue.publish(target, rng.bytes(int(rng.integers(0, 3000))), wait=False)  # chunk-framed garbage
                rogue._client.publish(f"{target}/0", rng.bytes(64), qos=1)  # not even a chunk
        rogue.publish(topics.plan(known[0]), sign(key, topics.plan(known[0]), 2**62, other), wait=False)
        for target in (topics.cohort(known[1]), topics.result(0)):
            rogue.publish(target, sign(key, target, 0, b"{not json"), wait=False)
        rogue._client.publish(f"{topics.model(7)}/0", split_message(b"x" * 100, "m")[0], qos=1)

    rogue.subscribe(topics.all_models, attack)
    rogue.connect()
    try:
        out = run_federation(tiny_config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet=fleet,
                             signing_key=key)
    finally:
        rogue.close()
    assert fired.is_set()
    assert [len(h["accepted"]) for h in out.history] == [tiny_config.devices] * tiny_config.rounds
    assert out.device_refusals[known[0]], "the garbage was not even seen"


def test_edge_run_with_a_device_id_not_in_the_plan_says_so_and_exits(broker, tiny_config, tiny_cloud, tmp_path):
    from cloud.aggregator import AggregatorService
    from edge.signed_artifact import load_signing_key

    bundle = fleet_bundle(tiny_config, tiny_cloud, 0.0, fleet="roster")
    write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    session = MqttSession("roster-aggregator", broker.host, broker.port)
    service = AggregatorService.from_bundle(bundle, session, np.random.SeedSequence(0),
                                            load_signing_key(tmp_path / PRIVATE_KEY_FILE))
    session.connect()
    try:
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        data = tmp_path / "d.npz"
        np.savez(data, x=tiny_cloud.split.devices[0].x)
        proc = subprocess.run(
            [sys.executable, "-m", "edge", "run", "--device", "meter-nobody", "--fleet", "roster", "--data", str(data),
             "--broker", f"{broker.host}:{broker.port}", "--outbox", str(tmp_path / "outbox"),
             "--fleet-key", str(tmp_path / PUBLIC_KEY_FILE)],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        session.close()
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "'meter-nobody' is not in fleet 'roster'" in errors[0] and "--device" in errors[0]
    assert "Traceback" not in proc.stderr
