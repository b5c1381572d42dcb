"""Devices as separate `python -m edge run` processes, the aggregator from a bundle on disk."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from cloud.fleet_bundle import load_bundle, save_bundle
from cloud.serve import serve
from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_signing_keypair
from simulator.federation import fleet_bundle

REPO = Path(__file__).resolve().parents[2]


def test_edge_processes_and_bundle_aggregator_complete_all_rounds(broker, tiny_config, tiny_cloud, tmp_path):
    config = dataclasses.replace(tiny_config, rounds=2)
    bundle = fleet_bundle(config, tiny_cloud, 0.0, fleet="procs")
    save_bundle(tmp_path / "bundle", bundle)
    write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    assert load_bundle(tmp_path / "bundle").plans == bundle.plans
    np.savez(tmp_path / "test.npz", x=tiny_cloud.split.test.x, y=tiny_cloud.split.test.y)
    procs = []
    for plan, data in zip(bundle.plans, tiny_cloud.split.devices):
        np.savez(tmp_path / f"{plan.device}.npz", x=data.x, y=data.y)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--device", plan.device, "--fleet", "procs",
             "--data", str(tmp_path / f"{plan.device}.npz"), "--broker", f"{broker.host}:{broker.port}",
             "--outbox", str(tmp_path / "outbox"), "--fleet-key", str(tmp_path / PUBLIC_KEY_FILE)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        history = serve(tmp_path / "bundle", f"{broker.host}:{broker.port}", tmp_path / "ckpt", tmp_path / "test.npz")
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [len(h["accepted"]) for h in history] == [len(bundle.plans)] * 2
    assert history[-1]["accuracy"] > history[0]["accuracy"] - 0.05
    for plan, out in zip(bundle.plans, outputs):
        assert f"{plan.device}: rounds done [0, 1]" in out, out[-1500:]


def test_edge_cli_names_a_missing_data_file(tmp_path):
    write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    proc = subprocess.run([sys.executable, "-m", "edge", "run", "--device", "d", "--data", str(tmp_path / "nope.npz"),
                           "--fleet-key", str(tmp_path / PUBLIC_KEY_FILE)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1  # a missing input file is a failure (edge.cli)
    assert "nope.npz not found" in proc.stderr


def test_edge_processes_and_a_coordinator_with_two_workers_complete_all_rounds(broker, tiny_config, tiny_cloud,
                                                                               tmp_path):
    """`python -m cloud aggregate --workers 2` (serve with workers): the devices see a single aggregator."""
    bundle = fleet_bundle(dataclasses.replace(tiny_config, rounds=2), tiny_cloud, 0.0, fleet="procs-sharded")
    save_bundle(tmp_path / "bundle", bundle)
    write_signing_keypair(tmp_path / PRIVATE_KEY_FILE, tmp_path / PUBLIC_KEY_FILE)
    procs = []
    for plan, data in zip(bundle.plans, tiny_cloud.split.devices):
        np.savez(tmp_path / f"{plan.device}.npz", x=data.x, y=data.y)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--device", plan.device, "--fleet", "procs-sharded",
             "--data", str(tmp_path / f"{plan.device}.npz"), "--broker", f"{broker.host}:{broker.port}",
             "--outbox", str(tmp_path / "outbox"), "--fleet-key", str(tmp_path / PUBLIC_KEY_FILE)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        history = serve(tmp_path / "bundle", f"{broker.host}:{broker.port}", tmp_path / "ckpt", workers=2)
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [len(h["accepted"]) for h in history] == [len(bundle.plans)] * 2
    for plan, out in zip(bundle.plans, outputs):
        assert f"{plan.device}: rounds done [0, 1]" in out, out[-1500:]
