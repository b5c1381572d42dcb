"""A real fleet (LiteRT devices over mosquitto) with two aggregator workers ends on the single aggregator's bytes."""

from __future__ import annotations

import dataclasses

import numpy as np

from cloud.strategy import DpMode
from simulator.federation import run_federation, run_in_process


def test_fleet_with_two_aggregator_workers_ends_on_the_single_aggregators_weights(broker, tiny_config, tiny_cloud,
                                                                                  tmp_path):
    """Central DP, seeded: the in-memory run is the single aggregator's release bit for bit
    (tests/simulator/test_in_process.py), and the sharded one must equal it."""
    config = dataclasses.replace(tiny_config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=0.3,
                                 insecure_seeded_noise=True)
    sharded = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.3, fleet="sharded2",
                             aggregators=2)
    single = run_in_process(config, tiny_cloud, 0.3, fleet="sharded2")
    for name, w in sharded.final_weights.items():
        assert w.tobytes() == single.state.weights[name].tobytes(), name
    assert any(not np.array_equal(w, tiny_cloud.student_weights[n]) for n, w in sharded.final_weights.items())
    assert [h["accepted"] for h in sharded.history] == [list(r.accepted) for r in single.records]
    assert sharded.epsilon == single.state.ledger.epsilon


def test_fleet_with_aggregator_worker_processes_matches_the_single_aggregator(broker, tiny_config, tiny_cloud,
                                                                             tmp_path):
    """`python -m cloud aggregate-worker` processes (DP off: float64 sums, equal up to summation order)."""
    config = dataclasses.replace(tiny_config, rounds=2)
    sharded = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet="procs2",
                             aggregators=2, aggregator_processes=True)
    single = run_in_process(config, tiny_cloud, 0.0, fleet="procs2")
    for name, w in sharded.final_weights.items():
        np.testing.assert_allclose(w, single.state.weights[name], rtol=1e-5, atol=1e-7)
    assert all(len(h["accepted"]) == config.devices for h in sharded.history)
    logs = sorted(p.name for p in tmp_path.glob("aggregator-w*.log"))
    assert logs == ["aggregator-w0.log", "aggregator-w1.log"]
