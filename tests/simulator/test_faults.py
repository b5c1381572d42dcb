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
